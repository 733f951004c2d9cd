//! JSON logs an operator can filter by account (issue 10, item 9): through a pairing, a login
//! with saved creds, a message, a dropped connection, a logout and a shutdown, every line the
//! workers write and every supervisor line about an account carries the account id as a
//! top-level `account` field, and no secret appears.

use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::{json, Value};
use wa_sim::harness::process::TOKEN;
use wa_sim::harness::{wait_until, Sim, Supervisor, Volume};

use super::secrets::creds_secrets;
use super::whatsapp::{pair, start};
use super::STATE_DEADLINE;

const ALPHA_PHONE: &str = "15550009101";
const BETA_PHONE: &str = "15550009102";
const CONTACT_PHONE: &str = "15550009103";
const INBOUND: &str = "inbound text 3be1 an operator never reads in a log";

/// Where a line keeps its account id.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
enum Place {
    /// A top-level `account` field.
    Top,
    /// Only in a span's fields (`span`, `spans`).
    Nested,
    /// Nowhere.
    Missing,
}

fn place(line: &Value) -> Place {
    if line["account"].is_string() {
        return Place::Top;
    }
    let in_spans = line["spans"]
        .as_array()
        .is_some_and(|s| s.iter().any(|s| s["account"].is_string()))
        || line["span"]["account"].is_string();
    if in_spans {
        Place::Nested
    } else {
        Place::Missing
    }
}

/// A line the supervisor process wrote: its targets are the supervisor crate's modules. Every
/// other line comes from a worker process (the worker crate and the libraries it drives).
fn from_supervisor(line: &Value) -> bool {
    line["target"]
        .as_str()
        .is_some_and(|t| t == "supervisor" || t.starts_with("supervisor::"))
}

/// Whether any field of `line` (but a top-level `account`) names one of `ids`.
fn mentions(line: &Value, ids: &[&str]) -> bool {
    let mut rest = line.clone();
    if let Some(map) = rest.as_object_mut() {
        map.remove("account");
    }
    let text = rest.to_string();
    ids.iter().any(|id| {
        text.contains(&format!("\"{id}\""))
            || text.contains(&format!("{id}/"))
            || text.contains(&format!("/{id}"))
            || text.contains(&format!(" {id} "))
            || text.contains(&format!(" {id}\""))
            || text.contains(&format!("\"{id} "))
            || text.contains(&format!("{id}:"))
    })
}

fn wait_status(sup: &Supervisor, id: &str, want: &str) {
    wait_until(&format!("{id} {want}"), STATE_DEADLINE, || {
        let a = sup.account(id);
        if a["status"] == want {
            Ok(())
        } else {
            Err(a.to_string())
        }
    });
}

#[test]
fn every_worker_line_and_every_account_line_of_the_supervisor_has_a_top_level_account() {
    scenario("info");
}

#[test]
fn at_debug_too_every_line_about_an_account_has_it_at_the_top_level() {
    scenario("debug");
}

/// The scenario at `RUST_LOG=<level>`, then the checks.
fn scenario(level: &str) {
    let sim = Sim::start(&[]);
    let volume = Volume::new();
    let mut sup = start(
        &volume,
        &sim,
        &[("LOG_FORMAT", "json"), ("RUST_LOG", level)],
    );
    let alpha = pair(&sup, &sim, "alpha", ALPHA_PHONE);
    let beta = pair(&sup, &sim, "beta", BETA_PHONE);
    sim.wait_logged_in(&alpha, STATE_DEADLINE);
    sim.wait_logged_in(&beta, STATE_DEADLINE);

    // A message in.
    let id = sim.send_from_phone(CONTACT_PHONE, ALPHA_PHONE, INBOUND);
    sup.wait_received("alpha", &id, "the message", STATE_DEADLINE);
    // A login with saved creds: alpha's worker restarts.
    let before = sup.events("connected").len();
    let r = sup.call("POST", "/api/whatsapp/accounts/alpha/restart", None);
    assert!(r.status < 300, "{}", r.text());
    wait_until("alpha logged in again", STATE_DEADLINE, || {
        let n = sup.events("connected").len();
        if n > before {
            Ok(())
        } else {
            Err(format!("{n} logins"))
        }
    });
    wait_status(&sup, "alpha", "connected");
    // A dropped connection: beta reconnects.
    let (code, body) = sim.post("/drop", &json!({ "jid": beta }));
    assert_eq!(code, 200, "{body}");
    wait_until("beta reconnected", STATE_DEADLINE, || {
        let a = sup.account("beta");
        if a["status"] == "connected" && a["reconnectCount"].as_u64() >= Some(1) {
            Ok(())
        } else {
            Err(a.to_string())
        }
    });
    // A logout, then the shutdown.
    let r = sup.call("POST", "/api/whatsapp/accounts/alpha/logout", None);
    assert!(r.status < 300, "{}", r.text());
    wait_status(&sup, "alpha", "logged_out");
    let creds: Value = serde_json::from_slice(
        &std::fs::read(volume.sessions().join("beta/creds.json")).expect("creds"),
    )
    .expect("creds json");
    sup.signal(Signal::SIGTERM);
    sup.wait_exit(Duration::from_secs(15));

    let log = sup.log();
    let lines: Vec<Value> = log
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let ids = ["alpha", "beta"];
    let mut worker = [0usize; 3];
    let mut supervisor = [0usize; 3];
    let mut bad = Vec::new();
    for (line, text) in lines.iter().zip(&log) {
        let at = place(line);
        let slot = at as usize;
        if from_supervisor(line) {
            if !mentions(line, &ids) && at == Place::Missing {
                continue;
            }
            supervisor[slot] += 1;
        } else {
            worker[slot] += 1;
        }
        if at != Place::Top {
            bad.push(text.as_str());
        } else if let Some(a) = line["account"].as_str() {
            assert!(ids.contains(&a), "an account that is not ours: {text}");
        }
    }
    println!(
        "RUST_LOG={level}: worker lines: {} top-level, {} nested, {} missing; supervisor lines about an account: \
         {} top-level, {} nested, {} missing",
        worker[0], worker[1], worker[2], supervisor[0], supervisor[1], supervisor[2]
    );
    assert!(worker[0] > 20, "the workers logged: {worker:?}");
    assert!(supervisor[0] > 0, "the supervisor logged: {supervisor:?}");
    assert!(
        bad.is_empty(),
        "{} line(s) without a top-level account:\n{}",
        bad.len(),
        bad.join("\n")
    );

    let mut forbidden = creds_secrets(&creds);
    forbidden.extend(
        [TOKEN, INBOUND, ALPHA_PHONE, BETA_PHONE, CONTACT_PHONE]
            .iter()
            .map(|s| (*s).to_owned()),
    );
    for secret in &forbidden {
        let hits: Vec<_> = log.iter().filter(|l| l.contains(secret.as_str())).collect();
        assert!(
            hits.is_empty(),
            "{} found in {} log line(s), e.g. {}",
            &secret[..secret.len().min(6)],
            hits.len(),
            hits[0]
        );
    }
}
