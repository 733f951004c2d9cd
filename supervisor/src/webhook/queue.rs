//! The delivery decisions, apart from their effects: one queue per target URL, delivered in
//! event-id order, one attempt in flight per target, a failing target backed off without holding
//! up the others, expiry by age, and the bound on the whole set. Fed explicit instants and
//! random draws; the task in `mod.rs` carries out what it decides.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use tokio::time::Instant;

use super::backoff::Backoff;
use super::pending::{Delivery, TargetKind};
use super::url::WebhookUrl;

type Key = (u64, TargetKind);

#[derive(Debug, Default)]
struct Target {
    items: BTreeMap<Key, Delivery>,
    failures: u32,
    retry_at: Option<Instant>,
    in_flight: bool,
}

/// What [`Queues::take_due`] decided.
#[derive(Debug, Default, Eq, PartialEq)]
pub struct Due {
    /// Heads to attempt now; each target is marked in flight until its outcome comes back.
    pub send: Vec<Delivery>,
    /// Heads older than the max age: given up (their targets move on to the next).
    pub expired: Vec<Delivery>,
}

/// Every pending delivery, by target.
#[derive(Debug)]
pub struct Queues {
    targets: HashMap<WebhookUrl, Target>,
    len: usize,
    max_len: usize,
    max_age: Duration,
    backoff: Backoff,
}

impl Queues {
    /// Empty queues holding at most `max_len` deliveries (at least one).
    pub fn new(max_len: usize, max_age: Duration, backoff: Backoff) -> Self {
        Queues {
            targets: HashMap::new(),
            len: 0,
            max_len: max_len.max(1),
            max_age,
            backoff,
        }
    }

    /// Deliveries pending.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Makes room for `incoming` more deliveries: while they would not fit, gives up the oldest
    /// account event that is not in flight, else the oldest delivery that is not. Returns what
    /// was given up.
    pub fn make_room(&mut self, incoming: usize) -> Vec<Delivery> {
        let mut dropped = Vec::new();
        while self.len + incoming > self.max_len {
            let Some((url, key)) = self.oldest_idle(true).or_else(|| self.oldest_idle(false))
            else {
                break;
            };
            if let Some(d) = self.remove(&url, key) {
                dropped.push(d);
            }
        }
        dropped
    }

    fn oldest_idle(&self, account_only: bool) -> Option<(WebhookUrl, Key)> {
        self.targets
            .iter()
            .filter_map(|(url, t)| {
                t.items
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| !(t.in_flight && *i == 0))
                    .map(|(_, (k, d))| (k, d))
                    .find(|(_, d)| !account_only || d.is_account_event())
                    .map(|(k, _)| (url.clone(), *k))
            })
            .min_by_key(|(_, k)| *k)
    }

    /// Adds a delivery to its target's queue (call [`Queues::make_room`] first).
    pub fn push(&mut self, delivery: Delivery) {
        let target = self.targets.entry(delivery.url.clone()).or_default();
        let key = (delivery.event_id, delivery.target);
        if target.items.insert(key, delivery).is_none() {
            self.len += 1;
        }
    }

    /// Takes the head of every target that is idle and not backing off; heads older than the
    /// max age at `now_ms` (Unix milliseconds) are given up instead.
    pub fn take_due(&mut self, now: Instant, now_ms: u64) -> Due {
        let mut due = Due::default();
        let max_age_ms = u64::try_from(self.max_age.as_millis()).unwrap_or(u64::MAX);
        for target in self.targets.values_mut() {
            if target.in_flight || target.retry_at.is_some_and(|at| at > now) {
                continue;
            }
            while let Some(entry) = target.items.first_entry() {
                if now_ms.saturating_sub(entry.get().timestamp_ms) > max_age_ms {
                    due.expired.push(entry.remove());
                    self.len -= 1;
                    continue;
                }
                target.in_flight = true;
                due.send.push(entry.get().clone());
                break;
            }
        }
        self.targets
            .retain(|_, t| !t.items.is_empty() || t.failures > 0);
        due.send.sort_by_key(|d| (d.event_id, d.target));
        due
    }

    /// When a backed-off target next becomes due, if any is waiting.
    pub fn next_retry(&self) -> Option<Instant> {
        self.targets
            .values()
            .filter(|t| !t.in_flight && !t.items.is_empty())
            .filter_map(|t| t.retry_at)
            .min()
    }

    /// Whether some target could send right now.
    pub fn has_ready(&self, now: Instant) -> bool {
        self.targets
            .values()
            .any(|t| !t.in_flight && !t.items.is_empty() && t.retry_at.is_none_or(|at| at <= now))
    }

    /// A 2xx: the delivery is done and its target's backoff resets.
    pub fn delivered(&mut self, delivery: &Delivery) {
        if let Some(t) = self.targets.get_mut(&delivery.url) {
            t.in_flight = false;
            t.failures = 0;
            t.retry_at = None;
        }
        self.remove(&delivery.url, (delivery.event_id, delivery.target));
    }

    /// A failed attempt: the delivery stays at the head and its target waits; `unit` is a
    /// random draw in `[0, 1)`. Returns the wait.
    pub fn failed(&mut self, delivery: &Delivery, now: Instant, unit: f64) -> Duration {
        let target = self.targets.entry(delivery.url.clone()).or_default();
        target.in_flight = false;
        target.failures = target.failures.saturating_add(1);
        let wait = self.backoff.delay(target.failures, unit);
        target.retry_at = Some(now + wait);
        wait
    }

    /// The delivery cannot be attempted (its file is gone): forget it, keep the backoff.
    pub fn discard(&mut self, delivery: &Delivery) {
        if let Some(t) = self.targets.get_mut(&delivery.url) {
            t.in_flight = false;
        }
        self.remove(&delivery.url, (delivery.event_id, delivery.target));
    }

    fn remove(&mut self, url: &WebhookUrl, key: Key) -> Option<Delivery> {
        let target = self.targets.get_mut(url)?;
        let removed = target.items.remove(&key);
        if removed.is_some() {
            self.len -= 1;
        }
        if target.items.is_empty() && !target.in_flight && target.failures == 0 {
            self.targets.remove(url);
        }
        removed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY_MS: u64 = 86_400_000;
    const BACKOFF: Backoff = Backoff {
        base: Duration::from_secs(1),
        max: Duration::from_secs(600),
    };

    fn d(url: &str, id: u64, kind: &str, ts: u64) -> Delivery {
        Delivery {
            event_id: id,
            target: TargetKind::Global,
            url: WebhookUrl::parse(url).expect("url"),
            kind: kind.into(),
            timestamp_ms: ts,
        }
    }

    fn ids(v: &[Delivery]) -> Vec<u64> {
        v.iter().map(|d| d.event_id).collect()
    }

    fn queues(max: usize) -> Queues {
        Queues::new(max, Duration::from_millis(DAY_MS), BACKOFF)
    }

    #[test]
    fn each_target_sends_in_id_order_one_at_a_time() {
        let mut q = queues(100);
        let now = Instant::now();
        for id in [3, 1, 2] {
            q.push(d("http://a.test/", id, "message.received", 0));
        }
        q.push(d("http://b.test/", 7, "account.status", 0));
        let due = q.take_due(now, 1);
        assert_eq!(ids(&due.send), [1, 7]);
        assert!(q.take_due(now, 1).send.is_empty(), "both in flight");
        q.delivered(&due.send[0]);
        assert_eq!(ids(&q.take_due(now, 1).send), [2]);
        assert_eq!(q.len(), 3);
    }

    #[test]
    fn a_failing_target_backs_off_without_holding_up_another() {
        let mut q = queues(100);
        let t0 = Instant::now();
        q.push(d("http://down.test/", 1, "message.received", 0));
        q.push(d("http://up.test/", 2, "message.received", 0));
        q.push(d("http://up.test/", 3, "message.received", 0));
        let due = q.take_due(t0, 1);
        let (down, up) = (&due.send[0], &due.send[1]);
        assert_eq!(q.failed(down, t0, 0.0), Duration::from_millis(500));
        q.delivered(up);
        assert_eq!(ids(&q.take_due(t0, 1).send), [3], "up goes on");
        assert_eq!(q.next_retry(), Some(t0 + Duration::from_millis(500)));
        assert!(!q.has_ready(t0));

        let t1 = t0 + Duration::from_millis(500);
        let again = q.take_due(t1, 1);
        assert_eq!(ids(&again.send), [1], "same head retried");
        assert_eq!(
            q.failed(&again.send[0], t1, 0.0),
            Duration::from_secs(1),
            "doubled"
        );
        let t2 = t1 + Duration::from_secs(1);
        let third = q.take_due(t2, 1);
        q.delivered(&third.send[0]);
        q.push(d("http://down.test/", 9, "message.received", 0));
        let after = q.take_due(t2, 1);
        assert_eq!(ids(&after.send), [9], "a 2xx resets the backoff");
        assert_eq!(
            q.failed(&after.send[0], t2, 0.0),
            Duration::from_millis(500)
        );
    }

    #[test]
    fn heads_older_than_the_max_age_are_given_up() {
        let mut q = queues(100);
        let now = Instant::now();
        let t = 10 * DAY_MS;
        q.push(d("http://a.test/", 1, "message.received", t - DAY_MS - 1));
        q.push(d("http://a.test/", 2, "message.received", t - DAY_MS));
        let due = q.take_due(now, t);
        assert_eq!(ids(&due.expired), [1]);
        assert_eq!(ids(&due.send), [2], "exactly the max age is still sent");
        assert_eq!(q.len(), 1);
    }

    #[test]
    fn when_full_the_oldest_idle_account_events_go_first() {
        let mut q = queues(3);
        let now = Instant::now();
        q.push(d("http://a.test/", 1, "message.received", 0));
        q.push(d("http://a.test/", 2, "account.status", 0));
        q.push(d("http://b.test/", 3, "account.qr", 0));
        let dropped = q.make_room(1);
        assert_eq!(ids(&dropped), [2]);
        q.push(d("http://b.test/", 4, "message.received", 0));
        assert_eq!(ids(&q.make_room(1)), [3]);
        q.push(d("http://b.test/", 5, "message.received", 0));
        let due = q.take_due(now, 1);
        assert_eq!(ids(&due.send), [1, 4]);
        assert_eq!(ids(&q.make_room(1)), [5], "heads in flight are kept");
        assert_eq!(q.len(), 2);
    }
}
