//! How many HTTP connections may be open at once, and when a burst of refusals starts and ends.
//!
//! Workers need the supervisor's file descriptors (an IPC socket, a child handle, spawn pipes,
//! a webhook connection each), so HTTP connections only get a share of what is left once every
//! account's reserve and the supervisor's own are set aside:
//!
//! ```text
//! budget = open-file limit − FD_RESERVE − FDS_PER_ACCOUNT × accounts
//! cap    = HTTP_MAX_CONNECTIONS, at most budget         (when configured)
//!        = budget / 2, at most MAX_AUTO_CONNECTIONS     (when 0: auto)
//!        never below MIN_CONNECTIONS, so the API stays reachable on a starved host
//! ```
//!
//! The account count is read at every accept, so adding accounts shrinks the cap. Decisions are
//! pure ([`connection_cap`], [`Gate::admit`]); the accept loop in `server.rs` acts on them.

/// Descriptors the supervisor keeps for itself: runtime, listeners, log pipes, volume files,
/// webhook connections to `WEBHOOK_URL`.
pub const FD_RESERVE: u64 = 256;
/// Descriptors set aside per account (a few are in use, the rest is margin).
pub const FDS_PER_ACCOUNT: u64 = 8;
/// The automatic cap never goes above this: an admin API has a handful of clients, and each
/// open connection costs memory too.
pub const MAX_AUTO_CONNECTIONS: u64 = 1024;
/// The cap never goes below this, whatever the budget says.
pub const MIN_CONNECTIONS: u64 = 16;

/// The most HTTP connections open at once for this open-file limit, account count and
/// configured value (`0` is automatic).
pub fn connection_cap(fd_limit: u64, accounts: usize, configured: usize) -> usize {
    let reserve = FD_RESERVE.saturating_add(FDS_PER_ACCOUNT.saturating_mul(accounts as u64));
    let budget = fd_limit.saturating_sub(reserve);
    let cap = if configured > 0 {
        (configured as u64).min(budget)
    } else {
        (budget / 2).min(MAX_AUTO_CONNECTIONS)
    };
    usize::try_from(cap.max(MIN_CONNECTIONS)).unwrap_or(usize::MAX)
}

/// Whether an accepted connection is served, and whether that starts or ends a burst of
/// refusals (so the log says so once per burst, never once per connection).
#[derive(Debug, Default)]
pub struct Gate {
    refusing: bool,
    refused: u64,
}

/// What to do with one accepted connection.
#[derive(Debug, Eq, PartialEq)]
pub enum Admission {
    /// Serve it. `burst_ended` carries how many were refused in the burst that just ended.
    Serve {
        /// Set once, when the open count has fallen well below the cap after a burst.
        burst_ended: Option<u64>,
    },
    /// Close it at once: the cap is reached.
    Refuse {
        /// True for the first refusal of a burst.
        burst_started: bool,
    },
}

impl Gate {
    /// Decides for one accepted connection, with `open` connections already being served.
    ///
    /// A burst ends only when the open count falls to three quarters of the cap, so a count
    /// that hovers at the cap does not log a start and an end per connection.
    pub fn admit(&mut self, open: usize, cap: usize) -> Admission {
        if open >= cap {
            let burst_started = !self.refusing;
            self.refusing = true;
            self.refused += 1;
            return Admission::Refuse { burst_started };
        }
        if self.refusing && open <= cap / 4 * 3 {
            self.refusing = false;
            return Admission::Serve {
                burst_ended: Some(std::mem::take(&mut self.refused)),
            };
        }
        Admission::Serve { burst_ended: None }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_cap_is_half_of_what_the_accounts_leave_and_bounded() {
        // 4096 - 256 - 8 * 10 = 3760, half is 1880, above the automatic maximum.
        assert_eq!(connection_cap(4096, 10, 0), 1024);
        // 1024 - 256 - 8 * 10 = 688, half is 344.
        assert_eq!(connection_cap(1024, 10, 0), 344);
        // Every account added shrinks it.
        assert!(connection_cap(1024, 11, 0) < connection_cap(1024, 10, 0));
        // An unlimited host still gets the automatic maximum, not millions.
        assert_eq!(connection_cap(u64::MAX, 1000, 0), 1024);
    }

    #[test]
    fn a_configured_cap_never_eats_the_workers_reserve() {
        assert_eq!(connection_cap(100_000, 10, 300), 300);
        // 1024 - 256 - 80 = 688 is all there is.
        assert_eq!(connection_cap(1024, 10, 5000), 688);
    }

    #[test]
    fn the_cap_keeps_a_floor_when_the_accounts_need_everything() {
        assert_eq!(connection_cap(1024, 500, 0), MIN_CONNECTIONS as usize);
        assert_eq!(connection_cap(0, 0, 0), MIN_CONNECTIONS as usize);
        assert_eq!(connection_cap(1024, 500, 40), MIN_CONNECTIONS as usize);
    }

    #[test]
    fn a_burst_is_announced_once_and_ends_well_below_the_cap() {
        let mut gate = Gate::default();
        assert_eq!(gate.admit(99, 100), Admission::Serve { burst_ended: None });
        assert_eq!(
            gate.admit(100, 100),
            Admission::Refuse {
                burst_started: true
            }
        );
        for _ in 0..1000 {
            assert_eq!(
                gate.admit(100, 100),
                Admission::Refuse {
                    burst_started: false
                }
            );
        }
        // Hovering just under the cap serves without ending the burst...
        assert_eq!(gate.admit(99, 100), Admission::Serve { burst_ended: None });
        assert_eq!(
            gate.admit(100, 100),
            Admission::Refuse {
                burst_started: false
            }
        );
        // ...until the count falls to three quarters, which ends it once, with the tally.
        assert_eq!(
            gate.admit(75, 100),
            Admission::Serve {
                burst_ended: Some(1002)
            }
        );
        assert_eq!(gate.admit(10, 100), Admission::Serve { burst_ended: None });
        assert_eq!(
            gate.admit(100, 100),
            Admission::Refuse {
                burst_started: true
            }
        );
    }
}
