//! The boot plan: which accounts start, in which order, with which gaps. Pure.

use std::time::Duration;

use ipc_protocol::AccountId;
use rand::Rng;

/// The gaps between consecutive spawns: uniform in `[min, max)` (exactly `min` when equal).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct Jitter {
    /// Shortest gap.
    pub min: Duration,
    /// Gaps stay below this.
    pub max: Duration,
}

impl Jitter {
    /// One gap drawn from `rng`.
    pub fn draw(&self, rng: &mut impl Rng) -> Duration {
        if self.max <= self.min {
            return self.min;
        }
        let span = (self.max - self.min).as_micros() as u64;
        self.min + Duration::from_micros(rng.gen_range(0..span))
    }
}

/// Orders `ids` by byte order and gives each the gap to wait before spawning it (none before the
/// first).
pub fn plan(
    mut ids: Vec<AccountId>,
    jitter: Jitter,
    rng: &mut impl Rng,
) -> Vec<(AccountId, Duration)> {
    ids.sort_by(|a, b| a.as_str().as_bytes().cmp(b.as_str().as_bytes()));
    ids.into_iter()
        .enumerate()
        .map(|(i, id)| {
            let gap = if i == 0 {
                Duration::ZERO
            } else {
                jitter.draw(rng)
            };
            (id, gap)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn ids(names: &[&str]) -> Vec<AccountId> {
        names
            .iter()
            .map(|n| AccountId::parse(n).expect("valid"))
            .collect()
    }

    const DEFAULT: Jitter = Jitter {
        min: Duration::from_millis(2000),
        max: Duration::from_millis(4000),
    };

    #[test]
    fn orders_by_bytes_not_locale() {
        let mut rng = StdRng::seed_from_u64(1);
        let order: Vec<_> = plan(
            ids(&["b", "a_1", "a-2", "a1", "10", "9"]),
            DEFAULT,
            &mut rng,
        )
        .into_iter()
        .map(|(id, _)| id.to_string())
        .collect();
        assert_eq!(order, ["10", "9", "a-2", "a1", "a_1", "b"]);
    }

    #[test]
    fn every_gap_is_inside_the_bounds_and_the_first_is_zero() {
        for seed in 0..200 {
            let mut rng = StdRng::seed_from_u64(seed);
            let names: Vec<String> = (0..30).map(|i| format!("acct-{i:02}")).collect();
            let refs: Vec<&str> = names.iter().map(String::as_str).collect();
            let p = plan(ids(&refs), DEFAULT, &mut rng);
            assert_eq!(p[0].1, Duration::ZERO);
            for (_, gap) in &p[1..] {
                assert!(*gap >= DEFAULT.min && *gap < DEFAULT.max, "{gap:?}");
            }
        }
    }

    #[test]
    fn thirty_accounts_start_within_two_minutes_whatever_the_dice() {
        // 29 gaps, each strictly below 4 s: the worst case is below 116 s.
        let worst = DEFAULT.max * 29;
        assert!(worst <= Duration::from_secs(120));
        let mut rng = StdRng::seed_from_u64(7);
        let names: Vec<String> = (0..30).map(|i| format!("a{i:02}")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let total: Duration = plan(ids(&refs), DEFAULT, &mut rng)
            .iter()
            .map(|(_, g)| *g)
            .sum();
        assert!(total < Duration::from_secs(120));
    }
}
