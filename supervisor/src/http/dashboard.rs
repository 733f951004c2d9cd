//! `GET /api/status/dashboard` (the seed's JSON) and `GET /` (the page for people).
//!
//! The JSON is written straight from the cache's views under its read lock, through `Serialize`
//! structs whose fields stand in the order a JSON object with sorted keys has them: the bytes
//! are those the route always answered, without building a tree of values or copying a view.
//! `?status=connected,needs_qr` keeps the accounts in those statuses (the summary still counts
//! them all).

use std::sync::LazyLock;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use ipc_protocol::{AccountId, Reason, UnixMillis, WorkerStatus};
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};

use super::error::ApiError;
use super::health::ServiceHealth;
use super::page::Page;
use super::{iso_now, phone, AppState};
use crate::cache::{AccountView, Tally};
use crate::fleet::budget::BudgetStats;

/// The query string of the JSON route.
#[derive(Debug, Deserialize)]
pub struct DashboardQuery {
    /// Comma-separated statuses: only accounts in one of them are listed.
    status: Option<String>,
}

/// `GET /api/status/dashboard[?status=a,b]`.
///
/// # Errors
/// 400 for a query that does not parse or a status that does not exist (the message lists
/// the valid ones).
#[utoipa::path(get, path = "/api/status/dashboard", tag = "service", summary = "Every account and the fleet's state",
    params(("status" = Option<String>, Query, description = "Comma-separated statuses: only accounts in one of them are listed")),
    responses((status = 200, description = "The dashboard (gzip when asked)", body = super::openapi::Dashboard),
        (status = 400, response = super::openapi::Error)))]
pub async fn json(
    State(state): State<AppState>,
    query: Result<Query<DashboardQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let only = query.status.as_deref().map(StatusSet::parse).transpose()?;
    let writable = state.health.writable();
    let budget = state.cache.budget.get();
    let path = state.health.dir().display().to_string();
    let timestamp = iso_now();
    let uptime = state.started.elapsed().as_secs();
    let health = ServiceHealth::of(&state, &state.cache.tally());
    let body = state.cache.read_all(|views, tally| {
        let dashboard = Dashboard {
            accounts: Accounts {
                views: views.clone(),
                only,
            },
            handshakes: Handshakes::from(budget),
            service: Service {
                status: health.word(),
                reason: health.problem.clone(),
                uptime,
                version: env!("CARGO_PKG_VERSION"),
            },
            storage: Storage {
                path: &path,
                total_accounts: tally.total,
                writable,
            },
            summary: Summary(tally),
            timestamp: &timestamp,
        };
        let mut out = Vec::with_capacity(1024 + tally.total * 400);
        serde_json::to_writer(&mut out, &dashboard).map(|()| out)
    });
    let body = body.map_err(|e| ApiError::internal(format!("cannot write the dashboard: {e}")))?;
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response())
}

/// The statuses a `?status=` filter keeps.
#[derive(Clone, Copy, Debug)]
struct StatusSet([bool; WorkerStatus::ALL.len()]);

impl StatusSet {
    /// `connected,needs_qr` (spaces around names are ignored).
    fn parse(list: &str) -> Result<Self, ApiError> {
        let mut set = [false; WorkerStatus::ALL.len()];
        let mut any = false;
        for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let Some(i) = WorkerStatus::ALL.iter().position(|s| s.as_str() == name) else {
                return Err(Self::invalid(&format!("unknown status {name:?}")));
            };
            set[i] = true;
            any = true;
        }
        if !any {
            return Err(Self::invalid("status names no status"));
        }
        Ok(StatusSet(set))
    }

    fn invalid(what: &str) -> ApiError {
        let valid: Vec<&str> = WorkerStatus::ALL.iter().map(|s| s.as_str()).collect();
        ApiError::bad_request(
            "invalid_status",
            format!(
                "{what}; valid statuses (comma-separated): {}",
                valid.join(", ")
            ),
        )
    }

    fn contains(&self, status: WorkerStatus) -> bool {
        WorkerStatus::ALL
            .iter()
            .position(|s| *s == status)
            .is_some_and(|i| self.0[i])
    }
}

/// The whole answer; fields in sorted-key order, as in every struct below.
#[derive(Serialize)]
struct Dashboard<'a, A> {
    /// [`Accounts`].
    accounts: A,
    handshakes: Handshakes,
    service: Service,
    storage: Storage<'a>,
    summary: Summary<'a>,
    timestamp: &'a str,
}

/// The accounts, written one by one as they are read.
struct Accounts<I> {
    views: I,
    only: Option<StatusSet>,
}

impl<'v, I> Serialize for Accounts<I>
where
    I: Iterator<Item = &'v AccountView> + Clone,
{
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let only = self.only;
        serializer.collect_seq(
            self.views
                .clone()
                .filter(|v| only.is_none_or(|set| set.contains(v.state.status)))
                .map(AccountJson::of),
        )
    }
}

/// The fleet's handshake budget.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Handshakes {
    dials_per_minute: u64,
    granted_total: u64,
    in_flight: u64,
    reclaimed_total: u64,
    waiting: u64,
}

impl From<BudgetStats> for Handshakes {
    fn from(b: BudgetStats) -> Self {
        Handshakes {
            dials_per_minute: b.dials_last_minute,
            granted_total: b.granted_total,
            in_flight: b.in_flight,
            reclaimed_total: b.reclaimed_total,
            waiting: b.waiting,
        }
    }
}

#[derive(Serialize)]
struct Service {
    /// `healthy` or `unhealthy`, as `/health` says it.
    status: &'static str,
    /// Why it is unhealthy, as `/health` says it.
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    uptime: u64,
    version: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Storage<'a> {
    path: &'a str,
    total_accounts: usize,
    writable: bool,
}

/// Accounts per status, and `total`, keys sorted.
struct Summary<'a>(&'a Tally);

impl Serialize for Summary<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut counts: Vec<(&str, usize)> = WorkerStatus::ALL
            .iter()
            .map(|s| (s.as_str(), self.0.status(*s)))
            .chain([("total", self.0.total)])
            .collect();
        counts.sort_unstable_by_key(|(k, _)| *k);
        let mut map = serializer.serialize_map(Some(counts.len()))?;
        for (k, n) in counts {
            map.serialize_entry(k, &n)?;
        }
        map.end()
    }
}

/// One account in the dashboard shape.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AccountJson<'a> {
    account_id: &'a AccountId,
    dial_queued_since: Option<Iso>,
    last_error: &'a Option<String>,
    last_event_at: Option<Iso>,
    last_message_at: Option<Iso>,
    last_seen: Option<Iso>,
    name: &'a str,
    #[serde(rename = "needsQR")]
    needs_qr: bool,
    next_retry_at: Option<Iso>,
    phone: Option<String>,
    pid: Option<u32>,
    reason: &'a Option<Reason>,
    reconnect_attempts: u32,
    reconnect_count: u32,
    restarts: u32,
    started_at: Option<Iso>,
    status: WorkerStatus,
}

impl<'a> AccountJson<'a> {
    fn of(v: &'a AccountView) -> Self {
        let s = &v.state;
        AccountJson {
            account_id: &v.account.id,
            dial_queued_since: s.dial_queued_since.map(Iso),
            last_error: &s.last_error,
            last_event_at: s.last_event_at.map(Iso),
            last_message_at: s.last_message_at.map(Iso),
            last_seen: s.last_event_at.or(s.last_message_at).map(Iso),
            name: &v.account.name,
            needs_qr: s.status == WorkerStatus::NeedsQr || s.qr.is_some(),
            next_retry_at: s.next_retry_at.map(Iso),
            phone: masked_phone(v),
            pid: v.pid,
            reason: &s.reason,
            reconnect_attempts: s.reconnect_attempts,
            reconnect_count: s.reconnect_count,
            restarts: v.restarts,
            started_at: v.started_at.map(Iso),
            status: s.status,
        }
    }
}

/// An instant as RFC 3339 with milliseconds (as [`super::iso`]), written without a `String`.
#[derive(Clone, Copy)]
struct Iso(UnixMillis);

impl Serialize for Iso {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&humantime::format_rfc3339_millis(self.0.as_system_time()))
    }
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
#[utoipa::path(get, path = "/", tag = "pages", summary = "The dashboard page",
    responses((status = 200, description = "The dashboard", content_type = "text/html"),
        (status = 303, description = "A browser without a session goes to /login")))]
pub async fn page() -> Response {
    DASHBOARD_PAGE.respond(StatusCode::OK, DASHBOARD_PAGE.template().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::Cache;
    use crate::registry::Account;
    use ipc_protocol::WorkerState;
    use serde_json::{json, Map, Value};

    /// One account as the route built it before, through a `Value` tree.
    fn account_value(v: &AccountView) -> Value {
        let iso = super::super::iso;
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

    /// The whole answer as the route built it before.
    fn dashboard_value(views: &[AccountView], budget: BudgetStats, timestamp: &str) -> Value {
        let mut summary = Map::new();
        for status in WorkerStatus::ALL {
            let n = views.iter().filter(|v| v.state.status == status).count();
            summary.insert(status.as_str().to_owned(), json!(n));
        }
        summary.insert("total".into(), json!(views.len()));
        json!({
            "timestamp": timestamp,
            "service": { "status": "healthy", "uptime": 7, "version": env!("CARGO_PKG_VERSION") },
            "storage": { "path": "/data/sessions", "writable": true, "totalAccounts": views.len() },
            "accounts": views.iter().map(account_value).collect::<Vec<_>>(),
            "summary": Value::Object(summary),
            "handshakes": {
                "inFlight": budget.in_flight,
                "waiting": budget.waiting,
                "dialsPerMinute": budget.dials_last_minute,
                "grantedTotal": budget.granted_total,
                "reclaimedTotal": budget.reclaimed_total,
            },
        })
    }

    fn account(id: &str, phone: Option<&str>) -> Account {
        Account {
            id: AccountId::parse(id).expect("valid id"),
            name: format!("Name of {id} \"quoted\" é ✓"),
            phone: phone.map(str::to_owned),
            created_at: UnixMillis(1_700_000_000_000),
            enabled: true,
            webhook_url: None,
            browser: None,
            conflict_since: None,
        }
    }

    /// Views in every shape the route shows: idle, held, running with every field set.
    fn views() -> Vec<AccountView> {
        let mut held = account("c-held", None);
        held.conflict_since = Some(UnixMillis(1_700_000_000_123));
        let mut busy = AccountView::idle(account("b-busy", Some("+40712345678")), true);
        busy.pid = Some(4242);
        busy.started_at = Some(UnixMillis(1_700_000_001_001));
        busy.restarts = 3;
        busy.state = WorkerState {
            status: WorkerStatus::Reconnecting,
            reason: Some(Reason::StorageFull),
            qr: Some("2@ref,key,identity,adv".into()),
            qr_expires_at: Some(UnixMillis(1_700_000_060_000)),
            jid: Some("40712345678:3@s.whatsapp.net".into()),
            phone: Some("40712345678".into()),
            last_event_at: Some(UnixMillis(1_700_000_002_002)),
            last_message_at: Some(UnixMillis(1_700_000_003_003)),
            reconnect_attempts: 2,
            reconnect_count: 9,
            next_retry_at: Some(UnixMillis(1_700_000_004_004)),
            last_error: Some("line\nbreak \"quote\" \\ tab\t \u{1}".into()),
            decrypt_failures: 1,
            dial_queued_since: Some(UnixMillis(1_700_000_005_005)),
        };
        let mut seen = AccountView::idle(account("d-seen", Some("0711")), true);
        seen.state.status = WorkerStatus::Connected;
        seen.state.last_message_at = Some(UnixMillis(1_700_000_006_006));
        vec![
            AccountView::idle(account("a-new", None), false),
            busy,
            AccountView::idle(held, true),
            seen,
        ]
    }

    #[test]
    fn every_account_keeps_its_bytes() {
        for v in views() {
            let ours = serde_json::to_string(&AccountJson::of(&v)).expect("serialize");
            let before = serde_json::to_string(&account_value(&v)).expect("serialize");
            assert_eq!(ours, before);
        }
    }

    #[test]
    fn the_whole_answer_keeps_its_bytes() {
        let cache = Cache::default();
        let views = views();
        for v in &views {
            cache.insert(v.clone());
        }
        let budget = BudgetStats {
            in_flight: 1,
            waiting: 2,
            dials_last_minute: 3,
            granted_total: 4,
            reclaimed_total: 5,
        };
        let timestamp = "2026-01-02T03:04:05.678Z";
        let ours = cache.read_all(|all, tally| {
            serde_json::to_string(&Dashboard {
                accounts: Accounts {
                    views: all.clone(),
                    only: None,
                },
                handshakes: Handshakes::from(budget),
                service: Service {
                    status: "healthy",
                    reason: None,
                    uptime: 7,
                    version: env!("CARGO_PKG_VERSION"),
                },
                storage: Storage {
                    path: "/data/sessions",
                    total_accounts: tally.total,
                    writable: true,
                },
                summary: Summary(tally),
                timestamp,
            })
            .expect("serialize")
        });
        let before =
            serde_json::to_string(&dashboard_value(&views, budget, timestamp)).expect("serialize");
        assert_eq!(ours, before);
    }

    #[test]
    fn the_filter_keeps_the_named_statuses_only() {
        let cache = Cache::default();
        for v in views() {
            cache.insert(v);
        }
        let listed = |query: &str| -> Vec<String> {
            let only = StatusSet::parse(query).expect("valid");
            cache.read_all(|all, _| {
                let list = serde_json::to_value(Accounts {
                    views: all.clone(),
                    only: Some(only),
                })
                .expect("serialize");
                list.as_array()
                    .expect("array")
                    .iter()
                    .map(|a| a["accountId"].as_str().expect("id").to_owned())
                    .collect()
            })
        };
        assert_eq!(listed("needs_qr"), ["a-new"]);
        assert_eq!(listed("connected, conflict"), ["c-held", "d-seen"]);
        assert_eq!(listed("failed"), Vec::<String>::new());
        assert_eq!(
            listed("needs_qr,reconnecting,conflict,connected,"),
            ["a-new", "b-busy", "c-held", "d-seen"]
        );
    }

    #[test]
    fn an_unknown_status_is_refused_with_the_valid_ones() {
        for bad in ["online", "connected,nope", "", " , ", "CONNECTED"] {
            let e = StatusSet::parse(bad).expect_err(bad);
            let text = format!("{e:?}");
            assert!(text.contains("invalid_status"), "{text}");
            for status in WorkerStatus::ALL {
                assert!(text.contains(status.as_str()), "{bad}: {text}");
            }
        }
    }
}
