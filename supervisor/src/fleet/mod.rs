//! The fleet: the one task that owns every worker process.
//!
//! Everything that changes a worker goes through this task's channel as a [`FleetMsg`]: admin
//! commands from HTTP, boot spawns, IPC links coming and going with their snapshots, child exits
//! and timers. Each account's lifecycle decisions are data ([`slot::Slot::on_event`]); this
//! task applies their effects, feeds the outcomes back, and is the one writer of the account
//! views in the [`Cache`] the API reads. It answers commands at once (the API never waits on a
//! worker), and on cancellation stops every worker in parallel: SIGTERM to all, wait under one
//! deadline, SIGKILL the rest, log the tally.
//!
//! Every dial of every worker waits for a permit from the fleet's handshake [`budget`]: the
//! worker asks (`DialRequest`), this task grants in request order as the limits allow
//! (`DialGranted`), and the permit comes back with `DialDone`, the worker's exit, or a deadline.

pub mod boot;
pub mod budget;
pub mod child;
pub mod policy;
pub mod slot;

use std::collections::{HashMap, HashSet, VecDeque};
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
use crate::wa_version::WaVersions;
use budget::{Budget, BudgetConfig, Decisions};
use child::{ChildHandle, SpawnSpec};
use policy::RestartPolicy;
use slot::{Effect, Event, Slot, Timing, View};

/// How often the liveness watchdog looks, at most.
const WATCHDOG_TICK: Duration = Duration::from_secs(5);
/// After SIGKILL, how long to wait for the kernel to hand back the stragglers.
const REAP_DEADLINE: Duration = Duration::from_secs(2);
/// How long a deleted account's worker gets to unlink the device before it is stopped anyway.
const LOGOUT_DEADLINE: Duration = Duration::from_secs(5);

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
    /// A timer an account's slot asked for has run out.
    Due {
        /// The account.
        id: AccountId,
        /// What to feed its slot.
        event: Event,
    },
    /// A worker's IPC link was refused (another protocol version).
    LinkRefused {
        /// The account it claims.
        id: AccountId,
        /// Its pid.
        pid: u32,
        /// Why.
        reason: Reason,
    },
    /// The WhatsApp Web version changed: tell every running worker.
    WaVersion(worker::WaVersion),
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
    /// A pairing code for this phone (digits only).
    PairingCode(String),
}

/// The worker's answer to an [`Ask`].
#[derive(Debug)]
pub enum Answer {
    /// To `Send`.
    Sent(SendOutcome),
    /// To `Query`.
    Queried(QueryAnswer),
    /// To `PairingCode`.
    PairingCode(ipc_protocol::PairingCodeOutcome),
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
    /// `account.json` was rewritten (its webhook URL): show the new entry.
    AccountSaved(Account),
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

/// A running worker process and its link; its lifecycle is the slot's.
#[derive(Debug)]
struct Worker {
    handle: ChildHandle,
    link: Option<mpsc::UnboundedSender<ToWorker>>,
    queued: Vec<ToWorker>,
    last_seen: Instant,
    flushed: bool,
    /// Questions sent to this worker, by request id; dropped (so refused) if it exits.
    asks: HashMap<u64, oneshot::Sender<Result<Answer, CommandError>>>,
}

impl Worker {
    fn new(handle: ChildHandle) -> Self {
        Worker {
            handle,
            link: None,
            queued: Vec::new(),
            last_seen: Instant::now(),
            flushed: false,
            asks: HashMap::new(),
        }
    }

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

/// One account: its lifecycle, and its worker process if one runs.
#[derive(Debug, Default)]
struct Entry {
    slot: Slot,
    worker: Option<Worker>,
}

/// How long the fleet waits for workers.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    /// A worker asked to stop is killed after this.
    pub shutdown: Duration,
    /// A worker silent this long (60 s by default) is hung: killed and restarted.
    pub heartbeat: Duration,
    /// The handshake budget every dial waits on.
    pub budget: BudgetConfig,
}

/// The fleet task's state.
#[derive(Debug)]
pub struct Fleet {
    spec: SpawnSpec,
    timing: Timing,
    timeouts: Timeouts,
    cache: Arc<Cache>,
    registry: Registry,
    versions: Arc<WaVersions>,
    slots: HashMap<AccountId, Entry>,
    budget: Budget,
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
        versions: Arc<WaVersions>,
    ) -> (Fleet, FleetHandle) {
        let (tx, rx) = mpsc::unbounded_channel();
        let slots = cache
            .all()
            .into_iter()
            .map(|v| {
                let slot = if v.account.conflict_since.is_some() {
                    Slot::held()
                } else {
                    Slot::default()
                };
                (v.account.id, Entry { slot, worker: None })
            })
            .collect();
        let handle = FleetHandle { tx: tx.clone() };
        let fleet = Fleet {
            spec,
            timing: Timing {
                restart: policy,
                shutdown: timeouts.shutdown,
                logout: LOGOUT_DEADLINE.min(timeouts.shutdown.max(Duration::from_millis(100))),
            },
            timeouts,
            cache,
            registry,
            versions,
            slots,
            budget: Budget::new(timeouts.budget, Instant::now()),
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
            let wake = self.budget.next_wake();
            tokio::select! {
                biased;
                _ = token.cancelled() => break,
                Some(msg) = self.rx.recv() => self.handle(msg),
                _ = watchdog.tick() => {
                    self.check_liveness(Instant::now());
                    self.publish_budget();
                }
                _ = sleep_until_some(wake) => {
                    let decisions = self.budget.pump(Instant::now());
                    self.carry_out(decisions);
                }
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
                let _ = self.feed(&id, Event::Start);
            }
            FleetMsg::LinkUp { id, pid, tx, reply } => {
                let accepted = match self.worker_mut(&id, pid) {
                    Some(worker) if worker.link.is_none() => {
                        for cmd in worker.queued.drain(..) {
                            let _ = tx.send(cmd);
                        }
                        worker.link = Some(tx);
                        worker.last_seen = Instant::now();
                        true
                    }
                    _ => false,
                };
                let _ = reply.send(accepted);
            }
            FleetMsg::FromWorker { id, pid, msg } => self.on_worker_message(&id, pid, msg),
            FleetMsg::LinkDown { id, pid } => {
                if let Some(worker) = self.worker_mut(&id, pid) {
                    worker.link = None;
                    // It can no longer hear a grant, nor say its handshake ended.
                    let decisions = self.budget.gone(Instant::now(), &id, pid);
                    self.carry_out(decisions);
                }
            }
            FleetMsg::LinkRefused { id, pid, reason } => {
                let _ = self.feed(&id, Event::Refused { pid, reason });
            }
            FleetMsg::Exited { id, pid, status } => {
                let Some(entry) = self.slots.get_mut(&id) else {
                    return;
                };
                if entry.worker.as_ref().is_none_or(|w| w.handle.pid != pid) {
                    return;
                }
                // Its unanswered questions are refused as the worker goes.
                entry.worker = None;
                log_exit(&id, pid, &status);
                let decisions = self.budget.gone(Instant::now(), &id, pid);
                self.carry_out(decisions);
                let code = status.as_ref().ok().and_then(ExitStatus::code);
                let _ = self.feed(&id, Event::Exited { pid, code });
            }
            FleetMsg::Due { id, event } => {
                let _ = self.feed(&id, event);
            }
            FleetMsg::Ask { id, ask, reply } => self.on_ask(&id, ask, reply),
            FleetMsg::WaVersion(version) => {
                let version = version.to_string();
                let mut told = 0usize;
                for worker in self.slots.values_mut().filter_map(|e| e.worker.as_mut()) {
                    worker.send(ToWorker::SetWaVersion {
                        version: version.clone(),
                    });
                    told += 1;
                }
                info!(%version, workers = told, "workers told the new whatsapp web version");
            }
            FleetMsg::Confirmed { id, ids } => {
                // No worker: it reports them again when it starts, and they are confirmed then.
                if let Some(worker) = self.slots.get_mut(&id).and_then(|e| e.worker.as_mut()) {
                    worker.send(ToWorker::Confirm { ids });
                }
            }
        }
    }

    /// Feeds `event` to the account's slot and carries out what it decides, feeding the
    /// outcomes (a spawn's result) back until nothing follows.
    fn feed(&mut self, id: &AccountId, event: Event) -> Result<(), CommandError> {
        let mut pending = VecDeque::from([event]);
        let mut first = true;
        while let Some(event) = pending.pop_front() {
            let Some(entry) = self.slots.get_mut(id) else {
                return if first {
                    Err(CommandError::NotFound)
                } else {
                    Ok(())
                };
            };
            let decided = entry.slot.on_event(Instant::now(), &self.timing, event);
            let effects = match decided {
                Ok(effects) => effects,
                Err(e) if first => return Err(e),
                Err(_) => continue,
            };
            first = false;
            for effect in effects {
                if let Some(next) = self.apply(id, effect) {
                    pending.push_back(next);
                }
            }
        }
        Ok(())
    }

    /// Carries out one effect; a spawn's outcome comes back as the next event.
    fn apply(&mut self, id: &AccountId, effect: Effect) -> Option<Event> {
        let account_env = matches!(effect, Effect::Spawn).then(|| self.account_env(id));
        let entry = self.slots.get_mut(id)?;
        match effect {
            Effect::Spawn => {
                let account_env = account_env.unwrap_or_default();
                match child::spawn(&self.spec, id, &account_env, self.tx.clone()) {
                    Ok(handle) => {
                        let pid = handle.pid;
                        info!(account = %id, pid, "worker spawned");
                        entry.worker = Some(Worker::new(handle));
                        Some(Event::Spawned { pid })
                    }
                    Err(e) => {
                        error!(account = %id, error = %e, "cannot spawn worker; retrying with backoff");
                        Some(Event::SpawnFailed {
                            error: e.to_string(),
                        })
                    }
                }
            }
            Effect::Signal { pid, signal } => {
                if let Some(worker) = entry.worker.as_ref().filter(|w| w.handle.pid == pid) {
                    if signal == Signal::SIGKILL && !entry.slot.is_serving() {
                        warn!(account = %id, pid, "worker did not stop in time; killing it");
                    }
                    worker.handle.signal(signal);
                }
                None
            }
            Effect::Tell(cmd) => {
                if let Some(worker) = &mut entry.worker {
                    worker.send(cmd);
                }
                None
            }
            Effect::Later { after, event } => {
                let tx = self.tx.clone();
                let id = id.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(after).await;
                    let _ = tx.send(FleetMsg::Due { id, event });
                });
                None
            }
            Effect::Archive => {
                self.archive(id);
                None
            }
            Effect::Hold(held) => {
                self.hold(id, held);
                None
            }
            Effect::View(view) => {
                self.show(id, view);
                None
            }
        }
    }

    /// What this account's worker gets besides the fleet-wide environment: the WhatsApp Web
    /// version of the moment, and its own companion identity if the account has one.
    fn account_env(&self, id: &AccountId) -> Vec<(String, String)> {
        let mut env = vec![(
            "WA_VERSION".to_owned(),
            self.versions.current().version.to_string(),
        )];
        if let Some(browser) = self
            .cache
            .read_one(id, |v| v.account.browser.clone())
            .flatten()
        {
            env.push(("WA_BROWSER".to_owned(), browser));
        }
        env
    }

    /// Writes a slot's view change to the cache (this task is its one writer).
    fn show(&self, id: &AccountId, view: View) {
        let now = UnixMillis::now();
        match view {
            View::Spawned { pid } => self.cache.update(id, |v| {
                v.pid = Some(pid);
                v.started_at = Some(now);
                v.state.status = WorkerStatus::Connecting;
                v.state.reason = None;
                v.state.next_retry_at = None;
            }),
            View::Gone => self.cache.update(id, |v| {
                v.pid = None;
                v.state.next_retry_at = None;
                v.state.qr = None;
                v.state.qr_expires_at = None;
            }),
            View::Retrying {
                reason,
                delay,
                error,
            } => {
                warn!(account = %id, delay_ms = delay.as_millis() as u64, %reason, "restarting crashed worker");
                self.cache.update(id, |v| {
                    v.restarts = v.restarts.saturating_add(1);
                    v.state.status = WorkerStatus::Reconnecting;
                    v.state.reason = Some(reason);
                    v.state.next_retry_at = Some(now.after(delay));
                    v.state.last_event_at = Some(now);
                    if error.is_some() {
                        v.state.last_error = error;
                    }
                });
            }
            View::Held => {
                let since = self
                    .cache
                    .get(id)
                    .and_then(|v| v.account.conflict_since)
                    .unwrap_or(now);
                self.cache.update(id, |v| {
                    v.state.status = WorkerStatus::Conflict;
                    v.state.reason = Some(Reason::Replaced);
                    v.state.next_retry_at = None;
                    v.state.last_event_at = Some(now);
                    v.state.last_error = Some(crate::cache::conflict_text(since));
                });
            }
            View::Stopped {
                status,
                reason,
                error,
            } => {
                error!(account = %id, %reason, %error, "worker parked until an admin restarts it");
                self.cache.update(id, |v| {
                    v.state.status = status;
                    v.state.reason = Some(reason);
                    v.state.next_retry_at = None;
                    v.state.last_event_at = Some(now);
                    v.state.last_error = Some(error);
                });
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
        let Some(entry) = self.slots.get_mut(id) else {
            let _ = reply.send(Err(CommandError::NotFound));
            return;
        };
        let serving = entry.slot.is_serving();
        let Some(worker) = entry.worker.as_mut().filter(|_| serving) else {
            let _ = reply.send(Err(CommandError::NotRunning));
            return;
        };
        worker.asks.insert(request, reply);
        worker.send(match ask {
            Ask::Send(message) => ToWorker::Send { request, message },
            Ask::Query(query) => ToWorker::Query { request, query },
            Ask::PairingCode(phone) => ToWorker::RequestPairingCode { request, phone },
        });
    }

    fn on_command(&mut self, cmd: Command) -> Result<(), CommandError> {
        match cmd {
            Command::Added(account) => {
                let id = account.id.clone();
                self.cache.insert(AccountView::idle(account, false));
                self.slots.insert(id.clone(), Entry::default());
                self.feed(&id, Event::Start)
            }
            Command::Restart(id) => {
                if let Some(pid) = self.slots.get(&id).and_then(|e| e.slot.pid()) {
                    info!(account = %id, pid, "restarting worker");
                }
                self.feed(&id, Event::Restart)
            }
            Command::Logout(id) => self.feed(&id, Event::Logout),
            Command::AccountSaved(account) => {
                if !self.slots.contains_key(&account.id) {
                    return Err(CommandError::NotFound);
                }
                let id = account.id.clone();
                self.cache.update(&id, |v| v.account = account);
                Ok(())
            }
            Command::RequestQr(id) => self.feed(&id, Event::RequestQr),
            Command::Delete(id) => {
                if self.slots.get(&id).is_some_and(|e| e.slot.pid().is_some()) {
                    info!(account = %id, "deleting account: logging out, then stopping its worker");
                }
                self.feed(&id, Event::Delete)
            }
        }
    }

    fn on_worker_message(&mut self, id: &AccountId, pid: u32, msg: ToSupervisor) {
        let Some(worker) = self.worker_mut(id, pid) else {
            debug!(account = %id, pid, "message from a worker that is not ours; dropped");
            return;
        };
        worker.last_seen = Instant::now();
        match msg {
            ToSupervisor::State(state) => {
                debug!(account = %id, status = %state.status, "state");
                let status = state.status;
                if state.reason == Some(Reason::ClientOutdated) {
                    self.refresh_version();
                }
                self.cache.update(id, |v| v.state = state);
                match status {
                    WorkerStatus::LoggedOut => {
                        let _ = self.feed(id, Event::LoggedOut { pid });
                    }
                    WorkerStatus::Conflict => {
                        let _ = self.feed(id, Event::Conflict { pid });
                    }
                    _ => {}
                }
            }
            ToSupervisor::Flushed => worker.flushed = true,
            ToSupervisor::Goodbye { reason } => {
                info!(account = %id, pid, %reason, "worker says goodbye")
            }
            ToSupervisor::Heartbeat { .. } => {}
            ToSupervisor::SendAnswer { request, outcome } => {
                if let Some(reply) = worker.asks.remove(&request) {
                    let _ = reply.send(Ok(Answer::Sent(outcome)));
                }
            }
            ToSupervisor::QueryAnswer { request, answer } => {
                if let Some(reply) = worker.asks.remove(&request) {
                    let _ = reply.send(Ok(Answer::Queried(answer)));
                }
            }
            ToSupervisor::PairingCodeAnswer { request, outcome } => {
                if let Some(reply) = worker.asks.remove(&request) {
                    let _ = reply.send(Ok(Answer::PairingCode(outcome)));
                }
            }
            ToSupervisor::Message(record) => self.cache.message(id, &record),
            ToSupervisor::Call(call) => self.cache.call(id, &call),
            ToSupervisor::DialRequest { seq } => {
                debug!(account = %id, pid, seq, "dial permit asked for");
                let decisions = self.budget.request(Instant::now(), id, pid, seq);
                self.carry_out(decisions);
            }
            ToSupervisor::DialDone { seq, outcome } => {
                debug!(account = %id, pid, seq, ?outcome, "dial permit given back");
                let decisions = self.budget.done(Instant::now(), id, pid, seq);
                self.carry_out(decisions);
            }
            ToSupervisor::Hello { .. } => warn!(account = %id, pid, "second hello ignored"),
        }
    }

    /// WhatsApp refused our version (405): read the published one, at most every ten minutes;
    /// a newer one goes to every worker, and those stopped as `client_outdated` dial again.
    fn refresh_version(&self) {
        if !self.versions.refresh_due(Instant::now()) {
            return;
        }
        let versions = self.versions.clone();
        let tx = self.tx.clone();
        tokio::spawn(async move {
            if let Some(version) = versions.refresh().await {
                let _ = tx.send(FleetMsg::WaVersion(version));
            }
        });
    }

    /// Remembers in `account.json` that another client took the account over (or forgets it),
    /// so a supervisor restart does not take it back.
    fn hold(&mut self, id: &AccountId, held: bool) {
        let since = held.then(UnixMillis::now);
        match self.registry.set_conflict_since(id, since) {
            Ok(account) => {
                if held {
                    warn!(account = %id, "another client took the account over; held until an admin restarts it");
                } else {
                    info!(account = %id, "conflict released by the admin");
                }
                self.cache.update(id, |v| v.account = account);
            }
            Err(e) => error!(
                account = %id,
                error = %e,
                "cannot write the conflict to account.json; a supervisor restart would reconnect this account"
            ),
        }
    }

    /// Hands out the budget's permits and logs what it reclaimed.
    fn carry_out(&mut self, decisions: Decisions) {
        for (id, seq) in decisions.reclaimed {
            warn!(account = %id, seq, "dial permit not given back in time; reclaimed");
        }
        for grant in decisions.grants {
            match self.worker_mut(&grant.id, grant.pid) {
                Some(worker) => {
                    debug!(account = %grant.id, pid = grant.pid, seq = grant.seq, "dial permit granted");
                    worker.send(ToWorker::DialGranted { seq: grant.seq });
                }
                None => {
                    // Gone between its request and the grant: the permit goes back at once.
                    let more = self.budget.gone(Instant::now(), &grant.id, grant.pid);
                    self.carry_out(more);
                }
            }
        }
        self.publish_budget();
    }

    /// The budget's numbers for the API and `/metrics`.
    fn publish_budget(&self) {
        self.cache.budget.set(self.budget.stats(Instant::now()));
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

    /// The liveness watchdog: a worker silent for the heartbeat timeout is killed and restarted.
    fn check_liveness(&mut self, now: Instant) {
        let silent: Vec<(AccountId, u32)> = self
            .slots
            .iter()
            .filter(|(_, e)| e.slot.is_serving())
            .filter_map(|(id, e)| {
                let worker = e.worker.as_ref()?;
                (now.saturating_duration_since(worker.last_seen) >= self.timeouts.heartbeat)
                    .then(|| (id.clone(), worker.handle.pid))
            })
            .collect();
        for (id, pid) in silent {
            let silent_s = self.timeouts.heartbeat.as_secs();
            warn!(account = %id, pid, silent_s, "worker sent no heartbeat; killing it as hung");
            let _ = self.feed(&id, Event::Silent { pid });
        }
    }

    fn worker_mut(&mut self, id: &AccountId, pid: u32) -> Option<&mut Worker> {
        self.slots
            .get_mut(id)?
            .worker
            .as_mut()
            .filter(|w| w.handle.pid == pid)
    }

    /// SIGTERM to every worker at once, wait under one deadline, SIGKILL the rest, log the tally.
    async fn shutdown(mut self) {
        let started = Instant::now();
        let total = self.slots.values().filter(|e| e.worker.is_some()).count();
        for worker in self.slots.values().filter_map(|e| e.worker.as_ref()) {
            worker.handle.signal(Signal::SIGTERM);
        }
        let mut flushed = 0usize;
        let mut remaining = total;
        let deadline = started + self.timeouts.shutdown;
        remaining = self.await_exits(remaining, deadline, &mut flushed).await;
        if remaining > 0 {
            warn!(remaining, "workers did not exit in time; killing them");
            for worker in self.slots.values().filter_map(|e| e.worker.as_ref()) {
                worker.handle.signal(Signal::SIGKILL);
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
                    let Some(entry) = self.slots.get_mut(&id) else {
                        continue;
                    };
                    if entry.worker.as_ref().is_some_and(|w| w.handle.pid == pid) {
                        if let Some(worker) = entry.worker.take() {
                            *flushed += usize::from(worker.flushed);
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
                    if let Some(worker) = self.worker_mut(&id, pid) {
                        worker.flushed = true;
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

async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The boot plan's task: each account waits its gap, then goes to the fleet as a
/// [`FleetMsg::BootSpawn`]. A zero gap (`BOOT_JITTER_MAX_MS=0`) costs no timer: the task only
/// yields, so the fleet spawns the account at once and the HTTP API and the workers' links
/// get their turn between two spawns (a spawn holds the thread until the child has exec'd).
async fn run_boot(
    plan: Vec<(AccountId, Duration)>,
    tx: mpsc::UnboundedSender<FleetMsg>,
    token: CancellationToken,
) {
    let total = plan.len();
    for (i, (id, gap)) in plan.into_iter().enumerate() {
        if gap.is_zero() {
            tokio::task::yield_now().await;
            if token.is_cancelled() {
                return;
            }
        } else {
            tokio::select! {
                biased;
                _ = token.cancelled() => return,
                _ = tokio::time::sleep(gap) => {}
            }
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

/// Logs `boot complete: 28/30 connected, 2 need QR, in 97 s` once every booted account has
/// arrived somewhere (connected, waiting for a QR, or stopped for a reason), counted from the
/// supervisor's start; at `settle_by` it is logged anyway, as a warning naming the accounts
/// still on their way. Woken by the status events, never by a timer of its own.
pub async fn report_boot(
    cache: Arc<Cache>,
    booted: HashSet<AccountId>,
    started: Instant,
    settle_by: Instant,
    token: CancellationToken,
) {
    // Subscribed before the first look, so no change falls between the two.
    let mut live = cache.events.subscribe(None).live;
    loop {
        let outcome = cache.read_all(|views, _| {
            boot::BootOutcome::of(views.map(|v| (&v.account.id, v.state.status)), &booted)
        });
        if outcome.settled() {
            info!(
                "boot complete: {outcome}, in {}",
                boot::seconds(started.elapsed())
            );
            return;
        }
        tokio::select! {
            biased;
            _ = token.cancelled() => return,
            _ = tokio::time::sleep_until(settle_by) => {
                warn!(
                    "boot complete: {outcome}, in {}",
                    boot::seconds(started.elapsed())
                );
                return;
            }
            event = live.recv() => {
                if let Err(tokio::sync::broadcast::error::RecvError::Closed) = event {
                    return;
                }
            }
        }
    }
}

fn log_exit(id: &AccountId, pid: u32, status: &io::Result<ExitStatus>) {
    use std::os::unix::process::ExitStatusExt;
    match status {
        Ok(s) => info!(account = %id, pid, code = s.code(), signal = s.signal(), "worker exited"),
        Err(e) => warn!(account = %id, pid, error = %e, "worker exit status unknown"),
    }
}
