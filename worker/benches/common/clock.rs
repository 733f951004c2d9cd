//! The clock the benches measure with: the process's CPU time (user + system, from
//! `getrusage`), so that a machine shared with other work (builds, other benches) does not count
//! the time the bench waited for a core. `BENCH_CLOCK=wall` measures by the wall clock instead,
//! as criterion does by default. Shared by the bench targets through `#[path]`.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use nix::sys::resource::{getrusage, UsageWho};
use nix::sys::time::TimeValLike;

/// A criterion measurement reading [`now`].
pub struct Clock {
    formatter: WallTime,
}

impl Clock {
    /// The clock `BENCH_CLOCK` chose.
    pub fn new() -> Self {
        Self {
            formatter: WallTime,
        }
    }
}

/// Whether `BENCH_CLOCK=wall` was given.
fn wall() -> bool {
    static WALL: OnceLock<bool> = OnceLock::new();
    *WALL.get_or_init(|| std::env::var("BENCH_CLOCK").is_ok_and(|v| v == "wall"))
}

/// What the benches print about the clock, once.
pub fn describe() -> &'static str {
    if wall() {
        "times are wall-clock time (BENCH_CLOCK=wall)"
    } else {
        "times are the process's CPU time (user + system); BENCH_CLOCK=wall for the wall clock"
    }
}

/// The process's CPU time so far, or with `BENCH_CLOCK=wall` the time since the first call.
/// Microsecond resolution: measure batches, not single operations of a few microseconds.
pub fn now() -> Duration {
    if wall() {
        static EPOCH: OnceLock<Instant> = OnceLock::new();
        return EPOCH.get_or_init(Instant::now).elapsed();
    }
    cpu()
}

/// The process's CPU time so far (user + system), what Node's `process.cpuUsage()` reads.
pub fn cpu() -> Duration {
    getrusage(UsageWho::RUSAGE_SELF).map_or(Duration::ZERO, |u| {
        let micros = u.user_time().num_microseconds() + u.system_time().num_microseconds();
        Duration::from_micros(u64::try_from(micros).unwrap_or(0))
    })
}

impl Measurement for Clock {
    type Intermediate = Duration;
    type Value = Duration;

    fn start(&self) -> Duration {
        now()
    }
    fn end(&self, start: Duration) -> Duration {
        now().saturating_sub(start)
    }
    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }
    fn zero(&self) -> Duration {
        Duration::ZERO
    }
    fn to_f64(&self, value: &Duration) -> f64 {
        value.as_nanos() as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        self.formatter.formatter()
    }
}
