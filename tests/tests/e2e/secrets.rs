//! No secrets in the open (issue 7, item 9): a full pairing, login, a message each way, a logout
//! and a shutdown with `RUST_LOG=debug`, in pretty and in json. The logs hold no private key,
//! adv secret, admin token or message text, and no phone number unmasked.

use std::time::Duration;

use base64::Engine as _;
use nix::sys::signal::Signal;
use serde_json::{json, Value};
use wa_sim::harness::process::TOKEN;
use wa_sim::harness::{wait_until, Sim, Volume};

use super::whatsapp::{pair, start};
use super::STATE_DEADLINE;

const ACCOUNT_PHONE: &str = "15550009001";
const CONTACT_PHONE: &str = "15550009002";
const INBOUND: &str = "inbound text 7f3a9c that only people may read";
const OUTBOUND: &str = "outbound text 91c2e4 that only people may read";

/// The private material in a creds file: base64 as stored, and hex.
pub(super) fn creds_secrets(creds: &Value) -> Vec<String> {
    let b64 = [
        &creds["noise_key"]["private"],
        &creds["identity_key"]["private"],
        &creds["signed_prekey"]["key_pair"]["private"],
        &creds["adv_secret"],
    ];
    let mut secrets = Vec::new();
    for value in b64 {
        let text = value.as_str().expect("a base64 secret").to_owned();
        let raw = base64::engine::general_purpose::STANDARD
            .decode(&text)
            .expect("base64");
        secrets.push(hex::encode(&raw));
        secrets.push(text);
    }
    secrets
}

fn flow(format: &str) {
    let sim = Sim::start(&[]);
    let volume = Volume::new();
    let mut sup = start(
        &volume,
        &sim,
        &[("RUST_LOG", "debug"), ("LOG_FORMAT", format)],
    );
    pair(&sup, &sim, "vault", ACCOUNT_PHONE);
    let creds: Value = serde_json::from_slice(
        &std::fs::read(volume.sessions().join("vault/creds.json")).expect("creds"),
    )
    .expect("creds json");

    let id = sim.send_from_phone(CONTACT_PHONE, ACCOUNT_PHONE, INBOUND);
    wait_until("the message received", STATE_DEADLINE, || {
        let list = sup
            .call(
                "GET",
                "/api/whatsapp/accounts/vault/messages?direction=in",
                None,
            )
            .json();
        let found = list["messages"]
            .as_array()
            .is_some_and(|m| m.iter().any(|x| x["id"] == id));
        if found {
            Ok(())
        } else {
            Err(list.to_string())
        }
    });
    let r = sup.call(
        "POST",
        "/api/whatsapp/accounts/vault/messages",
        Some(&json!({"to": format!("+{CONTACT_PHONE}"), "text": OUTBOUND}).to_string()),
    );
    assert_eq!(r.status, 202, "{}", r.text());
    let sent = r.json()["message"]["id"].as_str().expect("id").to_owned();
    sim.wait_inbox(CONTACT_PHONE, &sent, STATE_DEADLINE);

    let r = sup.call("POST", "/api/whatsapp/accounts/vault/logout", None);
    assert!(r.status < 300, "{}", r.text());
    wait_until("logged out", STATE_DEADLINE, || {
        let a = sup.account("vault");
        if a["status"] == "logged_out" {
            Ok(())
        } else {
            Err(a.to_string())
        }
    });
    sup.signal(Signal::SIGTERM);
    sup.wait_exit(Duration::from_secs(15));

    let log = sup.log();
    assert!(
        log.iter().any(|l| l.contains("recv")) && log.iter().any(|l| l.contains("send")),
        "debug logs were on: the stanzas are in them"
    );
    let mut forbidden = creds_secrets(&creds);
    forbidden.extend(
        [TOKEN, INBOUND, OUTBOUND, ACCOUNT_PHONE, CONTACT_PHONE]
            .iter()
            .map(|s| (*s).to_owned()),
    );
    for secret in &forbidden {
        let hits: Vec<_> = log.iter().filter(|l| l.contains(secret.as_str())).collect();
        assert!(
            hits.is_empty(),
            "{format}: {} found in {} log line(s), e.g. {}",
            &secret[..secret.len().min(6)],
            hits.len(),
            hits[0]
        );
    }
}

#[test]
fn a_whole_life_in_debug_json_logs_shows_no_secret_and_no_number() {
    flow("json");
}

#[test]
fn a_whole_life_in_debug_pretty_logs_shows_no_secret_and_no_number() {
    flow("pretty");
}
