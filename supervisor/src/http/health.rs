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
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::AppState;
use crate::cache::{writes_fail, Tally};
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

/// The service's health, in the one vocabulary `/health` and the dashboard share: `healthy`, or
/// `unhealthy` with the reason, while the sessions directory refuses the probe's writes or any
/// worker reports that its writes fail (a volume with a little space left takes the probe but
/// not a creds file).
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct ServiceHealth {
    /// Why the service is unhealthy; `None` when it is healthy.
    pub problem: Option<String>,
}

impl ServiceHealth {
    /// Reads the probe and the cache's running tally: its cost does not grow with the number
    /// of accounts (only a failing one makes it look for the first reason).
    pub fn of(state: &AppState, tally: &Tally) -> Self {
        let problem = state.health.problem().or_else(|| {
            if tally.storage_failing == 0 {
                return None;
            }
            // No account names or error texts here: /health needs no token. The accounts show
            // theirs to the admin.
            let reason = state.cache.read_all(|mut views, _| {
                views.find_map(|v| {
                    v.state
                        .reason
                        .as_ref()
                        .filter(|r| writes_fail(Some(r)))
                        .map(Reason::as_string)
                })
            });
            Some(format!(
                "{}: {} account(s) cannot write to the volume",
                reason.unwrap_or_default(),
                tally.storage_failing
            ))
        });
        let problem = match problem {
            None if !state.health.writable() => {
                Some("the sessions directory is not writable".to_owned())
            }
            other => other,
        };
        ServiceHealth { problem }
    }

    /// Healthy: nothing keeps the accounts' state from being written.
    pub fn ok(&self) -> bool {
        self.problem.is_none()
    }

    /// `healthy` or `unhealthy`.
    pub fn word(&self) -> &'static str {
        if self.ok() {
            "healthy"
        } else {
            "unhealthy"
        }
    }
}

/// The body of `GET /health`. Its fields are in the order a JSON object with sorted keys has
/// them, so the bytes are those the API always answered.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct Health {
    accounts_total: usize,
    connected: usize,
    needs_qr: usize,
    ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    sessions_dir_writable: bool,
    status: &'static str,
    uptime_s: u64,
    workers_running: usize,
}

/// `GET /health`: 503 while the sessions directory refuses the probe's writes, or while any
/// worker reports that its writes fail (a volume with a little space left takes the probe but
/// not a creds file), with the reason. It reads the cache's running tally: its cost does not
/// grow with the number of accounts (only a failing one makes it look for the first reason).
#[utoipa::path(get, path = "/health", tag = "service", summary = "Aggregate health, without a token",
    responses((status = 200, description = "Healthy", body = Health),
        (status = 503, description = "The volume refuses writes (with a reason)", body = Health)))]
pub async fn check(State(state): State<AppState>) -> impl IntoResponse {
    let tally = state.cache.tally();
    let service = ServiceHealth::of(&state, &tally);
    let ok = service.ok();
    let writable = ok;
    let body = Health {
        accounts_total: tally.total,
        connected: tally.status(WorkerStatus::Connected),
        needs_qr: tally.status(WorkerStatus::NeedsQr),
        ok,
        sessions_dir_writable: writable,
        status: service.word(),
        reason: service.problem,
        uptime_s: state.started.elapsed().as_secs(),
        workers_running: tally.running,
    };
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The body as the handler used to build it, as a `Value` with sorted keys.
    fn as_value(h: &Health) -> serde_json::Value {
        let mut body = json!({
            "ok": h.ok,
            "status": h.status,
            "accounts_total": h.accounts_total,
            "connected": h.connected,
            "needs_qr": h.needs_qr,
            "sessions_dir_writable": h.sessions_dir_writable,
            "workers_running": h.workers_running,
            "uptime_s": h.uptime_s,
        });
        if let Some(reason) = &h.reason {
            body["reason"] = reason.clone().into();
        }
        body
    }

    #[test]
    fn the_body_keeps_its_bytes() {
        let healthy = Health {
            accounts_total: 3000,
            connected: 2990,
            needs_qr: 4,
            ok: true,
            reason: None,
            sessions_dir_writable: true,
            status: "healthy",
            uptime_s: 61,
            workers_running: 2996,
        };
        let failing = Health {
            ok: false,
            reason: Some("storage_full: 2 account(s) cannot write to the volume".into()),
            sessions_dir_writable: false,
            status: "unhealthy",
            ..healthy
        };
        for h in [&healthy, &failing] {
            let ours = serde_json::to_string(h).expect("serialize");
            let before = serde_json::to_string(&as_value(h)).expect("serialize");
            assert_eq!(ours, before);
        }
    }
}
