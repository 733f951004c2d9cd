//! The boot plan: which accounts start, in which order, with which gaps; and how they stand
//! once boot has settled (the `boot complete: 28/30 connected, 2 need QR, in 97 s` line the
//! seed's operators look for). Pure.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::time::Duration;

use ipc_protocol::{AccountId, WorkerStatus};
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

/// How long boot may take to settle after its last spawn is due: past this the line is logged
/// anyway, naming the accounts still on their way (a network outage at boot, say).
pub fn settle_deadline(plan: &[(AccountId, Duration)]) -> Duration {
    let spawns: Duration = plan.iter().map(|(_, gap)| *gap).sum();
    // Connecting takes a second or two an account, behind a fleet-wide handshake budget.
    let per_account = Duration::from_millis(200).saturating_mul(plan.len() as u32);
    spawns + Duration::from_secs(120) + per_account
}

/// How the accounts stand at the end of boot.
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct BootOutcome {
    /// Accounts in all.
    pub total: usize,
    /// Connected.
    pub connected: usize,
    /// Waiting for a QR scan (never paired).
    pub need_qr: usize,
    /// Booted accounts still on their way: not spawned yet, connecting or reconnecting.
    pub on_their_way: usize,
    /// Every other status and its count (logged out, banned, failed, ...).
    pub others: BTreeMap<WorkerStatus, usize>,
}

impl BootOutcome {
    /// Counts `accounts` (id and status); `booted` are the accounts of the boot plan.
    pub fn of<'a>(
        accounts: impl Iterator<Item = (&'a AccountId, WorkerStatus)>,
        booted: &HashSet<AccountId>,
    ) -> Self {
        let mut out = BootOutcome::default();
        for (id, status) in accounts {
            out.total += 1;
            match status {
                WorkerStatus::Connected => out.connected += 1,
                WorkerStatus::NeedsQr => out.need_qr += 1,
                WorkerStatus::Connecting | WorkerStatus::Reconnecting => out.on_their_way += 1,
                // A booted account is `stopped` until its turn in the plan comes.
                WorkerStatus::Stopped if booted.contains(id) => out.on_their_way += 1,
                other => *out.others.entry(other).or_default() += 1,
            }
        }
        out
    }

    /// Every booted account has arrived somewhere.
    pub fn settled(&self) -> bool {
        self.on_their_way == 0
    }
}

/// `28/30 connected, 2 need QR`, then any other status, then `3 still connecting`.
impl fmt::Display for BootOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{} connected, {} need QR",
            self.connected, self.total, self.need_qr
        )?;
        for (status, n) in &self.others {
            write!(f, ", {n} {status}")?;
        }
        if self.on_their_way > 0 {
            write!(f, ", {} still connecting", self.on_their_way)?;
        }
        Ok(())
    }
}

/// `97 s`, or `4.2 s` below ten seconds.
pub fn seconds(elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64();
    if secs < 10.0 {
        format!("{secs:.1} s")
    } else {
        format!("{secs:.0} s")
    }
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

    #[test]
    fn the_outcome_counts_what_the_seed_logged_and_waits_for_booted_accounts() {
        let names = ids(&["a", "b", "c", "d", "e", "f"]);
        let booted: HashSet<AccountId> = names[..4].iter().cloned().collect();
        let statuses = [
            WorkerStatus::Connected,
            WorkerStatus::Connected,
            WorkerStatus::Stopped,
            WorkerStatus::Reconnecting,
            WorkerStatus::NeedsQr,
            WorkerStatus::Stopped,
        ];
        let out = BootOutcome::of(names.iter().zip(statuses), &booted);
        assert!(!out.settled());
        assert_eq!(
            out.to_string(),
            "2/6 connected, 1 need QR, 1 stopped, 2 still connecting"
        );
        let statuses = [
            WorkerStatus::Connected,
            WorkerStatus::Connected,
            WorkerStatus::Failed,
            WorkerStatus::Connected,
            WorkerStatus::NeedsQr,
            WorkerStatus::Stopped,
        ];
        let out = BootOutcome::of(names.iter().zip(statuses), &booted);
        assert!(out.settled());
        assert_eq!(
            out.to_string(),
            "3/6 connected, 1 need QR, 1 failed, 1 stopped"
        );
        let seed = BootOutcome {
            total: 30,
            connected: 28,
            need_qr: 2,
            ..BootOutcome::default()
        };
        assert_eq!(
            format!(
                "boot complete: {seed}, in {}",
                seconds(Duration::from_millis(97_400))
            ),
            "boot complete: 28/30 connected, 2 need QR, in 97 s"
        );
        assert_eq!(seconds(Duration::from_millis(4_240)), "4.2 s");
    }

    #[test]
    fn the_settle_deadline_covers_the_spawns_and_the_handshakes() {
        let plan: Vec<_> = ids(&["a", "b"])
            .into_iter()
            .zip([Duration::ZERO, Duration::from_secs(3)])
            .collect();
        assert_eq!(settle_deadline(&plan), Duration::from_millis(123_400));
    }
}
