//! The supervisor: one worker process per WhatsApp account, and the admin API.
//!
//! ```text
//!  run(config)
//!   ├─ sessions_dir resolve $SESSIONS, prove it writable, take .supervisor.lock
//!   ├─ registry   account.json per account  ──▶ cache (one AccountView per account)
//!   ├─ ipc        private 0700 dir + socket; one task per worker link ──▶ fleet
//!   ├─ fleet      the task that owns every child: boot plan, spawns, restarts, watchdog,
//!   │             commands; writes the cache; on cancel stops every worker in parallel
//!   └─ http       axum on a hyper accept loop (connection cap sized from the open-file
//!                 limit, timeouts); reads the cache, sends commands to the fleet; never waits
//!                 on a worker
//! ```
//!
//! Workers are this same binary re-executed with the hidden `worker` subcommand (or
//! `WORKER_BIN`), spawned from the fleet task on the main thread so that their parent-death
//! signal stays armed for the supervisor's whole life.

pub mod admin_token;
pub mod cache;
pub mod cli;
pub mod config;
pub mod error;
pub mod events;
pub mod fleet;
pub mod healthcheck;
pub mod http;
pub mod import;
pub mod ipc;
pub mod registry;
pub mod seal;
pub mod sessions_dir;
pub mod signals;
pub mod wa_version;
pub mod webhook;

use std::sync::Arc;
use std::time::Duration;

use nix::sys::resource::{getrlimit, setrlimit, Resource};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};
use volume::lock::LockError;

use crate::cache::{AccountView, Cache};
pub use crate::config::Config;
pub use crate::error::{Error, Result};
use crate::fleet::boot::{self, Jitter};
use crate::fleet::child::SpawnSpec;
use crate::fleet::policy::RestartPolicy;
use crate::fleet::{Fleet, FleetMsg, Timeouts};
use crate::http::{AppState, HealthProbe, HttpLimits, HttpServer, SessionStore};
use crate::ipc::{IpcListener, RuntimeDir};
use crate::registry::Registry;
use crate::wa_version::WaVersions;

/// File descriptors a thousand accounts need in the supervisor (a socket and a child handle
/// each, plus the server's own).
const FDS_FOR_A_THOUSAND: u64 = 4096;
/// The open-file limit assumed when it cannot be read.
const ASSUMED_FD_LIMIT: u64 = 1024;
/// How long HTTP connections get to finish after shutdown begins.
const HTTP_DRAIN_DEADLINE: Duration = Duration::from_secs(5);

/// Runs the supervisor until SIGTERM or SIGINT, then stops every worker and returns.
///
/// # Errors
/// When the sessions directory, the lock, the IPC socket or the HTTP port cannot be set up.
pub async fn run(config: Config) -> Result<()> {
    config.validate().map_err(Error::Config)?;
    let started = Instant::now();
    let sessions = sessions_dir::resolve(&config);
    sessions_dir::prove_writable(&sessions).map_err(|source| Error::SessionsNotWritable {
        path: sessions.clone(),
        source,
    })?;
    let sessions = sessions.canonicalize().map_err(|source| Error::Sessions {
        path: sessions.clone(),
        source,
    })?;
    let _lock = sessions_dir::lock(&sessions).map_err(|e| match e {
        LockError::Held { .. } => Error::AlreadyRunning {
            path: sessions.clone(),
        },
        LockError::Io { source, .. } => Error::Sessions {
            path: sessions.clone(),
            source,
        },
    })?;
    info!(path = %sessions.display(), writable = true, "sessions directory ready");
    let leftovers = sessions_dir::remove_temp_files(&sessions);
    if leftovers > 0 {
        info!(
            removed = leftovers,
            "removed temp files of interrupted writes"
        );
    }

    let registry = Registry::new(&sessions);
    let accounts = registry.load_all().map_err(|source| Error::Sessions {
        path: sessions.clone(),
        source,
    })?;
    let ids: Vec<_> = accounts.iter().map(|a| a.id.clone()).collect();
    import::warn_pending(&sessions, config.railway_volume_mount_path.as_deref(), &ids);
    let fd_limit = raise_fd_limit(accounts.len());
    let admin_token = Arc::new(admin_token::resolve(
        config.admin_token.as_deref(),
        &sessions,
    )?);

    let cache = Arc::new(Cache::default());
    let (webhooks, webhook_sender) =
        webhook::setup(&config.webhook, &sessions, cache.clone(), &accounts)?;
    let total = accounts.len();
    let mut bootable = Vec::new();
    for account in accounts {
        let has_creds = registry.has_creds(&account.id);
        if account.enabled && has_creds && account.conflict_since.is_none() {
            bootable.push(account.id.clone());
        }
        cache.insert(AccountView::idle(account, has_creds));
    }
    let jitter = Jitter {
        min: Duration::from_millis(config.boot_jitter_min_ms),
        max: Duration::from_millis(config.boot_jitter_max_ms),
    };
    let plan = boot::plan(bootable, jitter, &mut rand::thread_rng());
    info!(accounts = total, booting = plan.len(), "accounts loaded");
    let booted: std::collections::HashSet<_> = plan.iter().map(|(id, _)| id.clone()).collect();
    let settle_by = started + boot::settle_deadline(&plan);

    let runtime_dir = RuntimeDir::create().map_err(Error::Ipc)?;
    let ipc = IpcListener::bind(&runtime_dir).map_err(Error::Ipc)?;
    let spec = SpawnSpec::new(&config, &sessions, ipc.path());
    let policy = RestartPolicy::with_base(Duration::from_millis(config.restart_backoff_base_ms));
    let versions = Arc::new(WaVersions::load(
        &sessions,
        config.connection.wa_version,
        config.version_url().map_err(Error::Config)?,
    ));
    let (fleet, fleet_handle) = Fleet::new(
        spec,
        policy,
        Timeouts {
            shutdown: config.shutdown_timeout(),
            heartbeat: Duration::from_millis(config.heartbeat_timeout_ms),
            budget: config.budget(),
        },
        cache.clone(),
        registry.clone(),
        versions.clone(),
    );

    let addr = format!("{}:{}", config.bind_addr, config.port);
    let listener = http::bind(&addr).await.map_err(|source| Error::Listen {
        addr: addr.clone(),
        source,
    })?;
    let local = listener.local_addr().map_err(|source| Error::Listen {
        addr: addr.clone(),
        source,
    })?;
    info!(addr = %local, "http listening");

    let token = CancellationToken::new();
    signals::cancel_on_signal(token.clone());
    let tracker = TaskTracker::new();
    let health = Arc::new(HealthProbe::new(sessions.clone()));
    tracker.spawn(health.clone().run(token.child_token()));
    tracker.spawn(ipc.run(fleet_handle.clone(), token.child_token(), tracker.clone()));
    // Stopped after the fleet, so the workers' last events are stored for the next run.
    let webhook_token = CancellationToken::new();
    let webhook_sender = webhook_sender.with_confirmations(fleet_handle.sender());
    tracker.spawn(webhook_sender.run(webhook_token.clone()));
    // The published version, once at start (a newer one reaches the workers already running).
    let refresh = versions.clone();
    let to_fleet = fleet_handle.sender();
    tracker.spawn(async move {
        if let Some(version) = refresh.refresh().await {
            let _ = to_fleet.send(FleetMsg::WaVersion(version));
        }
    });
    let state = AppState {
        cache,
        fleet: fleet_handle,
        registry,
        admin_token,
        health,
        started,
        webhooks,
        sessions: Arc::new(SessionStore::default()),
        versions,
        hold_limit: Duration::from_millis(config.http_request_timeout_ms / 2),
    };
    let limits = HttpLimits {
        header_timeout: Duration::from_millis(config.http_header_timeout_ms),
        request_timeout: Duration::from_millis(config.http_request_timeout_ms),
        max_connections: config.http_max_connections,
        fd_limit,
    };
    tracker.spawn(fleet::report_boot(
        state.cache.clone(),
        booted,
        started,
        settle_by,
        token.child_token(),
    ));
    let server = HttpServer::new(listener, http::router(state.clone()), limits, state.cache);
    let cap = server.cap();
    if config.http_max_connections > cap {
        warn!(
            configured = config.http_max_connections,
            cap, fd_limit, "HTTP_MAX_CONNECTIONS lowered to keep descriptors for the workers"
        );
    }
    info!(cap, fd_limit, "http connection cap");
    let http = tokio::spawn(server.run(token.child_token()));

    fleet.run(token.clone(), plan).await;
    webhook_token.cancel();
    if tokio::time::timeout(HTTP_DRAIN_DEADLINE, http)
        .await
        .is_err()
    {
        warn!("http connections did not drain in time");
    }
    tracker.close();
    let _ = tokio::time::timeout(Duration::from_secs(1), tracker.wait()).await;
    drop(runtime_dir);
    info!("supervisor stopped");
    Ok(())
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit and warns when even that is too low.
/// Returns the limit now in force (1024, the usual default, when it cannot be read).
fn raise_fd_limit(accounts: usize) -> u64 {
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) => {
            if soft < hard {
                if let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
                    warn!(soft, hard, error = %e, "cannot raise the open-file limit");
                }
            }
            let now = getrlimit(Resource::RLIMIT_NOFILE)
                .map(|(s, _)| s)
                .unwrap_or(soft);
            let needed = FDS_FOR_A_THOUSAND.max(accounts as u64 * 4 + 256);
            if now < needed {
                warn!(limit = now, needed, "open-file limit is too low for a thousand accounts; raise the hard limit (ulimit -Hn)");
            } else {
                info!(limit = now, "open-file limit");
            }
            now
        }
        Err(e) => {
            warn!(error = %e, "cannot read the open-file limit");
            ASSUMED_FD_LIMIT
        }
    }
}
