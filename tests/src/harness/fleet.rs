//! Helpers the proof binaries share: a supervisor against a sim, pairing through the API, the
//! sim's view of who is connected.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;

use super::{wait_until, Sim, Supervisor, Volume};

/// A supervisor on `volume` against `sim` (over `wss://` trusting its CA when it runs with
/// `--tls`), booting at once, restarting crashed workers after 100 ms; `extra` entries
/// override.
pub fn start_against(volume: &Volume, sim: &Sim, extra: &[(&str, &str)]) -> Supervisor {
    let mut env = sim.connection_env();
    env.extend_from_slice(&[
        ("BOOT_JITTER_MIN_MS", "0"),
        ("BOOT_JITTER_MAX_MS", "0"),
        ("RESTART_BACKOFF_BASE_MS", "100"),
    ]);
    env.extend_from_slice(extra);
    Supervisor::start(&volume.sessions(), &env)
}

/// Adds account `id` and scans its first QR as `phone`; returns the device JID at once (the
/// account connects shortly after).
///
/// # Panics
/// When the add is refused or no QR comes within `deadline`.
pub fn add_and_scan(
    sup: &Supervisor,
    sim: &Sim,
    id: &str,
    phone: &str,
    deadline: Duration,
) -> String {
    let r = sup.call(
        "POST",
        "/api/whatsapp/add-account",
        Some(&json!({"name": id, "accountId": id}).to_string()),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let qr = wait_until(&format!("a QR for {id}"), deadline, || {
        let j = sup
            .call("GET", &format!("/api/whatsapp/qr/{id}?format=json"), None)
            .json();
        j["qr"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| j.to_string())
    });
    sim.scan(&qr, phone)
}

/// Waits until account `id` shows `status`.
///
/// # Panics
/// When it does not within `deadline`.
pub fn wait_status(sup: &Supervisor, id: &str, status: &str, deadline: Duration) {
    wait_until(&format!("{id} {status}"), deadline, || {
        let a = sup.account(id);
        if a["status"] == status {
            Ok(())
        } else {
            Err(a.to_string())
        }
    });
}

/// Every logged-in device at the sim, by JID: its connection id.
pub fn connections(sim: &Sim) -> BTreeMap<String, u64> {
    sim.sessions()
        .into_iter()
        .filter(|s| s["state"] == "logged_in")
        .filter_map(|s| Some((s["jid"].as_str()?.to_owned(), s["conn_id"].as_u64()?)))
        .collect()
}

/// Whether `pid` is a live (not zombie) process.
pub fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
            s.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .is_some_and(|state| state != "Z" && state != "X")
        })
}

/// Reads `--flag N` pairs from the command line into `known` (name, value) slots.
///
/// # Errors
/// An unknown flag, or a flag without a number.
pub fn numeric_flags(known: &mut [(&str, &mut u64)]) -> Result<(), String> {
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let slot = known
            .iter_mut()
            .find(|(name, _)| *name == flag)
            .ok_or_else(|| format!("unknown flag {flag}"))?;
        *slot.1 = it
            .next()
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("{flag} needs a number"))?;
    }
    Ok(())
}

/// How long [`message_run`] took, each way.
#[derive(Debug, Clone, Copy)]
pub struct MessageRun {
    /// Until the API had accepted every send.
    pub accepted: Duration,
    /// Until the contact had decrypted every send.
    pub sent: Duration,
    /// Until the sim had handed over every text from the contact.
    pub handed: Duration,
    /// Until the API listed every text from the contact as received.
    pub received: Duration,
}

/// Messages through `account` (paired as `own_phone`) with the sim phone `contact`, a real
/// Signal peer: one warm-up text from the contact (it builds the sessions both ways), then
/// `count` `POST …/messages` to the contact timed until it decrypted all, then `count` texts
/// from it timed until the API lists them all.
///
/// # Panics
/// When a send is refused or a step misses `deadline`.
pub fn message_run(
    sup: &Supervisor,
    sim: &Sim,
    account: &str,
    own_phone: &str,
    contact: &str,
    count: usize,
    deadline: Duration,
) -> MessageRun {
    let listed = |want: usize| {
        wait_until("the account lists every message", deadline, || {
            let got = sup.received(account).len();
            (got >= want)
                .then_some(())
                .ok_or_else(|| format!("{got}/{want}"))
        });
    };
    sim.send_from_phone(contact, own_phone, "warm-up");
    listed(1);

    let start = Instant::now();
    let ids: Vec<String> = (0..count)
        .map(|i| {
            let r = sup.call(
                "POST",
                &format!("/api/whatsapp/accounts/{account}/messages"),
                Some(
                    &json!({"to": format!("+{contact}"), "text": format!("sent {i}")}).to_string(),
                ),
            );
            assert_eq!(r.status, 202, "{}", r.text());
            r.json()["message"]["id"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    let accepted = start.elapsed();
    wait_until("the contact decrypts every message", deadline, || {
        let inbox = sim.inbox(contact);
        let got = ids
            .iter()
            .filter(|id| {
                inbox
                    .iter()
                    .any(|m| m["id"] == id.as_str() && m["kind"] == "text")
            })
            .count();
        (got == count)
            .then_some(())
            .ok_or_else(|| format!("{got}/{count}"))
    });
    let sent = start.elapsed();

    let start = Instant::now();
    for i in 0..count {
        sim.send_from_phone(contact, own_phone, &format!("received {i}"));
    }
    let handed = start.elapsed();
    listed(count + 1);
    MessageRun {
        accepted,
        sent,
        handed,
        received: start.elapsed(),
    }
}
