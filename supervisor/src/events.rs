//! Events for the operator's systems: every account status change, QR change, incoming message
//! and message status, each with an id, kept in a bounded ring for `Last-Event-ID` resumes and
//! fanned out to live listeners (the SSE stream, the webhook sender).
//!
//! ```text
//!  cache (status, qr) ─┐
//!  fleet (messages) ───┴─▶ EventBus::publish ─▶ ring (last RING_LEN) ─▶ subscribe(after) backlog
//!                                             └▶ broadcast ─▶ live listeners (a lagging one is dropped)
//! ```
//!
//! Publishing never blocks and never waits on a listener. Ids grow across supervisor restarts:
//! each run starts counting at its boot time in microseconds.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use ipc_protocol::{AccountId, UnixMillis, WorkerState, WorkerStatus};
use serde::Serialize;
use tokio::sync::broadcast;

use crate::cache::AccountView;

/// Events kept for resumes.
pub const RING_LEN: usize = 2048;
/// Events a live listener may fall behind before it is dropped.
const LIVE_BACKLOG: usize = 1024;

/// What happened.
#[derive(Clone, Copy, Debug, Eq, PartialEq, Serialize)]
pub enum EventKind {
    /// An account's status or reason changed.
    #[serde(rename = "account.status")]
    AccountStatus,
    /// An account's QR appeared, rotated or went away.
    #[serde(rename = "account.qr")]
    AccountQr,
    /// A message arrived.
    #[serde(rename = "message.received")]
    MessageReceived,
    /// A message we sent moved on (sent, delivered, read, failed).
    #[serde(rename = "message.status")]
    MessageStatus,
    /// A call rang (`offer`) or changed (`accept`, `reject`, `terminate`, …).
    #[serde(rename = "call.received")]
    CallReceived,
}

impl EventKind {
    /// The wire name, e.g. `account.status`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::AccountStatus => "account.status",
            EventKind::AccountQr => "account.qr",
            EventKind::MessageReceived => "message.received",
            EventKind::MessageStatus => "message.status",
            EventKind::CallReceived => "call.received",
        }
    }
}

/// One event, as SSE data and webhook body.
#[derive(Clone, Debug, Serialize)]
pub struct Event {
    /// Grows with every event, across restarts.
    pub id: u64,
    /// What happened.
    #[serde(rename = "type")]
    pub kind: EventKind,
    /// The account it happened to.
    #[serde(rename = "accountId")]
    pub account: AccountId,
    /// When, in Unix milliseconds.
    pub timestamp: u64,
    /// The event's own fields.
    pub data: serde_json::Value,
}

/// What a new listener gets: the events it missed, then the live feed.
#[derive(Debug)]
pub struct Subscription {
    /// Events after the listener's last id that are still in the ring, oldest first.
    pub backlog: Vec<Arc<Event>>,
    /// Some events after the listener's last id are no longer in the ring.
    pub gap: bool,
    /// Everything published from now on.
    pub live: broadcast::Receiver<Arc<Event>>,
}

#[derive(Debug)]
struct Ring {
    next_id: u64,
    events: VecDeque<Arc<Event>>,
}

/// The event hub. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct EventBus {
    ring: Mutex<Ring>,
    live: broadcast::Sender<Arc<Event>>,
}

impl Default for EventBus {
    fn default() -> Self {
        Self::new()
    }
}

impl EventBus {
    /// An empty bus whose ids start at this instant's Unix time in microseconds.
    pub fn new() -> Self {
        let (live, _) = broadcast::channel(LIVE_BACKLOG);
        EventBus {
            ring: Mutex::new(Ring {
                next_id: UnixMillis::now().0.saturating_mul(1000).max(1),
                events: VecDeque::with_capacity(64),
            }),
            live,
        }
    }

    /// Records an event and hands it to every live listener. Never blocks on a listener.
    pub fn publish(
        &self,
        kind: EventKind,
        account: &AccountId,
        data: serde_json::Value,
    ) -> Arc<Event> {
        let mut ring = self.lock();
        let event = Arc::new(Event {
            id: ring.next_id,
            kind,
            account: account.clone(),
            timestamp: UnixMillis::now().0,
            data,
        });
        ring.next_id += 1;
        if ring.events.len() == RING_LEN {
            ring.events.pop_front();
        }
        ring.events.push_back(event.clone());
        // Sent under the lock, so a subscriber sees each event exactly once: in its backlog or
        // live. No listener is not an error.
        let _ = self.live.send(event.clone());
        event
    }

    /// Subscribes. With `after` (the listener's last event id) the backlog replays the events
    /// after it still in the ring; without, the listener starts live.
    pub fn subscribe(&self, after: Option<u64>) -> Subscription {
        let ring = self.lock();
        let live = self.live.subscribe();
        let Some(after) = after else {
            return Subscription {
                backlog: Vec::new(),
                gap: false,
                live,
            };
        };
        let backlog: Vec<_> = ring
            .events
            .iter()
            .filter(|e| e.id > after)
            .cloned()
            .collect();
        let oldest = ring.events.front().map_or(ring.next_id, |e| e.id);
        let gap = after.saturating_add(1) < oldest && after < ring.next_id;
        Subscription { backlog, gap, live }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Ring> {
        self.ring.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The data of an `account.status` event: the status, its reason and error text, and the
/// account's other dashboard fields as they stand (times in Unix milliseconds), so a live
/// page needs nothing but the stream.
pub fn status_data(view: &AccountView) -> serde_json::Value {
    let state = &view.state;
    serde_json::json!({
        "status": state.status,
        "reason": state.reason,
        "error": state.last_error,
        "nextRetryAt": state.next_retry_at.map(|t| t.0),
        "phone": state.phone.as_deref().map(crate::http::mask_reported_phone),
        "name": view.account.name,
        "reconnectCount": state.reconnect_count,
        "reconnectAttempts": state.reconnect_attempts,
        "lastSeen": state.last_event_at.or(state.last_message_at).map(|t| t.0),
        "needsQR": state.status == WorkerStatus::NeedsQr || state.qr.is_some(),
        "dialQueuedSince": state.dial_queued_since.map(|t| t.0),
    })
}

/// The data of a `call.received` event: the caller as `message.received` names a sender (the
/// JID without device), the call id, what happened, and when (RFC 3339).
pub fn call_data(call: &ipc_protocol::CallEvent) -> serde_json::Value {
    serde_json::json!({
        "callId": call.call_id,
        "from": call.from,
        "kind": call.kind,
        "video": call.video,
        "offline": call.offline,
        "timestamp": humantime::format_rfc3339_millis(call.at.as_system_time()).to_string(),
    })
}

/// The data of an `account.qr` event; `qr` is null once the QR is gone.
pub fn qr_data(state: &WorkerState) -> serde_json::Value {
    serde_json::json!({
        "qr": state.qr,
        "expiresAt": state.qr_expires_at.map(|t| t.0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acct(s: &str) -> AccountId {
        AccountId::parse(s).expect("id")
    }

    #[tokio::test]
    async fn ids_grow_and_a_resume_replays_exactly_what_was_missed() {
        let bus = EventBus::new();
        let a = acct("a");
        let first = bus.publish(EventKind::AccountStatus, &a, serde_json::json!({"n": 1}));
        let second = bus.publish(EventKind::AccountQr, &a, serde_json::json!({"n": 2}));
        assert_eq!(second.id, first.id + 1);

        let mut sub = bus.subscribe(Some(first.id));
        assert_eq!(sub.backlog.len(), 1);
        assert_eq!(sub.backlog[0].id, second.id);
        assert!(!sub.gap);
        let third = bus.publish(EventKind::MessageStatus, &a, serde_json::json!({}));
        assert_eq!(sub.live.recv().await.expect("live").id, third.id);

        let fresh = bus.subscribe(None);
        assert!(fresh.backlog.is_empty(), "no last id: live only");
        let body = serde_json::to_value(&*third).expect("json");
        assert_eq!(body["type"], "message.status");
        assert_eq!(body["accountId"], "a");
    }

    #[test]
    fn the_ring_is_bounded_and_reports_a_gap() {
        let bus = EventBus::new();
        let a = acct("a");
        let first = bus.publish(EventKind::AccountStatus, &a, serde_json::Value::Null);
        for _ in 0..RING_LEN + 10 {
            bus.publish(EventKind::AccountStatus, &a, serde_json::Value::Null);
        }
        let sub = bus.subscribe(Some(first.id));
        assert_eq!(sub.backlog.len(), RING_LEN);
        assert!(sub.gap, "ten events fell out of the ring");
        let latest = sub.backlog.last().expect("some").id;
        let caught_up = bus.subscribe(Some(latest));
        assert!(caught_up.backlog.is_empty() && !caught_up.gap);
    }

    #[tokio::test]
    async fn a_listener_that_falls_behind_lags_instead_of_buffering() {
        let bus = EventBus::new();
        let a = acct("a");
        let mut sub = bus.subscribe(None);
        for _ in 0..LIVE_BACKLOG + 5 {
            bus.publish(EventKind::AccountStatus, &a, serde_json::Value::Null);
        }
        assert!(matches!(
            sub.live.recv().await,
            Err(broadcast::error::RecvError::Lagged(_))
        ));
    }

    #[test]
    fn a_call_event_names_the_caller_as_messages_name_a_sender() {
        let call = ipc_protocol::CallEvent {
            call_id: "CALL-1".into(),
            from: "15550001234@s.whatsapp.net".into(),
            kind: "offer".into(),
            video: true,
            at: UnixMillis(1_700_000_000_000),
            offline: false,
        };
        let bus = EventBus::new();
        let event = bus.publish(EventKind::CallReceived, &acct("a"), call_data(&call));
        let json = serde_json::to_value(&*event).expect("serializes");
        assert_eq!(json["type"], "call.received");
        assert_eq!(
            json["data"],
            serde_json::json!({
                "callId": "CALL-1",
                "from": "15550001234@s.whatsapp.net",
                "kind": "offer",
                "video": true,
                "offline": false,
                "timestamp": "2023-11-14T22:13:20.000Z",
            })
        );
    }
}
