//! Keepalive: a `w:p` ping every 20 to 30 s; no answer within [`PING_DEADLINE`] means the socket
//! is dead (wa-protocol.md §8.4; whatsmeow's interval).

use std::time::Duration;

use ipc_protocol::Reason;
use tokio::time::Instant;

use super::actions::Actions;
use super::events::Disconnect;
use super::request::Purpose;
use super::stage::{Ctx, Stage};
use crate::wa::binary::Node;

/// The longest a ping may go unanswered. whatsmeow waits 10 s and reconnects only after 3 min
/// of failures; one missed answer in 20 s ends the connection here, as whatsapp-rust does.
pub(crate) const PING_DEADLINE: Duration = Duration::from_secs(20);
const MIN_INTERVAL_MS: u64 = 20_000;
const MAX_INTERVAL_MS: u64 = 30_000;

/// When the next ping goes out, and the deadline of the one in flight.
#[derive(Debug)]
pub(crate) struct Keepalive {
    next_ping: Instant,
    awaiting: Option<Instant>,
}

impl Keepalive {
    /// The first ping after one interval from `now`.
    pub(crate) fn new(now: Instant) -> Self {
        Keepalive {
            next_ping: next_ping_after(now),
            awaiting: None,
        }
    }

    /// The next instant something must happen.
    pub(crate) fn deadline(&self) -> Instant {
        self.awaiting
            .map_or(self.next_ping, |d| d.min(self.next_ping))
    }

    /// Whether the ping in flight has gone unanswered past its deadline.
    pub(crate) fn is_dead(&self, now: Instant) -> bool {
        self.awaiting.is_some_and(|d| now >= d)
    }

    /// Whether a ping is due (and none is in flight); if so, marks it sent.
    pub(crate) fn ping_due(&mut self, now: Instant) -> bool {
        if self.awaiting.is_none() && now >= self.next_ping {
            self.awaiting = Some(now + PING_DEADLINE);
            self.next_ping = next_ping_after(now);
            true
        } else {
            false
        }
    }

    /// The ping was answered.
    pub(crate) fn answered(&mut self) {
        self.awaiting = None;
    }
}

/// A random instant 20 to 30 s after `now`, moved to where tokio's timer wakes the worker once
/// for it ([`crate::wheel`]).
fn next_ping_after(now: Instant) -> Instant {
    let pick = MIN_INTERVAL_MS + rand::random::<u64>() % (MAX_INTERVAL_MS - MIN_INTERVAL_MS);
    crate::wheel::align(
        now + Duration::from_millis(pick),
        now + Duration::from_millis(MIN_INTERVAL_MS),
        now + Duration::from_millis(MAX_INTERVAL_MS),
    )
}

/// The answer to our ping.
pub(crate) fn on_pong(ctx: &mut Ctx<'_>, _result: &Node) -> Actions {
    if let Stage::Online(keepalive) = ctx.stage {
        keepalive.answered();
    }
    Actions::none()
}

/// The keepalive's timer: ping when due, end the connection when a ping went unanswered.
pub(crate) fn on_tick(ctx: &mut Ctx<'_>) -> Actions {
    let Stage::Online(keepalive) = ctx.stage else {
        return Actions::none();
    };
    if keepalive.is_dead(ctx.now) {
        return Actions::end(Disconnect::Retry {
            reason: Reason::KeepaliveTimeout,
            error: "no answer to the keepalive ping".into(),
        });
    }
    if keepalive.ping_due(ctx.now) {
        return Actions::send(ctx.requests.iq(Purpose::Ping, "w:p", "get", vec![]));
    }
    Actions::none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn pings_on_the_interval_and_dies_without_an_answer() {
        let t0 = Instant::now();
        let mut k = Keepalive::new(t0);
        assert!(!k.ping_due(t0));
        let first = k.deadline();
        assert!(first >= t0 + Duration::from_secs(20) && first < t0 + Duration::from_secs(30));
        assert!(k.ping_due(first));
        assert!(!k.ping_due(first), "one ping in flight at a time");
        assert!(!k.is_dead(first + PING_DEADLINE - Duration::from_millis(1)));
        assert!(k.is_dead(first + PING_DEADLINE));
        k.answered();
        assert!(!k.is_dead(first + PING_DEADLINE));
        assert!(k.deadline() > first);
    }
}
