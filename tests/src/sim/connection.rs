//! One client connection, from the first WebSocket message to the close (wa-protocol.md §1, §2,
//! §4, §10.1).
//!
//! 1. Read the intro: an optional `ED 00 01 LLL <routing info>` pre-intro, then `57 41 06 03`;
//!    anything else ends the connection (§1.2).
//! 2. Read the ClientHello frame (3-byte length framing, §1.3), wait `handshake_delay`, answer
//!    with the ServerHello carrying the simulator's certificate chain (§2.3, §3).
//! 3. Read the ClientFinish; the Noise static key it proves is the client's identity at login.
//!    Each client message must come within [`HANDSHAKE_STEP_DEADLINE`] (§2.7). A ClientHello
//!    carrying `static` is Noise IK (§2.6, `handshake`): a login of a paired device with its own
//!    noise key is accepted at once (no ClientFinish); anything else (or every attempt, while
//!    `/config` `refuse_ik` is on) gets an XXfallback ServerHello and then a ClientFinish as in
//!    XX.
//! 4. Decode the ClientPayload. A failure the control API set for the account or for all
//!    (403, 405, 406), or an app version below the minimum (405, also for a registration), ends
//!    the connection with that `<failure>` (`policy`). Otherwise: `devicePairingData` →
//!    registration session (`pairing`); `username` + `device` → login session (`login`);
//!    neither → `<failure reason="400"/>`.
//! 5. Hand the encrypted node stream to the session loop (`session`), silent from the start
//!    when the control API asked for a silent server.
//!
//! Everything written to the socket is written by this connection's own task; other tasks reach
//! it through its [`Command`] channel.

use std::sync::Arc;
use std::time::Duration;

use prost::Message;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn, Instrument};
use worker::wa::binary::{self, Node};
use worker::wa::frame::{self, FrameDecoder, Intro};
use worker::wa::noise::{NoiseTransport, ServerFinished, ServerHandshake};
use worker::wa::proto::ClientPayload;
use worker::wa::xeddsa;

use super::error::{Error, Result};
use super::faults::{Ending, Fault};
use super::handshake::{self, Hello};
use super::registry::{masked, now, ConnId, ConnState};
use super::session::{Kind, Session};
use super::ws::WsConnection;
use super::{login, pairing, policy, Shared};

/// How long the client has for each handshake message (§2.7: clients wait 20 s for ours).
pub const HANDSHAKE_STEP_DEADLINE: Duration = Duration::from_secs(20);
/// The longest intro: the routing pre-intro with its largest routing info, then `WA 06 03`.
const MAX_INTRO_LEN: usize = 7 + frame::MAX_PAYLOAD_LEN + 4;

/// What other tasks ask of a connection.
#[derive(Debug)]
pub enum Command {
    /// Write `node`; tell `written` once it is on the socket.
    Send {
        /// The stanza.
        node: Node,
        /// Told after the write.
        written: Option<oneshot::Sender<()>>,
    },
    /// Write a frame plaintext as it is (flags byte first), for stanzas no encoder writes; tell
    /// `written` once it is on the socket.
    SendRaw {
        /// The plaintext.
        plaintext: Vec<u8>,
        /// Told after the write.
        written: Option<oneshot::Sender<()>>,
    },
    /// Go silent: write nothing more, answer nothing (keepalive-death tests); tell `done` once
    /// the session has switched.
    Silence {
        /// Told once silent.
        done: Option<oneshot::Sender<()>>,
    },
    /// End the connection as `fault` says; tell `done` once it is closed.
    Fault {
        /// How.
        fault: Fault,
        /// Told after the close.
        done: Option<oneshot::Sender<()>>,
    },
}

/// A connection's task: owns the socket for its whole life.
#[derive(Debug)]
pub(crate) struct Connection {
    id: ConnId,
    ws: WsConnection,
    shared: Arc<Shared>,
    commands: mpsc::UnboundedReceiver<Command>,
}

impl Connection {
    /// A connection registered as `id`, fed by `commands`.
    pub(crate) fn new(
        id: ConnId,
        ws: WsConnection,
        shared: Arc<Shared>,
        commands: mpsc::UnboundedReceiver<Command>,
    ) -> Self {
        Self {
            id,
            ws,
            shared,
            commands,
        }
    }

    /// Serves the connection to its end, then removes it from the registry.
    pub(crate) async fn run(self) {
        let id = self.id;
        let shared = self.shared.clone();
        let span = tracing::info_span!("conn", conn_id = %id);
        let outcome = self.serve().instrument(span).await;
        shared.registry().close_conn(id);
        match outcome {
            Ok(reason) => info!(conn_id = %id, reason, "connection closed"),
            Err(e) => warn!(conn_id = %id, error = %e, "connection ended by an error"),
        }
    }

    /// Steps 2 and 3: answers the ClientHello with XX, IK, or (an IK attempt refused)
    /// XXfallback, and reads the ClientFinish unless IK already finished. `None` at shutdown.
    async fn handshake(
        &mut self,
        hello: &[u8],
        decoder: &mut FrameDecoder,
    ) -> Result<Option<(ServerFinished, Pattern)>> {
        let shared = self.shared.clone();
        let pki = &shared.pki;
        let ik = match handshake::classify(hello)? {
            Hello::Xx => {
                let (responder, server_hello) = ServerHandshake::respond(
                    hello,
                    xeddsa::generate_private(),
                    pki.static_private(),
                    pki.chain(),
                )?;
                self.write_frame(&server_hello).await?;
                let Some(finish) = self.read_finish(decoder).await? else {
                    return Ok(None);
                };
                return Ok(Some((responder.finish(&finish)?, Pattern::Xx)));
            }
            Hello::Ik(ik) => ik,
        };
        let refuse = shared.registry().policy.refuse_ik;
        if let Some(opened) = ik
            .open(pki.static_private())
            .filter(|o| !refuse && self.resumable(&o.client_static, &o.payload))
        {
            let (server_hello, done) = opened.accept(xeddsa::generate_private(), pki.chain());
            self.write_frame(&server_hello).await?;
            shared.registry().stats.ik_logins += 1;
            debug!(conn_id = %self.id, "noise IK accepted");
            return Ok(Some((done, Pattern::Ik)));
        }
        shared.registry().stats.ik_fallbacks += 1;
        debug!(conn_id = %self.id, "noise IK refused: XXfallback");
        let (responder, server_hello) = handshake::respond_fallback(
            &ik.ephemeral,
            xeddsa::generate_private(),
            pki.static_private(),
            pki.chain(),
        );
        self.write_frame(&server_hello).await?;
        let Some(finish) = self.read_finish(decoder).await? else {
            return Ok(None);
        };
        Ok(Some((responder.finish(&finish)?, Pattern::XxFallback)))
    }

    /// Whether an IK ClientHello may resume: its payload is a login of a paired device whose
    /// noise key is `client_static`. Anything else (a registration, an unknown or removed
    /// device, another key) falls back to XX.
    fn resumable(&self, client_static: &[u8; 32], payload: &[u8]) -> bool {
        let Ok(payload) = ClientPayload::decode(payload) else {
            return false;
        };
        match (
            payload.username,
            payload.device,
            &payload.device_pairing_data,
        ) {
            (Some(username), Some(device), None) => self
                .shared
                .registry()
                .check_login(&username.to_string(), device, client_static)
                .is_ok(),
            _ => false,
        }
    }

    /// One handshake frame.
    async fn write_frame(&mut self, payload: &[u8]) -> Result<()> {
        let mut out = Vec::with_capacity(payload.len() + 3);
        frame::encode(payload, &mut out)?;
        self.ws.send(out).await
    }

    /// The ClientFinish, within [`HANDSHAKE_STEP_DEADLINE`]; `None` at shutdown.
    async fn read_finish(&mut self, decoder: &mut FrameDecoder) -> Result<Option<Vec<u8>>> {
        let token = self.shared.token.clone();
        tokio::select! {
            biased;
            _ = token.cancelled() => Ok(None),
            read = tokio::time::timeout(HANDSHAKE_STEP_DEADLINE, read_frame(&mut self.ws, decoder, "client finish")) => {
                read.map_err(|_| Error::Timeout("client finish"))?.map(Some)
            }
        }
    }

    async fn serve(mut self) -> Result<&'static str> {
        let token = self.shared.token.clone();
        let mut decoder = FrameDecoder::new();
        let mut routing = None;

        // Steps 1 and 2.
        let hello = tokio::select! {
            biased;
            _ = token.cancelled() => return Ok("shutdown"),
            read = tokio::time::timeout(HANDSHAKE_STEP_DEADLINE, read_hello(&mut self.ws, &mut decoder, &mut routing)) => {
                read.map_err(|_| Error::Timeout("client hello"))??
            }
        };
        if let Some(info) = routing.take() {
            self.shared.registry().set_routing_info(self.id, info);
        }
        let delay = self.shared.registry().config.handshake_delay;
        if !delay.is_zero() {
            tokio::select! {
                biased;
                _ = token.cancelled() => return Ok("shutdown"),
                _ = tokio::time::sleep(delay) => {}
            }
        }
        // Step 3.
        let Some((done, pattern)) = self.handshake(&hello, &mut decoder).await? else {
            return Ok("shutdown");
        };
        let payload = ClientPayload::decode(done.payload.as_slice()).map_err(Error::Payload)?;
        let latency = self.shared.registry().config.edge_latency;
        if !latency.is_zero() {
            tokio::select! {
                biased;
                _ = token.cancelled() => return Ok("shutdown"),
                _ = tokio::time::sleep(latency) => {}
            }
        }
        let mut io = NodeIo::new(self.ws, decoder, done.transport);

        // Step 4.
        let played = {
            let mut registry = self.shared.registry();
            let failure = match (&payload.device_pairing_data, payload.username) {
                (None, Some(username)) => registry
                    .policy
                    .login_failure(&username.to_string(), &payload),
                _ => registry.policy.outdated(&payload).then_some(405),
            };
            if failure.is_some() {
                registry.stats.login_failures += 1;
                registry.set_state(self.id, ConnState::Closing);
            }
            failure
        };
        if let Some(reason) = played {
            let version = policy::Version::of_payload(&payload).map(|v| v.to_string());
            warn!(conn_id = %self.id, reason, ?version, "failure played before login");
            let ending = Ending::with(login::failure(&reason.to_string()), "failure played");
            io.end(ending, None).await;
            return Ok("failure played");
        }
        let mut silent = false;
        let kind = if let Some(data) = payload.device_pairing_data.as_ref() {
            let started = {
                let mut registry = self.shared.registry();
                pairing::start(&mut registry, self.id, done.client_static, data, now())
            };
            match started {
                Ok(pair_device) => {
                    info!(conn_id = %self.id, "registration session");
                    io.write(&pair_device).await?;
                    Kind::Pairing
                }
                Err(refused) => {
                    warn!(conn_id = %self.id, error = %refused, "registration refused");
                    self.shared
                        .registry()
                        .set_state(self.id, ConnState::Closing);
                    let ending = Ending::with(login::failure("400"), "registration refused");
                    io.end(ending, None).await;
                    return Ok("registration refused");
                }
            }
        } else if let (Some(username), Some(device)) = (payload.username, payload.device) {
            let phone = username.to_string();
            let login =
                self.shared
                    .registry()
                    .login(self.id, username, device, &done.client_static);
            match login {
                Ok(grant) => {
                    let noise = pattern.as_str();
                    info!(conn_id = %self.id, phone = %masked(&phone), device, noise, "logged in");
                    io.write(&login::success(&grant, super::registry::unix_now()))
                        .await?;
                    silent = self.shared.registry().policy.silent;
                    if !silent {
                        io.write(&login::edge_routing(self.id)).await?;
                    }
                    let end = self.shared.registry().pacing.logged_in(
                        self.id,
                        grant.jid.to_string(),
                        super::pacing::unix_ms(),
                    );
                    if let Some(fault) = end {
                        io.end(fault.ending(), None).await;
                        return Ok("ended after login (/after-login)");
                    }
                    Kind::LoggedIn
                }
                Err(refused) => {
                    warn!(conn_id = %self.id, phone = %masked(&phone), device, why = %refused, "login refused");
                    io.end(Ending::with(login::failure("401"), "login refused"), None)
                        .await;
                    return Ok("login refused");
                }
            }
        } else {
            warn!(conn_id = %self.id, "client payload is neither registration nor login");
            self.shared
                .registry()
                .set_state(self.id, ConnState::Closing);
            io.end(
                Ending::with(login::failure("400"), "bad client payload"),
                None,
            )
            .await;
            return Ok("bad client payload");
        };

        // Step 5.
        Session {
            id: self.id,
            kind,
            io,
            shared: self.shared,
            commands: self.commands,
            silent,
        }
        .run()
        .await
    }
}

/// Which Noise pattern a connection's handshake ran (wa-protocol.md §2.3, §2.6).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(crate) enum Pattern {
    /// Plain XX.
    Xx,
    /// IK: a paired device resumed with the server key it already knew.
    Ik,
    /// An IK attempt refused, then XX under the XXfallback name.
    XxFallback,
}

impl Pattern {
    fn as_str(self) -> &'static str {
        match self {
            Pattern::Xx => "xx",
            Pattern::Ik => "ik",
            Pattern::XxFallback => "xxfallback",
        }
    }
}

/// Step 1 and the first frame: the intro, then the ClientHello payload.
async fn read_hello(
    ws: &mut WsConnection,
    decoder: &mut FrameDecoder,
    routing: &mut Option<Vec<u8>>,
) -> Result<Vec<u8>> {
    let mut head = Vec::new();
    loop {
        let bytes = ws.recv().await?.ok_or(Error::Closed("intro"))?;
        head.extend_from_slice(&bytes);
        match frame::parse_client_intro(&head) {
            Intro::Incomplete if head.len() <= MAX_INTRO_LEN => continue,
            Intro::Incomplete | Intro::Invalid => return Err(Error::BadIntro),
            Intro::Complete { len, routing_info } => {
                if let Some(info) = routing_info {
                    debug!(routing_info_len = info.len(), "edge routing pre-intro");
                    *routing = Some(info);
                }
                decoder.push(&head[len..]);
                break;
            }
        }
    }
    read_frame(ws, decoder, "client hello").await
}

/// The next frame payload, reading as many messages as it takes.
///
/// # Cancel safety
/// Cancel safe: partial frames stay in `decoder`.
pub(crate) async fn read_frame(
    ws: &mut WsConnection,
    decoder: &mut FrameDecoder,
    during: &'static str,
) -> Result<Vec<u8>> {
    loop {
        if let Some(payload) = decoder.next_frame() {
            return Ok(payload);
        }
        let bytes = ws.recv().await?.ok_or(Error::Closed(during))?;
        decoder.push(&bytes);
    }
}

/// The encrypted node stream after the handshake (§2.5, §5).
#[derive(Debug)]
pub(crate) struct NodeIo {
    ws: WsConnection,
    decoder: FrameDecoder,
    transport: NoiseTransport,
}

impl NodeIo {
    /// The node stream over `ws` once a handshake produced `transport`; `decoder` holds whatever
    /// arrived after the handshake's last frame.
    pub(crate) fn new(ws: WsConnection, decoder: FrameDecoder, transport: NoiseTransport) -> Self {
        Self {
            ws,
            decoder,
            transport,
        }
    }

    /// The next node; `None` when the client closed the connection.
    ///
    /// # Errors
    /// A frame that does not decrypt or decode, or a socket error.
    ///
    /// # Cancel safety
    /// Cancel safe: a frame is only taken from the decoder once it is complete, and decrypting
    /// it does not await.
    pub(crate) async fn read(&mut self) -> Result<Option<Node>> {
        loop {
            if let Some(payload) = self.decoder.next_frame() {
                let plaintext = self.transport.decrypt(&payload)?;
                let node = binary::decode(&plaintext)?;
                debug!(tag = %node.tag, id = ?node.attr_str("id"), len = plaintext.len(), "recv");
                return Ok(Some(node));
            }
            match self.ws.recv().await? {
                Some(bytes) => self.decoder.push(&bytes),
                None => return Ok(None),
            }
        }
    }

    /// Encrypts and writes one node (one frame per WebSocket message).
    ///
    /// # Errors
    /// A socket error.
    pub(crate) async fn write(&mut self, node: &Node) -> Result<()> {
        let plaintext = binary::encode(node);
        debug!(tag = %node.tag, id = ?node.attr_str("id"), len = plaintext.len(), "send");
        self.write_plaintext(&plaintext).await
    }

    /// Encrypts and writes one frame plaintext as it is.
    ///
    /// # Errors
    /// A socket error.
    pub(crate) async fn write_plaintext(&mut self, plaintext: &[u8]) -> Result<()> {
        let ciphertext = self.transport.encrypt(plaintext);
        let mut out = Vec::with_capacity(ciphertext.len() + 3);
        frame::encode(&ciphertext, &mut out)?;
        self.ws.send(out).await
    }

    /// Writes the ending's stanza, if any, then closes (or drops) the socket; tells `closed`
    /// once the close frame is out, then waits briefly for the client's.
    pub(crate) async fn end(mut self, ending: Ending, closed: Option<oneshot::Sender<()>>) {
        if let Some(stanza) = &ending.stanza {
            if let Err(e) = self.write(stanza).await {
                debug!(error = %e, "could not write the last stanza");
            }
        }
        if ending.abort {
            self.ws.abort();
            if let Some(closed) = closed {
                let _ = closed.send(());
            }
            return;
        }
        self.ws.close().await;
        if let Some(closed) = closed {
            let _ = closed.send(());
        }
        self.ws.linger().await;
    }
}
