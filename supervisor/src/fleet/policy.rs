//! The restart policy of crashed workers: data plus a pure function fed explicit instants.
//!
//! An OTP `transient` child: an exit we asked for is not restarted; any other exit is a crash.
//! Crashes restart after `base`, doubling up to `max`; a worker that stayed up `reset_after`
//! starts over at `base`. More than `max_crashes` crashes within `window` parks the account.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

/// The restart policy.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct RestartPolicy {
    /// First restart delay.
    pub base: Duration,
    /// Longest restart delay.
    pub max: Duration,
    /// Uptime after which the delay starts over at `base`.
    pub reset_after: Duration,
    /// The crash-counting window.
    pub window: Duration,
    /// Crashes allowed within `window`; one more parks the account.
    pub max_crashes: usize,
}

impl RestartPolicy {
    /// 1 s doubling to 60 s, reset after 5 minutes up, parked after more than 5 crashes in 10
    /// minutes; `base` replaces the 1 s.
    pub fn with_base(base: Duration) -> Self {
        RestartPolicy {
            base,
            max: crate::config::RESTART_BACKOFF_MAX,
            reset_after: Duration::from_secs(5 * 60),
            window: Duration::from_secs(10 * 60),
            max_crashes: 5,
        }
    }
}

/// What to do with a crashed worker.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Decision {
    /// Start it again after this delay.
    Restart(Duration),
    /// Crash loop: leave it stopped (`failed`, `crash_loop`) until an admin restarts it.
    Park,
}

/// One account's crash record.
#[derive(Clone, Debug, Default)]
pub struct CrashHistory {
    crashes: VecDeque<Instant>,
    consecutive: u32,
}

impl CrashHistory {
    /// Records a crash at `now` of a worker started at `started_at` and decides.
    pub fn on_crash(
        &mut self,
        policy: &RestartPolicy,
        started_at: Instant,
        now: Instant,
    ) -> Decision {
        if now.saturating_duration_since(started_at) >= policy.reset_after {
            self.consecutive = 0;
        }
        self.crashes.push_back(now);
        while self
            .crashes
            .front()
            .is_some_and(|&t| now.saturating_duration_since(t) > policy.window)
        {
            self.crashes.pop_front();
        }
        if self.crashes.len() > policy.max_crashes {
            return Decision::Park;
        }
        let delay = policy
            .base
            .saturating_mul(1u32 << self.consecutive.min(20))
            .min(policy.max);
        self.consecutive = self.consecutive.saturating_add(1);
        Decision::Restart(delay)
    }

    /// Forgets every crash (an admin restarted the account).
    pub fn clear(&mut self) {
        *self = CrashHistory::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn delays_double_from_one_second_to_sixty() {
        let policy = RestartPolicy {
            max_crashes: 100,
            ..RestartPolicy::with_base(S)
        };
        let mut h = CrashHistory::default();
        let t0 = Instant::now();
        let delays: Vec<_> = (0..8)
            .map(|i| match h.on_crash(&policy, t0, t0 + S * i) {
                Decision::Restart(d) => d.as_secs(),
                Decision::Park => panic!("not parked"),
            })
            .collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 60, 60]);
    }

    #[test]
    fn five_minutes_up_resets_the_delay() {
        let policy = RestartPolicy::with_base(S);
        let mut h = CrashHistory::default();
        let t0 = Instant::now();
        assert_eq!(h.on_crash(&policy, t0, t0 + S), Decision::Restart(S));
        assert_eq!(
            h.on_crash(&policy, t0 + S, t0 + 2 * S),
            Decision::Restart(2 * S)
        );
        let started = t0 + 3 * S;
        let crashed = started + Duration::from_secs(300);
        assert_eq!(h.on_crash(&policy, started, crashed), Decision::Restart(S));
    }

    #[test]
    fn a_sixth_crash_within_ten_minutes_parks() {
        let policy = RestartPolicy::with_base(S);
        let mut h = CrashHistory::default();
        let t0 = Instant::now();
        for i in 0..5 {
            assert!(matches!(
                h.on_crash(&policy, t0, t0 + S * i),
                Decision::Restart(_)
            ));
        }
        assert_eq!(h.on_crash(&policy, t0, t0 + S * 5), Decision::Park);
    }

    #[test]
    fn crashes_older_than_the_window_do_not_count() {
        let policy = RestartPolicy::with_base(S);
        let mut h = CrashHistory::default();
        let t0 = Instant::now();
        for i in 0..5 {
            h.on_crash(&policy, t0, t0 + S * i);
        }
        let later = t0 + Duration::from_secs(11 * 60);
        assert!(matches!(
            h.on_crash(&policy, later, later),
            Decision::Restart(_)
        ));
    }
}
