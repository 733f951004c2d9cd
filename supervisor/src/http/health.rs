//! `GET /health`: aggregate only, no auth; 503 when the sessions directory is not writable.
//! The write probe runs in the background every second, so the handler never touches the disk.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use ipc_protocol::WorkerStatus;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::AppState;
use crate::volume;

const PROBE_EVERY: Duration = Duration::from_secs(1);
const PROBE_DEADLINE: Duration = Duration::from_secs(2);

/// The sessions directory's writability, as last probed.
#[derive(Debug)]
pub struct HealthProbe {
    dir: PathBuf,
    writable: AtomicBool,
}

impl HealthProbe {
    /// A probe of `dir`, which startup has just proven writable.
    pub fn new(dir: PathBuf) -> Self {
        HealthProbe {
            dir,
            writable: AtomicBool::new(true),
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
            let probe = tokio::task::spawn_blocking(move || volume::probe(&dir));
            let ok = match tokio::time::timeout(PROBE_DEADLINE, probe).await {
                Ok(Ok(Ok(()))) => true,
                Ok(Ok(Err(e))) => {
                    if self.writable() {
                        warn!(dir = %self.dir.display(), error = %e, "sessions directory is not writable");
                    }
                    false
                }
                Ok(Err(_)) | Err(_) => false,
            };
            self.writable.store(ok, Ordering::Relaxed);
        }
    }
}

/// `GET /health`.
pub async fn check(State(state): State<AppState>) -> impl IntoResponse {
    let views = state.cache.all();
    let count = |s: WorkerStatus| views.iter().filter(|v| v.state.status == s).count();
    let writable = state.health.writable();
    let ok = writable;
    let body = json!({
        "ok": ok,
        "status": if ok { "healthy" } else { "unhealthy" },
        "accounts_total": views.len(),
        "connected": count(WorkerStatus::Connected),
        "needs_qr": count(WorkerStatus::NeedsQr),
        "sessions_dir_writable": writable,
        "workers_running": views.iter().filter(|v| v.pid.is_some()).count(),
        "uptime_s": state.started.elapsed().as_secs(),
    });
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body))
}
