//! The fleet-wide handshake budget, as data: every dial of every worker (boot, restarts,
//! reconnects, the 515 after pairing, QR requests) waits for a permit from it, so a server that
//! drops every socket at once does not get every account dialling again within a second.
//!
//! - At most [`BudgetConfig::concurrency`] handshakes are in flight.
//! - At most [`BudgetConfig::rate`] permits a second are granted: a token bucket holding up to
//!   [`BudgetConfig::burst`] tokens (the rate rounded up, at least 1), full at start. In any one
//!   second at most `burst + rate` permits go out.
//! - Waiting accounts are served first come, first served.
//! - A permit comes back when the worker says its handshake ended (`DialDone`), when the worker
//!   exits or its link closes, or after [`BudgetConfig::hold`] (above the worker's 20 s
//!   handshake deadline) when the worker never says.
//!
//! [`Budget`] does no IO and reads no clock: every call takes the instant, and returns the
//! permits to hand out. The fleet task sends them, and wakes it at [`Budget::next_wake`].

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ipc_protocol::AccountId;
use tokio::time::Instant;

/// Units of a token: one token is this many, so the bucket refills in integers, exactly for any
/// rate with three decimals.
const UNITS: u128 = 1_000_000_000;
/// Permits granted within this window count as "dials per minute".
const MINUTE: Duration = Duration::from_secs(60);

/// The budget's limits.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BudgetConfig {
    /// Handshakes in flight at most (`HANDSHAKE_CONCURRENCY`).
    pub concurrency: u32,
    /// New dials a second at most (`HANDSHAKE_RATE`); positive, three decimals count.
    pub rate: f64,
    /// A permit not given back within this is reclaimed (`HANDSHAKE_PERMIT_TIMEOUT_MS`).
    pub hold: Duration,
}

impl BudgetConfig {
    /// The bucket's size: the rate rounded up, at least one.
    pub fn burst(&self) -> u32 {
        (self.rate.ceil() as u32).max(1)
    }

    /// The rate in thousandths of a token a second, at least 1.
    fn rate_milli(&self) -> u128 {
        ((self.rate * 1000.0).round() as u128).max(1)
    }
}

/// A permit to hand out: tell worker `pid` of account `id` that its request `seq` may dial.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Grant {
    /// The account.
    pub id: AccountId,
    /// Its worker.
    pub pid: u32,
    /// The worker's `DialRequest` `seq`.
    pub seq: u64,
}

/// What a call decided.
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct Decisions {
    /// Permits to hand out, in order.
    pub grants: Vec<Grant>,
    /// Permits taken back because their deadline passed: (account, `seq`).
    pub reclaimed: Vec<(AccountId, u64)>,
}

/// A request waiting for a permit.
#[derive(Clone, Debug)]
struct Ticket {
    id: AccountId,
    pid: u32,
    seq: u64,
}

/// A permit out.
#[derive(Clone, Debug)]
struct Held {
    id: AccountId,
    pid: u32,
    seq: u64,
    until: Instant,
}

/// The budget's numbers at one instant.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub struct BudgetStats {
    /// Permits out: handshakes in flight.
    pub in_flight: u64,
    /// Accounts waiting for a permit.
    pub waiting: u64,
    /// Permits granted in the last 60 s.
    pub dials_last_minute: u64,
    /// Permits granted since start.
    pub granted_total: u64,
    /// Permits reclaimed after their deadline since start.
    pub reclaimed_total: u64,
}

/// The handshake budget.
#[derive(Debug)]
pub struct Budget {
    config: BudgetConfig,
    /// Tokens in the bucket, in [`UNITS`].
    units: u128,
    refilled: Instant,
    queue: VecDeque<Ticket>,
    held: Vec<Held>,
    /// When each permit of the last minute was granted.
    recent: VecDeque<Instant>,
    granted_total: u64,
    reclaimed_total: u64,
}

impl Budget {
    /// A budget with a full bucket at `now`.
    pub fn new(config: BudgetConfig, now: Instant) -> Self {
        Budget {
            config,
            units: u128::from(config.burst()) * UNITS,
            refilled: now,
            queue: VecDeque::new(),
            held: Vec::new(),
            recent: VecDeque::new(),
            granted_total: 0,
            reclaimed_total: 0,
        }
    }

    /// Worker `pid` of `id` asks to dial. A request replaces whatever the account still had
    /// queued or held: a worker dials once at a time.
    pub fn request(&mut self, now: Instant, id: &AccountId, pid: u32, seq: u64) -> Decisions {
        self.forget(id);
        self.queue.push_back(Ticket {
            id: id.clone(),
            pid,
            seq,
        });
        self.pump(now)
    }

    /// Worker `pid` of `id` says the handshake of `seq` ended, or withdraws the request.
    pub fn done(&mut self, now: Instant, id: &AccountId, pid: u32, seq: u64) -> Decisions {
        let mine = |a: &AccountId, p: u32, s: u64| a == id && p == pid && s == seq;
        self.held.retain(|h| !mine(&h.id, h.pid, h.seq));
        self.queue.retain(|t| !mine(&t.id, t.pid, t.seq));
        self.pump(now)
    }

    /// Worker `pid` of `id` exited or its link closed: whatever it held or waited for is freed.
    pub fn gone(&mut self, now: Instant, id: &AccountId, pid: u32) -> Decisions {
        self.held.retain(|h| !(&h.id == id && h.pid == pid));
        self.queue.retain(|t| !(&t.id == id && t.pid == pid));
        self.pump(now)
    }

    /// Reclaims overdue permits and grants what the limits allow; call at [`Budget::next_wake`].
    pub fn pump(&mut self, now: Instant) -> Decisions {
        let mut decisions = Decisions::default();
        let mut kept = Vec::with_capacity(self.held.len());
        for held in self.held.drain(..) {
            if held.until <= now {
                self.reclaimed_total += 1;
                decisions.reclaimed.push((held.id, held.seq));
            } else {
                kept.push(held);
            }
        }
        self.held = kept;
        self.refill(now);
        while !self.queue.is_empty()
            && self.held.len() < self.config.concurrency as usize
            && self.units >= UNITS
        {
            let Some(ticket) = self.queue.pop_front() else {
                break;
            };
            self.units -= UNITS;
            self.held.push(Held {
                id: ticket.id.clone(),
                pid: ticket.pid,
                seq: ticket.seq,
                until: now + self.config.hold,
            });
            self.recent.push_back(now);
            self.granted_total += 1;
            decisions.grants.push(Grant {
                id: ticket.id,
                pid: ticket.pid,
                seq: ticket.seq,
            });
        }
        self.prune(now);
        decisions
    }

    /// When [`Budget::pump`] must run next: the next token while someone waits and a slot is
    /// free, or the first permit's deadline.
    pub fn next_wake(&self) -> Option<Instant> {
        let token = (!self.queue.is_empty() && self.held.len() < self.config.concurrency as usize)
            .then(|| {
                let missing = UNITS.saturating_sub(self.units);
                let nanos = (missing * 1000).div_ceil(self.config.rate_milli());
                self.refilled + Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
            });
        let deadline = self.held.iter().map(|h| h.until).min();
        match (token, deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The numbers at `now`.
    pub fn stats(&self, now: Instant) -> BudgetStats {
        let since = now.checked_sub(MINUTE);
        BudgetStats {
            in_flight: self.held.len() as u64,
            waiting: self.queue.len() as u64,
            dials_last_minute: self
                .recent
                .iter()
                .filter(|t| since.is_none_or(|s| **t > s))
                .count() as u64,
            granted_total: self.granted_total,
            reclaimed_total: self.reclaimed_total,
        }
    }

    /// Whether account `id` is waiting for a permit.
    pub fn is_waiting(&self, id: &AccountId) -> bool {
        self.queue.iter().any(|t| &t.id == id)
    }

    fn forget(&mut self, id: &AccountId) {
        self.held.retain(|h| &h.id != id);
        self.queue.retain(|t| &t.id != id);
    }

    fn refill(&mut self, now: Instant) {
        let cap = u128::from(self.config.burst()) * UNITS;
        let elapsed = now.saturating_duration_since(self.refilled).as_nanos();
        let added = elapsed * self.config.rate_milli() / 1000;
        self.units = (self.units + added).min(cap);
        self.refilled = now;
    }

    fn prune(&mut self, now: Instant) {
        if let Some(since) = now.checked_sub(MINUTE) {
            while self.recent.front().is_some_and(|t| *t <= since) {
                self.recent.pop_front();
            }
        }
    }
}

/// The budget's numbers for the API and `/metrics`; the fleet task is the one writer.
#[derive(Debug, Default)]
pub struct Gauges {
    in_flight: AtomicU64,
    waiting: AtomicU64,
    dials_last_minute: AtomicU64,
    granted_total: AtomicU64,
    reclaimed_total: AtomicU64,
}

impl Gauges {
    /// Publishes `stats`.
    pub fn set(&self, stats: BudgetStats) {
        self.in_flight.store(stats.in_flight, Ordering::Relaxed);
        self.waiting.store(stats.waiting, Ordering::Relaxed);
        self.dials_last_minute
            .store(stats.dials_last_minute, Ordering::Relaxed);
        self.granted_total
            .store(stats.granted_total, Ordering::Relaxed);
        self.reclaimed_total
            .store(stats.reclaimed_total, Ordering::Relaxed);
    }

    /// The last published numbers.
    pub fn get(&self) -> BudgetStats {
        BudgetStats {
            in_flight: self.in_flight.load(Ordering::Relaxed),
            waiting: self.waiting.load(Ordering::Relaxed),
            dials_last_minute: self.dials_last_minute.load(Ordering::Relaxed),
            granted_total: self.granted_total.load(Ordering::Relaxed),
            reclaimed_total: self.reclaimed_total.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> BudgetConfig {
        BudgetConfig {
            concurrency: 8,
            rate: 5.0,
            hold: Duration::from_secs(30),
        }
    }

    fn id(n: usize) -> AccountId {
        AccountId::parse(&format!("acct-{n:02}")).expect("valid")
    }

    fn granted(d: &Decisions) -> Vec<String> {
        d.grants.iter().map(|g| g.id.to_string()).collect()
    }

    /// Runs the budget's own wake-ups until nobody waits; returns when each account got its
    /// permit, as offsets from `start`, each permit given back at once.
    fn drain(budget: &mut Budget, start: Instant, give_back: bool) -> Vec<(String, Duration)> {
        let mut out = Vec::new();
        while let Some(at) = budget.next_wake() {
            if budget.stats(at).waiting == 0 {
                break;
            }
            let d = budget.pump(at);
            for g in d.grants {
                out.push((g.id.to_string(), at - start));
                if give_back {
                    budget.done(at, &g.id, g.pid, g.seq);
                }
            }
        }
        out
    }

    #[tokio::test(start_paused = true)]
    async fn a_mass_drop_of_thirty_is_served_in_order_at_the_rate() {
        let start = Instant::now();
        let mut budget = Budget::new(config(), start);
        let mut first = Vec::new();
        for n in 0..30 {
            let d = budget.request(start, &id(n), 100 + n as u32, 1);
            for g in &d.grants {
                budget.done(start, &g.id, g.pid, g.seq);
            }
            first.extend(granted(&d));
        }
        // The full bucket: five at once.
        assert_eq!(first, (0..5).map(|n| id(n).to_string()).collect::<Vec<_>>());
        assert_eq!(budget.stats(start).waiting, 25);
        let rest = drain(&mut budget, start, true);
        // Then one every 200 ms, first come first served.
        let expected: Vec<(String, Duration)> = (5..30)
            .map(|n| {
                (
                    id(n).to_string(),
                    Duration::from_millis(200 * (n as u64 - 4)),
                )
            })
            .collect();
        assert_eq!(rest, expected);
        let stats = budget.stats(start + Duration::from_secs(5));
        assert_eq!(stats.dials_last_minute, 30);
        assert_eq!(stats.granted_total, 30);
        assert_eq!(
            budget
                .stats(start + Duration::from_secs(66))
                .dials_last_minute,
            0
        );
        // In any one second, at most burst + rate permits.
        let mut times: Vec<Duration> = vec![Duration::ZERO; 5];
        times.extend(rest.iter().map(|(_, t)| *t));
        for (i, t) in times.iter().enumerate() {
            let within = times[i..]
                .iter()
                .filter(|u| **u < *t + Duration::from_secs(1))
                .count();
            assert!(within <= 10, "{within} permits in the second after {t:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn no_more_than_the_concurrency_is_in_flight() {
        let start = Instant::now();
        let cfg = BudgetConfig {
            concurrency: 2,
            rate: 100.0,
            ..config()
        };
        let mut budget = Budget::new(cfg, start);
        let mut grants = Vec::new();
        for n in 0..4 {
            grants.extend(budget.request(start, &id(n), 10 + n as u32, 7).grants);
        }
        assert_eq!(
            grants.len(),
            2,
            "two in flight, though the bucket holds 100"
        );
        assert_eq!(
            budget.next_wake(),
            Some(start + cfg.hold),
            "only a deadline"
        );
        let later = start + Duration::from_millis(500);
        let d = budget.done(later, &grants[0].id, grants[0].pid, grants[0].seq);
        assert_eq!(granted(&d), [id(2).to_string()]);
        // A stale or foreign `DialDone` frees nothing.
        assert!(budget.done(later, &grants[1].id, 999, 7).grants.is_empty());
        assert!(budget
            .done(later, &grants[1].id, grants[1].pid, 6)
            .grants
            .is_empty());
        assert_eq!(budget.stats(later).in_flight, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_permit_never_given_back_is_reclaimed_after_its_deadline() {
        let start = Instant::now();
        let cfg = BudgetConfig {
            concurrency: 1,
            ..config()
        };
        let mut budget = Budget::new(cfg, start);
        assert_eq!(
            granted(&budget.request(start, &id(0), 1, 1)),
            [id(0).to_string()]
        );
        assert!(budget.request(start, &id(1), 2, 1).grants.is_empty());
        let due = budget.next_wake().expect("a deadline");
        assert_eq!(due, start + Duration::from_secs(30));
        assert!(budget
            .pump(due - Duration::from_millis(1))
            .grants
            .is_empty());
        let d = budget.pump(due);
        assert_eq!(d.reclaimed, [(id(0), 1)]);
        assert_eq!(granted(&d), [id(1).to_string()]);
        assert_eq!(budget.stats(due).reclaimed_total, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn an_exited_worker_frees_its_permit_and_its_place_in_the_queue() {
        let start = Instant::now();
        let cfg = BudgetConfig {
            concurrency: 1,
            ..config()
        };
        let mut budget = Budget::new(cfg, start);
        budget.request(start, &id(0), 1, 1);
        budget.request(start, &id(1), 2, 1);
        budget.request(start, &id(2), 3, 1);
        assert!(budget.is_waiting(&id(1)));
        // Account 1's worker exits while waiting; a new worker of account 0 (another pid) does
        // not free the old one's permit, the old one's exit does.
        assert!(budget.gone(start, &id(1), 2).grants.is_empty());
        assert!(!budget.is_waiting(&id(1)));
        assert!(budget.gone(start, &id(0), 77).grants.is_empty());
        let d = budget.gone(start, &id(0), 1);
        assert_eq!(granted(&d), [id(2).to_string()]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_request_replaces_the_accounts_older_one() {
        let start = Instant::now();
        let mut budget = Budget::new(config(), start);
        let first = budget.request(start, &id(0), 1, 1);
        assert_eq!(first.grants.len(), 1);
        // The worker asks again (seq 2) without saying seq 1 ended: seq 1 is given back.
        let second = budget.request(start, &id(0), 1, 2);
        assert_eq!(second.grants[0].seq, 2);
        assert_eq!(budget.stats(start).in_flight, 1);
        // A withdrawn request leaves the queue.
        let cfg = BudgetConfig {
            concurrency: 1,
            ..config()
        };
        let mut budget = Budget::new(cfg, start);
        budget.request(start, &id(0), 1, 1);
        budget.request(start, &id(1), 2, 1);
        budget.done(start, &id(1), 2, 1);
        assert_eq!(budget.stats(start).waiting, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_fractional_rate_refills_exactly_and_the_bucket_holds_one() {
        let start = Instant::now();
        let cfg = BudgetConfig {
            rate: 0.5,
            ..config()
        };
        assert_eq!(cfg.burst(), 1);
        let mut budget = Budget::new(cfg, start);
        for n in 0..3 {
            budget.request(start, &id(n), n as u32, 1);
        }
        let got = drain(&mut budget, start, true);
        assert_eq!(
            got,
            [
                (id(1).to_string(), Duration::from_secs(2)),
                (id(2).to_string(), Duration::from_secs(4)),
            ]
        );
        // After a long quiet spell the bucket holds one token, not more.
        let later = start + Duration::from_secs(100);
        let grants: usize = (3..6)
            .map(|n| budget.request(later, &id(n), n as u32, 1).grants.len())
            .sum();
        assert_eq!(grants, 1);
    }
}
