//! How long a target waits after failures: `base * 2^(failures-1)`, capped at `max`, then
//! jittered into its upper half so that many targets failing together do not retry together.
//! Pure: the caller supplies the random draw.

use std::time::Duration;

/// A target's retry schedule.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct Backoff {
    /// The delay after the first failure, before jitter.
    pub base: Duration,
    /// No delay exceeds this.
    pub max: Duration,
}

impl Backoff {
    /// The delay before jitter after `failures` consecutive failures (1 or more).
    pub fn ceiling(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(32);
        self.base
            .checked_mul(1u32 << doublings.min(31))
            .unwrap_or(self.max)
            .min(self.max)
    }

    /// The delay after `failures` consecutive failures; `unit` is a random draw in `[0, 1)`
    /// that places it between half the ceiling and the ceiling.
    pub fn delay(&self, failures: u32, unit: f64) -> Duration {
        let ceiling = self.ceiling(failures);
        let half = ceiling / 2;
        half + (ceiling - half).mul_f64(unit.clamp(0.0, 1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCHEDULE: Backoff = Backoff {
        base: Duration::from_secs(1),
        max: Duration::from_secs(600),
    };

    #[test]
    fn doubles_from_the_base_up_to_the_cap() {
        let secs: Vec<u64> = (1..=12).map(|n| SCHEDULE.ceiling(n).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 600, 600]);
        assert_eq!(SCHEDULE.ceiling(u32::MAX), Duration::from_secs(600));
        assert_eq!(SCHEDULE.ceiling(0), Duration::from_secs(1));
    }

    #[test]
    fn jitter_stays_in_the_upper_half() {
        assert_eq!(SCHEDULE.delay(4, 0.0), Duration::from_secs(4));
        assert_eq!(SCHEDULE.delay(4, 0.5), Duration::from_secs(6));
        assert_eq!(
            SCHEDULE.delay(4, 0.999_999),
            Duration::from_micros(7_999_996)
        );
        assert_eq!(SCHEDULE.delay(40, 1.0), Duration::from_secs(600));
    }
}
