//! Reconnect backoff: `min(base * 2^n, max)` with jitter, and the slow lane after too many tries.

use std::time::Duration;

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
    pub(crate) fn after_failure(&self, attempt: u32, jitter: f64) -> Retry {
        if attempt >= self.max_attempts {
            return Retry::Slow(SLOW_RETRY);
        }
        let exp = attempt.saturating_sub(1).min(31);
        let raw = self.base.saturating_mul(1u32 << exp).min(self.max);
        let spread = 0.8 + 0.4 * jitter.clamp(0.0, 1.0);
        Retry::Soon(raw.mul_f64(spread).min(self.max))
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
        }
    }

    #[test]
    fn doubles_from_base_up_to_max() {
        let b = backoff();
        let delays: Vec<_> = (1..=7).map(|n| b.after_failure(n, 0.5)).collect();
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
            b.after_failure(2, 0.0),
            Retry::Soon(Duration::from_millis(1600))
        );
        assert_eq!(
            b.after_failure(2, 0.999_999),
            Retry::Soon(Duration::from_millis(2000).mul_f64(0.8 + 0.4 * 0.999_999))
        );
        assert_eq!(
            b.after_failure(9, 0.999),
            Retry::Soon(Duration::from_millis(30000))
        );
    }

    #[test]
    fn goes_slow_after_max_attempts() {
        let b = backoff();
        assert!(matches!(b.after_failure(9, 0.5), Retry::Soon(_)));
        assert_eq!(b.after_failure(10, 0.5), Retry::Slow(SLOW_RETRY));
        assert_eq!(b.after_failure(500, 0.5), Retry::Slow(SLOW_RETRY));
    }
}
