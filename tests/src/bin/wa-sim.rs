//! `wa-sim`: the WhatsApp server simulator as a process.
//!
//! 1. Parse flags; both addresses must be loopback (port 0 picks a free one).
//! 2. With `--tls`, make a CA and a leaf signed by it (for `localhost`, `127.0.0.1`, `::1`) and
//!    write the CA certificate to `<tls-dir>/ca.pem` (default: a fresh temp directory, removed
//!    when the process exits on a signal).
//! 3. Bind both listeners, then print exactly one line on stdout:
//!    `{"ws_url":"ws://127.0.0.1:P/ws/chat","control_url":"http://127.0.0.1:Q","root_public_key":"<hex>"}`;
//!    with `--tls`, `ws_url` is `wss://127.0.0.1:P/ws/chat` and the line ends with
//!    `"ca_cert_file":"<tls-dir>/ca.pem"` (the key is absent without `--tls`). The control API
//!    stays plain HTTP.
//! 4. Log to stderr (tracing; `RUST_LOG`, `LOG_FORMAT=json`) until SIGTERM or SIGINT, then stop
//!    every connection and exit 0.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use tracing_subscriber::EnvFilter;
use wa_sim::sim::policy::{self, Version};
use wa_sim::sim::{Sim, SimConfig};

/// How long shutdown may take before the process exits anyway.
const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(5);

/// WhatsApp's edge and the phone that scans QR codes, on loopback.
#[derive(Debug, Parser)]
#[command(name = "wa-sim", version)]
struct Args {
    /// WebSocket listener (loopback only; port 0 picks one).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Control API listener (loopback only; port 0 picks one).
    #[arg(long, default_value = "127.0.0.1:0")]
    control: SocketAddr,
    /// Every QR ref lives this long, in milliseconds (default: 60 s, then 20 s each).
    #[arg(long)]
    ref_timeout_ms: Option<u64>,
    /// Delay before each ServerHello, in milliseconds.
    #[arg(long, default_value_t = 0)]
    handshake_delay_ms: u64,
    /// Delay between the client's handshake and the first stanza, in milliseconds: the round
    /// trip to a real edge (the Baileys interop check needs it).
    #[arg(long, default_value_t = 0)]
    edge_latency_ms: u64,
    /// The WhatsApp Web version `GET /sw.js` publishes (`POST /version` changes it).
    #[arg(long, default_value_t = policy::DEFAULT_VERSION, value_parser = parse_version)]
    wa_version: Version,
    /// Logins and registrations below this version get `<failure reason="405"/>`.
    #[arg(long, value_parser = parse_version)]
    min_wa_version: Option<Version>,
    /// Serve `wss://` with a certificate chain made at start; its CA goes to `<tls-dir>/ca.pem`.
    #[arg(long)]
    tls: bool,
    /// Where `--tls` writes `ca.pem` (created if missing, kept at exit); default: a fresh temp
    /// directory removed at exit.
    #[arg(long, requires = "tls")]
    tls_dir: Option<PathBuf>,
}

/// The CA certificate's file name in the TLS directory.
const CA_FILE: &str = "ca.pem";

fn parse_version(s: &str) -> Result<Version, String> {
    s.parse()
}

fn main() -> anyhow::Result<ExitCode> {
    let args = Args::parse();
    init_tracing();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    runtime.block_on(run(args))?;
    Ok(ExitCode::SUCCESS)
}

async fn run(args: Args) -> anyhow::Result<()> {
    let token = CancellationToken::new();
    let config = SimConfig {
        listen: args.listen,
        control: args.control,
        ref_timeout: args
            .ref_timeout_ms
            .filter(|ms| *ms > 0)
            .map(Duration::from_millis),
        handshake_delay: Duration::from_millis(args.handshake_delay_ms),
        edge_latency: Duration::from_millis(args.edge_latency_ms),
        version: args.wa_version,
        min_version: args.min_wa_version,
        tls: args.tls,
    };
    let sim = Sim::start(config, token.clone())
        .await
        .context("cannot start the simulator")?;
    // Lives until the process ends, then removes the directory it made.
    let mut made_dir = None;
    let ca_cert_file = match sim.tls_ca_pem() {
        None => None,
        Some(pem) => {
            let dir = match &args.tls_dir {
                Some(dir) => {
                    std::fs::create_dir_all(dir)
                        .with_context(|| format!("cannot create {}", dir.display()))?;
                    dir.clone()
                }
                None => made_dir
                    .insert(
                        tempfile::Builder::new()
                            .prefix("wa-sim-tls-")
                            .tempdir()
                            .context("cannot create a temp directory for the CA certificate")?,
                    )
                    .path()
                    .to_owned(),
            };
            Some(write_ca(&dir, pem)?)
        }
    };
    {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "{}", sim.ready_line(ca_cert_file.as_deref()))
            .context("cannot write the ready line")?;
        stdout.flush().context("cannot flush stdout")?;
    }

    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot listen for SIGTERM")?;
    tokio::select! {
        _ = terminate.recv() => info!(signal = "SIGTERM", "stopping"),
        _ = tokio::signal::ctrl_c() => info!(signal = "SIGINT", "stopping"),
    }
    token.cancel();
    if tokio::time::timeout(SHUTDOWN_DEADLINE, sim.stopped())
        .await
        .is_err()
    {
        warn!("some connections did not stop in time");
    }
    info!("stopped");
    Ok(())
}

/// Writes `pem` to `<dir>/ca.pem` whole (a temp file renamed into place); returns the path.
fn write_ca(dir: &Path, pem: &str) -> anyhow::Result<String> {
    let path =
        std::path::absolute(dir.join(CA_FILE)).context("cannot resolve the TLS directory")?;
    let text = path
        .to_str()
        .with_context(|| format!("{} is not UTF-8", path.display()))?
        .to_owned();
    let mut file = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("cannot write in {}", dir.display()))?;
    file.write_all(pem.as_bytes())
        .and_then(|()| file.as_file().sync_all())
        .with_context(|| format!("cannot write {text}"))?;
    file.persist(&path)
        .with_context(|| format!("cannot write {text}"))?;
    Ok(text)
}

fn init_tracing() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::env::var("LOG_FORMAT").is_ok_and(|f| f == "json") {
        builder.json().init();
    } else {
        builder.with_ansi(false).init();
    }
}
