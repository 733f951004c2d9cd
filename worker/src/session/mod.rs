//! The account's session: load creds, connect, back off, obey commands, report every change.
//!
//! 1. Load `creds.json`. Missing: connect to register (pairing). Valid: connect to log in.
//!    Corrupt: keep it aside, report `needs_qr` (`creds_corrupt`) and wait for `RequestQr`.
//! 2. Dial the WebSocket (`connecting`). The WhatsApp handshake, pairing and login drive the
//!    open socket; until they land, an open socket that the server closes, or that reaches no
//!    handshake within [`HANDSHAKE_DEADLINE`], counts as a failed attempt.
//! 3. A failed attempt waits per [`reconnect::Backoff`] (`reconnecting`, with `next_retry_at`);
//!    once the fast retries are spent the account is `disconnected` and retries every 5 minutes.
//! 4. Every change goes to the supervisor as a full snapshot; a heartbeat goes every 15 s.
//! 5. On cancel (SIGTERM, `Shutdown`, EOF on the link): stop, prove the creds durable, close the
//!    socket, send `Flushed`, return.

pub(crate) mod reconnect;

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::time::Duration;

use futures_util::StreamExt;
use ipc_protocol::{Reason, ToSupervisor, ToWorker, UnixMillis, WorkerState, WorkerStatus};
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::config::WorkerArgs;
use crate::ipc::Link;
use crate::store::creds::{Creds, CredsStore, Loaded};
use crate::transport::{self, Message, WsError, WsStream};
use reconnect::{Backoff, Retry};

/// How often a heartbeat goes to the supervisor (its watchdog fires after 60 s of silence).
pub(crate) const HEARTBEAT_EVERY: Duration = Duration::from_secs(15);
/// The longest a TCP + TLS + WebSocket dial may take.
const DIAL_DEADLINE: Duration = Duration::from_secs(20);
/// The longest an open socket may go without completing the WhatsApp handshake.
const HANDSHAKE_DEADLINE: Duration = Duration::from_secs(20);
/// The longest the close frame may take at shutdown.
const CLOSE_DEADLINE: Duration = Duration::from_secs(1);

type DialFuture = Pin<Box<dyn Future<Output = Result<Box<WsStream>, DialError>>>>;

/// Why a dial failed.
#[derive(Debug, thiserror::Error)]
enum DialError {
    #[error("websocket dial failed: {0}")]
    Ws(#[from] WsError),
    #[error("websocket dial timed out")]
    TimedOut,
}

/// Why the session ended badly.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SessionError {
    /// The creds file could not be read nor moved aside.
    #[error("creds store failed")]
    Store(#[source] io::Error),
}

/// What the connection is doing.
enum Phase {
    /// Nothing to do until a command arrives.
    Idle,
    /// Waiting for the next attempt.
    Waiting(Instant),
    /// Dialling the socket.
    Dialing(DialFuture),
    /// The socket is open; the handshake must finish before the deadline.
    Open(Box<WsStream>, Instant),
}

/// Something that moved the session along.
enum Event {
    RetryDue,
    Dialed(Result<Box<WsStream>, DialError>),
    Socket(Option<Result<Message, WsError>>),
    HandshakeDeadline,
}

impl Phase {
    /// Waits for this phase's next event.
    ///
    /// # Cancel safety
    /// Cancel safe: the dial future lives in the phase, and `WebSocketStream::next` keeps
    /// partial reads in the stream.
    async fn next_event(&mut self) -> Event {
        match self {
            Phase::Idle => std::future::pending().await,
            Phase::Waiting(at) => {
                tokio::time::sleep_until(*at).await;
                Event::RetryDue
            }
            Phase::Dialing(dial) => Event::Dialed(dial.await),
            Phase::Open(ws, deadline) => tokio::select! {
                msg = ws.next() => Event::Socket(msg),
                _ = tokio::time::sleep_until(*deadline) => Event::HandshakeDeadline,
            },
        }
    }
}

/// One account's session.
pub(crate) struct Session {
    store: CredsStore,
    backoff: Backoff,
    ws_url: String,
    link: Link,
    commands: mpsc::UnboundedReceiver<ToWorker>,
    state: WorkerState,
    creds: Option<Creds>,
    last_frame_at: Option<UnixMillis>,
    has_connected: bool,
}

impl Session {
    pub(crate) fn new(
        args: &WorkerArgs,
        link: Link,
        commands: mpsc::UnboundedReceiver<ToWorker>,
    ) -> Self {
        Session {
            store: CredsStore::new(&args.account_dir()),
            backoff: args.backoff(),
            ws_url: args.connection.wa_ws_url.clone(),
            link,
            commands,
            state: WorkerState::default(),
            creds: None,
            last_frame_at: None,
            has_connected: false,
        }
    }

    /// Runs the session until `token` is cancelled or the supervisor says `Shutdown`.
    ///
    /// # Errors
    /// [`SessionError::Store`] when the creds cannot be loaded, kept aside or flushed.
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
                event = phase.next_event() => phase = self.on_event(event, phase),
            }
        }
        self.flush(phase).await
    }

    /// Step 1: load the creds and pick the first phase.
    fn start(&mut self) -> Result<Phase, SessionError> {
        match self.store.load().map_err(SessionError::Store)? {
            Loaded::Creds(creds) => {
                info!(paired = creds.is_paired(), "creds loaded");
                self.state.phone = creds.phone().map(str::to_owned);
                self.state.jid = creds.me.as_ref().map(|me| me.jid.clone());
                self.creds = Some(*creds);
                Ok(self.dial())
            }
            Loaded::Missing => {
                info!("no creds yet; connecting to pair");
                Ok(self.dial())
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
            ToWorker::RequestQr => Ok(match phase {
                Phase::Idle | Phase::Waiting(_) => {
                    self.state.reconnect_attempts = 0;
                    self.dial()
                }
                busy => {
                    debug!("already connecting; qr request noted");
                    busy
                }
            }),
            ToWorker::Logout => {
                if let Phase::Open(mut ws, _) = phase {
                    close_socket(&mut ws).await;
                }
                let archived = self
                    .store
                    .archive("logged-out")
                    .map_err(SessionError::Store)?;
                if let Some(path) = archived {
                    info!(archived = %path.display(), "logged out; creds archived");
                }
                self.creds = None;
                self.state.phone = None;
                self.state.jid = None;
                self.state.next_retry_at = None;
                self.set(WorkerStatus::LoggedOut, Some(Reason::LoggedOut));
                Ok(Phase::Idle)
            }
            ToWorker::Shutdown => Ok(phase),
        }
    }

    fn on_event(&mut self, event: Event, phase: Phase) -> Phase {
        match event {
            Event::RetryDue => self.dial(),
            Event::Dialed(Ok(ws)) => {
                info!("websocket open");
                self.touch();
                Phase::Open(ws, Instant::now() + HANDSHAKE_DEADLINE)
            }
            Event::Dialed(Err(e)) => self.retry_later(e.to_string()),
            Event::Socket(Some(Ok(msg))) => {
                self.last_frame_at = Some(UnixMillis::now());
                debug!(len = msg.len(), "frame");
                if let Message::Close(frame) = msg {
                    return self.retry_later(format!("socket closed by server: {frame:?}"));
                }
                phase
            }
            Event::Socket(Some(Err(e))) => self.retry_later(format!("socket error: {e}")),
            Event::Socket(None) => self.retry_later("socket closed".into()),
            Event::HandshakeDeadline => self.retry_later("no handshake before the deadline".into()),
        }
    }

    /// Step 2: start dialling.
    fn dial(&mut self) -> Phase {
        if self.has_connected {
            self.state.reconnect_count = self.state.reconnect_count.saturating_add(1);
        }
        self.has_connected = true;
        self.state.next_retry_at = None;
        self.set(WorkerStatus::Connecting, self.state.reason.clone());
        let url = self.ws_url.clone();
        Phase::Dialing(Box::pin(async move {
            match tokio::time::timeout(DIAL_DEADLINE, transport::dial(&url)).await {
                Ok(result) => result.map(Box::new).map_err(DialError::from),
                Err(_) => Err(DialError::TimedOut),
            }
        }))
    }

    /// Step 3: count the failure and wait.
    fn retry_later(&mut self, error: String) -> Phase {
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
            %error,
            "connection failed; will retry"
        );
        self.state.last_error = Some(error);
        self.state.next_retry_at = Some(UnixMillis::now().after(delay));
        self.set(status, Some(Reason::Network));
        Phase::Waiting(Instant::now() + delay)
    }

    /// Step 5: prove the creds durable, close the socket, say `Flushed`.
    async fn flush(mut self, phase: Phase) -> Result<(), SessionError> {
        if let Phase::Open(mut ws, _) = phase {
            close_socket(&mut ws).await;
        }
        let saved = match &self.creds {
            Some(creds) => self.store.save(creds),
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

/// Sends a close frame and waits briefly for it to go out.
async fn close_socket(ws: &mut WsStream) {
    match tokio::time::timeout(CLOSE_DEADLINE, ws.close(None)).await {
        Ok(Ok(())) => debug!("socket closed"),
        Ok(Err(e)) => debug!(error = %e, "socket close failed"),
        Err(_) => debug!("socket close timed out"),
    }
}
