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

/// Ends the account's connection so its next login meets whatever the sim now plays.
fn relogin(sim: &Sim, jid: &str) {
    let (code, body) = sim.post("/drop", &json!({ "jid": jid }));
    assert_eq!(code, 200, "{body}");
}

#[test]
fn a_lock_or_a_ban_shows_as_banned_and_an_unlink_stays_logged_out() {
    let sim = Sim::start(&[]);
    let volume = Volume::new();
    let sup = start(&volume, &sim, &[("RECONNECT_BASE_MS", "100")]);
    let locked = pair_with(&sup, &sim, "locked", "15550002011", json!({}));
    let banned = pair_with(&sup, &sim, "banned", "15550002012", json!({}));
    let unlinked = pair_with(&sup, &sim, "unlinked", "15550002013", json!({}));
    for (phone, reason) in [("15550002011", 403), ("15550002012", 406)] {
        let (code, body) = sim.post("/failure", &json!({ "reason": reason, "phone": phone }));
        assert_eq!(code, 200, "{body}");
    }
    relogin(&sim, &locked);
    relogin(&sim, &banned);
    let (code, body) = sim.post("/logout", &json!({ "jid": unlinked }));
    assert_eq!(code, 200, "{body}");

    let a = wait_status(&sup, "locked", "banned");
    assert_eq!(a["reason"], "account_locked", "{a}");
    assert!(
        a["lastError"].as_str().is_some_and(|e| e.contains("403")),
        "{a}"
    );
    let b = wait_status(&sup, "banned", "banned");
    assert_eq!(b["reason"], "banned", "{b}");
    assert!(
        b["lastError"].as_str().is_some_and(|e| e.contains("406")),
        "{b}"
    );
    let u = wait_status(&sup, "unlinked", "logged_out");
    assert_eq!(u["reason"], "logged_out", "{u}");

    // A ban wave is visible in the counts and the metrics, apart from unlinks.
    let summary = sup.dashboard()["summary"].clone();
    assert_eq!(summary["banned"], 2, "{summary}");
    assert_eq!(summary["logged_out"], 1, "{summary}");
    let metrics = sup.call("GET", "/metrics", None).text();
    assert!(
        metrics.contains("wafleet_accounts{status=\"banned\"} 2"),
        "{metrics}"
    );
    // No reconnect on its own: the dead creds were archived, as for an unlink.
    assert!(!volume.sessions().join("locked").join("creds.json").exists());
    assert!(!volume.sessions().join("banned").join("creds.json").exists());
}

#[test]
fn a_version_bump_is_survived_without_a_redeploy() {
    let sim = Sim::start(&[]);
    let volume = Volume::new();
    let sw_js = format!("{}/sw.js", sim.control_url());
    let sup = start(
        &volume,
        &sim,
        &[("RECONNECT_BASE_MS", "100"), ("WA_VERSION_URL", &sw_js)],
    );
    let jid = pair_with(&sup, &sim, "bumped", "15550002021", json!({}));
    // WhatsApp moves on: the published version rises, and older clients get a 405.
    let newer = "2.3000.2045649367";
    let (code, body) = sim.post("/version", &json!({ "current": newer, "min": newer }));
    assert_eq!(code, 200, "{body}");
    relogin(&sim, &jid);
    // The 405 makes the supervisor read the published version; the account dials again with
    // it, and no one redeployed anything.
    wait_until("the refreshed version", STATE_DEADLINE, || {
        let s = sup.call("GET", "/api/settings", None).json();
        if s["waVersion"] == newer && s["waVersionSource"] == "refresh" {
            Ok(())
        } else {
            Err(s.to_string())
        }
    });
    wait_status(&sup, "bumped", "connected");
    assert!(
        sup.events("whatsapp web version changed").len() == 1,
        "one change, stored: {:?}",
        sup.events("whatsapp web version changed")
    );
    assert!(volume.sessions().join(".wa-version.json").exists());
}

#[test]
fn a_client_outdated_account_dials_again_when_the_admin_sets_the_version() {
    let sim = Sim::start(&[]);
    let volume = Volume::new();
    // No refresh URL: only the admin can help.
    let sup = start(&volume, &sim, &[("RECONNECT_BASE_MS", "100")]);
    let jid = pair_with(&sup, &sim, "outdated", "15550002031", json!({}));
    let newer = "2.3000.2045649368";
    let (code, body) = sim.post("/version", &json!({ "current": newer, "min": newer }));
    assert_eq!(code, 200, "{body}");
    relogin(&sim, &jid);
    let a = wait_status(&sup, "outdated", "failed");
    assert_eq!(a["reason"], "client_outdated", "{a}");
    assert!(
        a["lastError"]
            .as_str()
            .is_some_and(|e| e.contains("/api/settings")),
        "{a}"
    );
    let r = sup.call(
        "PUT",
        "/api/settings",
        Some(&json!({ "waVersion": newer }).to_string()),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    wait_status(&sup, "outdated", "connected");
}
