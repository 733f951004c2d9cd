//! Waiting for a state under a deadline: the only way tests synchronise.

use std::time::{Duration, Instant};

/// How often a condition is re-checked.
const POLL: Duration = Duration::from_millis(25);

/// Calls `probe` until it returns `Ok`, or panics after `deadline` with what it last said.
///
/// # Panics
/// When the deadline passes; the message names `what` and the last state seen.
pub fn wait_until<T>(
    what: &str,
    deadline: Duration,
    mut probe: impl FnMut() -> Result<T, String>,
) -> T {
    let start = Instant::now();
    loop {
        match probe() {
            Ok(value) => return value,
            Err(last) if start.elapsed() >= deadline => {
                panic!("timed out after {deadline:?} waiting for {what}; last state: {last}")
            }
            Err(_) => std::thread::sleep(POLL),
        }
    }
}
