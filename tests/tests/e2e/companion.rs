//! How the companion presents itself and how WhatsApp's verdicts on it show (issue 8, items
//! 3–5): the identity the phone lists, a ban told from an unlink, a version bump survived
//! without a redeploy. Real supervisor, real workers, real wa-sim.

use serde_json::{json, Value};
use wa_sim::harness::{wait_until, Sim, Volume};

use super::whatsapp::{start, wait_qr};
use super::STATE_DEADLINE;

/// add-account with `extra` fields, QR, scan: returns the device JID once `connected`.
fn pair_with(
    sup: &wa_sim::harness::Supervisor,
    sim: &Sim,
    id: &str,
    phone: &str,
    extra: Value,
) -> String {
    let mut body = json!({ "name": id, "accountId": id });
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    let r = sup.call("POST", "/api/whatsapp/add-account", Some(&body.to_string()));
    assert_eq!(r.status, 201, "{}", r.text());
    let jid = sim.scan(&wait_qr(sup, id), phone);
    wait_status(sup, id, "connected");
    jid
}

fn wait_status(sup: &wa_sim::harness::Supervisor, id: &str, want: &str) -> Value {
    wait_until(&format!("{id} {want}"), STATE_DEADLINE, || {
        let a = sup.account(id);
        if a["status"] == want {
            Ok(a)
        } else {
            Err(a.to_string())
        }
    })
}

/// What the phone lists under Linked devices.
fn companion(sim: &Sim, phone: &str) -> Value {
    let listed = sim.get(&format!("/linked-devices?phone={phone}"));
    let devices = listed.as_array().expect("a list");
    assert_eq!(devices.len(), 1, "{listed}");
    devices[0]["companion"].clone()
}

#[test]
fn the_phone_lists_the_companion_as_wa_browser_names_it_and_an_account_may_override_it() {
    let sim = Sim::start(&[]);
    let volume = Volume::new();
    let sup = start(&volume, &sim, &[("WA_BROWSER", "SuperParty,Chrome,2.0.0")]);
    pair_with(&sup, &sim, "fleet-wide", "15550002001", json!({}));
    assert_eq!(
        companion(&sim, "15550002001"),
        json!({ "os": "SuperParty", "platform_type": 1, "version": "2.0.0" })
    );
    // The seed's array form, per account.
    pair_with(
        &sup,
        &sim,
        "own",
        "15550002002",
        json!({ "browser": ["Shop Front", "Desktop", "1.2.3"] }),
    );
    assert_eq!(
        companion(&sim, "15550002002"),
        json!({ "os": "Shop Front", "platform_type": 7, "version": "1.2.3" })
    );
    // A bad identity is refused with a clear error, and nothing is left behind.
    let r = sup.call(
        "POST",
        "/api/whatsapp/add-account",
        Some(
            &json!({ "name": "bad", "accountId": "bad", "browser": "Shop,Toaster,1" }).to_string(),
        ),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "invalid_browser", "{}", r.text());
    assert!(r.text().contains("Toaster"), "{}", r.text());
    assert!(!volume.sessions().join("bad").exists());
}

#[test]
fn the_default_identity_is_a_desktop_browser_and_a_bad_wa_browser_refuses_to_start() {
    let sim = Sim::start(&[]);
    let volume = Volume::new();
    let sup = start(&volume, &sim, &[]);
    pair_with(&sup, &sim, "default", "15550002003", json!({}));
    assert_eq!(
        companion(&sim, "15550002003"),
        json!({ "os": "Mac OS", "platform_type": 1, "version": "14.4.1" })
    );
    drop(sup);
    let other = Volume::new();
    let (status, log) =
        wa_sim::harness::Supervisor::run_to_exit(&other.sessions(), &[("WA_BROWSER", "wafleet")]);
    assert!(!status.success());
    assert!(log.contains("WA_BROWSER"), "{log}");
}

#[test]
fn the_version_setting_is_validated_stored_and_kept_across_restarts() {
    let volume = Volume::new();
    let sup = wa_sim::harness::Supervisor::start(&volume.sessions(), &[]);
    let shown = sup.call("GET", "/api/settings", None);
    assert_eq!(shown.status, 200, "{}", shown.text());
    assert_eq!(shown.json()["waVersion"], worker::DEFAULT_WA_VERSION);
    assert_eq!(shown.json()["waVersionSource"], "config");
    assert!(
        shown.json()["waVersionUrl"].is_null(),
        "the tests never read the real one"
    );
    for (body, code) in [
        (json!({ "waVersion": "2.3000" }), "invalid_wa_version"),
        (json!({ "waVersion": 2 }), "invalid_wa_version"),
        (
            json!({ "waVersion": "2.3000.1", "other": 1 }),
            "invalid_json",
        ),
        (json!(["2.3000.1"]), "invalid_json"),
    ] {
        let r = sup.call("PUT", "/api/settings", Some(&body.to_string()));
        assert_eq!(r.status, 400, "{body}: {}", r.text());
        assert_eq!(r.json()["error"]["code"], code, "{body}: {}", r.text());
    }
    let auth = format!("Bearer {}", wa_sim::harness::process::TOKEN);
    let r = sup.call_with(
        "PUT",
        "/api/settings",
        &[("Authorization", &auth), ("Content-Type", "text/plain")],
        Some(r#"{"waVersion":"2.3000.1"}"#),
    );
    assert_eq!(r.status, 415, "{}", r.text());
    assert!(
        !volume.sessions().join(".wa-version.json").exists(),
        "nothing stored for refused input"
    );
    let newer = "2.3001.1000000001";
    let r = sup.call(
        "PUT",
        "/api/settings",
        Some(&json!({ "waVersion": newer }).to_string()),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["waVersion"], newer);
    assert_eq!(r.json()["waVersionSource"], "api");
    drop(sup);
    let again = wa_sim::harness::Supervisor::start(&volume.sessions(), &[]);
    let shown = again.call("GET", "/api/settings", None).json();
    assert_eq!(shown["waVersion"], newer, "{shown}");
    assert_eq!(shown["waVersionSource"], "api", "{shown}");
}
