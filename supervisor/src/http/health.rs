//! `GET /health`: aggregate only, no auth; 503 while the sessions volume refuses writes.
//! The write probe runs in the background every second, so the handler never touches the disk.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use ipc_protocol::{Reason, WorkerStatus};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::AppState;
use crate::sessions_dir;

const PROBE_EVERY: Duration = Duration::from_secs(1);
const PROBE_DEADLINE: Duration = Duration::from_secs(2);

/// The sessions directory's writability, as last probed.
#[derive(Debug)]
pub struct HealthProbe {
    dir: PathBuf,
    writable: AtomicBool,
    /// The last failed probe's error, while it fails.
    problem: Mutex<Option<String>>,
}

impl HealthProbe {
    /// A probe of `dir`, which startup has just proven writable.
    pub fn new(dir: PathBuf) -> Self {
        HealthProbe {
            dir,
            writable: AtomicBool::new(true),
            problem: Mutex::new(None),
        }
    }

    /// The sessions directory.
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// The last probe's answer.
    pub fn writable(&self) -> bool {
        self.writable.load(Ordering::Relaxed)
    }

    /// Why the last probe failed, while it fails.
    pub fn problem(&self) -> Option<String> {
        self.problem.lock().map(|p| p.clone()).unwrap_or_default()
    }

    fn record(&self, problem: Option<String>) {
        self.writable.store(problem.is_none(), Ordering::Relaxed);
        if let Ok(mut slot) = self.problem.lock() {
            *slot = problem;
        }
    }

    /// Probes every second until `token` is cancelled. A probe that hangs past its deadline
    /// counts as not writable.
    pub async fn run(self: Arc<Self>, token: CancellationToken) {
        loop {
            tokio::select! {
                biased;
                _ = token.cancelled() => return,
                _ = tokio::time::sleep(PROBE_EVERY) => {}
            }
            let dir = self.dir.clone();
            let probe = tokio::task::spawn_blocking(move || sessions_dir::probe(&dir));
            let problem = match tokio::time::timeout(PROBE_DEADLINE, probe).await {
                Ok(Ok(Ok(()))) => None,
                Ok(Ok(Err(e))) => {
                    if self.writable() {
                        warn!(dir = %self.dir.display(), error = %e, "sessions directory is not writable");
                    }
                    let kind = volume::trouble::Trouble::of(&e).reason();
                    Some(format!("{kind}: {e}"))
                }
                Ok(Err(_)) => Some("storage_error: the write probe failed".to_owned()),
                Err(_) => Some(format!(
                    "storage_error: the write probe took longer than {} s",
                    PROBE_DEADLINE.as_secs()
                )),
            };
            self.record(problem);
        }
    }
}

/// Whether `reason` says the account's worker cannot write to the volume.
fn is_storage(reason: Option<&Reason>) -> bool {
    matches!(
        reason,
        Some(Reason::StorageFull | Reason::StorageReadonly | Reason::StorageError)
    )
}

/// `GET /health`: 503 while the sessions directory refuses the probe's writes, or while any
/// worker reports that its writes fail (a volume with a little space left takes the probe but
/// not a creds file), with the reason.
pub async fn check(State(state): State<AppState>) -> impl IntoResponse {
    let views = state.cache.all();
    let count = |s: WorkerStatus| views.iter().filter(|v| v.state.status == s).count();
    let failing: Vec<_> = views
        .iter()
        .filter(|v| is_storage(v.state.reason.as_ref()))
        .collect();
    let problem = state.health.problem().or_else(|| {
        let first = failing.first()?;
        // No account names or error texts here: /health needs no token. The accounts show
        // theirs to the admin.
        let reason = first.state.reason.as_ref().map(Reason::as_string);
        Some(format!(
            "{}: {} account(s) cannot write to the volume",
            reason.unwrap_or_default(),
            failing.len()
        ))
    });
    let writable = problem.is_none() && state.health.writable();
    let ok = writable;
    let mut body = json!({
        "ok": ok,
        "status": if ok { "healthy" } else { "unhealthy" },
        "accounts_total": views.len(),
        "connected": count(WorkerStatus::Connected),
        "needs_qr": count(WorkerStatus::NeedsQr),
        "sessions_dir_writable": writable,
        "workers_running": views.iter().filter(|v| v.pid.is_some()).count(),
        "uptime_s": state.started.elapsed().as_secs(),
    });
    if let Some(problem) = problem {
        body["reason"] = problem.into();
    }
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body))
}
