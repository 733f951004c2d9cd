//! The account's session: load or create creds, connect, pair or log in, stay online, obey
//! commands, report every change.
//!
//! 1. Load `creds.json`. Missing: generate the keys and persist them before the first
//!    connection (a worker restarted mid-pairing reuses them). Corrupt: keep it aside, report
//!    `needs_qr` (`creds_corrupt`) and wait for `RequestQr`.
//! 2. Dial and run the Noise handshake ([`connect`]) with the registration or login payload
//!    ([`payload`]); the certificate chain must verify under the trusted root.
//! 3. Unpaired: show the QR refs ([`pair`]) until the phone scans, verify and persist the
//!    pairing, answer it, and reconnect at once on the 515. Paired: `<success>` means
//!    `connected`; then go active and stock prekeys ([`login`]); ping ([`keepalive`]); ack
//!    ([`receive`]).
//! 4. Stream errors and failures decide between reconnecting, backing off and stopping
//!    ([`events`]); backoff per [`reconnect::Backoff`].
//! 5. Every change goes to the supervisor as a full snapshot; a heartbeat goes every 15 s.
//! 6. On cancel (SIGTERM, `Shutdown`, EOF on the link): stop, prove the creds durable, close the
//!    socket, send `Flushed`, return.

mod connect;
mod events;
mod keepalive;
mod login;
mod pair;
mod payload;
mod receive;
pub(crate) mod reconnect;
mod request;

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::time::Duration;

use ipc_protocol::{Reason, ToSupervisor, ToWorker, UnixMillis, WorkerState, WorkerStatus};
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::config::{WaVersion, WorkerArgs};
use crate::ipc::Link;
use crate::store::creds::{Creds, CredsStore, Loaded};
use crate::store::secret::{Blob, Secret};
use crate::store::signal::{KeyStore, KeyStoreError};
use crate::transport::{Connection, TransportError};
use crate::wa::binary::{Jid, Node};
use crate::wa::noise::cert::WA_ROOT_KEY;
use connect::{ConnectError, Dial};
use events::Disconnect;
use keepalive::Keepalive;
use pair::QrRotation;
use reconnect::{Backoff, Retry};
use request::{Purpose, Requests};

/// How often a heartbeat goes to the supervisor (its watchdog fires after 60 s of silence).
pub(crate) const HEARTBEAT_EVERY: Duration = Duration::from_secs(15);
/// The longest a dial plus the Noise handshake may take (wa-protocol.md §2.7).
const CONNECT_DEADLINE: Duration = Duration::from_secs(20);
/// How long a logout waits for the server to confirm the unlink.
const LOGOUT_DEADLINE: Duration = Duration::from_secs(5);
/// How long the close frame may take.
const CLOSE_DEADLINE: Duration = Duration::from_secs(1);

type DialFuture = Pin<Box<dyn Future<Output = Result<Box<Connection>, ConnectError>>>>;

/// Why the session ended badly.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SessionError {
    /// The creds file could not be read, written or moved aside.
    #[error("creds store failed")]
    Store(#[source] io::Error),
    /// The Signal key store could not be read or written.
    #[error("key store failed")]
    Keys(#[source] KeyStoreError),
}

/// One open, handshaken connection and what rides on it.
struct Live {
    conn: Box<Connection>,
    requests: Requests,
    /// Set once logged in.
    keepalive: Option<Keepalive>,
    /// Set while pairing.
    qr: Option<QrRotation>,
    /// Set while a logout waits for the server.
    logout_deadline: Option<Instant>,
}

impl Live {
    fn new(conn: Box<Connection>) -> Self {
        Live {
            conn,
            requests: Requests::new(),
            keepalive: None,
            qr: None,
            logout_deadline: None,
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        [
            self.keepalive.as_ref().map(Keepalive::deadline),
            self.qr.as_ref().and_then(QrRotation::deadline),
            self.logout_deadline,
        ]
        .into_iter()
        .flatten()
        .min()
    }
}

/// What the connection is doing.
enum Phase {
    /// Nothing to do until a command arrives.
    Idle,
    /// Waiting for the next attempt.
    Waiting(Instant),
    /// Dialling and handshaking.
    Dialing(DialFuture),
    /// Connected (pairing, logging in, or online).
    Open(Box<Live>),
}

/// Something that moved the session along.
enum Event {
    RetryDue,
    Dialed(Result<Box<Connection>, ConnectError>),
    Node(Result<Node, TransportError>),
    Timer,
}

impl Phase {
    /// Waits for this phase's next event.
    ///
    /// # Cancel safety
    /// Cancel safe: the dial future lives in the phase, and the connection keeps partial frames
    /// in its own buffer.
    async fn next_event(&mut self) -> Event {
        match self {
            Phase::Idle => std::future::pending().await,
            Phase::Waiting(at) => {
                tokio::time::sleep_until(*at).await;
                Event::RetryDue
            }
            Phase::Dialing(dial) => Event::Dialed(dial.await),
            Phase::Open(live) => {
                let deadline = live.next_deadline();
                tokio::select! {
                    node = live.conn.read_node() => Event::Node(node),
                    _ = sleep_until_some(deadline) => Event::Timer,
                }
            }
        }
    }
}

async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// One account's session.
pub(crate) struct Session {
    store: CredsStore,
    keys: KeyStore,
    backoff: Backoff,
    ws_url: String,
    root: [u8; 32],
    version: WaVersion,
    qr_lifetime: Option<Duration>,
    link: Link,
    commands: mpsc::UnboundedReceiver<ToWorker>,
    state: WorkerState,
    creds: Option<Creds>,
    last_frame_at: Option<UnixMillis>,
    has_dialled: bool,
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
            backoff: args.backoff(),
            ws_url: c.wa_ws_url.clone(),
            root: c.wa_trust_root.map_or(WA_ROOT_KEY, |r| r.0),
            version: c.wa_version,
            qr_lifetime: (c.qr_ref_timeout_ms > 0)
                .then(|| Duration::from_millis(c.qr_ref_timeout_ms)),
            link,
            commands,
            state: WorkerState::default(),
            creds: None,
            last_frame_at: None,
            has_dialled: false,
        }
    }

    /// Runs the session until `token` is cancelled or the supervisor says `Shutdown`.
    ///
    /// # Errors
    /// [`SessionError::Store`] when the creds cannot be loaded, written or kept aside.
    pub(crate) async fn run(mut self, token: CancellationToken) -> Result<(), SessionError> {
        let mut phase = self.start()?;
        let mut heartbeat = tokio::time::interval(HEARTBEAT_EVERY);
        heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = token.cancelled() => break,
                cmd = self.commands.recv() => match cmd {
                    Some(ToWorker::Shutdown) | None => break,
                    Some(cmd) => phase = self.on_command(cmd, phase).await?,
                },
                _ = heartbeat.tick() => self.send_heartbeat(),
                event = phase.next_event() => phase = self.on_event(event, phase).await?,
            }
        }
        self.flush(phase).await
    }

    /// Step 1.
    fn start(&mut self) -> Result<Phase, SessionError> {
        match self.store.load(&self.keys).map_err(SessionError::Store)? {
            Loaded::Creds(creds) => {
                info!(paired = creds.is_paired(), "creds loaded");
                self.state.phone = creds.phone().map(str::to_owned);
                self.state.jid = creds.me.as_ref().map(|me| me.jid.clone());
                self.creds = Some(*creds);
                self.dial()
            }
            Loaded::Missing => {
                info!("no creds yet; connecting to pair");
                self.dial()
            }
            Loaded::Corrupt { kept_as, problem } => {
                error!(kept_as = %kept_as.display(), %problem, "creds file unusable; kept aside");
                self.state.last_error = Some(format!("creds file unusable: {problem}"));
                self.set(WorkerStatus::NeedsQr, Some(Reason::CredsCorrupt));
                Ok(Phase::Idle)
            }
        }
    }

    async fn on_command(&mut self, cmd: ToWorker, phase: Phase) -> Result<Phase, SessionError> {
        info!(?cmd, "command");
        match cmd {
            ToWorker::Ping => {
                self.send_heartbeat();
                Ok(phase)
            }
            ToWorker::RequestQr => match phase {
                Phase::Idle | Phase::Waiting(_) => {
                    self.state.reconnect_attempts = 0;
                    self.dial()
                }
                busy => {
                    debug!("already connecting or connected; qr request noted");
                    Ok(busy)
                }
            },
            ToWorker::Logout => match phase {
                Phase::Open(mut live) if live.keepalive.is_some() => {
                    let jid = self.own_jid();
                    let mut unlink =
                        Node::new("remove-companion-device").attr("reason", "user_initiated");
                    if let Some(jid) = jid {
                        unlink = unlink.jid_attr("jid", jid);
                    }
                    let iq = live.requests.iq(Purpose::Logout, "md", "set", vec![unlink]);
                    match live.conn.send_node(&iq).await {
                        Ok(()) => {
                            live.logout_deadline = Some(Instant::now() + LOGOUT_DEADLINE);
                            Ok(Phase::Open(live))
                        }
                        Err(e) => {
                            self.after_disconnect(
                                Some(live),
                                Disconnect::logged_out(format!("logout sent offline: {e}")),
                            )
                            .await
                        }
                    }
                }
                other => {
                    let live = match other {
                        Phase::Open(live) => Some(live),
                        _ => None,
                    };
                    self.after_disconnect(
                        live,
                        Disconnect::logged_out("logged out by the admin".into()),
                    )
                    .await
                }
            },
            ToWorker::Shutdown => Ok(phase),
        }
    }

    async fn on_event(&mut self, event: Event, phase: Phase) -> Result<Phase, SessionError> {
        match (event, phase) {
            (Event::RetryDue, _) => self.dial(),
            (Event::Dialed(Ok(conn)), _) => {
                info!(paired = self.is_paired(), "handshake done");
                self.touch();
                Ok(Phase::Open(Box::new(Live::new(conn))))
            }
            (Event::Dialed(Err(e)), _) => {
                let reason = if e.is_certificate() {
                    Reason::CertificateRejected
                } else {
                    Reason::Network
                };
                Ok(self.retry_later(reason, e.to_string()))
            }
            (Event::Node(Ok(node)), Phase::Open(mut live)) => {
                self.last_frame_at = Some(UnixMillis::now());
                match self.on_node(&mut live, node).await? {
                    None => Ok(Phase::Open(live)),
                    Some(disconnect) => self.after_disconnect(Some(live), disconnect).await,
                }
            }
            (Event::Node(Err(e)), Phase::Open(live)) => {
                self.after_disconnect(
                    Some(live),
                    Disconnect::Retry {
                        reason: Reason::Network,
                        error: e.to_string(),
                    },
                )
                .await
            }
            (Event::Timer, Phase::Open(mut live)) => match self.on_timer(&mut live).await? {
                None => Ok(Phase::Open(live)),
                Some(disconnect) => self.after_disconnect(Some(live), disconnect).await,
            },
            (_, phase) => Ok(phase),
        }
    }

    /// Step 3: one stanza from the server.
    async fn on_node(
        &mut self,
        live: &mut Live,
        node: Node,
    ) -> Result<Option<Disconnect>, SessionError> {
        let outcome = match node.tag.as_str() {
            "iq" => self.on_iq(live, &node).await?,
            "success" => self.on_success(live, &node).await?,
            "failure" => Some(events::failure(&node)),
            "stream:error" => Some(events::stream_error(&node)),
            "xmlstreamend" => Some(Disconnect::Retry {
                reason: Reason::Network,
                error: "the server ended the stream".into(),
            }),
            "ib" => {
                if let Some(info) = receive::routing_info(&node) {
                    self.update_creds(|c| c.routing_info = Some(Blob(info)))?;
                }
                None
            }
            _ => None,
        };
        if outcome.is_some() {
            return Ok(outcome);
        }
        if node.tag == "message" {
            self.state.last_message_at = Some(UnixMillis::now());
            self.touch();
        }
        if let Some(ack) = receive::ack_for(&node) {
            if let Err(e) = live.conn.send_node(&ack).await {
                return Ok(Some(network(e)));
            }
        }
        Ok(None)
    }

    async fn on_iq(
        &mut self,
        live: &mut Live,
        iq: &Node,
    ) -> Result<Option<Disconnect>, SessionError> {
        let kind = iq.attr_str("type").unwrap_or_default().into_owned();
        if kind == "set" {
            if let Some(pair_device) = iq.child("pair-device") {
                let mut ack = Node::new("iq")
                    .attr("id", iq.attr_str("id").unwrap_or_default().into_owned())
                    .attr("type", "result");
                if let Some(from) = iq.get_attr("from") {
                    ack.set_attr("to".into(), from.clone());
                }
                if let Err(e) = live.conn.send_node(&ack).await {
                    return Ok(Some(network(e)));
                }
                live.qr = Some(QrRotation::new(pair_device, self.qr_lifetime));
                return Ok(self.show_next_qr(live));
            }
            if iq.child("pair-success").is_some() {
                return self.on_pair_success(live, iq).await;
            }
        }
        let id = iq.attr_str("id").unwrap_or_default();
        let Some(purpose) = live.requests.answer(&id) else {
            debug!(%iq, "unsolicited iq ignored");
            return Ok(None);
        };
        let ok = kind == "result";
        match purpose {
            Purpose::Ping => {
                if let Some(k) = &mut live.keepalive {
                    k.answered();
                }
            }
            Purpose::PrekeyCount if ok => {
                let stocked = self.keys.has_prekeys().map_err(SessionError::Keys)?;
                let needed = self
                    .creds
                    .as_ref()
                    .and_then(|_| login::prekeys_needed(iq, stocked));
                if let Some(count) = needed {
                    // Durable before the upload: a key the server hands out is always ours.
                    let fresh = self
                        .keys
                        .generate_prekeys(count)
                        .map_err(SessionError::Keys)?;
                    if let Some(creds) = &self.creds {
                        let upload = login::upload_iq(&mut live.requests, creds, &fresh);
                        info!(count, "uploading prekeys");
                        if let Err(e) = live.conn.send_node(&upload).await {
                            return Ok(Some(network(e)));
                        }
                    }
                }
            }
            Purpose::Logout => {
                return Ok(Some(Disconnect::logged_out(
                    "logged out by the admin".into(),
                )))
            }
            Purpose::PrekeyUpload | Purpose::Active | Purpose::PrekeyCount => {
                if !ok {
                    warn!(?purpose, %iq, "iq failed");
                }
            }
        }
        Ok(None)
    }

    async fn on_pair_success(
        &mut self,
        live: &mut Live,
        iq: &Node,
    ) -> Result<Option<Disconnect>, SessionError> {
        let Some(creds) = &mut self.creds else {
            return Ok(None);
        };
        let mut candidate = creds.clone();
        let reply = match pair::accept_pair_success(iq, &mut candidate) {
            Ok(paired) => {
                // Durable before we tell anyone: a crash now still leaves a usable pairing.
                self.store.save(&candidate).map_err(SessionError::Store)?;
                info!(jid = %paired.jid.to_non_ad(), "paired");
                self.state.phone = candidate.phone().map(str::to_owned);
                self.state.jid = Some(paired.jid.to_string());
                self.creds = Some(candidate);
                live.qr = None;
                self.state.qr = None;
                self.state.qr_expires_at = None;
                self.set(WorkerStatus::Connecting, None);
                paired.reply
            }
            Err(e) => {
                warn!(error = %e, "pair-success refused");
                pair::pair_error_reply(iq, e)
            }
        };
        Ok(live.conn.send_node(&reply).await.err().map(network))
    }

    async fn on_success(
        &mut self,
        live: &mut Live,
        node: &Node,
    ) -> Result<Option<Disconnect>, SessionError> {
        if !self.is_paired() {
            warn!("success on an unpaired connection ignored");
            return Ok(None);
        }
        if let Some(lid) = node.attr_jid("lid").map(ToString::to_string) {
            let known = self
                .creds
                .as_ref()
                .and_then(|c| c.me.as_ref())
                .and_then(|m| m.lid.clone());
            if known.as_deref() != Some(lid.as_str()) {
                self.update_creds(|c| {
                    if let Some(me) = &mut c.me {
                        me.lid = Some(lid);
                    }
                })?;
            }
        }
        info!("connected");
        live.keepalive = Some(Keepalive::new(Instant::now()));
        self.state.reconnect_attempts = 0;
        self.state.next_retry_at = None;
        self.state.last_error = None;
        self.set(WorkerStatus::Connected, None);
        for iq in [
            login::active_iq(&mut live.requests),
            login::prekey_count_iq(&mut live.requests),
        ] {
            if let Err(e) = live.conn.send_node(&iq).await {
                return Ok(Some(network(e)));
            }
        }
        Ok(None)
    }

    async fn on_timer(&mut self, live: &mut Live) -> Result<Option<Disconnect>, SessionError> {
        let now = Instant::now();
        if live.logout_deadline.is_some_and(|d| now >= d) {
            return Ok(Some(Disconnect::logged_out(
                "logged out; the server did not confirm in time".into(),
            )));
        }
        if live
            .qr
            .as_ref()
            .and_then(QrRotation::deadline)
            .is_some_and(|d| now >= d)
        {
            return Ok(self.show_next_qr(live));
        }
        if let Some(k) = &mut live.keepalive {
            if k.is_dead(now) {
                return Ok(Some(Disconnect::Retry {
                    reason: Reason::KeepaliveTimeout,
                    error: "no answer to the keepalive ping".into(),
                }));
            }
            if k.ping_due(now) {
                let ping = live.requests.iq(Purpose::Ping, "w:p", "get", vec![]);
                if let Err(e) = live.conn.send_node(&ping).await {
                    return Ok(Some(network(e)));
                }
            }
        }
        Ok(None)
    }

    /// Shows the next QR ref, or ends the pairing when they have run out.
    fn show_next_qr(&mut self, live: &mut Live) -> Option<Disconnect> {
        let (Some(qr), Some(creds)) = (&mut live.qr, &self.creds) else {
            return None;
        };
        match qr.advance(Instant::now()) {
            Some((reference, expires)) => {
                let left = expires.saturating_duration_since(Instant::now());
                self.state.qr = Some(pair::qr_string(reference, creds));
                self.state.qr_expires_at = Some(UnixMillis::now().after(left));
                self.state.next_retry_at = None;
                self.set(WorkerStatus::NeedsQr, None);
                None
            }
            None => Some(Disconnect::QrExhausted),
        }
    }

    /// Step 4: the connection is over; close it and decide what comes next.
    async fn after_disconnect(
        &mut self,
        live: Option<Box<Live>>,
        disconnect: Disconnect,
    ) -> Result<Phase, SessionError> {
        if let Some(mut live) = live {
            close(&mut live.conn).await;
        }
        self.state.qr = None;
        self.state.qr_expires_at = None;
        match disconnect {
            Disconnect::Restart => {
                info!("server asked for a restart; reconnecting now");
                self.dial()
            }
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

    /// Step 2: start dialling (creating and persisting creds first if there are none).
    fn dial(&mut self) -> Result<Phase, SessionError> {
        let creds = match self.creds.take() {
            Some(creds) => creds,
            None => {
                // Signal state left from an earlier device identity is useless to the new one.
                if let Some(path) = self.keys.archive("previous").map_err(SessionError::Keys)? {
                    info!(archived = %path.display(), "previous key store archived");
                }
                let fresh = Creds::generate();
                self.store.save(&fresh).map_err(SessionError::Store)?;
                info!("new device keys generated and stored");
                fresh
            }
        };
        let dial = Dial {
            url: self.ws_url.clone(),
            routing_info: creds.routing_info.as_ref().map(|b| b.0.clone()),
            root: self.root,
            noise_private: Secret::new(creds.noise_key.private.expose().0),
            payload: payload::for_creds(&creds, self.version),
        };
        self.creds = Some(creds);
        if self.has_dialled {
            self.state.reconnect_count = self.state.reconnect_count.saturating_add(1);
        }
        self.has_dialled = true;
        self.state.next_retry_at = None;
        self.set(WorkerStatus::Connecting, self.state.reason.clone());
        Ok(Phase::Dialing(Box::pin(async move {
            match tokio::time::timeout(CONNECT_DEADLINE, connect::connect(dial)).await {
                Ok(result) => result.map(Box::new),
                Err(_) => Err(ConnectError::TimedOut),
            }
        })))
    }

    /// Step 4: count the failure and wait.
    fn retry_later(&mut self, reason: Reason, error: String) -> Phase {
        self.state.reconnect_attempts = self.state.reconnect_attempts.saturating_add(1);
        let (status, delay) = match self
            .backoff
            .after_failure(self.state.reconnect_attempts, rand::random::<f64>())
        {
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
            close(&mut live.conn).await;
        }
        // Every change was saved when it happened: prove it durable, do not rewrite it.
        let saved = match &self.creds {
            Some(creds) => self.store.prove_durable().or_else(|e| {
                warn!(error = %e, "creds file not provably durable; saving it again");
                self.store.save(creds)
            }),
            None => Ok(()),
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
                self.store.save(creds).map_err(SessionError::Store)?;
            }
        }
        Ok(())
    }

    fn is_paired(&self) -> bool {
        self.creds.as_ref().is_some_and(Creds::is_paired)
    }

    fn own_jid(&self) -> Option<Jid> {
        self.creds.as_ref()?.me.as_ref()?.jid.parse().ok()
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

    fn send_heartbeat(&self) {
        self.link.send(ToSupervisor::Heartbeat {
            last_frame_at: self.last_frame_at,
        });
    }
}

fn network(e: TransportError) -> Disconnect {
    Disconnect::Retry {
        reason: Reason::Network,
        error: e.to_string(),
    }
}

/// Sends a close frame and waits briefly for it to go out.
async fn close(conn: &mut Connection) {
    if tokio::time::timeout(CLOSE_DEADLINE, conn.close())
        .await
        .is_err()
    {
        debug!("socket close timed out");
    }
}
