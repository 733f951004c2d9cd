//! The worker against wa-sim: pairing by QR, login with saved creds, and every way a connection
//! ends (issue 3's list). Real supervisor, real workers, real simulator, loopback only.

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};
use wa_sim::harness::{wait_until, Sim, Supervisor, Volume};

use super::STATE_DEADLINE;

/// How long an account may take from scan to `connected` (issue 3: within 5 s).
const CONNECT_DEADLINE: Duration = Duration::from_secs(5);

pub(super) fn start(volume: &Volume, sim: &Sim, extra: &[(&str, &str)]) -> Supervisor {
    let mut env = vec![
        ("WA_WS_URL", sim.ws_url.as_str()),
        ("WA_TRUST_ROOT", sim.root_public_key.as_str()),
        ("BOOT_JITTER_MIN_MS", "0"),
        ("BOOT_JITTER_MAX_MS", "0"),
    ];
    env.extend_from_slice(extra);
    Supervisor::start(&volume.sessions(), &env)
}

pub(super) fn qr_json(sup: &Supervisor, id: &str) -> Value {
    let r = sup.call("GET", &format!("/api/whatsapp/qr/{id}?format=json"), None);
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

/// Waits for a QR for `id` over the admin API and returns it.
pub(super) fn wait_qr(sup: &Supervisor, id: &str) -> String {
    wait_until(&format!("a QR for {id}"), STATE_DEADLINE, || {
        let j = qr_json(sup, id);
        j["qr"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| j.to_string())
    })
}

fn status(sup: &Supervisor, id: &str) -> Value {
    sup.account(id)
}

fn wait_status(sup: &Supervisor, id: &str, want: &str, deadline: Duration) -> Value {
    wait_until(&format!("{id} {want}"), deadline, || {
        let a = status(sup, id);
        if a["status"] == want {
            Ok(a)
        } else {
            Err(a.to_string())
        }
    })
}

/// add-account, then waits until its worker is at the scan: returns the QR.
pub(super) fn add(sup: &Supervisor, id: &str) -> String {
    let r = sup.call(
        "POST",
        "/api/whatsapp/add-account",
        Some(&json!({ "name": id, "accountId": id }).to_string()),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    wait_qr(sup, id)
}

/// add-account, QR over HTTP, scan at the sim, `connected`: returns the device JID.
pub(super) fn pair(sup: &Supervisor, sim: &Sim, id: &str, phone: &str) -> String {
    let qr = add(sup, id);
    assert!(
        qr.starts_with("https://wa.me/settings/linked_devices#"),
        "{qr}"
    );
    let jid = sim.scan(&qr, phone);
    wait_status(
        sup,
        id,
        "connected",
        CONNECT_DEADLINE + Duration::from_secs(1),
    );
    jid
}

#[test]
fn an_added_account_shows_a_qr_is_scanned_and_connects_with_durable_creds() {
    let sim = Sim::start(&[]);
    let volume = Volume::new();
    let sup = start(&volume, &sim, &[]);

    let r = sup.call(
        "POST",
        "/api/whatsapp/add-account",
        Some(r#"{"name":"First","accountId":"first"}"#),
    );
    assert_eq!(r.status, 201);
    // As the seed answered: the first QR comes with the account, as a PNG data URL.
    let added = r.json();
    assert_eq!(added["account"]["status"], "needs_qr", "{added}");
    let png_b64 = added["account"]["qrCode"]
        .as_str()
        .and_then(|u| u.strip_prefix("data:image/png;base64,"))
        .unwrap_or_else(|| panic!("qrCode: {added}"));
    let png = base64::engine::general_purpose::STANDARD
        .decode(png_b64)
        .expect("base64");
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    // A script that reads the QR right away gets it (`wait` covers a worker still dialling).
    let waited = sup.call("GET", "/api/whatsapp/qr/first?format=json&wait=15", None);
    assert_eq!(waited.status, 200);
    assert!(waited.json()["qr"].is_string(), "{}", waited.text());
    let qr = wait_qr(&sup, "first");
    let page = qr_json(&sup, "first");
    assert!(page["qrCode"]
        .as_str()
        .is_some_and(|u| u.starts_with("data:image/png;base64,")));
    assert!(page["expiresAt"].is_string());
    assert_eq!(page["status"], "needs_qr");
    let png = sup.call("GET", "/api/whatsapp/qr/first?format=png", None);
    assert_eq!(png.status, 200);
    assert_eq!(&png.body[..8], b"\x89PNG\r\n\x1a\n");

    let scanned = Instant::now();
    let jid = sim.scan(&qr, "15550001001");
    let account = wait_status(&sup, "first", "connected", CONNECT_DEADLINE);
    assert!(scanned.elapsed() < CONNECT_DEADLINE);
    assert_eq!(account["phone"], "+155****01", "phone masked");
    assert!(jid.starts_with("15550001001:"), "{jid}");
    sim.wait_logged_in(&jid, STATE_DEADLINE);

    let creds = volume.sessions().join("first/creds.json");
    let mode = std::fs::metadata(&creds)
        .expect("creds.json")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let text = std::fs::read_to_string(&creds).expect("read");
    assert!(text.contains(&jid), "the paired jid is stored");
    let stored: Value = serde_json::from_str(&text).expect("creds json");
    assert!(
        !text.contains("prekeys"),
        "one-time prekeys live in the key store"
    );
    let keys = worker::store::signal::KeyStore::new(&volume.sessions().join("first"));
    wait_until(
        "the 812 uploaded prekeys on disk",
        STATE_DEADLINE,
        || match keys.prekey(812) {
            Ok(Some(_)) => Ok(()),
            other => Err(format!("{:?}", other.map(|k| k.is_some()))),
        },
    );
    assert_eq!(keys.next_prekey_id().expect("counter"), 813);
    let log = sup.log().join("\n");
    for secret in [
        &stored["adv_secret"],
        &stored["noise_key"]["private"],
        &stored["identity_key"]["private"],
    ] {
        let secret = secret.as_str().expect("base64");
        assert!(!log.contains(secret), "key material never reaches the log");
    }
    assert!(
        !log.contains(&qr),
        "the QR (it carries the adv secret) never reaches the log"
    );
    assert!(
        qr_json(&sup, "first")["qr"].is_null(),
        "no QR once connected"
    );
}

#[test]
fn after_a_supervisor_restart_the_account_logs_in_without_a_qr_or_registration() {
    let sim = Sim::start(&[]);
    let volume = Volume::new();
    let jid = {
        let sup = start(&volume, &sim, &[]);
        pair(&sup, &sim, "again", "15550001002")
    };
    let registrations = sim.stats()["registrations"].clone();
    let sup = start(&volume, &sim, &[]);
    wait_status(&sup, "again", "connected", STATE_DEADLINE);
    sim.wait_logged_in(&jid, STATE_DEADLINE);
    assert_eq!(
        sim.stats()["registrations"],
        registrations,
        "no new registration"
    );
    assert!(qr_json(&sup, "again")["qr"].is_null());
}

#[test]
fn thirty_paired_accounts_all_reconnect_after_a_restart() {
    let sim = Sim::start(&[]);
    let volume = Volume::new();
    let ids: Vec<String> = (0..30).map(|i| format!("bulk-{i:02}")).collect();
    {
        let sup = start(&volume, &sim, &[]);
        for (i, id) in ids.iter().enumerate() {
            pair(&sup, &sim, id, &format!("1555100{i:04}"));
        }
    }
    let sup = start(&volume, &sim, &[]);
    sup.wait_dashboard("30 connected", Duration::from_secs(60), |d| {
        d["summary"]["connected"] == 30
    });
    let logged_in = sim
        .sessions()
        .iter()
        .filter(|s| s["state"] == "logged_in")
        .count();
    assert_eq!(logged_in, 30);
    let done = sup.wait_event("boot complete: ", STATE_DEADLINE);
    let line = done["message"].as_str().unwrap_or_default();
    assert!(
        line.starts_with("boot complete: 30/30 connected, 0 need QR, in ") && line.ends_with(" s"),
        "the seed's line, once boot has settled: {done}"
    );
    assert_eq!(done["level"], "INFO", "{done}");
}

#[test]
fn a_replaced_session_reports_conflict_and_never_reconnects() {
    let sim = Sim::start(&[]);
    let volume = Volume::new();
    let sup = start(&volume, &sim, &[("RECONNECT_BASE_MS", "100")]);
    let jid = pair(&sup, &sim, "rival", "15550001003");
    let logins = sim.stats()["logins"].clone();
    let (code, _) = sim.post("/conflict", &json!({ "jid": jid }));
    assert_eq!(code, 200);
    let a = wait_status(&sup, "rival", "conflict", STATE_DEADLINE);
    assert_eq!(a["reason"], "replaced");
    // Watch for ten seconds: a reconnect would show as a new login at the sim.
    let watch_until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < watch_until {
        assert_eq!(sim.stats()["logins"], logins, "no reconnect after conflict");
        assert!(sim.session_of(&jid).is_none(), "no live session");
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(status(&sup, "rival")["status"], "conflict");

    // The conflict is remembered: a supervisor restart does not take the account back.
    let account_json = volume.sessions().join("rival").join("account.json");
    let stored: Value =
        serde_json::from_slice(&std::fs::read(&account_json).expect("account.json")).expect("json");
    assert!(stored["conflict_since"].is_u64(), "{stored}");
    let mut sup = sup;
    sup.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(sup.wait_exit(Duration::from_secs(15)).success());
    let sup = start(&volume, &sim, &[("RECONNECT_BASE_MS", "100")]);
    let loaded = sup.wait_event("accounts loaded", STATE_DEADLINE);
    assert_eq!(
        loaded["booting"], 0,
        "a held account is not booted: {loaded}"
    );
    let a = status(&sup, "rival");
    assert_eq!(a["status"], "conflict", "{a}");
    assert_eq!(a["reason"], "replaced", "{a}");
    assert!(a["pid"].is_null(), "no worker runs: {a}");
    assert!(
        a["lastError"]
            .as_str()
            .is_some_and(|e| e.contains("restart it")),
        "{a}"
    );
    assert_eq!(sim.stats()["logins"], logins, "no login after the reboot");

    // Until an admin restarts it: then it logs in again and the hold is gone.
    let r = sup.call("POST", "/api/whatsapp/accounts/rival/restart", None);
    assert_eq!(r.status, 202, "{}", r.text());
    wait_status(&sup, "rival", "connected", CONNECT_DEADLINE);
    let stored: Value =
        serde_json::from_slice(&std::fs::read(&account_json).expect("account.json")).expect("json");
    assert!(stored.get("conflict_since").is_none(), "{stored}");
}

#[test]
fn a_logout_from_the_phone_archives_the_creds_and_a_new_qr_comes_on_request() {
    let sim = Sim::start(&[]);
    let volume = Volume::new();
    let sup = start(&volume, &sim, &[]);
    let jid = pair(&sup, &sim, "bye", "15550001004");
    let (code, _) = sim.post("/logout", &json!({ "jid": jid }));
    assert_eq!(code, 200);
    let a = wait_status(&sup, "bye", "logged_out", STATE_DEADLINE);
    assert_eq!(a["reason"], "logged_out");
    let dir = volume.sessions().join("bye");
    assert!(!dir.join("creds.json").exists(), "live creds gone");
    let archived = std::fs::read_dir(&dir)
        .expect("list")
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("creds.json.logged-out-")
        })
        .count();
    assert_eq!(archived, 1, "creds archived, not deleted");

    let r = sup.call("POST", "/api/whatsapp/accounts/bye/qr", None);
    assert_eq!(r.status, 202);
    let qr = wait_qr(&sup, "bye");
    let jid2 = sim.scan(&qr, "15550001004");
    wait_status(&sup, "bye", "connected", CONNECT_DEADLINE);
    assert_ne!(jid, jid2, "a new device");
}

#[test]
fn an_admin_logout_unlinks_the_device_at_the_sim() {
    let sim = Sim::start(&[]);
    let volume = Volume::new();
    let sup = start(&volume, &sim, &[]);
    let jid = pair(&sup, &sim, "leaver", "15550001010");
    let r = sup.call("POST", "/api/whatsapp/accounts/leaver/logout", None);
    assert_eq!(r.status, 202);
    wait_status(&sup, "leaver", "logged_out", STATE_DEADLINE);
    wait_until("the sim to forget the device", STATE_DEADLINE, || {
        sim.session_of(&jid).map_or(Ok(()), |s| Err(s.to_string()))
    });
}

#[test]
fn a_delete_unlinks_the_device_at_the_sim_before_the_worker_stops() {
    let sim = Sim::start(&[]);
    let volume = Volume::new();
    let sup = start(&volume, &sim, &[]);
    let jid = pair(&sup, &sim, "goner", "15550001011");
    sim.wait_logged_in(&jid, STATE_DEADLINE);
    assert_eq!(sim.stats()["companions_removed"], 0);
    let r = sup.call("DELETE", "/api/whatsapp/accounts/goner", None);
    assert!(r.status < 300, "{}", r.text());
    wait_until("the account gone", STATE_DEADLINE, || {
        let d = sup.dashboard();
        let listed = d["accounts"]
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x["accountId"] == "goner"));
        if listed {
            Err(d.to_string())
        } else {
            Ok(())
        }
    });
    assert_eq!(
        sim.stats()["companions_removed"],
        1,
        "the worker unlinked the device before it was stopped"
    );
    assert!(!volume.sessions().join("goner").exists(), "archived");
}

#[test]
fn a_dropped_socket_reconnects_with_backoff_and_counts_it() {
    let sim = Sim::start(&[]);
    let volume = Volume::new();
    let sup = start(&volume, &sim, &[("RECONNECT_BASE_MS", "200")]);
    let jid = pair(&sup, &sim, "flaky", "15550001005");
    let before = status(&sup, "flaky")["reconnectCount"]
        .as_u64()
        .expect("count");
    assert_eq!(
        before, 0,
        "a fresh pairing (and its 515 restart) is not a reconnect"
    );
    let conn = sim.wait_logged_in(&jid, STATE_DEADLINE);
    let (code, _) = sim.post("/drop", &json!({ "jid": jid }));
    assert_eq!(code, 200);
    wait_until("a reconnect after the drop", STATE_DEADLINE, || {
        let a = status(&sup, "flaky");
        let count = a["reconnectCount"].as_u64().unwrap_or(0);
        if a["status"] == "connected" && count == 1 {
            Ok(())
        } else {
            Err(a.to_string())
        }
    });
    let new_conn = sim.wait_logged_in(&jid, STATE_DEADLINE);
    assert_ne!(conn, new_conn, "a new connection");
    let session = sim.session_of(&jid).expect("live session");
    assert_eq!(
        session["routing_info"],
        format!("sim-edge-{conn}"),
        "the reconnect names the edge routing info of the last connection in its ED pre-intro"
    );
    assert!(
        sup.log()
            .iter()
            .any(|l| l.contains("connection failed; will retry") && l.contains("flaky")),
        "went through the backoff path"
    );
    // A new worker process (an admin restart) starts its own count at 0; the account's goes on.
    let r = sup.call("POST", "/api/whatsapp/accounts/flaky/restart", None);
    assert!(r.status < 300, "{}", r.text());
    wait_until("a reconnect after the restart", STATE_DEADLINE, || {
        let a = status(&sup, "flaky");
        if a["status"] == "connected" && a["reconnectCount"] == 2 {
            Ok(())
        } else {
            Err(a.to_string())
        }
    });
}

#[test]
fn when_the_refs_run_out_the_account_needs_a_qr_and_a_request_starts_over() {
    let sim = Sim::start(&["--ref-timeout-ms", "300"]);
    let volume = Volume::new();
    let sup = start(&volume, &sim, &[("QR_REF_TIMEOUT_MS", "300")]);
    let r = sup.call(
        "POST",
        "/api/whatsapp/add-account",
        Some(r#"{"name":"Slow","accountId":"slow"}"#),
    );
    assert_eq!(r.status, 201);
    let a = wait_until("qr_exhausted", STATE_DEADLINE, || {
        let a = status(&sup, "slow");
        if a["reason"] == "qr_exhausted" {
            Ok(a)
        } else {
            Err(a.to_string())
        }
    });
    assert_eq!(a["status"], "needs_qr");
    assert!(qr_json(&sup, "slow")["qr"].is_null(), "no stale QR");
    let r = sup.call("POST", "/api/whatsapp/accounts/slow/qr", None);
    assert_eq!(r.status, 202);
    let qr = wait_qr(&sup, "slow");
    assert!(!qr.is_empty());
}

#[test]
fn an_undecryptable_message_is_acked_counted_and_not_taken_for_a_message() {
    let sim = Sim::start(&[]);
    let volume = Volume::new();
    let sup = start(&volume, &sim, &[]);
    let jid = pair(&sup, &sim, "inbox", "15550001006");
    assert!(status(&sup, "inbox")["lastMessageAt"].is_null());
    // The sim's /message pushes an <enc> no session can open.
    let (code, body) = sim.post("/message", &json!({ "jid": jid }));
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["acked"], true, "{body}");
    wait_until("the failure counted", STATE_DEADLINE, || {
        let metrics = sup.call("GET", "/metrics", None).text();
        if metrics.contains("wafleet_decrypt_failures_total{account=\"inbox\"} 1") {
            Ok(())
        } else {
            Err(metrics)
        }
    });
    assert!(
        status(&sup, "inbox")["lastMessageAt"].is_null(),
        "lastMessageAt comes from real messages"
    );
    assert_eq!(status(&sup, "inbox")["status"], "connected");
}

#[test]
fn a_server_under_an_untrusted_root_is_refused_naming_the_certificate() {
    let sim = Sim::start(&[]);
    let volume = Volume::new();
    let stranger = "142375574d0a587166aae71ebe516437c4a28b73e3695c6ce1f7f9545da8ee6b";
    let sup = start(&volume, &sim, &[("WA_TRUST_ROOT", stranger)]);
    let r = sup.call(
        "POST",
        "/api/whatsapp/add-account",
        Some(r#"{"name":"Wary","accountId":"wary"}"#),
    );
    assert_eq!(r.status, 201);
    let a = wait_until("the certificate refused", STATE_DEADLINE, || {
        let a = status(&sup, "wary");
        if a["reason"] == "certificate_rejected" {
            Ok(a)
        } else {
            Err(a.to_string())
        }
    });
    assert!(
        a["lastError"]
            .as_str()
            .is_some_and(|e| e.contains("certificate")),
        "{a}"
    );
    assert_eq!(
        sim.stats()["registrations"],
        0,
        "the handshake never finished"
    );
}

#[test]
fn one_accounts_drop_leaves_every_other_connection_alone() {
    let sim = Sim::start(&[]);
    let volume = Volume::new();
    let sup = start(&volume, &sim, &[("RECONNECT_BASE_MS", "100")]);
    let jids: Vec<String> = (0..3)
        .map(|i| pair(&sup, &sim, &format!("peer-{i}"), &format!("1555000200{i}")))
        .collect();
    let before: Vec<Value> = jids
        .iter()
        .map(|j| sim.wait_logged_in(j, STATE_DEADLINE))
        .collect();
    let (code, _) = sim.post("/drop", &json!({ "jid": jids[1] }));
    assert_eq!(code, 200);
    wait_until(
        "peer-1 back with a new connection",
        STATE_DEADLINE,
        || match sim.session_of(&jids[1]) {
            Some(s) if s["state"] == "logged_in" && s["conn_id"] != before[1] => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
    for i in [0, 2] {
        let now = sim.session_of(&jids[i]).expect("still connected");
        assert_eq!(now["conn_id"], before[i], "peer-{i} untouched");
    }
}
