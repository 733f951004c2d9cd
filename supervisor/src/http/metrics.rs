//! `GET /metrics`: Prometheus text, one series per account and status.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use ipc_protocol::WorkerStatus;

use super::AppState;

/// `GET /metrics`.
#[utoipa::path(get, path = "/metrics", tag = "service", summary = "Prometheus metrics",
    responses((status = 200, description = "Prometheus text (gzip when asked)", content_type = "text/plain")))]
pub async fn render(State(state): State<AppState>) -> impl IntoResponse {
    // Written under the cache's read lock from the views themselves (no copy of each), with
    // the counts its running tally already keeps.
    let mut out = String::new();
    state.cache.read_all(|views, tally| {
    out.reserve(256 + tally.total * 512);
    out.push_str(
        "# HELP wafleet_account_status 1 for the account's current status, 0 for the others.\n",
    );
    out.push_str("# TYPE wafleet_account_status gauge\n");
    for v in views.clone() {
        for status in WorkerStatus::ALL {
            let on = u8::from(v.state.status == status);
            let _ = writeln!(
                out,
                "wafleet_account_status{{account=\"{}\",status=\"{status}\"}} {on}",
                v.account.id
            );
        }
    }
    out.push_str("# HELP wafleet_accounts Accounts per status.\n# TYPE wafleet_accounts gauge\n");
    for status in WorkerStatus::ALL {
        let n = tally.status(status);
        let _ = writeln!(out, "wafleet_accounts{{status=\"{status}\"}} {n}");
    }
    out.push_str("# HELP wafleet_accounts_by_reason Accounts per status reason.\n# TYPE wafleet_accounts_by_reason gauge\n");
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    for v in views.clone() {
        if let Some(r) = &v.state.reason {
            *reasons.entry(r.as_string()).or_default() += 1;
        }
    }
    for (reason, n) in reasons {
        let _ = writeln!(
            out,
            "wafleet_accounts_by_reason{{reason=\"{}\"}} {n}",
            escape(&reason)
        );
    }
    out.push_str("# HELP wafleet_account_reconnects_total Reconnections made by the account's current worker.\n# TYPE wafleet_account_reconnects_total counter\n");
    for v in views.clone() {
        let _ = writeln!(
            out,
            "wafleet_account_reconnects_total{{account=\"{}\"}} {}",
            v.account.id, v.state.reconnect_count
        );
    }
    out.push_str("# HELP wafleet_decrypt_failures_total Incoming messages the account's current worker could not decrypt.\n# TYPE wafleet_decrypt_failures_total counter\n");
    for v in views.clone() {
        let _ = writeln!(
            out,
            "wafleet_decrypt_failures_total{{account=\"{}\"}} {}",
            v.account.id, v.state.decrypt_failures
        );
    }
    out.push_str("# HELP wafleet_worker_restarts_total Worker processes restarted after an unexpected exit.\n# TYPE wafleet_worker_restarts_total counter\n");
    for v in views.clone() {
        let _ = writeln!(
            out,
            "wafleet_worker_restarts_total{{account=\"{}\"}} {}",
            v.account.id, v.restarts
        );
    }
    let running = tally.running;
    let _ = writeln!(out, "# HELP wafleet_workers_running Worker processes alive.\n# TYPE wafleet_workers_running gauge\nwafleet_workers_running {running}");
    });
    let _ = writeln!(
        out,
        "# HELP wafleet_sessions_dir_writable 1 when the sessions directory is writable.\n# TYPE wafleet_sessions_dir_writable gauge\nwafleet_sessions_dir_writable {}",
        u8::from(state.health.writable())
    );
    let _ = writeln!(
        out,
        "# HELP wafleet_uptime_seconds Seconds since the supervisor started.\n# TYPE wafleet_uptime_seconds counter\nwafleet_uptime_seconds {}",
        state.started.elapsed().as_secs()
    );
    let budget = state.cache.budget.get();
    let _ = writeln!(
        out,
        "# HELP wafleet_dials_in_flight Handshakes holding a permit of the fleet's budget.\n# TYPE wafleet_dials_in_flight gauge\nwafleet_dials_in_flight {}",
        budget.in_flight
    );
    let _ = writeln!(
        out,
        "# HELP wafleet_dials_waiting Accounts waiting for a dial permit.\n# TYPE wafleet_dials_waiting gauge\nwafleet_dials_waiting {}",
        budget.waiting
    );
    let _ = writeln!(
        out,
        "# HELP wafleet_dials_per_minute Dial permits granted in the last 60 seconds.\n# TYPE wafleet_dials_per_minute gauge\nwafleet_dials_per_minute {}",
        budget.dials_last_minute
    );
    let _ = writeln!(
        out,
        "# HELP wafleet_dials_granted_total Dial permits granted since the supervisor started.\n# TYPE wafleet_dials_granted_total counter\nwafleet_dials_granted_total {}",
        budget.granted_total
    );
    let _ = writeln!(
        out,
        "# HELP wafleet_dial_permits_reclaimed_total Dial permits taken back after their deadline because the worker never gave them back.\n# TYPE wafleet_dial_permits_reclaimed_total counter\nwafleet_dial_permits_reclaimed_total {}",
        budget.reclaimed_total
    );
    state.webhooks.render_metrics(&mut out);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
}

/// Escapes a label value (account ids cannot need it; reasons from a newer worker might).
fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
