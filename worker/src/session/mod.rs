//! The account's session: load or create creds, connect, pair or log in, stay online, obey
//! commands, report every change.
//!
//! 1. Load `creds.json`. Missing: generate the keys and persist them before the first
//!    connection (a worker restarted mid-pairing reuses them). Corrupt: keep it aside, report
//!    `needs_qr` (`creds_corrupt`) and wait for `RequestQr`.
//! 2. Ask the supervisor for a dial permit (its fleet-wide handshake budget; a worker without a
//!    supervisor dials at once), dial and run the Noise handshake ([`connect`], through a
//!    [`socket::Dialer`]) with the registration or login payload ([`payload`]); the certificate
//!    chain must verify under the trusted root. The permit goes back (`DialDone`) once the
//!    handshake has ended: at `<success>`, at the end of the Noise handshake of a registration
//!    (the pairing then waits for a person), or when the attempt failed.
//! 3. Each stanza goes to its handler ([`dispatch`]), which only decides: it returns
//!    [`Actions`] (persist, report, send, end) that [`Session::apply`] carries out in that
//!    order. The connection's [`Stage`] names what it waits for: the QR scan ([`pair`]),
//!    `<success>` ([`login`]), keepalive answers ([`keepalive`]), a logout ([`logout`]).
//!    Messages: [`receive`] decrypts ([`decrypt`]) and confirms what arrives; [`send`] drains
//!    the outbox ([`messages`] queues it) after every decision while online; [`receipts`] and
//!    [`resend`] follow what we sent.
//! 4. Stream errors and failures decide between reconnecting, backing off and stopping
//!    ([`events`]); backoff per [`reconnect::Backoff`], whose counter starts over only once a
//!    connection has stayed up for `BACKOFF_RESET_AFTER_MS`.
//! 5. Every change goes to the supervisor as a full snapshot; a heartbeat goes at least every
//!    `HEARTBEAT_INTERVAL_MS` (30 s), with the keepalive ping when online. The session's own
//!    timers fold into one deadline beside the connection's ([`Phase::next_event`]).
//! 6. On cancel (SIGTERM, `Shutdown`, EOF on the link): stop, close the socket, save the creds
//!    only if a change of them is not yet on disk (every save is durable when it returns, so an
//!    unchanged file is neither rewritten nor fsynced again), send `Flushed`, return.

mod actions;
#[allow(dead_code)] // Wired in by the send path.
mod bundles;
mod connect;
mod decrypt;
mod dispatch;
mod events;
mod group;
mod keepalive;
mod login;
mod logout;
mod messages;
mod pair;
mod pair_code;
mod payload;
mod pushes;
mod receipts;
mod receive;
pub(crate) mod reconnect;
mod request;
mod resend;
mod retry;
mod send;
mod socket;
mod stage;
#[cfg(test)]
mod tests;
#[allow(dead_code)] // Wired in by the send path.
mod usync;

use std::io;
use std::time::Duration;

use ipc_protocol::{
    DialOutcome, Reason, ToSupervisor, ToWorker, UnixMillis, WorkerState, WorkerStatus,
};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::config::{Browser, WaVersion, WorkerArgs};
use crate::ipc::Link;
use crate::store::creds::{Creds, CredsStore, Loaded};
use crate::store::devices::DeviceCache;
use crate::store::groups::GroupStore;
use crate::store::messages::{MessageStore, Retention};
use crate::store::secret::{Blob, Secret};
use crate::store::signal::{Address, KeyStore, KeyStoreError};
use crate::store::trouble::{self, Trouble};
use crate::transport::TransportError;
use crate::wa::binary::{Jid, Node};
use crate::wa::noise::cert::WA_ROOT_KEY;
use actions::{Actions, Persist, Report};
use connect::{ConnectError, Dial};
use events::Disconnect;
use reconnect::{Backoff, RestartPlan, Retry};
use socket::{DialFuture, Dialer, Socket};
use stage::{Ctx, Live, Settings};

/// How often old messages are pruned (and once at start).
const RETENTION_EVERY: Duration = Duration::from_secs(600);

/// Why the session ended badly.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SessionError {
    /// The creds file could not be read, written or moved aside.
    #[error("creds store failed: {0}")]
    Store(#[source] io::Error),
    /// The Signal key store could not be read or written.
    #[error("key store failed: {0}")]
    Keys(#[source] KeyStoreError),
}

impl SessionError {
    /// The I/O error of a read or write of the volume, if that is what failed.
    fn storage(&self) -> Option<&io::Error> {
        match self {
            SessionError::Store(e) => Some(e),
            SessionError::Keys(KeyStoreError::Io { source, .. }) => Some(source),
            SessionError::Keys(_) => None,
        }
    }
}

/// The volume refuses writes: what was dropped, and when to look again.
#[derive(Debug)]
struct StorageTrouble {
    /// Probes that failed so far.
    attempt: u32,
    /// When to probe next.
    next_probe: Instant,
    /// A stanza went unanswered because what it changed could not be persisted: once the
    /// volume takes writes again, reconnect so the server delivers it again.
    dropped: bool,
    /// A connection was abandoned (or never dialled): dial once the volume takes writes.
    redial: bool,
}

/// The first probe after a failed write comes this soon; the delay doubles up to
/// [`STORAGE_PROBE_MAX`], so the account recovers within seconds of space returning.
const STORAGE_PROBE_FIRST: Duration = Duration::from_millis(500);
const STORAGE_PROBE_MAX: Duration = Duration::from_secs(4);

/// What the session is doing.
enum Phase {
    /// Nothing to do until a command arrives.
    Idle,
    /// Waiting for the next attempt.
    Waiting(Instant),
    /// Waiting for the supervisor's permit to dial, asked for as `seq`.
    Queued(u64),
    /// Dialling and handshaking.
    Dialing(DialFuture),
    /// Connected (pairing, logging in, or online).
    Open(Box<Live>),
}

/// Something that moved the session along.
enum Event {
    RetryDue,
    Dialed(Result<Socket, ConnectError>),
    Node(Result<Node, TransportError>),
    Timer,
    /// The session's own timers (heartbeat, retention, storage probe, stable connection) are
    /// due; [`Session::do_chores`] runs after every event anyway.
    Chores,
}

impl Phase {
    /// Waits for this phase's next event, or for `chores` (the session's own next deadline):
    /// one timer in all, so an idle worker keeps a single entry in tokio's timer wheel (each
    /// entry can wake the thread up to three times on its way down the wheel's levels).
    ///
    /// # Cancel safety
    /// Cancel safe: the dial future lives in the phase, and the socket keeps partial frames in
    /// its own buffer.
    async fn next_event(&mut self, chores: Instant) -> Event {
        match self {
            Phase::Idle | Phase::Queued(_) => {
                tokio::time::sleep_until(chores).await;
                Event::Chores
            }
            Phase::Waiting(at) => {
                let at = *at;
                tokio::time::sleep_until(at.min(chores)).await;
                if Instant::now() >= at {
                    Event::RetryDue
                } else {
                    Event::Chores
                }
            }
            Phase::Dialing(dial) => tokio::select! {
                dialed = dial => Event::Dialed(dialed),
                _ = tokio::time::sleep_until(chores) => Event::Chores,
            },
            Phase::Open(live) => {
                let deadline = live.next_deadline().map_or(chores, |at| at.min(chores));
                tokio::select! {
                    node = live.socket.read_node() => Event::Node(node),
                    _ = tokio::time::sleep_until(deadline) => Event::Timer,
                }
            }
        }
    }
}

/// When the session's own periodic work is next due.
#[derive(Debug)]
struct Chores {
    /// The next heartbeat, at the latest.
    heartbeat: Instant,
    /// The next pruning of old messages.
    retention: Instant,
}

/// One account's session.
pub(crate) struct Session {
    store: CredsStore,
    keys: KeyStore,
    groups: GroupStore,
    devices: DeviceCache,
    backoff: Backoff,
    ws_url: String,
    root: [u8; 32],
    version: WaVersion,
    browser: Browser,
    settings: Settings,
    dialer: Dialer,
    link: Link,
    commands: mpsc::UnboundedReceiver<ToWorker>,
    state: WorkerState,
    creds: Option<Creds>,
    /// The outbox and the message record; `None` when it could not be opened.
    messages: Option<MessageStore>,
    outbox_limit: u32,
    retention: Retention,
    last_frame_at: Option<UnixMillis>,
    has_dialled: bool,
    /// Set while the volume refuses writes.
    storage: Option<StorageTrouble>,
    /// How often a heartbeat goes to the supervisor (its watchdog fires after 60 s of silence).
    heartbeat_every: Duration,
    /// The `seq` of the last `DialRequest`.
    dial_seq: u64,
    /// The dial request outstanding, or the permit held: its `seq`.
    permit: Option<u64>,
    /// The current connection is a registration (its 515 is the one after pairing).
    registration: bool,
    /// When the current connection logged in.
    logged_in_at: Option<Instant>,
    /// When the current connection becomes stable (the backoff then starts over).
    stable_at: Option<Instant>,
    /// The creds in memory hold a change whose save failed: saved again once the volume takes
    /// writes, and at shutdown. Otherwise the file already holds them, durably.
    creds_unsaved: bool,
    /// A pairing code asked for before the registration connection reached the scan: its
    /// request and phone, started once `pair-device` has arrived.
    pending_code: Option<(u64, String)>,
}

impl Session {
    pub(crate) fn new(
        args: &WorkerArgs,
        link: Link,
        commands: mpsc::UnboundedReceiver<ToWorker>,
    ) -> Self {
        let c = &args.connection;
        Session {
            store: CredsStore::new(&args.account_dir()),
            keys: KeyStore::new(&args.account_dir()),
            groups: GroupStore::new(&args.account_dir()),
            devices: DeviceCache::new(&args.account_dir()),
            backoff: args.backoff(),
            ws_url: c.wa_ws_url.clone(),
            root: c.wa_trust_root.map_or(WA_ROOT_KEY, |r| r.0),
            version: c.wa_version,
            browser: c.wa_browser.clone(),
            settings: Settings {
                qr_lifetime: (c.qr_ref_timeout_ms > 0)
                    .then(|| Duration::from_millis(c.qr_ref_timeout_ms)),
                platform_id: match c.wa_browser.platform_type {
                    0 => "1".to_owned(),
                    other => other.to_string(),
                },
                platform_display: format!("{} ({})", c.wa_browser.platform, c.wa_browser.name),
            },
            dialer: Dialer::Network,
            link,
            commands,
            state: WorkerState::default(),
            creds: None,
            messages: None,
            outbox_limit: c.outbox_limit,
            retention: Retention {
                max_age_ms: u64::from(c.message_retention_days) * 24 * 3600 * 1000,
                max_count: c.message_retention_count as usize,
            },
            last_frame_at: None,
            has_dialled: false,
            storage: None,
            heartbeat_every: Duration::from_millis(c.heartbeat_interval_ms.max(100)),
            dial_seq: 0,
            permit: None,
            registration: false,
            logged_in_at: None,
            stable_at: None,
            creds_unsaved: false,
            pending_code: None,
        }
    }

    /// Runs the session until `token` is cancelled or the supervisor says `Shutdown`.
    ///
    /// # Errors
    /// [`SessionError::Store`] when the creds cannot be loaded, written or kept aside.
    pub(crate) async fn run(mut self, token: CancellationToken) -> Result<(), SessionError> {
        let mut phase = self.start()?;
        let now = Instant::now();
        self.send_heartbeat();
        self.prune_messages();
        let mut chores = Chores {
            heartbeat: now + self.heartbeat_every,
            retention: now + RETENTION_EVERY,
        };
        loop {
            let due = self.next_chore(&chores);
            tokio::select! {
                biased;
                _ = token.cancelled() => break,
                cmd = self.commands.recv() => match cmd {
                    Some(ToWorker::Shutdown) | None => break,
                    Some(cmd) => phase = self.on_command(cmd, phase).await?,
                },
                event = phase.next_event(due) => phase = self.on_event(event, phase).await?,
            }
            phase = self.do_chores(&mut chores, phase).await?;
        }
        self.flush(phase).await
    }

    /// The earliest of the session's own deadlines.
    fn next_chore(&self, chores: &Chores) -> Instant {
        [
            Some(chores.heartbeat),
            Some(chores.retention),
            self.storage.as_ref().map(|t| t.next_probe),
            self.stable_at,
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(chores.heartbeat)
    }

    /// Runs whatever of the session's own work is due, after any event. The heartbeat rides on
    /// whatever woke the worker once half its interval has passed: an online worker's
    /// heartbeats go out with its keepalive pings (every 20 to 30 s) instead of waking it on
    /// their own, and one goes out at the latest a full interval after the last.
    async fn do_chores(
        &mut self,
        chores: &mut Chores,
        phase: Phase,
    ) -> Result<Phase, SessionError> {
        let now = Instant::now();
        let phase = if self.storage.as_ref().is_some_and(|t| now >= t.next_probe) {
            self.on_storage_probe(phase).await?
        } else {
            phase
        };
        if self.stable_at.is_some_and(|at| now >= at) {
            self.on_stable();
        }
        if now >= chores.retention {
            self.prune_messages();
            chores.retention = now + RETENTION_EVERY;
        }
        if now + self.heartbeat_every / 2 >= chores.heartbeat {
            self.send_heartbeat();
            chores.heartbeat = now + self.heartbeat_every;
        }
        Ok(phase)
    }

    /// Step 1.
    fn start(&mut self) -> Result<Phase, SessionError> {
        match MessageStore::open(self.store.dir()) {
            Ok(store) => {
                info!(queued = store.queued_count(), "message store opened");
                // What the last run received but the supervisor never confirmed goes to it again.
                match store.unconfirmed() {
                    Ok(records) => {
                        if !records.is_empty() {
                            info!(
                                count = records.len(),
                                "reporting unconfirmed messages again"
                            );
                        }
                        for record in records {
                            self.link.send(ToSupervisor::Message(record));
                        }
                    }
                    Err(e) => warn!(error = %e, "cannot list unconfirmed messages"),
                }
                self.messages = Some(store);
            }
            Err(e) => error!(error = %e, "message store unusable; sends are refused"),
        }
        match self.store.load(&self.keys) {
            Ok(Loaded::Creds(creds)) => {
                info!(paired = creds.is_paired(), "creds loaded");
                self.state.phone = creds.phone().map(str::to_owned);
                self.state.jid = creds.me.as_ref().map(|me| me.jid.clone());
                self.creds = Some(*creds);
                self.dial()
            }
            Ok(Loaded::Missing) => {
                info!("no creds yet; connecting to pair");
                self.dial()
            }
            Ok(Loaded::Corrupt { kept_as, problem }) => {
                error!(kept_as = %kept_as.display(), %problem, "creds file unusable; kept aside");
                self.state.last_error = Some(format!("creds file unusable: {problem}"));
                self.set(WorkerStatus::NeedsQr, Some(Reason::CredsCorrupt));
                Ok(Phase::Idle)
            }
            Ok(Loaded::NewerVersion { version }) => Ok(self.newer_creds(version)),
            Ok(Loaded::Sealed { problem }) => Ok(self.sealed_creds(problem)),
            Err(e) => self.storage_failed(SessionError::Store(e), true),
        }
    }

    /// A `creds.json` of a newer format (a rollback): stop, and touch nothing.
    fn newer_creds(&mut self, version: u32) -> Phase {
        let error = format!(
            "creds.json has format version {version}; this build reads version {}: \
             run a newer release (the file is left untouched)",
            crate::store::creds::CREDS_VERSION
        );
        error!(
            version,
            "creds file is of a newer format; stopped, file left untouched"
        );
        self.state.last_error = Some(error);
        self.state.next_retry_at = None;
        self.set(WorkerStatus::Failed, Some(Reason::CredsNewerVersion));
        Phase::Idle
    }

    /// Sealed creds that do not open: stop, and touch nothing.
    fn sealed_creds(&mut self, problem: String) -> Phase {
        error!(error = %problem, "creds are sealed and do not open; stopped, files left untouched");
        self.state.last_error = Some(problem);
        self.state.next_retry_at = None;
        self.set(WorkerStatus::Failed, Some(Reason::SessionsKey));
        Phase::Idle
    }

    /// A read or write of the volume failed. An I/O failure becomes storage trouble: it is
    /// reported with the OS error, and the volume is probed with backoff until it takes writes.
    /// Anything else still ends the worker.
    fn storage_failed(&mut self, e: SessionError, redial: bool) -> Result<Phase, SessionError> {
        let Some(io) = e.storage() else {
            return Err(e);
        };
        let reason = Trouble::of(io).reason();
        let text = error_chain(&e);
        if self.storage.is_none() {
            error!(%reason, error = %text, "volume write failed; probing it until it takes writes");
        } else {
            debug!(%reason, error = %text, "volume write failed again");
        }
        let trouble = self.storage.get_or_insert(StorageTrouble {
            attempt: 0,
            next_probe: Instant::now() + STORAGE_PROBE_FIRST,
            dropped: false,
            redial: false,
        });
        trouble.redial |= redial;
        self.state.last_error = Some(text);
        self.state.next_retry_at = None;
        let status = if redial {
            WorkerStatus::Disconnected
        } else {
            self.state.status
        };
        self.set(status, Some(reason));
        Ok(Phase::Idle)
    }

    /// A decision could not be persisted: nothing of it goes out. Online, the connection
    /// stays (the stanza stays unacknowledged, so the server delivers it again after the
    /// reconnect that follows recovery); before that (pairing, login), the connection is
    /// abandoned before any reply.
    async fn persist_failed(
        &mut self,
        mut live: Box<Live>,
        e: SessionError,
    ) -> Result<Phase, SessionError> {
        if !live.stage.is_online() {
            live.socket.close().await;
            self.state.qr = None;
            self.state.qr_expires_at = None;
            return self.storage_failed(e, true);
        }
        self.storage_failed(e, false)?;
        if let Some(trouble) = &mut self.storage {
            trouble.dropped = true;
        }
        Ok(Phase::Open(live))
    }

    /// Probes the volume; once it takes writes, clears the trouble and picks up where it
    /// stopped.
    async fn on_storage_probe(&mut self, phase: Phase) -> Result<Phase, SessionError> {
        let Some(trouble) = &mut self.storage else {
            return Ok(phase);
        };
        if let Err(e) = trouble::probe(self.store.dir()) {
            trouble.attempt = trouble.attempt.saturating_add(1);
            let delay = STORAGE_PROBE_FIRST
                .saturating_mul(1 << trouble.attempt.min(8))
                .min(STORAGE_PROBE_MAX);
            trouble.next_probe = Instant::now() + delay;
            debug!(error = %e, delay_ms = delay.as_millis() as u64, "volume still refuses writes");
            let text = format!("volume refuses writes: {e}");
            if self.state.last_error.as_deref() != Some(text.as_str()) {
                self.state.last_error = Some(text);
                self.set(self.state.status, Some(Trouble::of(&e).reason()));
            }
            return Ok(phase);
        }
        let Some(trouble) = self.storage.take() else {
            return Ok(phase);
        };
        info!("the volume takes writes again");
        if self.creds_unsaved {
            if let Some(creds) = &self.creds {
                match self.store.save(creds) {
                    Ok(()) => self.creds_unsaved = false,
                    Err(e) => {
                        warn!(error = %e, "cannot save the creds change yet; saved at shutdown")
                    }
                }
            }
        }
        if self.messages.is_none() {
            match MessageStore::open(self.store.dir()) {
                Ok(store) => self.messages = Some(store),
                Err(e) => warn!(error = %e, "message store still unusable"),
            }
        }
        self.state.last_error = None;
        match phase {
            Phase::Open(live) if trouble.dropped => {
                info!("reconnecting so the server delivers again what was not acknowledged");
                self.end_connection(Some(live), DialOutcome::Failure).await;
                self.dial()
            }
            Phase::Idle if trouble.redial => self.dial(),
            phase => {
                self.set(self.state.status, None);
                Ok(phase)
            }
        }
    }

    async fn on_command(&mut self, cmd: ToWorker, phase: Phase) -> Result<Phase, SessionError> {
        // Message commands carry texts and phone numbers: log what they are, not what they hold.
        match &cmd {
            ToWorker::Send { request, .. } => debug!(request, "command: send"),
            ToWorker::Query { request, .. } => debug!(request, "command: query"),
            ToWorker::Confirm { ids } => debug!(count = ids.len(), "command: confirm"),
            ToWorker::DialGranted { .. } => {}
            ToWorker::RequestPairingCode { request, .. } => info!(request, "command: pairing code"),
            other => info!(?other, "command"),
        }
        match (cmd, phase) {
            (ToWorker::Ping, phase) => {
                self.send_heartbeat();
                Ok(phase)
            }
            (ToWorker::DialGranted { seq }, Phase::Queued(queued)) if seq == queued => {
                debug!(seq, "dial permit granted");
                self.dial_now()
            }
            (ToWorker::DialGranted { seq }, phase) => {
                // A permit for a request this worker no longer has: give it back.
                debug!(seq, "stale dial permit; given back");
                self.link.send(ToSupervisor::DialDone {
                    seq,
                    outcome: DialOutcome::Withdrawn,
                });
                Ok(phase)
            }
            (ToWorker::RequestQr, Phase::Idle | Phase::Waiting(_)) => {
                self.state.reconnect_attempts = 0;
                self.dial()
            }
            (ToWorker::RequestQr, busy) => {
                debug!("already connecting or connected; qr request noted");
                Ok(busy)
            }
            (ToWorker::Logout, Phase::Open(mut live)) => {
                let actions = self.decide(&mut live, logout::start);
                self.apply_open(live, actions).await
            }
            (ToWorker::Logout, _) => {
                self.after_disconnect(
                    None,
                    Disconnect::logged_out("logged out by the admin".into()),
                )
                .await
            }
            (ToWorker::Send { request, message }, phase) => {
                let paired = self.is_paired();
                let outcome =
                    messages::queue(self.messages.as_mut(), paired, self.outbox_limit, message);
                self.link
                    .send(ToSupervisor::SendAnswer { request, outcome });
                match phase {
                    Phase::Open(live) => self.apply_open(live, Actions::none()).await,
                    other => Ok(other),
                }
            }
            (ToWorker::Query { request, query }, phase) => {
                let answer = messages::answer(self.messages.as_ref(), query);
                self.link
                    .send(ToSupervisor::QueryAnswer { request, answer });
                Ok(phase)
            }
            (ToWorker::Confirm { ids }, phase) => {
                if let Some(store) = &self.messages {
                    if let Err(e) = store.confirm(&ids) {
                        warn!(error = %e, "cannot forget confirmed messages; they will be reported again");
                    }
                }
                Ok(phase)
            }
            (ToWorker::SetWaVersion { version }, phase) => {
                let version = match version.parse::<WaVersion>() {
                    Ok(version) => version,
                    Err(e) => {
                        warn!(error = %e, "ignoring a malformed whatsapp web version");
                        return Ok(phase);
                    }
                };
                self.version = version;
                let outdated = self.state.reason == Some(Reason::ClientOutdated);
                match phase {
                    Phase::Idle if outdated => {
                        info!(%version, "whatsapp web version changed; dialling again");
                        self.state.reconnect_attempts = 0;
                        self.dial()
                    }
                    phase => Ok(phase),
                }
            }
            (ToWorker::RequestPairingCode { request, phone }, phase) => {
                self.on_pairing_code(request, phone, phase).await
            }
            (ToWorker::Shutdown, phase) => Ok(phase),
        }
    }

    /// A pairing code for `phone` (pair_code.rs): asked on the registration connection at the
    /// scan, or held until the connection gets there (dialling one if none is on the way).
    async fn on_pairing_code(
        &mut self,
        request: u64,
        phone: String,
        phase: Phase,
    ) -> Result<Phase, SessionError> {
        use ipc_protocol::PairingCodeRefusal as Refusal;
        let refusal = if self.is_paired() {
            Some(Refusal::AlreadyPaired)
        } else if !pair_code::valid_phone(&phone) {
            Some(Refusal::InvalidPhone)
        } else {
            None
        };
        if let Some(refusal) = refusal {
            self.report(pair_code::refused(request, refusal));
            return Ok(phase);
        }
        if let Some((earlier, _)) = self.pending_code.take() {
            self.report(pair_code::refused(earlier, Refusal::ConnectionLost));
        }
        match phase {
            Phase::Open(mut live) if matches!(live.stage, stage::Stage::ExpectScan(..)) => {
                let actions = self.decide(&mut live, |ctx| pair_code::start(ctx, request, &phone));
                self.apply_open(live, actions).await
            }
            Phase::Open(live) if self.registration => {
                self.pending_code = Some((request, phone));
                Ok(Phase::Open(live))
            }
            phase @ (Phase::Queued(_) | Phase::Dialing(_)) => {
                self.pending_code = Some((request, phone));
                Ok(phase)
            }
            Phase::Idle | Phase::Waiting(_) => {
                self.state.reconnect_attempts = 0;
                let phase = self.dial()?;
                if matches!(phase, Phase::Idle) {
                    self.report(pair_code::refused(request, Refusal::NotConnected));
                } else {
                    info!("pairing code requested; dialling to register first");
                    self.pending_code = Some((request, phone));
                }
                Ok(phase)
            }
            phase => {
                self.report(pair_code::refused(request, Refusal::NotConnected));
                Ok(phase)
            }
        }
    }

    /// Starts a held pairing code once the connection is at the scan.
    async fn start_pending_code(&mut self, phase: Phase) -> Result<Phase, SessionError> {
        match phase {
            Phase::Open(mut live)
                if self.pending_code.is_some()
                    && matches!(live.stage, stage::Stage::ExpectScan(..)) =>
            {
                let Some((request, phone)) = self.pending_code.take() else {
                    return Ok(Phase::Open(live));
                };
                let actions = self.decide(&mut live, |ctx| pair_code::start(ctx, request, &phone));
                self.apply_open(live, actions).await
            }
            phase => Ok(phase),
        }
    }

    async fn on_event(&mut self, event: Event, phase: Phase) -> Result<Phase, SessionError> {
        match (event, phase) {
            (Event::RetryDue, _) => self.dial(),
            (Event::Dialed(Ok(socket)), _) => {
                let paired = self.is_paired();
                info!(paired, "handshake done");
                self.registration = !paired;
                if !paired {
                    // The pairing now waits for a person: the permit goes back at once.
                    self.release(DialOutcome::Success);
                }
                self.touch();
                Ok(Phase::Open(Box::new(Live::new(socket, paired))))
            }
            (Event::Dialed(Err(e)), _) => {
                self.release(DialOutcome::Error);
                let reason = if e.is_certificate() {
                    Reason::CertificateRejected
                } else {
                    Reason::Network
                };
                Ok(self.retry_later(reason, e.to_string()))
            }
            (Event::Node(Ok(node)), Phase::Open(mut live)) => {
                self.last_frame_at = Some(UnixMillis::now());
                let actions = self.decide(&mut live, |ctx| dispatch::on_node(ctx, &node));
                let phase = self.apply_open(live, actions).await?;
                self.start_pending_code(phase).await
            }
            (Event::Node(Err(e)), Phase::Open(live)) => {
                self.after_disconnect(Some(live), network(e)).await
            }
            (Event::Timer, Phase::Open(mut live)) => {
                let actions = self.decide(&mut live, dispatch::on_timer);
                self.apply_open(live, actions).await
            }
            (_, phase) => Ok(phase),
        }
    }

    /// Runs one handler against the connection.
    fn decide(&self, live: &mut Live, handler: impl FnOnce(&mut Ctx<'_>) -> Actions) -> Actions {
        let mut ctx = Ctx {
            creds: self.creds.as_ref(),
            keys: &self.keys,
            groups: &self.groups,
            devices: &self.devices,
            messages: self.messages.as_ref(),
            settings: &self.settings,
            requests: &mut live.requests,
            stage: &mut live.stage,
            outbound: &mut live.outbound,
            now: Instant::now(),
        };
        handler(&mut ctx)
    }

    /// Step 3: carries out a decision on an open connection, in the documented order.
    async fn apply_open(
        &mut self,
        mut live: Box<Live>,
        actions: Actions,
    ) -> Result<Phase, SessionError> {
        let mut actions = actions;
        loop {
            let Actions {
                persist,
                report,
                send,
                end,
            } = actions;
            let mut follow_ups = Vec::new();
            for change in persist {
                match self.persist(change, &mut live.requests) {
                    Ok(follow_up) => follow_ups.extend(follow_up),
                    Err(e) => return self.persist_failed(live, e).await,
                }
            }
            for r in report {
                self.report(r);
            }
            for node in send.iter().chain(&follow_ups) {
                if let Err(e) = live.socket.send_node(node).await {
                    return self.after_disconnect(Some(live), network(e)).await;
                }
            }
            if let Some(disconnect) = end {
                return self.after_disconnect(Some(live), disconnect).await;
            }
            // Once a decision is carried out, the outbox moves on if it can: the next queued
            // message goes when nothing is in flight (send.rs step 1).
            let queued = self.messages.as_ref().is_some_and(|m| m.queued_count() > 0);
            if !(queued && live.outbound.is_none() && live.stage.is_online()) {
                return Ok(Phase::Open(live));
            }
            actions = self.decide(&mut live, send::pump);
            if actions.send.is_empty() && actions.persist.is_empty() {
                return Ok(Phase::Open(live));
            }
        }
    }

    /// Makes one change durable; some changes have a stanza that must follow them (and only
    /// them), which is returned to go out after the decision's own.
    fn persist(
        &mut self,
        change: Persist,
        requests: &mut request::Requests,
    ) -> Result<Option<Node>, SessionError> {
        match change {
            Persist::Creds(creds) => {
                self.store.save(&creds).map_err(SessionError::Store)?;
                self.creds = Some(*creds);
                self.creds_unsaved = false;
            }
            Persist::OwnLid(lid) => self.update_creds(|c| {
                if let Some(me) = &mut c.me {
                    me.lid = Some(lid);
                }
            })?,
            Persist::UploadPrekeys(count) => {
                let fresh = self
                    .keys
                    .generate_prekeys(count)
                    .map_err(SessionError::Keys)?;
                info!(count, "uploading prekeys");
                return Ok(self
                    .creds
                    .as_ref()
                    .map(|creds| login::upload_iq(requests, creds, &fresh)));
            }
            Persist::RoutingInfo(info) => {
                self.update_creds(|c| c.routing_info = Some(Blob(info)))?
            }
            Persist::LidMapping { pn, lid } => {
                let known = self.keys.lid_for_pn(&pn).map_err(SessionError::Keys)?;
                if known.as_deref() != Some(lid.as_str()) {
                    self.keys
                        .store_lid_mapping(&pn, &lid)
                        .map_err(SessionError::Keys)?;
                }
            }
            Persist::Session {
                address,
                record,
                consumed_prekey,
                identity,
            } => {
                if let Some(identity) = identity {
                    self.keys
                        .store_identity(&address, &identity)
                        .map_err(SessionError::Keys)?;
                }
                match consumed_prekey {
                    Some(id) => self
                        .keys
                        .store_session_consuming_prekey(&address, &record, id),
                    None => self.keys.store_session(&address, &record),
                }
                .map_err(SessionError::Keys)?;
            }
            Persist::SenderKey {
                group,
                sender,
                record,
            } => self
                .keys
                .store_sender_key(&group, &sender, &record)
                .map_err(SessionError::Keys)?,
            Persist::DeviceList { user, devices, lid } => self
                .devices
                .save(&user, &devices, lid.as_ref(), UnixMillis::now().0)
                .map_err(SessionError::Store)?,
            Persist::ForgetUser { user } => {
                // Sessions live under the LID when one is known: forget under both names.
                let mut users = vec![user.clone()];
                if user.server == crate::wa::binary::jid::DEFAULT_USER_SERVER {
                    if let Some(lid) = self
                        .keys
                        .lid_for_pn(&user.user)
                        .map_err(SessionError::Keys)?
                    {
                        users.push(Jid::new(lid, crate::wa::binary::jid::HIDDEN_USER_SERVER));
                    }
                }
                for user in users {
                    let Some(addr) = Address::from_jid(&user) else {
                        continue;
                    };
                    let sessions = self
                        .keys
                        .sessions_of_user(addr.name())
                        .map_err(SessionError::Keys)?;
                    for session in sessions {
                        self.keys
                            .delete_session(&session)
                            .map_err(SessionError::Keys)?;
                        self.keys
                            .delete_identity(&session)
                            .map_err(SessionError::Keys)?;
                    }
                }
                info!("a contact's identity changed; its sessions dropped");
            }
            Persist::ForgetDevices { user } => {
                self.devices.forget(&user).map_err(SessionError::Store)?
            }
            Persist::GroupMemory { group, memory } => self
                .groups
                .save(&group, &memory)
                .map_err(SessionError::Store)?,
            Persist::Message(mut record) => {
                if self.messages.is_none() {
                    let store =
                        MessageStore::open(self.store.dir()).map_err(SessionError::Store)?;
                    self.messages = Some(store);
                }
                let Some(store) = self.messages.as_mut() else {
                    return Err(SessionError::Store(io::Error::other(
                        "the message store is not open",
                    )));
                };
                if record.cursor == 0 {
                    record.cursor = store.next_cursor();
                }
                if record.direction == ipc_protocol::Direction::In {
                    store
                        .mark_unconfirmed(&record)
                        .map_err(SessionError::Store)?;
                }
                store.put(&record).map_err(SessionError::Store)?;
                self.link.send(ToSupervisor::Message(record));
            }
            Persist::RetryReceiptWithKeys(retry) => {
                let fresh = self.keys.generate_prekeys(1).map_err(SessionError::Keys)?;
                return Ok(self
                    .creds
                    .as_ref()
                    .map(|creds| retry.build(creds, fresh.first())));
            }
        }
        Ok(None)
    }

    /// Tells the supervisor.
    fn report(&mut self, report: Report) {
        match report {
            Report::Status(status, reason) => self.set(status, reason),
            Report::Qr { qr, expires_in } => {
                self.state.qr = Some(qr);
                self.state.qr_expires_at = Some(UnixMillis::now().after(expires_in));
                self.state.next_retry_at = None;
                self.set(WorkerStatus::NeedsQr, None);
            }
            Report::Paired => {
                let creds = self.creds.as_ref();
                self.state.phone = creds.and_then(Creds::phone).map(str::to_owned);
                self.state.jid = creds.and_then(|c| c.me.as_ref()).map(|me| me.jid.clone());
                self.state.qr = None;
                self.state.qr_expires_at = None;
            }
            Report::Connected => {
                // The attempt counter starts over only once this connection proves stable.
                self.release(DialOutcome::Success);
                let now = Instant::now();
                self.logged_in_at = Some(now);
                // Up to 4 s late, where the timer wakes the worker once instead of three times.
                let stable = now + self.backoff.reset_after;
                let latest = stable + Duration::from_millis(4096);
                self.stable_at = Some(crate::wheel::align(stable, stable, latest));
                self.state.next_retry_at = None;
                self.state.last_error = None;
                self.set(WorkerStatus::Connected, None);
            }
            Report::MessageSeen => {
                self.state.last_message_at = Some(UnixMillis::now());
                self.touch();
            }
            Report::DecryptFailed => {
                self.state.decrypt_failures = self.state.decrypt_failures.saturating_add(1);
                self.touch();
            }
            Report::Call(call) => self.link.send(ToSupervisor::Call(call)),
            Report::PairingCode { request, outcome } => self
                .link
                .send(ToSupervisor::PairingCodeAnswer { request, outcome }),
        }
    }

    /// Step 4: the connection is over; close it and decide what comes next.
    async fn after_disconnect(
        &mut self,
        live: Option<Box<Live>>,
        disconnect: Disconnect,
    ) -> Result<Phase, SessionError> {
        let outcome = match &disconnect {
            Disconnect::Retry {
                reason: Reason::Network,
                ..
            } => DialOutcome::Error,
            _ => DialOutcome::Failure,
        };
        let (registration, up) = self.end_connection(live, outcome).await;
        match disconnect {
            Disconnect::Restart => match self.backoff.on_restart(registration, up) {
                RestartPlan::Now => {
                    info!("server asked for a restart; reconnecting now");
                    self.dial()
                }
                RestartPlan::Backoff => Ok(self.retry_later(
                    Reason::ServerError(515),
                    "stream error 515 (restart required) on a connection that was not yet \
                     stable"
                        .into(),
                )),
            },
            Disconnect::Retry { reason, error } => Ok(self.retry_later(reason, error)),
            Disconnect::RetryAfter {
                reason,
                error,
                after,
            } => {
                warn!(%error, after_s = after.as_secs(), "disconnected; retrying later");
                self.state.last_error = Some(error);
                self.state.next_retry_at = Some(UnixMillis::now().after(after));
                self.set(WorkerStatus::Disconnected, Some(reason));
                Ok(Phase::Waiting(Instant::now() + after))
            }
            Disconnect::Stop {
                status,
                reason,
                error,
                archive_creds,
            } => {
                warn!(%status, %reason, %error, "stopped; no automatic reconnect");
                if archive_creds {
                    if let Some(path) = self
                        .store
                        .archive("logged-out")
                        .map_err(SessionError::Store)?
                    {
                        info!(archived = %path.display(), "creds archived");
                    }
                    self.creds = None;
                    self.state.phone = None;
                    self.state.jid = None;
                }
                self.state.last_error = Some(error);
                self.state.next_retry_at = None;
                self.set(status, Some(reason));
                Ok(Phase::Idle)
            }
            Disconnect::QrExhausted => {
                info!("every qr ref expired; waiting for a new qr request");
                self.state.next_retry_at = None;
                self.set(WorkerStatus::NeedsQr, Some(Reason::QrExhausted));
                Ok(Phase::Idle)
            }
        }
    }

    /// Closes the connection (if any) and forgets it: the permit goes back with `outcome` if
    /// still held, and a connection that stayed up long enough resets the attempt counter.
    /// Returns whether it was a registration, and how long it was logged in.
    async fn end_connection(
        &mut self,
        live: Option<Box<Live>>,
        outcome: DialOutcome,
    ) -> (bool, Option<Duration>) {
        if let Some(mut live) = live {
            live.socket.close().await;
            // A code asked for on this connection that WhatsApp never answered dies with it.
            if let stage::Stage::ExpectScan(_, Some(code)) = &mut live.stage {
                if let Some(request) = code.take_request() {
                    self.report(pair_code::refused(
                        request,
                        ipc_protocol::PairingCodeRefusal::ConnectionLost,
                    ));
                }
            }
        }
        if let Some((request, _)) = self.pending_code.take() {
            self.report(pair_code::refused(
                request,
                ipc_protocol::PairingCodeRefusal::ConnectionLost,
            ));
        }
        self.release(outcome);
        self.state.qr = None;
        self.state.qr_expires_at = None;
        self.state.dial_queued_since = None;
        self.stable_at = None;
        let registration = std::mem::take(&mut self.registration);
        let up = self.logged_in_at.take().map(|at| at.elapsed());
        if up.is_some_and(|up| self.backoff.is_stable(up)) {
            self.state.reconnect_attempts = 0;
        }
        (registration, up)
    }

    /// The current connection has stayed up for `BACKOFF_RESET_AFTER_MS`: the reconnect
    /// backoff starts over.
    fn on_stable(&mut self) {
        self.stable_at = None;
        if self.state.reconnect_attempts > 0 {
            info!(
                attempts = self.state.reconnect_attempts,
                "connection stable; reconnect backoff starts over"
            );
            self.state.reconnect_attempts = 0;
            self.touch();
        }
    }

    /// Gives the dial permit back (or withdraws the request), if one is outstanding.
    fn release(&mut self, outcome: DialOutcome) {
        if let Some(seq) = self.permit.take() {
            debug!(seq, ?outcome, "dial permit given back");
            self.link.send(ToSupervisor::DialDone { seq, outcome });
        }
    }

    /// Step 2: start dialling (creating and persisting creds first if there are none): at once
    /// without a supervisor, else once its handshake budget grants a permit.
    fn dial(&mut self) -> Result<Phase, SessionError> {
        if self.storage.as_ref().is_some_and(|t| t.redial) {
            debug!("the volume refuses writes; dialling once it takes them");
            return Ok(Phase::Idle);
        }
        let creds = match self.creds.take() {
            Some(creds) => creds,
            // Never assume the file is missing: it may be unreadable for now, or newer.
            None => match self.store.load(&self.keys) {
                Ok(Loaded::Creds(creds)) => *creds,
                Ok(Loaded::NewerVersion { version }) => return Ok(self.newer_creds(version)),
                Ok(Loaded::Sealed { problem }) => return Ok(self.sealed_creds(problem)),
                Ok(Loaded::Missing | Loaded::Corrupt { .. }) => match self.fresh_creds() {
                    Ok(fresh) => fresh,
                    Err(e) => return self.storage_failed(e, true),
                },
                Err(e) => return self.storage_failed(SessionError::Store(e), true),
            },
        };
        self.creds = Some(creds);
        if !self.link.paced() {
            return self.dial_now();
        }
        // A request still outstanding is replaced by this one.
        self.release(DialOutcome::Withdrawn);
        self.dial_seq += 1;
        let seq = self.dial_seq;
        self.permit = Some(seq);
        self.link.send(ToSupervisor::DialRequest { seq });
        debug!(seq, "waiting for a dial permit");
        self.state.next_retry_at = None;
        self.state.dial_queued_since = Some(UnixMillis::now());
        self.set(WorkerStatus::Connecting, self.state.reason.clone());
        Ok(Phase::Queued(seq))
    }

    /// Dials now (the permit, if one is needed, is held).
    fn dial_now(&mut self) -> Result<Phase, SessionError> {
        let Some(creds) = self.creds.as_ref() else {
            // `dial` always leaves creds in place; never dial without them.
            return self.dial();
        };
        let dial = Dial {
            url: self.ws_url.clone(),
            routing_info: creds.routing_info.as_ref().map(|b| b.0.clone()),
            root: self.root,
            noise_private: Secret::new(creds.noise_key.private.expose().0),
            payload: payload::for_creds(creds, self.version, &self.browser),
        };
        if self.has_dialled {
            self.state.reconnect_count = self.state.reconnect_count.saturating_add(1);
        }
        self.has_dialled = true;
        self.state.next_retry_at = None;
        self.state.dial_queued_since = None;
        self.set(WorkerStatus::Connecting, self.state.reason.clone());
        Ok(Phase::Dialing(self.dialer.dial(dial)))
    }

    /// New device keys, durable before they are used.
    fn fresh_creds(&mut self) -> Result<Creds, SessionError> {
        // Signal state left from an earlier device identity is useless to the new one.
        if let Some(path) = self.keys.archive("previous").map_err(SessionError::Keys)? {
            info!(archived = %path.display(), "previous key store archived");
        }
        let fresh = Creds::generate();
        self.store.save(&fresh).map_err(SessionError::Store)?;
        self.creds_unsaved = false;
        info!("new device keys generated and stored");
        Ok(fresh)
    }

    /// Step 4: count the failure and wait.
    fn retry_later(&mut self, reason: Reason, error: String) -> Phase {
        if let Some((request, _)) = self.pending_code.take() {
            self.report(pair_code::refused(
                request,
                ipc_protocol::PairingCodeRefusal::NotConnected,
            ));
        }
        self.state.reconnect_attempts = self.state.reconnect_attempts.saturating_add(1);
        let (status, delay) = match self.backoff.after_failure(
            self.state.reconnect_attempts,
            reconnect::steps_for(&reason),
            rand::random::<f64>(),
        ) {
            Retry::Soon(d) => (WorkerStatus::Reconnecting, d),
            Retry::Slow(d) => (WorkerStatus::Disconnected, d),
        };
        warn!(
            attempt = self.state.reconnect_attempts,
            delay_ms = delay.as_millis() as u64,
            %reason,
            %error,
            "connection failed; will retry"
        );
        self.state.last_error = Some(error);
        self.state.next_retry_at = Some(UnixMillis::now().after(delay));
        self.set(status, Some(reason));
        Phase::Waiting(Instant::now() + delay)
    }

    /// Step 6.
    async fn flush(mut self, phase: Phase) -> Result<(), SessionError> {
        if let Phase::Open(mut live) = phase {
            live.socket.close().await;
        }
        self.release(DialOutcome::Withdrawn);
        // Every change was saved when it happened, durably (file and folder fsynced): nothing
        // is written or synced again, unless a save failed (the creds in memory are newer than
        // the file) or the file has gone.
        let saved = match &self.creds {
            Some(creds) if self.creds_unsaved => {
                info!("saving the creds change an earlier write failed to store");
                self.store.save(creds)
            }
            Some(creds) if !self.store.is_on_disk() => {
                warn!("creds file missing at shutdown; saving it again");
                self.store.save(creds)
            }
            _ => Ok(()),
        };
        match saved {
            Ok(()) => {
                info!("creds flushed");
                self.link.send(ToSupervisor::Flushed);
                self.state.next_retry_at = None;
                self.set(WorkerStatus::Stopped, Some(Reason::AdminStopped));
                self.link.send(ToSupervisor::Goodbye {
                    reason: "shutdown".into(),
                });
                Ok(())
            }
            Err(e) => {
                error!(error = %e, "creds flush failed");
                self.link.send(ToSupervisor::Goodbye {
                    reason: "creds flush failed".into(),
                });
                Err(SessionError::Store(e))
            }
        }
    }

    /// Changes the creds and makes the change durable at once; writes nothing when the change
    /// changed nothing.
    fn update_creds(&mut self, change: impl FnOnce(&mut Creds)) -> Result<(), SessionError> {
        if let Some(creds) = &mut self.creds {
            let before = creds.clone();
            change(creds);
            if *creds != before {
                self.creds_unsaved = true;
                self.store.save(creds).map_err(SessionError::Store)?;
                self.creds_unsaved = false;
            }
        }
        Ok(())
    }

    fn is_paired(&self) -> bool {
        self.creds.as_ref().is_some_and(Creds::is_paired)
    }

    fn set(&mut self, status: WorkerStatus, reason: Option<Reason>) {
        self.state.status = status;
        self.state.reason = reason;
        self.touch();
    }

    /// Marks activity and reports the full snapshot.
    fn touch(&mut self) {
        self.state.last_event_at = Some(UnixMillis::now());
        self.link.send(ToSupervisor::State(self.state.clone()));
    }

    /// Drops sent and received messages past the retention (never queued ones).
    fn prune_messages(&self) {
        let Some(store) = &self.messages else {
            return;
        };
        match store.prune(UnixMillis::now(), self.retention) {
            Ok(0) => {}
            Ok(removed) => info!(removed, "old messages pruned"),
            Err(e) => warn!(error = %e, "pruning old messages failed"),
        }
    }

    fn send_heartbeat(&self) {
        self.link.send(ToSupervisor::Heartbeat {
            last_frame_at: self.last_frame_at,
        });
    }
}

/// An error and its sources, e.g. `creds store failed: No space left on device (os error 28)`.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let more = cause.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = cause.source();
    }
    text
}

fn network(e: TransportError) -> Disconnect {
    Disconnect::Retry {
        reason: Reason::Network,
        error: e.to_string(),
    }
}
