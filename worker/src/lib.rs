//! One WhatsApp account, in its own process.
//!
//! ```text
//!  main / supervisor `worker` subcommand
//!    └─ worker::main(args)          PDEATHSIG, current-thread runtime, signals -> token
//!         └─ run(args, token)
//!              ├─ store::lock       <id>/lock: one worker per account, ever
//!              ├─ ipc               Hello, then State snapshots, Heartbeats; commands in
//!              ├─ store::creds      creds.json (atomic, 0600; corrupt files kept aside)
//!              ├─ store::signal     signal/: prekeys, sessions, sender keys, identities, LID map
//!              ├─ store::messages   messages/: the outbox, what went out, what came in
//!              ├─ store::groups     groups/: members and holders of our sender key, per group
//!              └─ session           connect, backoff, commands; reports every change
//!                   ├─ receive      decrypt (signal), persist, receipt, ack
//!                   ├─ send         outbox → usync → bundles → encrypt (signal) → ack → receipts
//!                   └─ transport    the WebSocket (tokio-tungstenite, rustls: webpki roots + WA_TLS_CA_FILE)
//! ```
//!
//! `signal` (X3DH, the Double Ratchet, sender keys) and `wa` (frames, Noise, binary nodes, the
//! E2E payload) do no IO and are shared with wa-sim, whose phones are Signal peers too.
//!
//! The worker never serves HTTP and never touches another account's files. It stays lean: a
//! current-thread runtime, small socket buffers, no per-account threads.

mod config;
mod ipc;
mod logging;
mod session;
pub mod signal;
pub mod store;
mod transport;
pub mod wa;
mod wheel;

use std::process::ExitCode;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn, Instrument};

pub use config::{
    Browser, ConnectionArgs, TrustRoot, WaVersion, WorkerArgs, DEFAULT_BROWSER, DEFAULT_WA_VERSION,
    DEFAULT_WS_URL,
};
pub use logging::{init_tracing, init_worker_tracing};

use crate::store::lock::{FileLock, LockError};

/// Exit code: the worker stopped as asked.
pub const EXIT_OK: u8 = 0;
/// Exit code: an unexpected failure (the supervisor restarts the worker with backoff).
pub const EXIT_FAILURE: u8 = 1;
/// Exit code: another worker already holds this account's lock.
pub const EXIT_LOCKED: u8 = 3;
/// Exit code: the supervisor that spawned this worker is gone.
pub const EXIT_ORPHANED: u8 = 4;

const IPC_DRAIN_DEADLINE: Duration = Duration::from_secs(2);

/// Runs a worker to completion and returns its exit code. Installs tracing, the parent-death
/// signal and a current-thread runtime; call it from `main` and nowhere else.
pub fn main(args: WorkerArgs) -> ExitCode {
    init_worker_tracing(&args.log_format, args.account.as_str());
    if let Err(code) = watch_parent(args.parent_pid) {
        return ExitCode::from(code);
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => {
            wheel::set_origin(tokio::time::Instant::now());
            rt
        }
        Err(e) => {
            error!(error = %e, "cannot start the runtime");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let token = CancellationToken::new();
    let span = tracing::info_span!("worker", account = %args.account);
    let code = runtime.block_on(Box::pin(
        async {
            spawn_signal_handlers(token.clone());
            run(args, token).await
        }
        .instrument(span),
    ));
    ExitCode::from(code)
}

/// The worker's life after process setup: lock, link, creds, session, flush.
async fn run(args: WorkerArgs, token: CancellationToken) -> u8 {
    if let Some(text) = &args.sessions_key {
        match volume::seal::SessionsKey::parse(text) {
            Ok(key) => volume::seal::install(volume::seal::Sealer::new(&args.sessions, Some(key))),
            Err(e) => {
                error!(error = %e, "cannot use SESSIONS_KEY");
                return EXIT_FAILURE;
            }
        }
    }
    match args.connection.tls_ca_certs() {
        Ok(anchors) => {
            if let Some(file) = &args.connection.wa_tls_ca_file {
                let (certificates, file) = (anchors.len(), file.display());
                info!(certificates, %file, "trusting the extra TLS roots of WA_TLS_CA_FILE");
            }
            transport::trust_extra_roots(anchors);
        }
        Err(e) => {
            error!(error = %e, "cannot use WA_TLS_CA_FILE");
            return EXIT_FAILURE;
        }
    }
    let account_dir = args.account_dir();
    if let Err(e) = std::fs::create_dir_all(&account_dir) {
        error!(error = %e, dir = %account_dir.display(), "cannot create the account directory");
        return EXIT_FAILURE;
    }
    let _lock = match FileLock::try_acquire(&account_dir.join(volume::layout::LOCK_FILE)) {
        Ok(lock) => lock,
        Err(e @ LockError::Held { .. }) => {
            error!(error = %e, "another worker already runs this account");
            return EXIT_LOCKED;
        }
        Err(e) => {
            error!(error = %e, "cannot take the account lock");
            return EXIT_FAILURE;
        }
    };
    // Under the lock, nobody else writes here: what interrupted writes left can go. The
    // supervisor's account.json is its own to clean.
    let supervisors = |name: &str| volume::layout::is_account_file_temp(name);
    match store::atomic::remove_temp_files(&account_dir, 3, &supervisors) {
        Ok(0) => {}
        Ok(removed) => info!(removed, "removed temp files of interrupted writes"),
        Err(e) => warn!(error = %e, "cannot remove temp files of interrupted writes"),
    }
    let (link, commands, writer) = match &args.ipc {
        Some(path) => match ipc::connect(path, &args.account, token.clone()).await {
            Ok(parts) => parts,
            Err(e) => {
                error!(error = %e, "cannot reach the supervisor");
                return EXIT_FAILURE;
            }
        },
        None => ipc::detached(),
    };
    let outcome = session_on_heap(&args, link, commands, token).await;
    let code = match outcome {
        Ok(()) => EXIT_OK,
        Err(e) => {
            error!(error = %e, "worker failed");
            EXIT_FAILURE
        }
    };
    if let Some(writer) = writer {
        if tokio::time::timeout(IPC_DRAIN_DEADLINE, writer)
            .await
            .is_err()
        {
            warn!("ipc link did not drain in time");
        }
    }
    info!(code, "worker exiting");
    code
}

/// The session's future, built on the heap by a frame of its own: built in `run`, the session
/// (several KiB) would take room in the frame of every one of `run`'s polls, under every other
/// frame for the worker's whole life.
#[inline(never)]
fn session_on_heap(
    args: &WorkerArgs,
    link: ipc::Link,
    commands: tokio::sync::mpsc::UnboundedReceiver<ipc_protocol::ToWorker>,
    token: CancellationToken,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), session::SessionError>> + '_>> {
    Box::pin(session::Session::new(args, link, commands).run(token))
}

/// Asks the kernel for SIGTERM when the parent dies, then checks it has not died already.
fn watch_parent(parent_pid: Option<i32>) -> Result<(), u8> {
    if let Err(e) = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGTERM) {
        warn!(error = %e, "cannot set the parent-death signal");
    }
    if let Some(expected) = parent_pid {
        let actual = nix::unistd::getppid().as_raw();
        if actual != expected {
            error!(
                expected,
                actual, "the supervisor that spawned this worker is gone"
            );
            return Err(EXIT_ORPHANED);
        }
    }
    Ok(())
}

fn spawn_signal_handlers(token: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    for kind in [SignalKind::terminate(), SignalKind::interrupt()] {
        let token = token.clone();
        match signal(kind) {
            Ok(mut stream) => {
                tokio::spawn(async move {
                    if stream.recv().await.is_some() {
                        info!("signal received, shutting down");
                        token.cancel();
                    }
                });
            }
            Err(e) => warn!(error = %e, "cannot install a signal handler"),
        }
    }
}
