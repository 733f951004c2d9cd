//! A full or read-only volume never parks an account (issue 7, item 1): the worker keeps its
//! connection, acks nothing it could not persist, shows `storage_full` or `storage_readonly` with
//! the OS error, `/health` answers 503, and everything recovers by itself once space returns.
//! The volume is a small tmpfs of the test's own, filled or remounted read-only; these tests
//! need root to mount it and say so when they cannot run.

use std::time::Duration;

use serde_json::{json, Value};
use wa_sim::harness::{wait_until, Sim, Supervisor, Volume};

use super::whatsapp::{pair, qr_json, start, wait_qr};
use super::STATE_DEADLINE;

/// The tmpfs: room for a few accounts' files and the supervisor's own.
const TMPFS_KIB: u32 = 8 * 1024;
/// Recovery must come within seconds of space returning (the worker probes every 4 s at most).
const RECOVERY_DEADLINE: Duration = Duration::from_secs(12);

fn tmpfs() -> Option<Volume> {
    let volume = Volume::on_tmpfs(TMPFS_KIB);
    if volume.is_none() {
        eprintln!("skipped: mounting a tmpfs needs root");
    }
    volume
}

fn wait_reason(sup: &Supervisor, id: &str, reason: &str) -> Value {
    wait_until(&format!("{id} reason {reason}"), STATE_DEADLINE, || {
        let a = sup.account(id);
        if a["reason"] == reason {
            Ok(a)
        } else {
            Err(a.to_string())
        }
    })
}

fn wait_health(sup: &Supervisor, code: u16, deadline: Duration) -> Value {
    wait_until(&format!("/health {code}"), deadline, || {
        let r = sup.call("GET", "/health", None);
        if r.status == code {
            Ok(r.json())
        } else {
            Err(format!("{} {}", r.status, r.text()))
        }
    })
}

fn inbox_ids(sup: &Supervisor, id: &str) -> Vec<String> {
    let list = sup
        .call(
            "GET",
            &format!("/api/whatsapp/accounts/{id}/messages?direction=in"),
            None,
        )
        .json();
    list["messages"]
        .as_array()
        .map(|m| {
            m.iter()
                .filter_map(|x| x["id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Writes the account cannot make (a message's inbox record and Signal session) while the
/// volume is full: it keeps its worker and its connection, acks nothing, says why; once space
/// returns it reconnects, the server delivers the message again, and it is recorded.
fn survives(volume: &Volume, break_it: impl Fn(), mend: impl Fn(), reason: &str, os_text: &str) {
    let sim = Sim::start(&[]);
    let sup = start(volume, &sim, &[]);
    let jid = pair(&sup, &sim, "shop", "15550002001");
    let conn = sim.wait_logged_in(&jid, STATE_DEADLINE);
    let pid = sup.account("shop")["pid"].clone();

    break_it();
    let id = sim.send_from_phone("15550002002", "15550002001", "written on a full disk");
    let a = wait_reason(&sup, "shop", reason);
    assert!(
        a["lastError"].as_str().is_some_and(|e| e.contains(os_text)),
        "the OS error is shown: {a}"
    );
    assert_eq!(a["pid"], pid, "the worker did not die: {a}");
    let health = wait_health(&sup, 503, STATE_DEADLINE);
    assert_eq!(health["sessions_dir_writable"], false, "{health}");
    assert!(
        health["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with(reason)),
        "{health}"
    );
    assert!(
        !inbox_ids(&sup, "shop").contains(&id),
        "nothing recorded that could not be persisted"
    );
    assert_eq!(
        sim.session_of(&jid).map(|s| s["conn_id"].clone()),
        Some(conn),
        "the connection is kept while the volume refuses writes"
    );

    // An account added now is refused with 507, and leaves nothing behind.
    let r = sup.call(
        "POST",
        "/api/whatsapp/add-account",
        Some(&json!({"name": "Late", "accountId": "late"}).to_string()),
    );
    assert_eq!(r.status, 507, "{}", r.text());
    assert_eq!(
        r.json()["error"]["code"],
        "insufficient_storage",
        "{}",
        r.text()
    );
    assert!(
        !volume.sessions().join("late").exists(),
        "no directory left"
    );

    mend();
    wait_until(
        "the message delivered again and recorded",
        RECOVERY_DEADLINE,
        || {
            let ids = inbox_ids(&sup, "shop");
            if ids.contains(&id) {
                Ok(())
            } else {
                Err(format!("{ids:?} {}", sup.account("shop")))
            }
        },
    );
    wait_until("connected, reason cleared", RECOVERY_DEADLINE, || {
        let a = sup.account("shop");
        if a["status"] == "connected" && a["reason"].is_null() {
            Ok(())
        } else {
            Err(a.to_string())
        }
    });
    assert_eq!(
        sup.account("shop")["pid"],
        pid,
        "the same worker throughout"
    );
    let health = wait_health(&sup, 200, RECOVERY_DEADLINE);
    assert_eq!(health["sessions_dir_writable"], true, "{health}");
    // The id is free: the refused add left nothing that blocks it.
    let r = sup.call(
        "POST",
        "/api/whatsapp/add-account",
        Some(&json!({"name": "Late", "accountId": "late"}).to_string()),
    );
    assert_eq!(r.status, 201, "{}", r.text());
}

#[test]
fn a_full_volume_keeps_the_account_online_and_recovers_when_space_returns() {
    let Some(volume) = tmpfs() else { return };
    survives(
        &volume,
        || volume.fill(),
        || volume.free(),
        "storage_full",
        "No space left on device",
    );
}

#[test]
fn a_read_only_volume_keeps_the_account_online_and_recovers_when_writable_again() {
    let Some(volume) = tmpfs() else { return };
    survives(
        &volume,
        || volume.set_readonly(true),
        || volume.set_readonly(false),
        "storage_readonly",
        "Read-only file system",
    );
}

#[test]
fn a_pairing_that_cannot_be_persisted_is_abandoned_and_pairs_once_space_returns() {
    let Some(volume) = tmpfs() else { return };
    let sim = Sim::start(&[]);
    let sup = start(&volume, &sim, &[]);
    let r = sup.call(
        "POST",
        "/api/whatsapp/add-account",
        Some(&json!({"name": "Desk", "accountId": "desk"}).to_string()),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let qr = wait_qr(&sup, "desk");
    let pid = sup.account("desk")["pid"].clone();
    volume.fill();
    sim.scan(&qr, "15550003001");
    let a = wait_reason(&sup, "desk", "storage_full");
    assert!(
        a["lastError"]
            .as_str()
            .is_some_and(|e| e.contains("No space left on device")),
        "{a}"
    );
    assert_eq!(a["pid"], pid, "no crash: {a}");
    assert_eq!(a["status"], "disconnected", "{a}");
    assert!(qr_json(&sup, "desk")["qr"].is_null(), "no dead QR shown");

    volume.free();
    // A new registration: a fresh QR, scanned, and the account connects.
    let qr = wait_until("a fresh QR", RECOVERY_DEADLINE, || {
        let j = qr_json(&sup, "desk");
        j["qr"]
            .as_str()
            .filter(|q| *q != qr)
            .map(str::to_owned)
            .ok_or_else(|| j.to_string())
    });
    sim.scan(&qr, "15550003001");
    wait_until("connected", STATE_DEADLINE, || {
        let a = sup.account("desk");
        if a["status"] == "connected" {
            Ok(())
        } else {
            Err(a.to_string())
        }
    });
    assert_eq!(
        sup.account("desk")["pid"],
        pid,
        "the same worker throughout"
    );
}
