//! The only file that touches tokio-tungstenite: the WebSocket to WhatsApp, its TLS, its
//! framing and, once the handshake is done, the Noise transport around every node.
//!
//! `wss://` uses rustls (ring) with the webpki roots compiled in, plus the CA certificates of
//! `WA_TLS_CA_FILE` (a testing aid, [`trust_extra_roots`]). The rustls configuration is built at
//! the first `wss://` dial and shared by every later one; a process that only dials `ws://`
//! never builds it. SNI is the URL's host name (none for an IP address), no ALPN: as
//! tokio-tungstenite's own default.

use std::sync::{Arc, OnceLock};

use futures_util::{SinkExt, StreamExt};
use rustls::pki_types::TrustAnchor;
use rustls::{ClientConfig, RootCertStore};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::{uri_mode, IntoClientRequest};
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::stream::Mode;
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};
use tracing::{debug, warn};

use crate::wa::binary::{self, Node};
use crate::wa::frame::{self, FrameDecoder, FrameTooLarge};
use crate::wa::noise::NoiseTransport;

pub(crate) use tokio_tungstenite::tungstenite::Error as WsError;
use tokio_tungstenite::tungstenite::Message;

type WsStream = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// WhatsApp frames carry a 3-byte length, so no message exceeds 2^24 bytes (wa-protocol.md §1.1).
const MAX_MESSAGE_LEN: usize = 1 << 24;
/// Small buffers: hundreds of workers run side by side, and idle sockets move few bytes.
const READ_BUFFER_LEN: usize = 8 * 1024;

/// The trust anchors `WA_TLS_CA_FILE` adds to the webpki roots, set once at start.
static EXTRA_ROOTS: OnceLock<Vec<TrustAnchor<'static>>> = OnceLock::new();
/// The rustls configuration every `wss://` dial of this process shares.
static TLS_CONFIG: OnceLock<Arc<ClientConfig>> = OnceLock::new();

/// Makes every later `wss://` dial also trust `anchors` (from
/// [`crate::ConnectionArgs::tls_ca_certs`]). Call once at start, before the first dial; later
/// calls change nothing.
pub(crate) fn trust_extra_roots(anchors: Vec<TrustAnchor<'static>>) {
    if EXTRA_ROOTS.set(anchors).is_err() {
        warn!("extra TLS roots set twice; the first set stays");
    }
}

/// The shared rustls configuration, built on first use.
fn tls_config() -> Arc<ClientConfig> {
    TLS_CONFIG.get_or_init(build_tls_config).clone()
}

/// A rustls client configuration trusting the webpki roots and the extra ones: ring, TLS 1.3
/// and 1.2, SNI on, no ALPN, rustls' in-memory session cache (what tokio-tungstenite builds).
fn build_tls_config() -> Arc<ClientConfig> {
    let started = std::time::Instant::now();
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let extra = EXTRA_ROOTS.get().map(Vec::as_slice).unwrap_or_default();
    roots.extend(extra.iter().cloned());
    let config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
    let micros = started.elapsed().as_micros() as u64;
    debug!(
        extra = extra.len(),
        micros, "tls client configuration built"
    );
    Arc::new(config)
}

/// Why the connection failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TransportError {
    #[error("websocket failed: {0}")]
    Ws(#[from] WsError),
    /// The TLS handshake failed: most often a certificate no trusted root vouches for.
    #[error("tls handshake failed: {0}")]
    Tls(rustls::Error),
    #[error("socket closed by the server{}", .0.as_deref().map(|r| format!(" ({r})")).unwrap_or_default())]
    Closed(Option<String>),
    #[error(transparent)]
    TooLarge(#[from] FrameTooLarge),
}

impl TransportError {
    /// Whether the server's TLS certificate was refused.
    pub(crate) fn is_certificate(&self) -> bool {
        matches!(
            self,
            TransportError::Tls(rustls::Error::InvalidCertificate(_))
        )
    }

    /// A dial's error, with a TLS failure (which tokio-tungstenite hands over as an I/O error
    /// around rustls' own) told apart.
    fn from_dial(e: WsError) -> Self {
        if let WsError::Io(io) = &e {
            if let Some(tls) = io
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            {
                return TransportError::Tls(tls.clone());
            }
        }
        TransportError::Ws(e)
    }
}

/// An open WebSocket carrying WhatsApp frames.
pub(crate) struct Connection {
    ws: WsStream,
    frames: FrameDecoder,
    noise: Option<NoiseTransport>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("encrypted", &self.noise.is_some())
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// Opens the WebSocket at `url` with the headers WhatsApp Web sends. `wss://` goes through
    /// the shared rustls configuration; `ws://` URLs (the simulator) go plain.
    ///
    /// # Errors
    /// Any error from the URL, the TCP connect, TLS or the WebSocket upgrade.
    pub(crate) async fn open(url: &str) -> Result<Connection, TransportError> {
        let mut request = url.into_client_request()?;
        let connector = match uri_mode(request.uri())? {
            Mode::Tls => Connector::Rustls(tls_config()),
            Mode::Plain => Connector::Plain,
        };
        let headers = request.headers_mut();
        headers.insert(
            "Origin",
            HeaderValue::from_static("https://web.whatsapp.com"),
        );
        headers.insert("Cache-Control", HeaderValue::from_static("no-cache"));
        headers.insert("Pragma", HeaderValue::from_static("no-cache"));
        let config = WebSocketConfig::default()
            .read_buffer_size(READ_BUFFER_LEN)
            .write_buffer_size(0)
            .max_message_size(Some(MAX_MESSAGE_LEN))
            .max_frame_size(Some(MAX_MESSAGE_LEN));
        let (ws, _response) = tokio_tungstenite::connect_async_tls_with_config(
            request,
            Some(config),
            true,
            Some(connector),
        )
        .await
        .map_err(TransportError::from_dial)?;
        Ok(Connection {
            ws,
            frames: FrameDecoder::new(),
            noise: None,
        })
    }

    /// Sends one raw (handshake) frame, after `prefix` (the intro, on the first message).
    ///
    /// # Errors
    /// An oversized payload or a failed send.
    pub(crate) async fn send_raw(
        &mut self,
        prefix: &[u8],
        payload: &[u8],
    ) -> Result<(), TransportError> {
        let mut message = prefix.to_vec();
        frame::encode(payload, &mut message)?;
        self.ws.send(Message::Binary(message.into())).await?;
        Ok(())
    }

    /// Reads the next raw frame payload.
    ///
    /// # Cancel safety
    /// Cancel safe: partial frames stay in this connection's decoder.
    ///
    /// # Errors
    /// The socket failed or closed.
    pub(crate) async fn read_raw(&mut self) -> Result<Vec<u8>, TransportError> {
        loop {
            if let Some(payload) = self.frames.next_frame() {
                return Ok(payload);
            }
            match self.ws.next().await {
                Some(Ok(Message::Binary(bytes))) => self.frames.push(&bytes),
                Some(Ok(Message::Close(frame))) => {
                    return Err(TransportError::Closed(
                        frame.map(|f| format!("{} {}", f.code, f.reason)),
                    ))
                }
                Some(Ok(other)) => {
                    debug!(kind = ?std::mem::discriminant(&other), "non-binary websocket message ignored")
                }
                Some(Err(e)) => return Err(e.into()),
                None => return Err(TransportError::Closed(None)),
            }
        }
    }

    /// Switches to the transport phase: from now on every frame is encrypted.
    pub(crate) fn start_transport(&mut self, noise: NoiseTransport) {
        self.noise = Some(noise);
    }

    /// Encrypts and sends one node.
    ///
    /// # Errors
    /// A failed send.
    pub(crate) async fn send_node(&mut self, node: &Node) -> Result<(), TransportError> {
        debug!(node = %node.redacted(), "send");
        let plaintext = binary::encode(node);
        let payload = match &mut self.noise {
            Some(noise) => noise.encrypt(&plaintext),
            None => plaintext,
        };
        self.send_raw(&[], &payload).await
    }

    /// Reads the next node. Frames that do not decrypt or decode are dropped with a warning, as
    /// whatsmeow does; the read counter stays in step.
    ///
    /// # Cancel safety
    /// Cancel safe, as [`Connection::read_raw`].
    ///
    /// # Errors
    /// The socket failed or closed.
    pub(crate) async fn read_node(&mut self) -> Result<Node, TransportError> {
        loop {
            let payload = self.read_raw().await?;
            let plaintext = match &mut self.noise {
                Some(noise) => match noise.decrypt(&payload) {
                    Ok(p) => p,
                    Err(e) => {
                        warn!(error = %e, "frame dropped");
                        continue;
                    }
                },
                None => payload,
            };
            match binary::decode_frame(&plaintext) {
                Ok(binary::Decoded { node, trailing }) => {
                    if trailing > 0 {
                        warn!(tag = %node.tag, trailing, "bytes after the node ignored");
                    }
                    debug!(node = %node.redacted(), "recv");
                    return Ok(node);
                }
                Err(e) => warn!(error = %e, len = plaintext.len(), "undecodable node dropped"),
            }
        }
    }

    /// Sends a WebSocket close and waits briefly for it to go out.
    pub(crate) async fn close(&mut self) {
        if let Err(e) = self.ws.close(None).await {
            debug!(error = %e, "socket close failed");
        }
    }
}
