//! One account's worker lifecycle as data (Horust's `handle_event`; the OTP supervisor
//! principles): [`Slot::on_event`] takes an instant and an [`Event`] and returns the
//! [`Effect`]s to carry out. It does no IO, reads no clock and spawns nothing; the fleet task
//! applies the effects (spawn, signal, tell the worker, set a timer, archive, change the view)
//! and feeds the outcome back as the next event.
//!
//! - An exit we asked for is not a crash: a restart spawns again, a delete archives.
//! - A crash restarts with backoff; too many within the window park the account (`crash_loop`).
//! - Exit code 3 (another process holds the account's lock) is `locked`: retried with backoff,
//!   never counted as a crash. A link refused for its IPC protocol version is
//!   `protocol_mismatch`: the same binary would be refused again, so it is parked at once.
//! - A spawn that fails (out of descriptors, say) is `spawn_failed`: retried with backoff,
//!   never parked.
//! - A worker that reports `conflict` (another client took the account over) is held: it is
//!   never started again, after an exit or at the next boot, until an admin restarts it (or
//!   asks for a QR); the fleet keeps the hold in `account.json`.
//! - Delete first asks the worker to log out, waits for its `logged_out` (or a deadline), then
//!   stops it, and archives once it has exited.

use std::time::Duration;

use ipc_protocol::{Reason, ToWorker, WorkerStatus};
use nix::sys::signal::Signal;
use tokio::time::Instant;

use super::policy::{CrashHistory, Decision, RestartPolicy};
use super::CommandError;

/// The worker's exit code when another process holds the account's lock.
pub const EXIT_LOCKED: i32 = 3;

/// The timings a slot decides with.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    /// Restarts after crashes.
    pub restart: RestartPolicy,
    /// A worker asked to stop is killed after this.
    pub shutdown: Duration,
    /// How long a deleted account's worker gets to log out before it is stopped anyway.
    pub logout: Duration,
}

/// Something that happened to the account's worker, or a command about it.
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum Event {
    /// Start the worker if none runs and the account is not parked (boot, a new account).
    Start,
    /// The spawn asked for went through.
    Spawned {
        /// The new worker's pid.
        pid: u32,
    },
    /// The spawn asked for failed.
    SpawnFailed {
        /// The OS error text.
        error: String,
    },
    /// The worker exited.
    Exited {
        /// Its pid.
        pid: u32,
        /// Its exit code; `None` when a signal ended it.
        code: Option<i32>,
    },
    /// A restart delay has passed; only the newest one counts.
    RestartDue {
        /// Which scheduled restart.
        generation: u64,
    },
    /// A worker asked to stop has had its time.
    KillDue {
        /// Its pid.
        pid: u32,
    },
    /// A deleted account's worker has had its time to log out.
    LogoutDue {
        /// Its pid.
        pid: u32,
    },
    /// The worker reports `conflict`: another client took the account over.
    Conflict {
        /// Its pid.
        pid: u32,
    },
    /// The worker reports `logged_out`.
    LoggedOut {
        /// Its pid.
        pid: u32,
    },
    /// The worker has been silent for the heartbeat timeout.
    Silent {
        /// Its pid.
        pid: u32,
    },
    /// The worker's IPC link was refused.
    Refused {
        /// Its pid.
        pid: u32,
        /// Why (`protocol_mismatch`).
        reason: Reason,
    },
    /// Admin: restart the worker (also un-parks).
    Restart,
    /// Admin: a fresh QR (starts the worker if none runs).
    RequestQr,
    /// Admin: unlink the device and keep the account.
    Logout,
    /// Admin: unlink, stop, archive.
    Delete,
}

/// What the fleet must do.
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum Effect {
    /// Spawn the worker, then feed back [`Event::Spawned`] or [`Event::SpawnFailed`].
    Spawn,
    /// Signal the worker `pid`, if it is still ours.
    Signal {
        /// Its pid.
        pid: u32,
        /// The signal.
        signal: Signal,
    },
    /// Send this to the running worker (queued until its link is up).
    Tell(ToWorker),
    /// Feed `event` back after `after`.
    Later {
        /// The delay.
        after: Duration,
        /// The event.
        event: Event,
    },
    /// Remember (or forget) in `account.json` that another client took the account over.
    Hold(bool),
    /// Move the account's directory to the archive and forget it.
    Archive,
    /// Change the account's view.
    View(View),
}

/// A change to the account's view; the fleet is its one writer.
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum View {
    /// A worker runs with this pid.
    Spawned {
        /// Its pid.
        pid: u32,
    },
    /// No worker runs: no pid, no QR, no retry time.
    Gone,
    /// It starts again after `delay`.
    Retrying {
        /// Why it is not running.
        reason: Reason,
        /// The delay.
        delay: Duration,
        /// The error text to show, if any.
        error: Option<String>,
    },
    /// Held after a conflict: shown as `conflict` until an admin restarts it.
    Held,
    /// It stays stopped until an admin acts.
    Stopped {
        /// The status to show.
        status: WorkerStatus,
        /// Why.
        reason: Reason,
        /// The error text to show.
        error: String,
    },
}

/// Why a running worker is being stopped.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
enum Intent {
    Restart,
    /// Delete: `stopping` once the logout is done (or its time ran out).
    Delete {
        stopping: bool,
    },
    Hung,
}

/// The running worker, as the slot knows it.
#[derive(Clone, Debug)]
struct Run {
    pid: u32,
    started: Instant,
    intent: Option<Intent>,
    refused: Option<Reason>,
}

/// One account's worker lifecycle.
#[derive(Clone, Debug, Default)]
pub struct Slot {
    run: Option<Run>,
    history: CrashHistory,
    generation: u64,
    parked: bool,
    /// Another client took the account over: nothing starts it until an admin does, across
    /// supervisor restarts (the fleet persists it).
    held: bool,
    /// Consecutive failed spawns, or exits because the lock was held: their backoff.
    retries: u32,
}

impl Slot {
    /// A slot for an account held after a conflict (read from `account.json` at boot).
    pub fn held() -> Slot {
        Slot {
            held: true,
            ..Slot::default()
        }
    }

    /// The running worker's pid.
    pub fn pid(&self) -> Option<u32> {
        self.run.as_ref().map(|r| r.pid)
    }

    /// Whether the worker runs and nothing asked it to stop.
    pub fn is_serving(&self) -> bool {
        self.run.as_ref().is_some_and(|r| r.intent.is_none())
    }

    /// Whether the account stays stopped until an admin acts.
    pub fn is_parked(&self) -> bool {
        self.parked
    }

    /// Decides what `event` at `now` means.
    ///
    /// # Errors
    /// A command the slot refuses: [`CommandError::NotRunning`] for a logout with no worker.
    pub fn on_event(
        &mut self,
        now: Instant,
        timing: &Timing,
        event: Event,
    ) -> Result<Vec<Effect>, CommandError> {
        let ours = |run: &Option<Run>, pid: u32| run.as_ref().is_some_and(|r| r.pid == pid);
        Ok(match event {
            Event::Start => {
                if self.run.is_none() && !self.parked && !self.held {
                    vec![Effect::Spawn]
                } else {
                    vec![]
                }
            }
            Event::Spawned { pid } => {
                self.run = Some(Run {
                    pid,
                    started: now,
                    intent: None,
                    refused: None,
                });
                vec![Effect::View(View::Spawned { pid })]
            }
            Event::SpawnFailed { error } => self.retry(
                timing,
                Reason::SpawnFailed,
                format!("cannot spawn the worker: {error}"),
            ),
            Event::Exited { pid, code } => {
                if !ours(&self.run, pid) {
                    return Ok(vec![]);
                }
                let Some(run) = self.run.take() else {
                    return Ok(vec![]);
                };
                let mut effects = vec![Effect::View(View::Gone)];
                effects.extend(self.after_exit(now, timing, run, code));
                effects
            }
            Event::RestartDue { generation } => {
                if generation == self.generation && self.run.is_none() && !self.parked && !self.held
                {
                    vec![Effect::Spawn]
                } else {
                    vec![]
                }
            }
            Event::KillDue { pid } => {
                if ours(&self.run, pid) {
                    vec![Effect::Signal {
                        pid,
                        signal: Signal::SIGKILL,
                    }]
                } else {
                    vec![]
                }
            }
            Event::LoggedOut { pid } | Event::LogoutDue { pid } => match &mut self.run {
                Some(run) if run.pid == pid => match &mut run.intent {
                    Some(Intent::Delete { stopping }) if !*stopping => {
                        *stopping = true;
                        stop(pid, timing)
                    }
                    _ => vec![],
                },
                _ => vec![],
            },
            Event::Conflict { pid } => {
                // The worker stays up and idle; only a restart or an exit changes anything.
                if ours(&self.run, pid) && !self.held {
                    self.held = true;
                    vec![Effect::Hold(true)]
                } else {
                    vec![]
                }
            }
            Event::Silent { pid } => match &mut self.run {
                Some(run) if run.pid == pid && run.intent.is_none() => {
                    run.intent = Some(Intent::Hung);
                    vec![Effect::Signal {
                        pid,
                        signal: Signal::SIGKILL,
                    }]
                }
                _ => vec![],
            },
            Event::Refused { pid, reason } => match &mut self.run {
                Some(run) if run.pid == pid => {
                    run.refused = Some(reason);
                    vec![Effect::Signal {
                        pid,
                        signal: Signal::SIGTERM,
                    }]
                }
                _ => vec![],
            },
            Event::Restart => {
                if self
                    .run
                    .as_ref()
                    .is_some_and(|run| matches!(run.intent, Some(Intent::Delete { .. })))
                {
                    return Err(CommandError::NotFound);
                }
                self.parked = false;
                self.history.clear();
                self.retries = 0;
                self.generation += 1;
                let mut effects = self.release();
                effects.extend(match &mut self.run {
                    Some(run) => {
                        run.intent = Some(Intent::Restart);
                        stop(run.pid, timing)
                    }
                    None => vec![Effect::Spawn],
                });
                effects
            }
            Event::RequestQr => match &self.run {
                // A held worker would log in and take the account back: a QR request is an
                // admin taking it back on purpose, so it restarts the worker.
                Some(_) if self.held => return self.on_event(now, timing, Event::Restart),
                Some(_) => vec![Effect::Tell(ToWorker::RequestQr)],
                None => {
                    self.parked = false;
                    self.retries = 0;
                    self.generation += 1;
                    let mut effects = self.release();
                    effects.push(Effect::Spawn);
                    effects
                }
            },
            Event::Logout => match &self.run {
                Some(run) if run.intent.is_none() => vec![Effect::Tell(ToWorker::Logout)],
                _ => return Err(CommandError::NotRunning),
            },
            Event::Delete => match &mut self.run {
                Some(run) if matches!(run.intent, Some(Intent::Delete { .. })) => vec![],
                Some(run) => {
                    run.intent = Some(Intent::Delete { stopping: false });
                    vec![
                        Effect::Tell(ToWorker::Logout),
                        Effect::Later {
                            after: timing.logout,
                            event: Event::LogoutDue { pid: run.pid },
                        },
                    ]
                }
                None => vec![Effect::Archive],
            },
        })
    }

    /// An admin takes the account back: forget the conflict.
    fn release(&mut self) -> Vec<Effect> {
        if std::mem::take(&mut self.held) {
            vec![Effect::Hold(false)]
        } else {
            vec![]
        }
    }

    /// A worker we did not (only) ask to stop has exited.
    fn after_exit(
        &mut self,
        now: Instant,
        timing: &Timing,
        run: Run,
        code: Option<i32>,
    ) -> Vec<Effect> {
        match run.intent {
            Some(Intent::Restart) => return vec![Effect::Spawn],
            Some(Intent::Delete { .. }) => return vec![Effect::Archive],
            Some(Intent::Hung) | None => {}
        }
        if self.held {
            // Whatever ended it, starting it again would take the account back.
            return vec![Effect::View(View::Held)];
        }
        if let Some(reason) = run.refused {
            self.parked = true;
            return vec![Effect::View(View::Stopped {
                status: WorkerStatus::Failed,
                reason,
                error: "the worker speaks another IPC protocol version than this supervisor: \
                        deploy both from one build"
                    .into(),
            })];
        }
        if code == Some(EXIT_LOCKED) && run.intent.is_none() {
            return self.retry(
                timing,
                Reason::Locked,
                "another process holds this account's lock".into(),
            );
        }
        self.retries = 0;
        let reason = if run.intent == Some(Intent::Hung) {
            Reason::Hung
        } else {
            Reason::WorkerCrashed
        };
        match self.history.on_crash(&timing.restart, run.started, now) {
            Decision::Restart(delay) => {
                self.generation += 1;
                vec![
                    Effect::View(View::Retrying {
                        reason,
                        delay,
                        error: None,
                    }),
                    Effect::Later {
                        after: delay,
                        event: Event::RestartDue {
                            generation: self.generation,
                        },
                    },
                ]
            }
            Decision::Park => {
                self.parked = true;
                vec![Effect::View(View::Stopped {
                    status: WorkerStatus::Failed,
                    reason: Reason::CrashLoop,
                    error: "the worker kept crashing; restart the account once the cause is fixed"
                        .into(),
                })]
            }
        }
    }

    /// Starts again after a backoff that doubles per consecutive retry, never parked.
    fn retry(&mut self, timing: &Timing, reason: Reason, error: String) -> Vec<Effect> {
        let delay = timing
            .restart
            .base
            .saturating_mul(1u32 << self.retries.min(16))
            .min(timing.restart.max);
        self.retries = self.retries.saturating_add(1);
        self.generation += 1;
        vec![
            Effect::View(View::Retrying {
                reason,
                delay,
                error: Some(error),
            }),
            Effect::Later {
                after: delay,
                event: Event::RestartDue {
                    generation: self.generation,
                },
            },
        ]
    }
}

/// SIGTERM now, SIGKILL after the shutdown timeout.
fn stop(pid: u32, timing: &Timing) -> Vec<Effect> {
    vec![
        Effect::Tell(ToWorker::Shutdown),
        Effect::Signal {
            pid,
            signal: Signal::SIGTERM,
        },
        Effect::Later {
            after: timing.shutdown,
            event: Event::KillDue { pid },
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn timing() -> Timing {
        Timing {
            restart: RestartPolicy::with_base(S),
            shutdown: 8 * S,
            logout: 5 * S,
        }
    }

    /// A slot whose worker `pid` was spawned at `now`.
    fn running(pid: u32, now: Instant) -> Slot {
        let mut slot = Slot::default();
        assert_eq!(
            slot.on_event(now, &timing(), Event::Start),
            Ok(vec![Effect::Spawn])
        );
        slot.on_event(now, &timing(), Event::Spawned { pid })
            .expect("spawned");
        slot
    }

    fn later(effects: &[Effect]) -> Option<(Duration, Event)> {
        effects.iter().find_map(|e| match e {
            Effect::Later { after, event } => Some((*after, event.clone())),
            _ => None,
        })
    }

    #[tokio::test(start_paused = true)]
    async fn a_conflict_holds_the_account_until_an_admin_restarts_it() {
        let t = timing();
        let now = Instant::now();
        let mut slot = running(30, now);
        assert_eq!(
            slot.on_event(now, &t, Event::Conflict { pid: 30 }),
            Ok(vec![Effect::Hold(true)])
        );
        // Said twice, or by a worker that is not ours: nothing more.
        assert_eq!(
            slot.on_event(now, &t, Event::Conflict { pid: 30 }),
            Ok(vec![])
        );
        // The held worker crashes: it is not started again, the view says why.
        tokio::time::advance(S).await;
        assert_eq!(
            slot.on_event(
                Instant::now(),
                &t,
                Event::Exited {
                    pid: 30,
                    code: Some(1)
                }
            ),
            Ok(vec![Effect::View(View::Gone), Effect::View(View::Held)])
        );
        assert_eq!(slot.on_event(Instant::now(), &t, Event::Start), Ok(vec![]));
        assert_eq!(
            slot.on_event(Instant::now(), &t, Event::RestartDue { generation: 0 }),
            Ok(vec![])
        );
        // The admin restarts it: the hold is forgotten, then the worker starts.
        assert_eq!(
            slot.on_event(Instant::now(), &t, Event::Restart),
            Ok(vec![Effect::Hold(false), Effect::Spawn])
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_held_account_from_account_json_does_not_boot_and_a_qr_request_releases_it() {
        let t = timing();
        let mut slot = Slot::held();
        assert_eq!(slot.on_event(Instant::now(), &t, Event::Start), Ok(vec![]));
        assert_eq!(
            slot.on_event(Instant::now(), &t, Event::RequestQr),
            Ok(vec![Effect::Hold(false), Effect::Spawn])
        );
        // A running held worker asked for a QR is restarted, not told: it would log in.
        let mut slot = running(31, Instant::now());
        slot.on_event(Instant::now(), &t, Event::Conflict { pid: 31 })
            .expect("held");
        let effects = slot
            .on_event(Instant::now(), &t, Event::RequestQr)
            .expect("restart");
        assert_eq!(effects[0], Effect::Hold(false));
        assert!(effects.contains(&Effect::Tell(ToWorker::Shutdown)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_crash_restarts_with_doubling_delays_then_parks_as_crash_loop() {
        let t = timing();
        let mut slot = running(10, Instant::now());
        let mut pid = 10;
        let mut delays = Vec::new();
        for _ in 0..5 {
            tokio::time::advance(S).await;
            let effects = slot
                .on_event(Instant::now(), &t, Event::Exited { pid, code: Some(1) })
                .expect("exit");
            assert_eq!(
                effects[0],
                Effect::View(View::Gone),
                "the QR goes with the worker"
            );
            let (delay, due) = later(&effects).expect("a restart is scheduled");
            delays.push(delay.as_secs());
            tokio::time::advance(delay).await;
            assert_eq!(
                slot.on_event(Instant::now(), &t, due),
                Ok(vec![Effect::Spawn])
            );
            pid += 1;
            slot.on_event(Instant::now(), &t, Event::Spawned { pid })
                .expect("spawned");
        }
        assert_eq!(delays, [1, 2, 4, 8, 16]);
        let effects = slot
            .on_event(Instant::now(), &t, Event::Exited { pid, code: Some(1) })
            .expect("exit");
        assert!(matches!(
            &effects[1],
            Effect::View(View::Stopped {
                reason: Reason::CrashLoop,
                ..
            })
        ));
        assert!(slot.is_parked());
        assert_eq!(slot.on_event(Instant::now(), &t, Event::Start), Ok(vec![]));
        // An admin restart un-parks.
        assert_eq!(
            slot.on_event(Instant::now(), &t, Event::Restart),
            Ok(vec![Effect::Spawn])
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_spawn_is_retried_with_backoff_and_never_parked() {
        let t = timing();
        let mut slot = Slot::default();
        let mut delays = Vec::new();
        for _ in 0..12 {
            let effects = slot
                .on_event(
                    Instant::now(),
                    &t,
                    Event::SpawnFailed {
                        error: "Too many open files (os error 24)".into(),
                    },
                )
                .expect("failed spawn");
            let Effect::View(View::Retrying { reason, error, .. }) = &effects[0] else {
                panic!("{effects:?}");
            };
            assert_eq!(*reason, Reason::SpawnFailed);
            assert!(error.as_deref().is_some_and(|e| e.contains("os error 24")));
            let (delay, due) = later(&effects).expect("retry scheduled");
            delays.push(delay.as_secs());
            tokio::time::advance(delay).await;
            assert_eq!(
                slot.on_event(Instant::now(), &t, due),
                Ok(vec![Effect::Spawn])
            );
        }
        assert_eq!(&delays[..7], [1, 2, 4, 8, 16, 32, 60]);
        assert!(delays.iter().all(|d| *d <= 60));
        assert!(!slot.is_parked());
        slot.on_event(Instant::now(), &t, Event::Spawned { pid: 7 })
            .expect("spawned at last");
        assert_eq!(slot.pid(), Some(7));
    }

    #[tokio::test(start_paused = true)]
    async fn exit_codes_feed_the_policy_locked_and_protocol_mismatch_are_not_crash_loops() {
        let t = timing();
        let mut slot = running(3, Instant::now());
        for pid in 3..20 {
            let effects = slot
                .on_event(
                    Instant::now(),
                    &t,
                    Event::Exited {
                        pid,
                        code: Some(EXIT_LOCKED),
                    },
                )
                .expect("exit");
            assert!(
                matches!(
                    &effects[1],
                    Effect::View(View::Retrying {
                        reason: Reason::Locked,
                        ..
                    })
                ),
                "{effects:?}"
            );
            let (delay, due) = later(&effects).expect("retry");
            tokio::time::advance(delay).await;
            assert_eq!(
                slot.on_event(Instant::now(), &t, due),
                Ok(vec![Effect::Spawn])
            );
            slot.on_event(Instant::now(), &t, Event::Spawned { pid: pid + 1 })
                .expect("spawned");
        }
        assert!(!slot.is_parked(), "a held lock is never a crash loop");

        let mut slot = running(40, Instant::now());
        let refused = slot
            .on_event(
                Instant::now(),
                &t,
                Event::Refused {
                    pid: 40,
                    reason: Reason::ProtocolMismatch,
                },
            )
            .expect("refused");
        assert!(refused.contains(&Effect::Signal {
            pid: 40,
            signal: Signal::SIGTERM
        }));
        let effects = slot
            .on_event(
                Instant::now(),
                &t,
                Event::Exited {
                    pid: 40,
                    code: Some(1),
                },
            )
            .expect("exit");
        assert!(matches!(
            &effects[1],
            Effect::View(View::Stopped {
                reason: Reason::ProtocolMismatch,
                ..
            })
        ));
        assert!(slot.is_parked());
    }

    #[tokio::test(start_paused = true)]
    async fn delete_asks_for_the_logout_waits_for_it_then_stops_and_archives() {
        let t = timing();
        let mut slot = running(5, Instant::now());
        let effects = slot
            .on_event(Instant::now(), &t, Event::Delete)
            .expect("delete");
        assert_eq!(
            effects,
            vec![
                Effect::Tell(ToWorker::Logout),
                Effect::Later {
                    after: t.logout,
                    event: Event::LogoutDue { pid: 5 }
                }
            ],
            "only the logout goes out first: no Shutdown, no SIGTERM"
        );
        let stopping = slot
            .on_event(Instant::now(), &t, Event::LoggedOut { pid: 5 })
            .expect("logged out");
        assert_eq!(
            stopping,
            vec![
                Effect::Tell(ToWorker::Shutdown),
                Effect::Signal {
                    pid: 5,
                    signal: Signal::SIGTERM
                },
                Effect::Later {
                    after: t.shutdown,
                    event: Event::KillDue { pid: 5 }
                },
            ]
        );
        // The deadline after the logout changes nothing.
        assert_eq!(
            slot.on_event(Instant::now(), &t, Event::LogoutDue { pid: 5 }),
            Ok(vec![])
        );
        let exit = slot
            .on_event(
                Instant::now(),
                &t,
                Event::Exited {
                    pid: 5,
                    code: Some(0),
                },
            )
            .expect("exit");
        assert_eq!(exit, vec![Effect::View(View::Gone), Effect::Archive]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_delete_whose_logout_never_comes_stops_the_worker_at_the_deadline() {
        let t = timing();
        let mut slot = running(6, Instant::now());
        slot.on_event(Instant::now(), &t, Event::Delete)
            .expect("delete");
        tokio::time::advance(t.logout).await;
        let effects = slot
            .on_event(Instant::now(), &t, Event::LogoutDue { pid: 6 })
            .expect("due");
        assert!(effects.contains(&Effect::Signal {
            pid: 6,
            signal: Signal::SIGTERM
        }));
        assert_eq!(
            slot.on_event(Instant::now(), &t, Event::KillDue { pid: 6 }),
            Ok(vec![Effect::Signal {
                pid: 6,
                signal: Signal::SIGKILL
            }])
        );
        assert_eq!(
            slot.on_event(Instant::now(), &t, Event::Restart),
            Err(CommandError::NotFound),
            "a deleted account cannot be restarted"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_worker_is_killed_as_hung_and_restarted_and_stale_events_change_nothing() {
        let t = timing();
        let mut slot = running(8, Instant::now());
        assert_eq!(
            slot.on_event(Instant::now(), &t, Event::Silent { pid: 8 }),
            Ok(vec![Effect::Signal {
                pid: 8,
                signal: Signal::SIGKILL
            }])
        );
        assert_eq!(
            slot.on_event(Instant::now(), &t, Event::Silent { pid: 8 }),
            Ok(vec![]),
            "killed once"
        );
        let effects = slot
            .on_event(Instant::now(), &t, Event::Exited { pid: 8, code: None })
            .expect("exit");
        assert!(matches!(
            &effects[1],
            Effect::View(View::Retrying {
                reason: Reason::Hung,
                ..
            })
        ));
        // Events about another pid, or an old restart, do nothing.
        assert_eq!(
            slot.on_event(
                Instant::now(),
                &t,
                Event::Exited {
                    pid: 99,
                    code: None
                }
            ),
            Ok(vec![])
        );
        assert_eq!(
            slot.on_event(Instant::now(), &t, Event::RestartDue { generation: 0 }),
            Ok(vec![])
        );
        assert_eq!(
            slot.on_event(Instant::now(), &t, Event::Logout),
            Err(CommandError::NotRunning)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_admin_restart_stops_the_worker_and_spawns_again_once_it_exited() {
        let t = timing();
        let mut slot = running(9, Instant::now());
        let effects = slot
            .on_event(Instant::now(), &t, Event::Restart)
            .expect("restart");
        assert!(effects.contains(&Effect::Signal {
            pid: 9,
            signal: Signal::SIGTERM
        }));
        assert!(!slot.is_serving());
        assert_eq!(
            slot.on_event(
                Instant::now(),
                &t,
                Event::Exited {
                    pid: 9,
                    code: Some(0)
                }
            ),
            Ok(vec![Effect::View(View::Gone), Effect::Spawn])
        );
    }
}
