//! SIGKILL campaign (issue 7, item 9): workers killed with `kill -9` at random instants during
//! pairing (which spans the pair-success write, the 515 restart, the login and the prekey
//! upload), during a message's receipt, and during a message's send. After each kill the
//! supervisor restarts the worker; the campaign then checks what the account kept.
//!
//! ```text
//! cargo build --release --workspace --bins
//! cargo run --release -p wa-sim --bin sigkill -- --iterations 1000
//! ```
//!
//! It prints `iterations=… corrupt=… lost=… duplicates=…` (plus the per-phase counts and
//! `redelivered_same_id`), and exits non-zero when anything was corrupt, lost or duplicated.
//! - corrupt: a `*.corrupt-*` file anywhere on the volume, or a `creds.json` that does not parse;
//! - lost: a pairing the sim completed (our reply reached it) whose account came back needing
//!   a QR; an incoming message the account never recorded (the server delivers again what was
//!   not acked, so an acked one must be recorded); an accepted (202) outgoing message the
//!   contact never received;
//! - duplicates: an incoming message listed twice in the account's inbox, or an outgoing one
//!   that reached the contact under two ids;
//! - redelivered_same_id (reported, not a failure): an outgoing message sent again with its
//!   original id after a kill between the send and the server's ack; recipients recognise it by
//!   that id, as WhatsApp clients do.
//!
//! Accounts rotate so that none is killed more than five times: a sixth crash within ten
//! minutes parks an account by design (`crash_loop`).

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use wa_sim::harness::fleet::{add_and_scan, numeric_flags, start_against, wait_status};
use wa_sim::harness::{wait_until, Sim, Supervisor, Volume};

const DEADLINE: Duration = Duration::from_secs(30);
const KILLS_PER_ACCOUNT: u32 = 5;
const CONTACT: &str = "15552000000";

#[derive(Default)]
struct Tally {
    pairing: u64,
    receive: u64,
    send: u64,
    corrupt: u64,
    lost: u64,
    duplicates: u64,
    redelivered: u64,
}

struct Account {
    id: String,
    phone: String,
    kills: u32,
}

fn kill_worker(sup: &Supervisor, id: &str, after: Duration) {
    let pid = wait_until(&format!("{id} has a worker"), DEADLINE, || {
        sup.account(id)["pid"]
            .as_u64()
            .ok_or_else(|| sup.account(id).to_string())
    });
    std::thread::sleep(after);
    let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
}

fn inbox_count(sup: &Supervisor, id: &str, message: &str) -> usize {
    sup.received(id)
        .iter()
        .filter(|x| x["id"] == message)
        .count()
}

/// Counts the corrupt files under `dir`, and `creds.json` files that do not parse.
fn corrupt_files(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut n = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if path.is_dir() {
            n += corrupt_files(&path);
        } else if name.contains(".corrupt-") {
            eprintln!("sigkill: corrupt file {}", path.display());
            n += 1;
        } else if name == "creds.json" {
            let ok = std::fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                .is_some();
            if !ok {
                eprintln!("sigkill: unparseable {}", path.display());
                n += 1;
            }
        }
    }
    n
}

fn pairing(sup: &Supervisor, sim: &Sim, n: u64, rng: &mut StdRng, tally: &mut Tally) {
    let id = format!("pair-{n:05}");
    let phone = format!("1555300{n:04}");
    let pairings = sim.stats()["pairings"].as_u64().unwrap_or(0);
    add_and_scan(sup, sim, &id, &phone, DEADLINE);
    kill_worker(sup, &id, Duration::from_millis(rng.gen_range(0..400)));
    let reply_arrived = sim.stats()["pairings"].as_u64().unwrap_or(0) > pairings;
    let settled = wait_until(&format!("{id} settles"), DEADLINE, || {
        let a = sup.account(&id);
        match a["status"].as_str() {
            Some("connected") => Ok(true),
            Some("needs_qr") if a["pid"].is_u64() => Ok(false),
            _ => Err(a.to_string()),
        }
    });
    if reply_arrived && !settled {
        eprintln!("sigkill: {id} paired at the sim but needs a QR again");
        tally.lost += 1;
    }
    let r = sup.call("DELETE", &format!("/api/whatsapp/accounts/{id}"), None);
    assert!(r.status < 300, "{}", r.text());
    wait_until(&format!("{id} deleted"), DEADLINE, || {
        let d = sup.dashboard();
        let listed = d["accounts"]
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x["accountId"] == id.as_str()));
        if listed {
            Err("still listed".to_string())
        } else {
            Ok(())
        }
    });
    tally.pairing += 1;
}

fn receive(
    sup: &Supervisor,
    sim: &Sim,
    account: &Account,
    n: u64,
    rng: &mut StdRng,
    tally: &mut Tally,
) {
    let text = format!("campaign in {n}");
    let message = sim.send_from_phone(CONTACT, &account.phone, &text);
    kill_worker(
        sup,
        &account.id,
        Duration::from_millis(rng.gen_range(0..60)),
    );
    let recorded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_until(
            &format!("{message} recorded"),
            DEADLINE,
            || match inbox_count(sup, &account.id, &message) {
                0 => Err("not yet".to_string()),
                n => Ok(n),
            },
        )
    }));
    match recorded {
        Ok(1) => {}
        Ok(_) => tally.duplicates += 1,
        Err(_) => {
            eprintln!("sigkill: incoming {message} of {} lost", account.id);
            tally.lost += 1;
        }
    }
    tally.receive += 1;
}

fn send(
    sup: &Supervisor,
    sim: &Sim,
    account: &Account,
    n: u64,
    rng: &mut StdRng,
    tally: &mut Tally,
) {
    let text = format!("campaign out {n}");
    let r = sup.call(
        "POST",
        &format!("/api/whatsapp/accounts/{}/messages", account.id),
        Some(&json!({"to": format!("+{CONTACT}"), "text": text}).to_string()),
    );
    if r.status != 202 {
        // Refused (the worker was between lives): nothing was accepted, nothing can be lost.
        return;
    }
    let message = r.json()["message"]["id"].as_str().expect("id").to_owned();
    kill_worker(
        sup,
        &account.id,
        Duration::from_millis(rng.gen_range(0..60)),
    );
    let arrived = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_until(&format!("{message} at the contact"), DEADLINE, || {
            let inbox = sim.inbox(CONTACT);
            let copies = inbox.iter().filter(|m| m["id"] == message.as_str()).count();
            let other_ids = inbox
                .iter()
                .filter(|m| m["text"] == text.as_str() && m["id"] != message.as_str())
                .count();
            if copies > 0 {
                Ok((copies, other_ids))
            } else {
                Err("not yet".to_string())
            }
        })
    }));
    match arrived {
        Ok((copies, other_ids)) => {
            tally.redelivered += copies as u64 - 1;
            tally.duplicates += u64::from(other_ids > 0);
        }
        Err(_) => {
            eprintln!(
                "sigkill: accepted {message} of {} never arrived",
                account.id
            );
            tally.lost += 1;
        }
    }
    tally.send += 1;
}

fn main() -> ExitCode {
    let (mut iterations, mut seed) = (1000u64, 11u64);
    if let Err(e) = numeric_flags(&mut [("--iterations", &mut iterations), ("--seed", &mut seed)]) {
        eprintln!("sigkill: {e}; use --iterations N [--seed S]");
        return ExitCode::from(2);
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let sim = Sim::start(&[]);
    let volume = Volume::new();
    let sup = start_against(&volume, &sim, &[]);
    let started = Instant::now();
    // Two thirds of the kills hit messages: enough accounts that none dies more than 5 times.
    let pool = (iterations * 2 / 3 / u64::from(KILLS_PER_ACCOUNT) + 2) as usize;
    let mut accounts: Vec<Account> = (0..pool)
        .map(|i| {
            let id = format!("msg-{i:04}");
            let phone = format!("1555400{i:04}");
            add_and_scan(&sup, &sim, &id, &phone, DEADLINE);
            Account {
                id,
                phone,
                kills: 0,
            }
        })
        .collect();
    for a in &accounts {
        wait_status(&sup, &a.id, "connected", DEADLINE);
    }
    // The contact and each account speak once, so sessions exist both ways.
    for a in &accounts {
        sim.send_from_phone(CONTACT, &a.phone, "hello");
    }
    let mut tally = Tally::default();
    for n in 0..iterations {
        let phase = rng.gen_range(0..3);
        if phase == 0 {
            pairing(&sup, &sim, n, &mut rng, &mut tally);
            continue;
        }
        let Some(account) = accounts
            .iter_mut()
            .filter(|a| a.kills < KILLS_PER_ACCOUNT)
            .min_by_key(|a| a.kills)
        else {
            break;
        };
        account.kills += 1;
        wait_status(&sup, &account.id, "connected", DEADLINE);
        if phase == 1 {
            receive(&sup, &sim, account, n, &mut rng, &mut tally);
        } else {
            send(&sup, &sim, account, n, &mut rng, &mut tally);
        }
    }
    tally.corrupt = corrupt_files(&volume.sessions());
    println!(
        "iterations={iterations} corrupt={} lost={} duplicates={}",
        tally.corrupt, tally.lost, tally.duplicates
    );
    println!(
        "sigkill: pairing={} receive={} send={} redelivered_same_id={} elapsed_s={}",
        tally.pairing,
        tally.receive,
        tally.send,
        tally.redelivered,
        started.elapsed().as_secs()
    );
    if tally.corrupt == 0 && tally.lost == 0 && tally.duplicates == 0 {
        ExitCode::SUCCESS
    } else {
        eprintln!("sigkill: FAILED");
        ExitCode::FAILURE
    }
}
