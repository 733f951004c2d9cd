//! Chaos proof (issue 7, item 9): N accounts connected through wa-sim, K random `kill -9` of
//! workers, one at a time, each waited for until the victim is back online. Collateral
//! disconnects are read from the sim's connection ids: any other account whose connection id
//! changed lost its connection. Then the supervisor itself is killed with `kill -9`: every
//! worker must be gone within 1 s, and a fresh supervisor must bring every account back without
//! a QR (no new registration at the sim).
//!
//! ```text
//! cargo build --release --workspace --bins
//! cargo run --release -p wa-sim --bin chaos -- --accounts 30 --kills 100
//! ```
//!
//! It prints `kills=… collateral_disconnects=… recovered=… max_recovery_ms=…` and
//! `supervisor_kill: workers_left_after_1s=… reconnected=…/… registrations_after=…`, and exits
//! non-zero when anything was lost. The restart policy parks an account after five crashes in
//! ten minutes (that is the crash-loop guard, not a failure), so no account is killed more
//! than five times; restarts run with `RESTART_BACKOFF_BASE_MS=100` to keep the run short.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use wa_sim::harness::{wait_until, Sim, Supervisor, Volume};

const DEADLINE: Duration = Duration::from_secs(60);
const MAX_KILLS_PER_ACCOUNT: u32 = 5;

struct Args {
    accounts: usize,
    kills: usize,
    seed: u64,
}

fn args() -> Result<Args, String> {
    let mut args = Args {
        accounts: 30,
        kills: 100,
        seed: 7,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or(format!("{flag} needs a number"))
        };
        match flag.as_str() {
            "--accounts" => args.accounts = value()? as usize,
            "--kills" => args.kills = value()? as usize,
            "--seed" => args.seed = value()?,
            other => {
                return Err(format!(
                    "unknown flag {other}; use --accounts N --kills K [--seed S]"
                ))
            }
        }
    }
    let most = args.accounts * MAX_KILLS_PER_ACCOUNT as usize;
    if args.accounts == 0 || args.kills > most {
        return Err(format!(
            "need at least one account, and at most {MAX_KILLS_PER_ACCOUNT} kills per account ({most})"
        ));
    }
    Ok(args)
}

fn start(volume: &Volume, sim: &Sim) -> Supervisor {
    Supervisor::start(
        &volume.sessions(),
        &[
            ("WA_WS_URL", sim.ws_url.as_str()),
            ("WA_TRUST_ROOT", sim.root_public_key.as_str()),
            ("BOOT_JITTER_MIN_MS", "0"),
            ("BOOT_JITTER_MAX_MS", "0"),
            ("RESTART_BACKOFF_BASE_MS", "100"),
        ],
    )
}

fn phone(i: usize) -> String {
    format!("1555100{i:04}")
}

/// Every logged-in device at the sim, by JID: its connection id.
fn connections(sim: &Sim) -> BTreeMap<String, u64> {
    sim.sessions()
        .into_iter()
        .filter(|s| s["state"] == "logged_in")
        .filter_map(|s| Some((s["jid"].as_str()?.to_owned(), s["conn_id"].as_u64()?)))
        .collect()
}

fn pair_all(sup: &Supervisor, sim: &Sim, n: usize) -> Vec<(String, String)> {
    let mut accounts = Vec::new();
    for i in 0..n {
        let id = format!("acct-{i:03}");
        let r = sup.call(
            "POST",
            "/api/whatsapp/add-account",
            Some(&json!({"name": id, "accountId": id}).to_string()),
        );
        assert_eq!(r.status, 201, "{}", r.text());
        let qr = wait_until(&format!("a QR for {id}"), DEADLINE, || {
            let j = sup
                .call("GET", &format!("/api/whatsapp/qr/{id}?format=json"), None)
                .json();
            j["qr"]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| j.to_string())
        });
        let jid = sim.scan(&qr, &phone(i));
        accounts.push((id, jid));
    }
    for (id, _) in &accounts {
        wait_until(&format!("{id} connected"), DEADLINE, || {
            let a = sup.account(id);
            if a["status"] == "connected" {
                Ok(())
            } else {
                Err(a.to_string())
            }
        });
    }
    accounts
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
            s.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .is_some_and(|state| state != "Z" && state != "X")
        })
}

fn main() -> ExitCode {
    let args = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("chaos: {e}");
            return ExitCode::from(2);
        }
    };
    let mut rng = StdRng::seed_from_u64(args.seed);
    let sim = Sim::start(&[]);
    let volume = Volume::new();
    let sup = start(&volume, &sim);
    let setup = Instant::now();
    let accounts = pair_all(&sup, &sim, args.accounts);
    eprintln!(
        "chaos: {} accounts paired and connected in {} ms",
        accounts.len(),
        setup.elapsed().as_millis()
    );

    let mut kills_of = vec![0u32; accounts.len()];
    let mut collateral = 0usize;
    let mut recovered = 0usize;
    let mut max_recovery = Duration::ZERO;
    for _ in 0..args.kills {
        let candidates: Vec<usize> = (0..accounts.len())
            .filter(|i| kills_of[*i] < MAX_KILLS_PER_ACCOUNT)
            .collect();
        let victim = candidates[rng.gen_range(0..candidates.len())];
        kills_of[victim] += 1;
        let (id, jid) = &accounts[victim];
        let before = connections(&sim);
        let Some(old_conn) = before.get(jid).copied() else {
            eprintln!("chaos: {id} is not logged in before its kill");
            continue;
        };
        let pid = sup.account(id)["pid"].as_u64().expect("a worker pid") as u32;
        let killed_at = Instant::now();
        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
        let back = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            wait_until(&format!("{id} back online"), DEADLINE, || {
                let now = connections(&sim);
                match now.get(jid) {
                    Some(conn) if *conn != old_conn => Ok(()),
                    _ => Err(format!("{:?}", now.get(jid))),
                }
            })
        }));
        if back.is_ok() {
            recovered += 1;
            max_recovery = max_recovery.max(killed_at.elapsed());
        }
        let after = connections(&sim);
        collateral += before
            .iter()
            .filter(|(other, conn)| *other != jid && after.get(*other) != Some(conn))
            .count();
    }
    println!(
        "kills={} collateral_disconnects={collateral} recovered={recovered} max_recovery_ms={}",
        args.kills,
        max_recovery.as_millis()
    );

    // The supervisor itself, killed with no warning.
    let pids: Vec<u32> = sup.dashboard()["accounts"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x["pid"].as_u64())
                .map(|p| p as u32)
                .collect()
        })
        .unwrap_or_default();
    let registrations = sim.stats()["registrations"].as_u64().unwrap_or(0);
    let mut sup = sup;
    let killed_at = Instant::now();
    sup.signal(Signal::SIGKILL);
    sup.wait_exit(Duration::from_secs(5));
    let gone_within = loop {
        let left = pids.iter().filter(|p| alive(**p)).count();
        if left == 0 || killed_at.elapsed() >= Duration::from_secs(1) {
            break left;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    drop(sup);
    let sup = start(&volume, &sim);
    let mut reconnected = 0;
    for (id, _) in &accounts {
        let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            wait_until(&format!("{id} connected again"), DEADLINE, || {
                let a = sup.account(id);
                if a["status"] == "connected" {
                    Ok(())
                } else {
                    Err(a.to_string())
                }
            })
        }));
        reconnected += usize::from(ok.is_ok());
    }
    let registrations_after = sim.stats()["registrations"].as_u64().unwrap_or(0) - registrations;
    println!(
        "supervisor_kill: workers_left_after_1s={gone_within} reconnected={reconnected}/{} registrations_after={registrations_after}",
        accounts.len()
    );
    let ok = collateral == 0
        && recovered == args.kills
        && gone_within == 0
        && reconnected == accounts.len()
        && registrations_after == 0;
    if ok {
        ExitCode::SUCCESS
    } else {
        eprintln!("chaos: FAILED");
        ExitCode::FAILURE
    }
}
