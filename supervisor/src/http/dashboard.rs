//! `GET /api/status/dashboard` (the seed's JSON) and `GET /` (the page for people).

use std::sync::LazyLock;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use ipc_protocol::WorkerStatus;
use serde_json::{json, Map, Value};

use super::page::Page;
use super::{iso, iso_now, phone, AppState};
use crate::cache::AccountView;

/// `GET /api/status/dashboard`.
pub async fn json(State(state): State<AppState>) -> impl IntoResponse {
    let views = state.cache.all();
    let writable = state.health.writable();
    let mut summary = Map::new();
    for status in WorkerStatus::ALL {
        let n = views.iter().filter(|v| v.state.status == status).count();
        summary.insert(status.as_str().to_owned(), json!(n));
    }
    summary.insert("total".into(), json!(views.len()));
    let budget = state.cache.budget.get();
    Json(json!({
        "timestamp": iso_now(),
        "service": {
            "status": if writable { "healthy" } else { "degraded" },
            "uptime": state.started.elapsed().as_secs(),
            "version": env!("CARGO_PKG_VERSION"),
        },
        "storage": {
            "path": state.health.dir().display().to_string(),
            "writable": writable,
            "totalAccounts": views.len(),
        },
        "accounts": views.iter().map(account_json).collect::<Vec<_>>(),
        "summary": Value::Object(summary),
        "handshakes": {
            "inFlight": budget.in_flight,
            "waiting": budget.waiting,
            "dialsPerMinute": budget.dials_last_minute,
            "grantedTotal": budget.granted_total,
            "reclaimedTotal": budget.reclaimed_total,
        },
    }))
}

/// One account in the dashboard shape.
pub fn account_json(v: &AccountView) -> Value {
    let s = &v.state;
    let last_seen = s.last_event_at.or(s.last_message_at);
    json!({
        "accountId": v.account.id,
        "name": v.account.name,
        "phone": masked_phone(v),
        "status": s.status,
        "reason": s.reason,
        "lastEventAt": s.last_event_at.map(iso),
        "lastMessageAt": s.last_message_at.map(iso),
        "lastSeen": last_seen.map(iso),
        "reconnectCount": s.reconnect_count,
        "reconnectAttempts": s.reconnect_attempts,
        "nextRetryAt": s.next_retry_at.map(iso),
        "dialQueuedSince": s.dial_queued_since.map(iso),
        "needsQR": s.status == WorkerStatus::NeedsQr || s.qr.is_some(),
        "lastError": s.last_error,
        "pid": v.pid,
        "startedAt": v.started_at.map(iso),
        "restarts": v.restarts,
    })
}

/// The phone the worker reported (JID digits, shown with their `+`), else the one the operator
/// gave, masked.
pub fn masked_phone(v: &AccountView) -> Option<String> {
    match (&v.state.phone, &v.account.phone) {
        (Some(p), _) => Some(phone::mask_reported(p)),
        (None, Some(p)) => Some(phone::mask(p)),
        (None, None) => None,
    }
}

/// The dashboard page.
static DASHBOARD_PAGE: LazyLock<Page> = LazyLock::new(|| Page::new(include_str!("dashboard.html")));

/// `GET /`.
pub async fn page() -> Response {
    DASHBOARD_PAGE.respond(StatusCode::OK, DASHBOARD_PAGE.template().to_owned())
}
