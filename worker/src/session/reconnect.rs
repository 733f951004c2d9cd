//! Reconnect backoff: `min(base * 2^n, max)` with jitter, and the slow lane after too many tries.
//!
//! - The attempt counter counts every connection that ended before it was stable, logged in or
//!   not: it starts over only once a connection has stayed up for [`Backoff::reset_after`]
//!   (60 s by default), never at `<success>`, so a server that ends the stream right after each
//!   login sees the delays grow.
//! - A 515 (restart required) reconnects at once only after the pairing or a stable connection;
//!   a 515 on a connection that was not stable counts as a failure like any other.
//! - A 429 (rate limited) waits as if [`RATE_LIMIT_STEPS`] more attempts had failed, as
//!   whatsapp-rust does; it still counts as one attempt toward the slow lane.

use std::time::Duration;

use ipc_protocol::Reason;

/// Extra doubling steps after a 429 (whatsapp-rust adds 5 to its counter).
pub(crate) const RATE_LIMIT_STEPS: u32 = 5;

/// The interval between retries once `max_attempts` fast retries have failed.
pub(crate) const SLOW_RETRY: Duration = Duration::from_secs(5 * 60);

/// How long to wait before the next connection attempt.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(crate) struct Backoff {
    /// The first delay.
    pub(crate) base: Duration,
    /// The longest delay.
    pub(crate) max: Duration,
    /// Failed attempts after which the account is `disconnected` and retries slowly.
    pub(crate) max_attempts: u32,
    /// A connection up this long is stable: the counter starts over.
    pub(crate) reset_after: Duration,
}

/// What to do about a `515` (restart required).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(crate) enum RestartPlan {
    /// Dial again at once (after the pairing, or a stable connection).
    Now,
    /// Count it as a failure and back off.
    Backoff,
}

/// What to do after the `attempt`-th consecutive failure.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(crate) enum Retry {
    /// Status `reconnecting`: try again after this delay.
    Soon(Duration),
    /// Status `disconnected`: the fast retries are spent; try again after [`SLOW_RETRY`].
    Slow(Duration),
}

impl Backoff {
    /// The decision after `attempt` (1-based) consecutive failures; `jitter` is a uniform draw in
    /// `[0, 1)` that spreads the delay over ±20 % so accounts that fail together do not retry
    /// together.
    /// `extra_steps` doublings are added to the delay (not to the count), see [`steps_for`].
    pub(crate) fn after_failure(&self, attempt: u32, extra_steps: u32, jitter: f64) -> Retry {
        if attempt >= self.max_attempts {
            return Retry::Slow(SLOW_RETRY);
        }
        let exp = attempt
            .saturating_sub(1)
            .saturating_add(extra_steps)
            .min(31);
        let raw = self.base.saturating_mul(1u32 << exp).min(self.max);
        let spread = 0.8 + 0.4 * jitter.clamp(0.0, 1.0);
        Retry::Soon(raw.mul_f64(spread).min(self.max))
    }

    /// Whether a connection logged in for `up` was stable.
    pub(crate) fn is_stable(&self, up: Duration) -> bool {
        up >= self.reset_after
    }

    /// A 515 ended a connection: `registration` when it was the pairing connection, `up` how
    /// long it had been logged in (`None`: it never was).
    pub(crate) fn on_restart(&self, registration: bool, up: Option<Duration>) -> RestartPlan {
        if registration || up.is_some_and(|up| self.is_stable(up)) {
            RestartPlan::Now
        } else {
            RestartPlan::Backoff
        }
    }
}

/// Extra doubling steps for a failure of this kind: [`RATE_LIMIT_STEPS`] for a 429.
pub(crate) fn steps_for(reason: &Reason) -> u32 {
    match reason {
        Reason::ServerError(429) => RATE_LIMIT_STEPS,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backoff() -> Backoff {
        Backoff {
            base: Duration::from_millis(1000),
            max: Duration::from_millis(30000),
            max_attempts: 10,
            reset_after: Duration::from_secs(60),
        }
    }

    fn soon(ms: u64) -> Retry {
        Retry::Soon(Duration::from_millis(ms))
    }

    #[test]
    fn doubles_from_base_up_to_max() {
        let b = backoff();
        let delays: Vec<_> = (1..=7).map(|n| b.after_failure(n, 0, 0.5)).collect();
        let ms = |d: Duration| Retry::Soon(Duration::from_millis(d.as_millis() as u64));
        assert_eq!(
            delays,
            [1000, 2000, 4000, 8000, 16000, 30000, 30000]
                .map(|m| ms(Duration::from_millis(m)))
                .to_vec()
        );
    }

    #[test]
    fn jitter_stays_within_twenty_percent_and_under_max() {
        let b = backoff();
        assert_eq!(
            b.after_failure(2, 0, 0.0),
            Retry::Soon(Duration::from_millis(1600))
        );
        assert_eq!(
            b.after_failure(2, 0, 0.999_999),
            Retry::Soon(Duration::from_millis(2000).mul_f64(0.8 + 0.4 * 0.999_999))
        );
        assert_eq!(
            b.after_failure(9, 0, 0.999),
            Retry::Soon(Duration::from_millis(30000))
        );
    }

    #[test]
    fn goes_slow_after_max_attempts() {
        let b = backoff();
        assert!(matches!(b.after_failure(9, 0, 0.5), Retry::Soon(_)));
        assert_eq!(b.after_failure(10, 0, 0.5), Retry::Slow(SLOW_RETRY));
        assert_eq!(b.after_failure(500, 0, 0.5), Retry::Slow(SLOW_RETRY));
    }

    #[test]
    fn a_rate_limit_waits_five_steps_longer_but_counts_once() {
        let b = Backoff {
            max: Duration::from_secs(900),
            ..backoff()
        };
        let steps = steps_for(&Reason::ServerError(429));
        assert_eq!(steps, 5);
        assert_eq!(b.after_failure(1, steps, 0.5), soon(32_000));
        assert_eq!(b.after_failure(2, steps, 0.5), soon(64_000));
        // Under the default cap of 30 s, a 429 waits the longest delay at once.
        assert_eq!(backoff().after_failure(1, steps, 0.5), soon(30_000));
        // Every other failure takes the plain steps.
        for reason in [
            Reason::ServerError(409),
            Reason::ServerError(500),
            Reason::ServerError(503),
            Reason::Network,
        ] {
            assert_eq!(steps_for(&reason), 0, "{reason}");
        }
        assert_eq!(b.after_failure(9, steps, 0.5), soon(900_000));
        assert_eq!(b.after_failure(10, steps, 0.5), Retry::Slow(SLOW_RETRY));
    }

    #[test]
    fn a_login_that_ends_at_once_backs_off_like_a_failed_dial() {
        // The counter is not reset by `<success>`: each short-lived login is one more attempt,
        // so the delays are those of consecutive failures.
        let b = backoff();
        let delays: Vec<Retry> = (1..=6).map(|n| b.after_failure(n, 0, 0.5)).collect();
        assert_eq!(
            delays,
            [
                soon(1000),
                soon(2000),
                soon(4000),
                soon(8000),
                soon(16000),
                soon(30000)
            ]
        );
        assert!(!b.is_stable(Duration::from_millis(59_999)));
        assert!(b.is_stable(Duration::from_secs(60)));
    }

    #[test]
    fn a_restart_is_immediate_only_after_pairing_or_a_stable_connection() {
        let b = backoff();
        assert_eq!(b.on_restart(true, None), RestartPlan::Now);
        assert_eq!(
            b.on_restart(false, Some(Duration::from_secs(60))),
            RestartPlan::Now
        );
        assert_eq!(
            b.on_restart(false, Some(Duration::from_secs(59))),
            RestartPlan::Backoff
        );
        assert_eq!(b.on_restart(false, None), RestartPlan::Backoff);
    }
}
