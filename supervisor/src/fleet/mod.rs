//! The fleet: the one task that owns every worker process.
//!
//! Everything that changes a worker goes through this task's channel as a [`FleetMsg`]: admin
//! commands from HTTP, boot spawns, IPC links coming and going with their snapshots, child exits
//! and timers. It answers commands at once (the API never waits on a worker), writes the
//! [`Cache`] the API reads, and on cancellation stops every worker in parallel: SIGTERM to all,
//! wait under one deadline, SIGKILL the rest, log the tally.

pub mod boot;
pub mod child;
pub mod policy;

use std::collections::HashMap;
use std::io;
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::Duration;

use ipc_protocol::{
    AccountId, MessageQuery, OutgoingText, QueryAnswer, Reason, SendOutcome, ToSupervisor,
    ToWorker, UnixMillis, WorkerStatus,
};
use nix::sys::signal::Signal;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::cache::{AccountView, Cache};
use crate::registry::{Account, Registry};
use child::{ChildHandle, SpawnSpec};
use policy::{CrashHistory, Decision, RestartPolicy};

/// How often the liveness watchdog looks, at most.
const WATCHDOG_TICK: Duration = Duration::from_secs(5);
/// After SIGKILL, how long to wait for the kernel to hand back the stragglers.
const REAP_DEADLINE: Duration = Duration::from_secs(2);

/// A message to the fleet task.
#[derive(Debug)]
pub enum FleetMsg {
    /// An admin command; answered at once.
    Command {
        /// What to do.
        cmd: Command,
        /// The answer.
        reply: oneshot::Sender<Result<(), CommandError>>,
    },
    /// The boot plan says: start this account now.
    BootSpawn(AccountId),
    /// A worker said a valid Hello; `reply` says whether it is the child we spawned.
    LinkUp {
        /// The account it claims.
        id: AccountId,
        /// The pid it claims (already checked against the socket's peer credentials).
        pid: u32,
        /// Commands to it.
        tx: mpsc::UnboundedSender<ToWorker>,
        /// Accepted or not.
        reply: oneshot::Sender<bool>,
    },
    /// A message from an accepted link.
    FromWorker {
        /// The account.
        id: AccountId,
        /// The worker's pid.
        pid: u32,
        /// The message.
        msg: ToSupervisor,
    },
    /// An accepted link closed.
    LinkDown {
        /// The account.
        id: AccountId,
        /// The worker's pid.
        pid: u32,
    },
    /// A worker process exited.
    Exited {
        /// The account.
        id: AccountId,
        /// The worker's pid.
        pid: u32,
        /// How it ended.
        status: io::Result<ExitStatus>,
    },
    /// A crashed worker's restart delay has passed.
    RestartDue {
        /// The account.
        id: AccountId,
        /// Only the newest scheduled restart counts.
        generation: u64,
    },
    /// A worker asked to stop has had its time; kill it if it is still there.
    KillDue {
        /// The account.
        id: AccountId,
        /// The worker's pid.
        pid: u32,
    },
    /// These incoming messages of the account are in the supervisor's hands: tell its worker.
    Confirmed {
        /// The account.
        id: AccountId,
        /// Message ids.
        ids: Vec<String>,
    },
    /// A question for an account's worker; answered when the worker answers.
    Ask {
        /// The account.
        id: AccountId,
        /// The question.
        ask: Ask,
        /// The worker's answer, or why there is none.
        reply: oneshot::Sender<Result<Answer, CommandError>>,
    },
}

/// A question only the worker can answer (it owns the account's messages).
#[derive(Debug)]
pub enum Ask {
    /// Queue this text durably.
    Send(OutgoingText),
    /// Read the message store.
    Query(MessageQuery),
}

/// The worker's answer to an [`Ask`].
#[derive(Debug)]
pub enum Answer {
    /// To `Send`.
    Sent(SendOutcome),
    /// To `Query`.
    Queried(QueryAnswer),
}

/// An admin command.
#[derive(Debug)]
pub enum Command {
    /// A new account was written to the registry: start its worker so pairing can begin.
    Added(Account),
    /// Restart the worker (also un-parks a crash-looping account).
    Restart(AccountId),
    /// Unlink the device and keep the account.
    Logout(AccountId),
    /// Ask for a fresh QR (starts the worker if none runs).
    RequestQr(AccountId),
    /// Logout, stop, and archive the account's directory.
    Delete(AccountId),
}

/// Why a command was refused.
#[derive(Clone, Copy, Debug, Eq, PartialEq, thiserror::Error)]
pub enum CommandError {
    /// No such account.
    #[error("account not found")]
    NotFound,
    /// The command needs a running worker and none runs.
    #[error("no worker runs for this account; restart it first")]
    NotRunning,
    /// The supervisor is shutting down.
    #[error("the supervisor is shutting down")]
    ShuttingDown,
}

/// The API's way in to the fleet.
#[derive(Clone, Debug)]
pub struct FleetHandle {
    tx: mpsc::UnboundedSender<FleetMsg>,
}

impl FleetHandle {
    /// Sends `cmd` and returns the fleet's answer (which never waits on a worker).
    ///
    /// # Errors
    /// The fleet's refusal, or [`CommandError::ShuttingDown`] once it is gone.
    pub async fn command(&self, cmd: Command) -> Result<(), CommandError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(FleetMsg::Command { cmd, reply })
            .map_err(|_| CommandError::ShuttingDown)?;
        answer.await.unwrap_or(Err(CommandError::ShuttingDown))
    }

    /// Asks the account's worker and waits for its answer.
    ///
    /// # Errors
    /// [`CommandError::NotFound`] for an unknown account, [`CommandError::NotRunning`] when no
    /// worker runs (or it exited before answering), [`CommandError::ShuttingDown`].
    pub async fn ask(&self, id: AccountId, ask: Ask) -> Result<Answer, CommandError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(FleetMsg::Ask { id, ask, reply })
            .map_err(|_| CommandError::ShuttingDown)?;
        answer.await.unwrap_or(Err(CommandError::NotRunning))
    }

    /// The raw channel, for the IPC links.
    pub fn sender(&self) -> mpsc::UnboundedSender<FleetMsg> {
        self.tx.clone()
    }
}

/// Why a running worker is being stopped.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
enum Intent {
    Restart,
    Delete,
    Hung,
}

#[derive(Debug)]
struct Running {
    handle: ChildHandle,
    started: Instant,
    link: Option<mpsc::UnboundedSender<ToWorker>>,
    queued: Vec<ToWorker>,
    last_seen: Instant,
    flushed: bool,
    intent: Option<Intent>,
    /// Questions sent to this worker, by request id; dropped (so refused) if it exits.
    asks: HashMap<u64, oneshot::Sender<Result<Answer, CommandError>>>,
}

impl Running {
    fn send(&mut self, cmd: ToWorker) {
        let unsent = match &self.link {
            Some(link) => link.send(cmd).err().map(|e| e.0),
            None => Some(cmd),
        };
        if let Some(cmd) = unsent {
            self.queued.push(cmd);
        }
    }
}

#[derive(Debug, Default)]
struct Slot {
    running: Option<Running>,
    history: CrashHistory,
    restart_generation: u64,
    parked: bool,
}

/// How long the fleet waits for workers.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    /// A worker asked to stop is killed after this.
    pub shutdown: Duration,
    /// A worker silent this long (60 s by default) is hung: killed and restarted.
    pub heartbeat: Duration,
}

/// The fleet task's state.
#[derive(Debug)]
pub struct Fleet {
    spec: SpawnSpec,
    policy: RestartPolicy,
    timeouts: Timeouts,
    cache: Arc<Cache>,
    registry: Registry,
    slots: HashMap<AccountId, Slot>,
    next_request: u64,
    tx: mpsc::UnboundedSender<FleetMsg>,
    rx: mpsc::UnboundedReceiver<FleetMsg>,
}

impl Fleet {
    /// A fleet for the accounts already in `cache`.
    pub fn new(
        spec: SpawnSpec,
        policy: RestartPolicy,
        timeouts: Timeouts,
        cache: Arc<Cache>,
        registry: Registry,
    ) -> (Fleet, FleetHandle) {
        let (tx, rx) = mpsc::unbounded_channel();
        let slots = cache
            .all()
            .into_iter()
            .map(|v| (v.account.id, Slot::default()))
            .collect();
        let handle = FleetHandle { tx: tx.clone() };
        let fleet = Fleet {
            spec,
            policy,
            timeouts,
            cache,
            registry,
            slots,
            next_request: 1,
            tx,
            rx,
        };
        (fleet, handle)
    }

    /// Runs the fleet: boots `plan` (each entry waits its gap, then spawns), serves messages,
    /// watches heartbeats, and on `token` stops every worker.
    pub async fn run(mut self, token: CancellationToken, plan: Vec<(AccountId, Duration)>) {
        let boot = tokio::spawn(run_boot(plan, self.tx.clone(), token.child_token()));
        let mut watchdog = tokio::time::interval(WATCHDOG_TICK.min(self.timeouts.heartbeat / 4));
        watchdog.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = token.cancelled() => break,
                Some(msg) = self.rx.recv() => self.handle(msg),
                _ = watchdog.tick() => self.check_liveness(Instant::now()),
            }
        }
        boot.abort();
        self.shutdown().await;
    }

    fn handle(&mut self, msg: FleetMsg) {
        match msg {
            FleetMsg::Command { cmd, reply } => {
                let _ = reply.send(self.on_command(cmd));
            }
            FleetMsg::BootSpawn(id) => {
                let idle = self
                    .slots
                    .get(&id)
                    .is_some_and(|s| s.running.is_none() && !s.parked);
                if idle {
                    self.spawn(&id);
                }
            }
            FleetMsg::LinkUp { id, pid, tx, reply } => {
                let accepted = match self.running_mut(&id, pid) {
                    Some(running) if running.link.is_none() => {
                        for cmd in running.queued.drain(..) {
                            let _ = tx.send(cmd);
                        }
                        running.link = Some(tx);
                        running.last_seen = Instant::now();
                        true
                    }
                    _ => false,
                };
                let _ = reply.send(accepted);
            }
            FleetMsg::FromWorker { id, pid, msg } => self.on_worker_message(&id, pid, msg),
            FleetMsg::LinkDown { id, pid } => {
                if let Some(running) = self.running_mut(&id, pid) {
                    running.link = None;
                }
            }
            FleetMsg::Exited { id, pid, status } => self.on_exit(&id, pid, status),
            FleetMsg::RestartDue { id, generation } => {
                let due = self.slots.get(&id).is_some_and(|s| {
                    s.restart_generation == generation && s.running.is_none() && !s.parked
                });
                if due {
                    self.spawn(&id);
                }
            }
            FleetMsg::Ask { id, ask, reply } => self.on_ask(&id, ask, reply),
            FleetMsg::Confirmed { id, ids } => {
                // No worker: it reports them again when it starts, and they are confirmed then.
                if let Some(running) = self.slots.get_mut(&id).and_then(|s| s.running.as_mut()) {
                    running.send(ToWorker::Confirm { ids });
                }
            }
            FleetMsg::KillDue { id, pid } => {
                if let Some(running) = self.running_mut(&id, pid) {
                    warn!(account = %id, pid, "worker did not stop in time; killing it");
                    running.handle.signal(Signal::SIGKILL);
                }
            }
        }
    }

    fn on_ask(
        &mut self,
        id: &AccountId,
        ask: Ask,
        reply: oneshot::Sender<Result<Answer, CommandError>>,
    ) {
        let request = self.next_request;
        self.next_request += 1;
        let Some(slot) = self.slots.get_mut(id) else {
            let _ = reply.send(Err(CommandError::NotFound));
            return;
        };
        let Some(running) = slot.running.as_mut().filter(|r| r.intent.is_none()) else {
            let _ = reply.send(Err(CommandError::NotRunning));
            return;
        };
        running.asks.insert(request, reply);
        running.send(match ask {
            Ask::Send(message) => ToWorker::Send { request, message },
            Ask::Query(query) => ToWorker::Query { request, query },
        });
    }

    fn on_command(&mut self, cmd: Command) -> Result<(), CommandError> {
        match cmd {
            Command::Added(account) => {
                let id = account.id.clone();
                self.cache.insert(AccountView::idle(account, false));
                self.slots.insert(id.clone(), Slot::default());
                self.spawn(&id);
                Ok(())
            }
            Command::Restart(id) => {
                let slot = self.slots.get_mut(&id).ok_or(CommandError::NotFound)?;
                slot.parked = false;
                slot.history.clear();
                slot.restart_generation += 1;
                match &mut slot.running {
                    Some(running) => {
                        info!(account = %id, pid = running.handle.pid, "restarting worker");
                        running.intent = Some(Intent::Restart);
                        running.handle.signal(Signal::SIGTERM);
                        let pid = running.handle.pid;
                        self.kill_later(&id, pid);
                    }
                    None => self.spawn(&id),
                }
                Ok(())
            }
            Command::Logout(id) => {
                let slot = self.slots.get_mut(&id).ok_or(CommandError::NotFound)?;
                let running = slot.running.as_mut().ok_or(CommandError::NotRunning)?;
                running.send(ToWorker::Logout);
                Ok(())
            }
            Command::RequestQr(id) => {
                let slot = self.slots.get_mut(&id).ok_or(CommandError::NotFound)?;
                match &mut slot.running {
                    Some(running) => running.send(ToWorker::RequestQr),
                    None => {
                        slot.parked = false;
                        slot.restart_generation += 1;
                        self.spawn(&id);
                    }
                }
                Ok(())
            }
            Command::Delete(id) => {
                let slot = self.slots.get_mut(&id).ok_or(CommandError::NotFound)?;
                match &mut slot.running {
                    Some(running) => {
                        info!(account = %id, "deleting account: logging out and stopping its worker");
                        running.intent = Some(Intent::Delete);
                        running.send(ToWorker::Logout);
                        running.send(ToWorker::Shutdown);
                        running.handle.signal(Signal::SIGTERM);
                        let pid = running.handle.pid;
                        self.kill_later(&id, pid);
                    }
                    None => self.archive(&id),
                }
                Ok(())
            }
        }
    }

    fn on_worker_message(&mut self, id: &AccountId, pid: u32, msg: ToSupervisor) {
        let Some(running) = self.running_mut(id, pid) else {
            debug!(account = %id, pid, "message from a worker that is not ours; dropped");
            return;
        };
        running.last_seen = Instant::now();
        match msg {
            ToSupervisor::State(state) => {
                debug!(account = %id, status = %state.status, "state");
                self.cache.update(id, |v| v.state = state);
            }
            ToSupervisor::Flushed => running.flushed = true,
            ToSupervisor::Goodbye { reason } => {
                info!(account = %id, pid, %reason, "worker says goodbye")
            }
            ToSupervisor::Heartbeat { .. } => {}
            ToSupervisor::SendAnswer { request, outcome } => {
                if let Some(reply) = running.asks.remove(&request) {
                    let _ = reply.send(Ok(Answer::Sent(outcome)));
                }
            }
            ToSupervisor::QueryAnswer { request, answer } => {
                if let Some(reply) = running.asks.remove(&request) {
                    let _ = reply.send(Ok(Answer::Queried(answer)));
                }
            }
            ToSupervisor::Message(record) => self.cache.message(id, &record),
            ToSupervisor::Hello { .. } => warn!(account = %id, pid, "second hello ignored"),
        }
    }

    fn on_exit(&mut self, id: &AccountId, pid: u32, status: io::Result<ExitStatus>) {
        let Some(slot) = self.slots.get_mut(id) else {
            return;
        };
        if slot.running.as_ref().is_none_or(|r| r.handle.pid != pid) {
            return;
        }
        let Some(running) = slot.running.take() else {
            return;
        };
        log_exit(id, pid, &status);
        self.cache.update(id, |v| {
            v.pid = None;
            v.state.next_retry_at = None;
        });
        match running.intent {
            Some(Intent::Restart) => self.spawn(id),
            Some(Intent::Delete) => self.archive(id),
            Some(Intent::Hung) | None => {
                let now = Instant::now();
                let reason = if running.intent == Some(Intent::Hung) {
                    Reason::Hung
                } else {
                    Reason::WorkerCrashed
                };
                match slot.history.on_crash(&self.policy, running.started, now) {
                    Decision::Restart(delay) => {
                        slot.restart_generation += 1;
                        let generation = slot.restart_generation;
                        warn!(account = %id, delay_ms = delay.as_millis() as u64, %reason, "restarting crashed worker");
                        self.cache.update(id, |v| {
                            v.restarts = v.restarts.saturating_add(1);
                            v.state.status = WorkerStatus::Reconnecting;
                            v.state.reason = Some(reason);
                            v.state.next_retry_at = Some(UnixMillis::now().after(delay));
                            v.state.last_event_at = Some(UnixMillis::now());
                        });
                        let tx = self.tx.clone();
                        let id = id.clone();
                        tokio::spawn(async move {
                            tokio::time::sleep(delay).await;
                            let _ = tx.send(FleetMsg::RestartDue { id, generation });
                        });
                    }
                    Decision::Park => {
                        slot.parked = true;
                        error!(account = %id, "worker keeps crashing; parked until an admin restarts it");
                        self.cache.update(id, |v| {
                            v.state.status = WorkerStatus::Failed;
                            v.state.reason = Some(Reason::CrashLoop);
                            v.state.last_event_at = Some(UnixMillis::now());
                        });
                    }
                }
            }
        }
    }

    fn spawn(&mut self, id: &AccountId) {
        let Some(slot) = self.slots.get_mut(id) else {
            return;
        };
        match child::spawn(&self.spec, id, self.tx.clone()) {
            Ok(handle) => {
                info!(account = %id, pid = handle.pid, "worker spawned");
                let now = Instant::now();
                self.cache.update(id, |v| {
                    v.pid = Some(handle.pid);
                    v.started_at = Some(UnixMillis::now());
                    v.state.status = WorkerStatus::Connecting;
                    v.state.reason = None;
                    v.state.next_retry_at = None;
                });
                slot.running = Some(Running {
                    handle,
                    started: now,
                    link: None,
                    queued: Vec::new(),
                    last_seen: now,
                    flushed: false,
                    intent: None,
                    asks: HashMap::new(),
                });
            }
            Err(e) => {
                error!(account = %id, error = %e, "cannot spawn worker");
                slot.parked = true;
                self.cache.update(id, |v| {
                    v.state.status = WorkerStatus::Failed;
                    v.state.reason = Some(Reason::Other("spawn_failed".into()));
                    v.state.last_error = Some(format!("cannot spawn worker: {e}"));
                });
            }
        }
    }

    fn archive(&mut self, id: &AccountId) {
        match self.registry.archive(id) {
            Ok(to) => {
                info!(account = %id, archived = %to.display(), "account deleted; directory archived")
            }
            Err(e) => error!(account = %id, error = %e, "cannot archive the deleted account"),
        }
        self.slots.remove(id);
        self.cache.remove(id);
    }

    fn kill_later(&self, id: &AccountId, pid: u32) {
        let tx = self.tx.clone();
        let id = id.clone();
        let after = self.timeouts.shutdown;
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            let _ = tx.send(FleetMsg::KillDue { id, pid });
        });
    }

    /// The liveness watchdog: a worker silent for the heartbeat timeout is killed and restarted.
    fn check_liveness(&mut self, now: Instant) {
        for (id, slot) in &mut self.slots {
            let Some(running) = &mut slot.running else {
                continue;
            };
            if running.intent.is_none()
                && now.saturating_duration_since(running.last_seen) >= self.timeouts.heartbeat
            {
                let silent_s = self.timeouts.heartbeat.as_secs();
                warn!(account = %id, pid = running.handle.pid, silent_s, "worker sent no heartbeat; killing it as hung");
                running.intent = Some(Intent::Hung);
                running.handle.signal(Signal::SIGKILL);
            }
        }
    }

    fn running_mut(&mut self, id: &AccountId, pid: u32) -> Option<&mut Running> {
        self.slots
            .get_mut(id)?
            .running
            .as_mut()
            .filter(|r| r.handle.pid == pid)
    }

    /// SIGTERM to every worker at once, wait under one deadline, SIGKILL the rest, log the tally.
    async fn shutdown(mut self) {
        let started = Instant::now();
        let total = self.slots.values().filter(|s| s.running.is_some()).count();
        for running in self.slots.values().filter_map(|s| s.running.as_ref()) {
            running.handle.signal(Signal::SIGTERM);
        }
        let mut flushed = 0usize;
        let mut remaining = total;
        let deadline = started + self.timeouts.shutdown;
        remaining = self.await_exits(remaining, deadline, &mut flushed).await;
        if remaining > 0 {
            warn!(remaining, "workers did not exit in time; killing them");
            for running in self.slots.values().filter_map(|s| s.running.as_ref()) {
                running.handle.signal(Signal::SIGKILL);
            }
            remaining = self
                .await_exits(remaining, Instant::now() + REAP_DEADLINE, &mut flushed)
                .await;
        }
        let ms = started.elapsed().as_millis() as u64;
        info!(
            flushed,
            total,
            unreaped = remaining,
            elapsed_ms = ms,
            "shutdown: {flushed}/{total} workers flushed in {ms} ms"
        );
    }

    async fn await_exits(
        &mut self,
        mut remaining: usize,
        deadline: Instant,
        flushed: &mut usize,
    ) -> usize {
        while remaining > 0 {
            let msg = tokio::select! {
                msg = self.rx.recv() => msg,
                _ = tokio::time::sleep_until(deadline) => break,
            };
            match msg {
                Some(FleetMsg::Exited { id, pid, status }) => {
                    let Some(slot) = self.slots.get_mut(&id) else {
                        continue;
                    };
                    if slot.running.as_ref().is_some_and(|r| r.handle.pid == pid) {
                        if let Some(running) = slot.running.take() {
                            *flushed += usize::from(running.flushed);
                        }
                        log_exit(&id, pid, &status);
                        remaining -= 1;
                    }
                }
                Some(FleetMsg::FromWorker {
                    id,
                    pid,
                    msg: ToSupervisor::Flushed,
                }) => {
                    if let Some(running) = self.running_mut(&id, pid) {
                        running.flushed = true;
                    }
                }
                Some(FleetMsg::Command { reply, .. }) => {
                    let _ = reply.send(Err(CommandError::ShuttingDown));
                }
                Some(FleetMsg::LinkUp { reply, .. }) => {
                    let _ = reply.send(false);
                }
                Some(_) => {}
                None => break,
            }
        }
        remaining
    }
}

async fn run_boot(
    plan: Vec<(AccountId, Duration)>,
    tx: mpsc::UnboundedSender<FleetMsg>,
    token: CancellationToken,
) {
    let total = plan.len();
    for (i, (id, gap)) in plan.into_iter().enumerate() {
        tokio::select! {
            biased;
            _ = token.cancelled() => return,
            _ = tokio::time::sleep(gap) => {}
        }
        info!(account = %id, n = i + 1, total, gap_ms = gap.as_millis() as u64, "boot: starting account");
        if tx.send(FleetMsg::BootSpawn(id)).is_err() {
            return;
        }
    }
    if total > 0 {
        info!(total, "boot: every stored account started");
    }
}

fn log_exit(id: &AccountId, pid: u32, status: &io::Result<ExitStatus>) {
    use std::os::unix::process::ExitStatusExt;
    match status {
        Ok(s) => info!(account = %id, pid, code = s.code(), signal = s.signal(), "worker exited"),
        Err(e) => warn!(account = %id, pid, error = %e, "worker exit status unknown"),
    }
}
