//! `fleet-bench`: what a fleet of N connected accounts costs, measured on the release binaries
//! against wa-sim on loopback (issue 9). Numbers are printed, never asserted.
//!
//! ```text
//! cargo run --release -p wa-sim --bin fleet-bench -- --accounts 30
//! cargo run --release -p wa-sim --bin fleet-bench -- --accounts 30 --accounts 300 --no-tls
//! ```
//!
//! For each N:
//! 1. start wa-sim (`wss://` with its own CA unless `--no-tls`) and a supervisor with the dial
//!    budget raised out of the way; pair N accounts through the sim's phone, several at a time;
//! 2. SIGTERM that supervisor and start a new one on the same volume with boot jitter 0:
//!    `connect_all_ms` runs from its spawn until `/health` counts N connected;
//! 3. let the post-login queries settle (`--settle-secs`), then watch the idle fleet for
//!    `--idle-secs` (CPU time and timeslices of every thread, `/proc/PID/task/*/schedstat`);
//! 4. read every process's `/proc/PID/smaps_rollup`;
//! 5. time `/health` on one kept-alive connection for 3 s, and the dashboard 50 times;
//! 6. send and receive `--messages` texts through the first account (a sim phone is the
//!    contact, a real Signal peer);
//! 7. SIGTERM: `shutdown_ms` until the supervisor and every worker are gone; `flushed` counts
//!    the workers that exited 0 (each flushed its creds).
//!
//! With N = 30 in the list (and `npm ci` done in `tests/interop`), the same sim then serves 30
//! real Baileys clients in one Node process (`tests/interop/baileys-fleet.mjs`), measured the
//! same way, for the ratio. Output: progress on stderr; a markdown table, then one JSON line
//! per N (and one for the Baileys row) on stdout. What each number means: `BENCHMARKS.md`.

use std::path::Path;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::{json, Value};
use wa_sim::harness::fleet::{add_and_scan, alive, message_run, start_against};
use wa_sim::harness::http::KeepAlive;
use wa_sim::harness::procfs::{children, CpuTime, Memory};
use wa_sim::harness::{wait_until, Sim, Supervisor, Volume};

/// How long pairing, connecting or shutting down may take before the run is abandoned.
const DEADLINE: Duration = Duration::from_secs(600);
/// How many accounts are paired at once.
const PAIRING_THREADS: usize = 8;
/// How long `/health` is hammered.
const HEALTH_WINDOW: Duration = Duration::from_secs(3);
/// How many dashboard requests are timed.
const DASHBOARD_SAMPLES: usize = 50;
/// The contact the message rates are measured against: a sim phone.
const CONTACT: &str = "15559990001";
/// The account count the Baileys row is run at.
const BAILEYS_AT: usize = 30;

#[derive(Debug)]
struct Options {
    accounts: Vec<usize>,
    tls: bool,
    settle: Duration,
    idle: Duration,
    messages: usize,
    baileys: bool,
}

const USAGE: &str = "usage: fleet-bench [--accounts N]... [--tls | --no-tls] [--idle-secs S] \
[--settle-secs S] [--messages M] [--no-baileys]";

fn parse_args() -> Result<Options, String> {
    let mut options = Options {
        accounts: Vec::new(),
        tls: true,
        settle: Duration::from_secs(10),
        idle: Duration::from_secs(60),
        messages: 100,
        baileys: true,
    };
    let mut args = std::env::args().skip(1);
    let number = |flag: &str, value: Option<String>| -> Result<u64, String> {
        value
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("{flag} needs a number"))
    };
    while let Some(flag) = args.next() {
        match flag.as_str() {
            "--accounts" => {
                let n = number(&flag, args.next())?;
                if n == 0 {
                    return Err("--accounts must be at least 1".into());
                }
                options.accounts.push(n as usize);
            }
            "--tls" => options.tls = true,
            "--no-tls" => options.tls = false,
            "--idle-secs" => options.idle = Duration::from_secs(number(&flag, args.next())?.max(1)),
            "--settle-secs" => options.settle = Duration::from_secs(number(&flag, args.next())?),
            "--messages" => options.messages = number(&flag, args.next())? as usize,
            "--no-baileys" => options.baileys = false,
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown flag {other}")),
        }
    }
    if options.accounts.is_empty() {
        options.accounts.push(BAILEYS_AT);
    }
    Ok(options)
}

fn main() -> ExitCode {
    let options = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("fleet-bench: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = build_binaries() {
        eprintln!("fleet-bench: {e:#}");
        return ExitCode::FAILURE;
    }
    let mut rows = Vec::new();
    let mut peer = None;
    for &n in &options.accounts {
        match run(n, &options) {
            Ok((row, baileys)) => {
                eprintln!("   {row}");
                rows.push(row);
                peer = peer.or(baileys);
            }
            Err(e) => {
                eprintln!("fleet-bench: N={n}: {e:#}");
                return ExitCode::FAILURE;
            }
        }
    }
    println!();
    print_table(&rows, peer.as_ref(), options.tls);
    println!();
    for row in &rows {
        println!("{row}");
    }
    if let Some(peer) = &peer {
        println!("{peer}");
    }
    ExitCode::SUCCESS
}

/// The phone number of account `i`.
fn phone(i: usize) -> String {
    format!("1555200{i:04}")
}

fn account_id(i: usize) -> String {
    format!("bench-{i:04}")
}

/// The settings every bench supervisor gets: no dial pacing in the way, quiet logs (the
/// supervisor's own lines are kept: the shutdown count reads them).
fn bench_env(n: usize) -> Vec<(String, String)> {
    vec![
        ("HANDSHAKE_RATE".into(), "1000".into()),
        ("HANDSHAKE_CONCURRENCY".into(), n.clamp(8, 1000).to_string()),
        ("RUST_LOG".into(), "warn,supervisor=info".into()),
        ("SHUTDOWN_TIMEOUT_MS".into(), "10000".into()),
    ]
}

fn start(volume: &Volume, sim: &Sim, env: &[(String, String)]) -> Supervisor {
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    start_against(volume, sim, &pairs)
}

fn run(n: usize, options: &Options) -> anyhow::Result<(Value, Option<Value>)> {
    eprintln!(
        "== {n} accounts over {}",
        if options.tls { "wss://" } else { "ws://" }
    );
    let sim = Sim::start(if options.tls { &["--tls"] } else { &[] });
    let volume = Volume::new();
    let env = bench_env(n);

    let started = Instant::now();
    let mut first = start(&volume, &sim, &env);
    pair_all(&first, &sim, n);
    wait_connected(&first, n)?;
    eprintln!("   paired {n} in {:.1} s", started.elapsed().as_secs_f64());
    first.signal(Signal::SIGTERM);
    first.wait_exit(DEADLINE);
    drop(first);

    let boot = Instant::now();
    let mut sup = start(&volume, &sim, &env);
    wait_connected(&sup, n)?;
    let connect_all = boot.elapsed();
    eprintln!(
        "   all {n} connected {} ms after the supervisor's spawn",
        connect_all.as_millis()
    );
    let workers = children(sup.pid()).context("the supervisor's children")?;
    if workers.len() != n {
        bail!("{} workers running for {n} accounts", workers.len());
    }

    std::thread::sleep(options.settle);
    let idle = idle_cpu(Some(sup.pid()), &workers, options.idle)?;
    eprintln!(
        "   idle {:.0} s: {:.2} % of one core, {:.1} wakeups per worker per minute",
        options.idle.as_secs_f64(),
        idle.cpu_pct,
        idle.wakeups_per_worker_min
    );
    let memory = fleet_memory(sup.pid(), &workers)?;
    let http = http_latency(&sup)?;
    eprintln!(
        "   /health p99 {:.3} ms, {:.0} req/s; dashboard p99 {:.2} ms",
        http.health_p99_ms, http.health_rps, http.dashboard_p99_ms
    );
    let messages = message_rates(&sup, &sim, options.messages)?;
    eprintln!(
        "   {} messages: {:.1} sent/s, {:.1} received/s",
        options.messages, messages.0, messages.1
    );
    let (shutdown, flushed) = shutdown(&mut sup, &workers)?;
    eprintln!(
        "   SIGTERM: all exited in {} ms, {flushed}/{n} flushed",
        shutdown.as_millis()
    );

    let row = json!({
        "accounts": n,
        "tls": options.tls,
        "connect_all_ms": connect_all.as_millis() as u64,
        "worker_pss_median_kib": memory.worker_pss_median,
        "worker_pss_max_kib": memory.worker_pss_max,
        "worker_private_kib": memory.worker_pss_anon_median,
        "supervisor_pss_kib": memory.supervisor_pss,
        "total_pss_kib": memory.total_pss,
        "marginal_pss_kib": memory.worker_private_median,
        "idle_cpu_pct": round2(idle.cpu_pct),
        "wakeups_per_worker_min": round2(idle.wakeups_per_worker_min),
        "shutdown_ms": shutdown.as_millis() as u64,
        "flushed": flushed,
        "health_p50_ms": round3(http.health_p50_ms),
        "health_p99_ms": round3(http.health_p99_ms),
        "dashboard_p99_ms": round3(http.dashboard_p99_ms),
        "health_rps": http.health_rps.round() as u64,
        "send_msgs_per_s": round2(messages.0),
        "recv_msgs_per_s": round2(messages.1),
    });
    let peer = if options.baileys && n == BAILEYS_AT {
        match baileys(&sim, n, options, &row) {
            Ok(peer) => Some(peer),
            Err(e) => {
                eprintln!("   baileys: skipped: {e:#}");
                None
            }
        }
    } else {
        None
    };
    Ok((row, peer))
}

/// Pairs `n` accounts, `PAIRING_THREADS` at a time.
fn pair_all(sup: &Supervisor, sim: &Sim, n: usize) {
    let next = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..PAIRING_THREADS.min(n) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return;
                }
                add_and_scan(sup, sim, &account_id(i), &phone(i), DEADLINE);
            });
        }
    });
}

/// Polls `/health` on one kept-alive connection until it counts `n` connected.
fn wait_connected(sup: &Supervisor, n: usize) -> anyhow::Result<()> {
    let mut client = KeepAlive::connect(sup.addr())?;
    let started = Instant::now();
    loop {
        let health = client.get("/health", &[])?.json();
        if health["connected"].as_u64() == Some(n as u64) {
            return Ok(());
        }
        if started.elapsed() > DEADLINE {
            bail!("not all connected after {DEADLINE:?}: {health}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

struct Idle {
    cpu_pct: f64,
    wakeups_per_worker_min: f64,
}

/// CPU used by `supervisor` (when there is one) and `workers` over `window`, as a share of
/// one core, and the workers' timeslices (each one a wakeup) per worker per minute.
fn idle_cpu(supervisor: Option<u32>, workers: &[u32], window: Duration) -> anyhow::Result<Idle> {
    let sample = || -> anyhow::Result<(CpuTime, CpuTime)> {
        let mut fleet = CpuTime::default();
        for &pid in workers {
            fleet = fleet + CpuTime::of(pid).with_context(|| format!("worker {pid}"))?;
        }
        let own = supervisor.map(CpuTime::of).transpose()?.unwrap_or_default();
        Ok((own, fleet))
    };
    let (sup0, workers0) = sample()?;
    std::thread::sleep(window);
    let (sup1, workers1) = sample()?;
    let used = sup1.since(sup0) + workers1.since(workers0);
    let minutes = window.as_secs_f64() / 60.0;
    Ok(Idle {
        cpu_pct: used.run_ns as f64 / window.as_nanos() as f64 * 100.0,
        wakeups_per_worker_min: workers1.since(workers0).timeslices as f64
            / workers.len() as f64
            / minutes,
    })
}

struct FleetMemory {
    worker_pss_median: u64,
    worker_pss_max: u64,
    worker_pss_anon_median: u64,
    worker_private_median: u64,
    supervisor_pss: u64,
    total_pss: u64,
}

fn median(mut values: Vec<u64>) -> u64 {
    values.sort_unstable();
    values.get(values.len() / 2).copied().unwrap_or(0)
}

fn fleet_memory(supervisor: u32, workers: &[u32]) -> anyhow::Result<FleetMemory> {
    let each: Vec<Memory> = workers
        .iter()
        .map(|&pid| Memory::of(pid).with_context(|| format!("worker {pid}")))
        .collect::<anyhow::Result<_>>()?;
    let supervisor_pss = Memory::of(supervisor)?.pss;
    Ok(FleetMemory {
        worker_pss_median: median(each.iter().map(|m| m.pss).collect()),
        worker_pss_max: each.iter().map(|m| m.pss).max().unwrap_or(0),
        worker_pss_anon_median: median(each.iter().map(|m| m.pss_anon).collect()),
        worker_private_median: median(each.iter().map(|m| m.private).collect()),
        supervisor_pss,
        total_pss: supervisor_pss + each.iter().map(|m| m.pss).sum::<u64>(),
    })
}

struct HttpLatency {
    health_p50_ms: f64,
    health_p99_ms: f64,
    health_rps: f64,
    dashboard_p99_ms: f64,
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

fn http_latency(sup: &Supervisor) -> anyhow::Result<HttpLatency> {
    let mut client = KeepAlive::connect(sup.addr())?;
    for _ in 0..100 {
        client.get("/health", &[])?;
    }
    let mut health = Vec::new();
    let started = Instant::now();
    while started.elapsed() < HEALTH_WINDOW {
        let t = Instant::now();
        let r = client.get("/health", &[])?;
        health.push(t.elapsed());
        if r.status != 200 {
            bail!("/health answered {}: {}", r.status, r.text());
        }
    }
    let health_rps = health.len() as f64 / started.elapsed().as_secs_f64();
    health.sort_unstable();

    let auth = format!("Bearer {}", wa_sim::harness::process::TOKEN);
    let headers = [
        ("Authorization", auth.as_str()),
        ("Accept-Encoding", "gzip"),
    ];
    let mut dashboard = Vec::new();
    for _ in 0..DASHBOARD_SAMPLES {
        let t = Instant::now();
        let r = client.get("/api/status/dashboard", &headers)?;
        dashboard.push(t.elapsed());
        if r.status != 200 {
            bail!("the dashboard answered {}: {}", r.status, r.text());
        }
    }
    dashboard.sort_unstable();
    Ok(HttpLatency {
        health_p50_ms: percentile(&health, 0.50),
        health_p99_ms: percentile(&health, 0.99),
        health_rps,
        dashboard_p99_ms: percentile(&dashboard, 0.99),
    })
}

/// Messages per second through the first account: `count` sent to a sim phone (timed until the
/// phone decrypted all), then `count` from it (timed until the API lists them all).
fn message_rates(sup: &Supervisor, sim: &Sim, count: usize) -> anyhow::Result<(f64, f64)> {
    if count == 0 {
        return Ok((0.0, 0.0));
    }
    let run = message_run(
        sup,
        sim,
        &account_id(0),
        &phone(0),
        CONTACT,
        count,
        DEADLINE,
    );
    let rate = |d: Duration| count as f64 / d.as_secs_f64();
    Ok((rate(run.sent), rate(run.received)))
}

/// SIGTERM to the supervisor; the time until it and every worker are gone, and how many
/// workers exited 0.
fn shutdown(sup: &mut Supervisor, workers: &[u32]) -> anyhow::Result<(Duration, usize)> {
    let t = Instant::now();
    sup.signal(Signal::SIGTERM);
    sup.wait_exit(DEADLINE);
    wait_until("every worker to exit", DEADLINE, || {
        let left = workers.iter().filter(|&&pid| alive(pid)).count();
        (left == 0)
            .then_some(())
            .ok_or_else(|| format!("{left} left"))
    });
    let took = t.elapsed();
    let flushed = sup
        .events("worker exited")
        .iter()
        .filter(|e| {
            e["code"] == 0
                && e["pid"]
                    .as_u64()
                    .is_some_and(|p| workers.contains(&(p as u32)))
        })
        .count();
    Ok((took, flushed))
}

/// The Baileys row: `n` real Baileys clients in one Node process against the same sim.
fn baileys(sim: &Sim, n: usize, options: &Options, ours: &Value) -> anyhow::Result<Value> {
    let interop = Path::new(env!("CARGO_MANIFEST_DIR")).join("interop");
    if !interop
        .join("node_modules/@whiskeysockets/baileys")
        .is_dir()
    {
        bail!("Baileys is not installed: run `npm ci` in tests/interop");
    }
    // Baileys switches to its transport keys only after its ClientFinish write completes, so
    // the sim answers after a 100 ms round trip, as a real edge does (baileys-interop.mjs).
    let (status, answer) = sim.post("/config", &json!({"edge_latency_ms": 100}));
    if status != 200 {
        bail!("the sim refused the edge latency: {answer}");
    }
    let auth = tempfile::tempdir()?;
    let node = |mode: &str| -> anyhow::Result<NodeProcess> {
        let mut command = Command::new("node");
        command
            .arg(interop.join("baileys-fleet.mjs"))
            .current_dir(&interop)
            .env("MODE", mode)
            .env("SIM_WS_URL", &sim.ws_url)
            .env("SIM_CONTROL_URL", sim.control_url())
            .env("ACCOUNTS", n.to_string())
            .env("AUTH_DIR", auth.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some(ca) = &sim.ca_cert_file {
            command.env("NODE_EXTRA_CA_CERTS", ca);
        }
        Ok(NodeProcess(
            command.spawn().context("node is not installed")?,
        ))
    };
    // Pairing in a process of its own, then a fresh one logs in with the saved creds: a
    // restarted Baileys backend, as the wafleet row measures a restarted supervisor.
    eprintln!("   baileys: pairing {n} clients");
    let paired = node("pair")?.first_line()?;
    if paired["paired"] != n {
        bail!("baileys-fleet.mjs could not pair: {paired}");
    }
    let mut node = node("serve")?;
    let ready = node.first_line()?;
    if ready["ready"] != true {
        bail!("baileys-fleet.mjs failed: {ready}");
    }
    let pid = node.0.id();
    std::thread::sleep(options.settle);
    // The Node process is the whole peer: no supervisor beside it.
    let idle = idle_cpu(None, &[pid], options.idle)?;
    let memory = Memory::of(pid)?;
    let ours_total = ours["total_pss_kib"].as_u64().unwrap_or(0).max(1);
    let peer = json!({
        "peer": "baileys 7.0.0-rc.9, one Node process",
        "accounts": n,
        "tls": options.tls,
        "connect_all_ms": ready["connect_all_ms"],
        "total_pss_kib": memory.pss,
        "pss_anon_kib": memory.pss_anon,
        "idle_cpu_pct": round2(idle.cpu_pct),
        "total_pss_ratio": round2(memory.pss as f64 / ours_total as f64),
    });
    eprintln!(
        "   baileys: {} KiB PSS in all, {:.2} % of one core idle",
        memory.pss, idle.cpu_pct
    );
    Ok(peer)
}

/// The Node process, killed when dropped.
struct NodeProcess(Child);

impl NodeProcess {
    fn first_line(&mut self) -> anyhow::Result<Value> {
        use std::io::{BufRead, BufReader};
        let stdout = self.0.stdout.take().context("node's stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx
            .recv_timeout(DEADLINE)
            .context("baileys-fleet.mjs printed nothing")?;
        serde_json::from_str(&line).with_context(|| format!("not JSON: {line:?}"))
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(self.0.id() as i32), Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && matches!(self.0.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn mib(kib: &Value) -> String {
    kib.as_u64()
        .map_or_else(|| "-".into(), |k| format!("{:.2}", k as f64 / 1024.0))
}

fn print_table(rows: &[Value], peer: Option<&Value>, tls: bool) {
    println!(
        "fleet-bench, release binaries, wa-sim on loopback over {}:",
        if tls { "wss://" } else { "ws://" }
    );
    println!();
    println!("| accounts | connect all | marginal / worker | worker Pss_Anon | worker PSS median / max | supervisor PSS | total PSS | idle CPU | wakeups / worker / min | SIGTERM → exited | flushed | /health p50 / p99 | /health req/s | dashboard p99 | send / recv msg/s |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        println!(
            "| {} | {} ms | {} MiB | {} MiB | {} / {} MiB | {} MiB | {} MiB | {} % | {} | {} ms | {}/{} | {} / {} ms | {} | {} ms | {} / {} |",
            r["accounts"],
            r["connect_all_ms"],
            mib(&r["marginal_pss_kib"]),
            mib(&r["worker_private_kib"]),
            mib(&r["worker_pss_median_kib"]),
            mib(&r["worker_pss_max_kib"]),
            mib(&r["supervisor_pss_kib"]),
            mib(&r["total_pss_kib"]),
            r["idle_cpu_pct"],
            r["wakeups_per_worker_min"],
            r["shutdown_ms"],
            r["flushed"],
            r["accounts"],
            r["health_p50_ms"],
            r["health_p99_ms"],
            r["health_rps"],
            r["dashboard_p99_ms"],
            r["send_msgs_per_s"],
            r["recv_msgs_per_s"],
        );
    }
    if let Some(p) = peer {
        println!();
        println!(
            "Side by side at {} accounts: Baileys in one Node process {} MiB PSS in all ({} MiB anonymous), idle CPU {} %, all logged in again in {} ms; {}× wafleet's total.",
            p["accounts"],
            mib(&p["total_pss_kib"]),
            mib(&p["pss_anon_kib"]),
            p["idle_cpu_pct"],
            p["connect_all_ms"],
            p["total_pss_ratio"],
        );
    }
}

/// Builds the supervisor (the workers run the same binary) and wa-sim binaries of this profile
/// next to this one, so the documented `cargo run -p wa-sim --bin fleet-bench` is enough from a
/// clean clone (cargo only builds the bench itself). A no-op when they are up to date.
fn build_binaries() -> anyhow::Result<()> {
    let exe = std::env::current_exe()?;
    let release = exe
        .parent()
        .and_then(Path::file_name)
        .is_some_and(|d| d == "release");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command.args([
        "build",
        "--locked",
        "-p",
        "supervisor",
        "-p",
        "wa-sim",
        "--bin",
        "supervisor",
        "--bin",
        "wa-sim",
    ]);
    if release {
        command.arg("--release");
    }
    // `cargo run` gives this process the variables of the package it runs. Build scripts (ring's
    // among them) ask to rerun when such a variable changes, and cargo compares the values in
    // its own environment: inherited, they would rebuild ring and all above it on every run.
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name.starts_with("CARGO_PKG_")
            || matches!(
                name.as_ref(),
                "CARGO_MANIFEST_DIR"
                    | "CARGO_MANIFEST_PATH"
                    | "CARGO_MANIFEST_LINKS"
                    | "CARGO_CRATE_NAME"
                    | "CARGO_BIN_NAME"
                    | "CARGO_PRIMARY_PACKAGE"
                    | "CARGO_TARGET_TMPDIR"
                    | "OUT_DIR"
            )
        {
            command.env_remove(name.as_ref());
        }
    }
    let status = command
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .context("cannot run cargo to build the binaries")?;
    if !status.success() {
        bail!("building the binaries failed ({status})");
    }
    Ok(())
}
