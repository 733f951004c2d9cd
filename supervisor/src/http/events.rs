//! `GET /api/events`: Server-Sent Events for the operator's systems.
//!
//! 1. The listener's last id comes from `Last-Event-ID` (what `EventSource` sends on reconnect)
//!    or `?lastEventId=`; the events after it still in the ring are replayed first. When some
//!    are gone, an `events.lost` event says so before the replay.
//! 2. Then the live feed, filtered by `?account=` when given.
//! 3. A comment goes out every [`HEARTBEAT`] so proxies keep the stream open.
//! 4. A listener that reads too slowly falls behind the live feed's bound and is dropped (its
//!    stream ends); nothing is buffered for it without bound, and no worker ever waits on it.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures_util::stream::{self, Stream, StreamExt};
use ipc_protocol::AccountId;
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;
use tracing::{debug, warn};

use super::{parse_id, ApiError, AppState};
use crate::events::Event;

/// How often an idle stream carries a heartbeat comment.
pub const HEARTBEAT: Duration = Duration::from_secs(15);

/// The query string of `/api/events`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EventsQuery {
    /// Only this account's events.
    account: Option<String>,
    /// Resume after this event id (when the header cannot be set).
    last_event_id: Option<String>,
}

/// Streams events as SSE.
///
/// # Errors
/// 400 for an invalid account id or last event id, 404 for an unknown account.
#[utoipa::path(get, path = "/api/events", tag = "service", summary = "Server-Sent Events",
    description = "account.status, account.qr, message.received, message.status, call.received; replayed after Last-Event-ID",
    params(("account" = Option<String>, Query, description = "Only this account's events"),
        ("lastEventId" = Option<String>, Query, description = "Resume after this event id"),
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this event id")),
    responses((status = 200, description = "The event stream", content_type = "text/event-stream"),
        (status = 400, response = super::openapi::Error), (status = 404, response = super::openapi::Error)))]
pub async fn stream(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<EventsQuery>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let account = match query.account.as_deref() {
        Some(raw) => {
            let id = parse_id(raw)?;
            if !state.cache.contains(&id) {
                return Err(ApiError::account_not_found(id.as_str()));
            }
            Some(id)
        }
        None => None,
    };
    let header = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let after = match header.or(query.last_event_id) {
        Some(raw) if !raw.trim().is_empty() => Some(raw.trim().parse::<u64>().map_err(|_| {
            ApiError::bad_request("invalid_last_event_id", "Last-Event-ID must be an event id")
        })?),
        _ => None,
    };
    let sub = state.cache.events.subscribe(after);
    let lost = sub.gap.then(|| {
        SseEvent::default()
            .event("events.lost")
            .data(r#"{"message":"some events after Last-Event-ID are no longer kept"}"#)
    });
    let filter = account.clone();
    let backlog = sub
        .backlog
        .into_iter()
        .filter(move |e| wanted(e, filter.as_ref()))
        .map(|e| Ok::<_, Infallible>(to_sse(&e)));
    let live = stream::unfold((sub.live, account), |(mut rx, account)| async move {
        loop {
            match rx.recv().await {
                Ok(event) if wanted(&event, account.as_ref()) => {
                    return Some((Ok(to_sse(&event)), (rx, account)))
                }
                Ok(_) => continue,
                Err(RecvError::Lagged(missed)) => {
                    warn!(missed, "event listener too slow; dropped");
                    return None;
                }
                Err(RecvError::Closed) => return None,
            }
        }
    });
    debug!(?after, "event listener joined");
    let head = stream::iter(lost.map(Ok::<_, Infallible>));
    Ok(Sse::new(head.chain(stream::iter(backlog)).chain(live))
        .keep_alive(KeepAlive::new().interval(HEARTBEAT).text("heartbeat")))
}

fn wanted(event: &Event, account: Option<&AccountId>) -> bool {
    account.is_none_or(|a| *a == event.account)
}

fn to_sse(event: &Arc<Event>) -> SseEvent {
    let data = serde_json::to_string(&**event).unwrap_or_else(|_| "{}".into());
    SseEvent::default()
        .id(event.id.to_string())
        .event(event.kind.as_str())
        .data(data)
}
