//! Deadlines that wake the worker once.
//!
//! tokio's timer wheel files a deadline by how far away it is: 64 ms to 262 s away, in a slot of
//! 64 ms or 4,096 ms (ticks of 1 ms counted from the runtime's start). The runtime sleeps until
//! the start of the earliest occupied slot, then files what is not yet due one level lower, and
//! sleeps again: a keepalive sleep of 20 to 30 s woke an idle worker three times. A deadline that
//! falls on a multiple of 4,096 ms from the runtime's start is the start of its own slot at
//! every level, and fires on the first wakeup.
//!
//! This leans on the wheel's layout (six bits a level, 1 ms ticks, a deadline rounded up to the
//! next tick). Should tokio change it, deadlines are merely unaligned again: never late, only
//! one or two more wakeups.

use std::sync::OnceLock;
use std::time::Duration;

use tokio::time::Instant;

/// A level-2 slot of the wheel: 64² ticks of 1 ms.
const GRID: Duration = Duration::from_millis(4096);
/// tokio rounds a deadline up to the next whole tick; a grid point 1 ms early rounds onto it.
const ROUNDING: Duration = Duration::from_millis(1);

/// Just after the runtime's start: set by [`set_origin`].
static ORIGIN: OnceLock<Instant> = OnceLock::new();

/// Records the runtime's start. Call right after building the runtime: its timer wheel counts
/// from an instant a few microseconds earlier, and the grid counts from this one. Without it
/// (tests, a runtime of someone else's), nothing is aligned.
pub(crate) fn set_origin(now: Instant) {
    let _ = ORIGIN.set(now);
}

/// The deadline nearest `preferred`, within `earliest..=latest`, that wakes the worker once.
/// `preferred` itself when no such deadline fits, or when no origin is set.
pub(crate) fn align(preferred: Instant, earliest: Instant, latest: Instant) -> Instant {
    match ORIGIN.get() {
        Some(&origin) => align_from(origin, preferred, earliest, latest),
        None => preferred,
    }
}

/// [`align`] for a wheel started just before `origin`, whose grid points are
/// `origin + k * 4096 ms - 1 ms`: the first at or after `preferred`, or else the last at or
/// before `latest`, if it lies in the window.
fn align_from(origin: Instant, preferred: Instant, earliest: Instant, latest: Instant) -> Instant {
    let point = |k: u128| -> Option<Instant> {
        let offset = u64::try_from(k.checked_mul(GRID.as_nanos())?).ok()?;
        (origin + Duration::from_nanos(offset)).checked_sub(ROUNDING)
    };
    // The index of the last grid point at or before `at`.
    let index = |at: Instant| {
        (at + ROUNDING).saturating_duration_since(origin).as_nanos() / GRID.as_nanos()
    };
    let first_from = |at: Instant| match point(index(at)) {
        Some(p) if p >= at => Some(p),
        _ => point(index(at) + 1),
    };
    [first_from(preferred), point(index(latest))]
        .into_iter()
        .flatten()
        .find(|p| *p >= earliest && *p <= latest)
        .unwrap_or(preferred)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on_grid(origin: Instant, at: Instant) -> bool {
        let since = (at + ROUNDING).duration_since(origin).as_nanos();
        since.is_multiple_of(GRID.as_nanos())
    }

    #[test]
    fn a_keepalive_window_always_holds_a_grid_point_and_gets_it() {
        let origin = Instant::now();
        for start_ms in (0..20_000).step_by(37) {
            let now = origin + Duration::from_millis(start_ms);
            let (earliest, latest) = (now + Duration::from_secs(20), now + Duration::from_secs(30));
            for pick_ms in (0..10_000).step_by(997) {
                let preferred = earliest + Duration::from_millis(pick_ms);
                let at = align_from(origin, preferred, earliest, latest);
                assert!(at >= earliest && at <= latest, "{start_ms} {pick_ms}");
                assert!(on_grid(origin, at), "{start_ms} {pick_ms}");
                assert!(
                    at >= preferred || at + GRID > latest,
                    "the first point after the pick, unless past the window"
                );
            }
        }
    }

    #[test]
    fn a_window_narrower_than_the_grid_may_keep_the_preferred_deadline() {
        let origin = Instant::now();
        let earliest = origin + Duration::from_millis(4100);
        let latest = origin + Duration::from_millis(5000);
        assert_eq!(align_from(origin, earliest, earliest, latest), earliest);
        let exact = origin + GRID - ROUNDING;
        assert_eq!(align_from(origin, exact, exact, exact), exact);
    }

    #[test]
    fn tokio_files_a_grid_point_as_the_start_of_its_slot() {
        // The wheel's own arithmetic, for a wheel started 300 µs before the origin: the
        // deadline rounds up to a whole tick that is a multiple of 4,096.
        let start = Instant::now();
        let origin = start + Duration::from_micros(300);
        for k in 1..200u64 {
            let at = origin + GRID * k as u32 - ROUNDING;
            let tick = (at + Duration::from_nanos(999_999))
                .duration_since(start)
                .as_millis() as u64;
            assert!(tick.is_multiple_of(4096), "k = {k}");
        }
    }
}
