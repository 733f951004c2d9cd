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

use std::process::ExitCode;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use wa_sim::harness::fleet::{
    add_and_scan, alive, connections, numeric_flags, start_against, wait_status,
};
use wa_sim::harness::{wait_until, Sim, Supervisor, Volume};

const DEADLINE: Duration = Duration::from_secs(60);
const MAX_KILLS_PER_ACCOUNT: u32 = 5;

struct Args {
    accounts: usize,
    kills: usize,
    seed: u64,
}

fn phone(i: usize) -> String {
    format!("1555100{i:04}")
}

fn pair_all(sup: &Supervisor, sim: &Sim, n: usize) -> Vec<(String, String)> {
    let accounts: Vec<(String, String)> = (0..n)
        .map(|i| {
            let id = format!("acct-{i:03}");
            let jid = add_and_scan(sup, sim, &id, &phone(i), DEADLINE);
            (id, jid)
        })
        .collect();
    for (id, _) in &accounts {
        wait_status(sup, id, "connected", DEADLINE);
    }
    accounts
}

fn main() -> ExitCode {
    let (mut accounts_n, mut kills, mut seed) = (30u64, 100u64, 7u64);
    let parsed = numeric_flags(&mut [
        ("--accounts", &mut accounts_n),
        ("--kills", &mut kills),
        ("--seed", &mut seed),
    ]);
    let most = accounts_n * u64::from(MAX_KILLS_PER_ACCOUNT);
    if let Err(e) = parsed.and_then(|()| {
        if accounts_n == 0 || kills > most {
            Err(format!(
                "need at least one account, and at most {MAX_KILLS_PER_ACCOUNT} kills per account ({most})"
            ))
        } else {
            Ok(())
        }
    }) {
        eprintln!("chaos: {e}; use --accounts N --kills K [--seed S]");
        return ExitCode::from(2);
    }
    let args = Args {
        accounts: accounts_n as usize,
        kills: kills as usize,
        seed,
    };
    let mut rng = StdRng::seed_from_u64(args.seed);
    let sim = Sim::start(&[]);
    let volume = Volume::new();
    let sup = start_against(&volume, &sim, &[]);
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
    let sup = start_against(&volume, &sim, &[]);
    let mut reconnected = 0;
    for (id, _) in &accounts {
        let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            wait_status(&sup, id, "connected", DEADLINE)
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
