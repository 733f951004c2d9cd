//! The only file that touches tokio-tungstenite: the WebSocket to WhatsApp, its TLS, its
//! framing and, once the handshake is done, the Noise transport around every node.
//!
//! `wss://` uses rustls (ring) with the webpki roots compiled in, plus the CA certificates of
//! `WA_TLS_CA_FILE` (a testing aid, [`trust_extra_roots`]). The rustls configuration is built at
//! the first `wss://` dial and shared by every later one; a process that only dials `ws://`
//! never builds it. SNI is the URL's host name (none for an IP address), no ALPN: as
//! tokio-tungstenite's own default.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};

use futures_util::{SinkExt, StreamExt};
use rustls::pki_types::{ServerName, TrustAnchor};
use rustls::{ClientConfig, RootCertStore};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::client::{uri_mode, IntoClientRequest};
use tokio_tungstenite::tungstenite::error::{TlsError, UrlError};
use tokio_tungstenite::tungstenite::handshake::client::{generate_request, Request};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::http::{HeaderValue, Uri};
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::stream::Mode;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
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

/// TCP to the URL's host and port, with no Nagle delay, then TLS for `wss://`: what
/// tokio-tungstenite's own dial does. SNI is the host name (rustls sends none for an address).
async fn dial_stream(uri: Uri, mode: Mode) -> Result<MaybeTlsStream<TcpStream>, TransportError> {
    let host = uri
        .host()
        .ok_or(WsError::Url(UrlError::NoHostName))?
        .trim_start_matches('[')
        .trim_end_matches(']');
    let port = uri.port_u16().unwrap_or(match mode {
        Mode::Tls => 443,
        Mode::Plain => 80,
    });
    let tcp = TcpStream::connect((host, port))
        .await
        .map_err(WsError::Io)?;
    tcp.set_nodelay(true).map_err(WsError::Io)?;
    match mode {
        Mode::Plain => Ok(MaybeTlsStream::Plain(tcp)),
        Mode::Tls => {
            let name = ServerName::try_from(host.to_owned())
                .map_err(|_| WsError::Tls(TlsError::InvalidDnsName))?;
            let tls = on_heap(|| TlsConnector::from(tls_config()).connect(name, tcp))
                .await
                .map_err(TransportError::from_tls)?;
            Ok(MaybeTlsStream::Rustls(tls))
        }
    }
}

/// The longest upgrade answer read: WhatsApp's is a few hundred bytes.
const MAX_UPGRADE_ANSWER: usize = 16 * 1024;

/// The WebSocket upgrade over `stream`: `request` as tungstenite writes it, then a `101`
/// answer whose `Sec-WebSocket-Accept` matches our key (RFC 6455 §4.1). Bytes after the answer
/// are the first of the WebSocket stream.
async fn upgrade(
    mut stream: MaybeTlsStream<TcpStream>,
    request: Request,
    config: WebSocketConfig,
) -> Result<WsStream, TransportError> {
    let (bytes, key) = generate_request(request)?;
    stream.write_all(&bytes).await.map_err(WsError::Io)?;
    stream.flush().await.map_err(WsError::Io)?;
    let mut answer = Vec::with_capacity(1024);
    let head_len = loop {
        if answer.len() >= MAX_UPGRADE_ANSWER {
            return Err(TransportError::Upgrade(format!(
                "the answer's head exceeds {MAX_UPGRADE_ANSWER} bytes"
            )));
        }
        let read = stream.read_buf(&mut answer).await.map_err(WsError::Io)?;
        if read == 0 {
            return Err(TransportError::Closed(Some(
                "during the websocket upgrade".to_owned(),
            )));
        }
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut response = httparse::Response::new(&mut headers);
        match response.parse(&answer) {
            Ok(httparse::Status::Partial) => continue,
            Ok(httparse::Status::Complete(head_len)) => {
                check_upgrade(&response, &key)?;
                break head_len;
            }
            Err(e) => return Err(TransportError::Upgrade(format!("bad answer: {e}"))),
        }
    };
    debug!("websocket upgraded");
    let rest = answer.split_off(head_len);
    Ok(WebSocketStream::from_partially_read(stream, rest, Role::Client, Some(config)).await)
}

/// A `101 Switching Protocols` with `Upgrade: websocket`, `Connection: upgrade`, the accept key
/// derived from `key`, and no extension or subprotocol we did not ask for.
fn check_upgrade(response: &httparse::Response<'_, '_>, key: &str) -> Result<(), TransportError> {
    let refused = |why: String| Err(TransportError::Upgrade(why));
    if response.code != Some(101) {
        let code = response.code.unwrap_or_default();
        let text = response.reason.unwrap_or_default();
        return refused(format!("HTTP {code} {text}"));
    }
    let header = |name: &str| {
        response
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).trim().to_owned())
    };
    if !header("Upgrade").is_some_and(|v| v.eq_ignore_ascii_case("websocket")) {
        return refused("no 'Upgrade: websocket' in the answer".to_owned());
    }
    let connection = header("Connection").unwrap_or_default();
    if !connection
        .split(',')
        .any(|token| token.trim().eq_ignore_ascii_case("upgrade"))
    {
        return refused("no 'Connection: upgrade' in the answer".to_owned());
    }
    if header("Sec-WebSocket-Accept").as_deref() != Some(&derive_accept_key(key.as_bytes())) {
        return refused("the answer's Sec-WebSocket-Accept does not match our key".to_owned());
    }
    for unasked in ["Sec-WebSocket-Extensions", "Sec-WebSocket-Protocol"] {
        if header(unasked).is_some() {
            return refused(format!(
                "the answer sets {unasked}, which we did not ask for"
            ));
        }
    }
    Ok(())
}

/// The future `make` builds, made on the heap by a function of its own and polled through a
/// pointer. Each async fn's poll reserves stack for every future it builds, all at once; built
/// here, a large one takes room in this short frame only.
#[inline(never)]
pub(crate) fn on_heap<'a, T, F>(
    make: impl FnOnce() -> F,
) -> Pin<Box<dyn Future<Output = T> + Send + 'a>>
where
    F: Future<Output = T> + Send + 'a,
{
    Box::pin(make())
}

/// Why the connection failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TransportError {
    /// Boxed: tungstenite's error is large, and every `Result` carrying this one would be too.
    #[error("websocket failed: {0}")]
    Ws(Box<WsError>),
    /// The TLS handshake failed: most often a certificate no trusted root vouches for.
    #[error("tls handshake failed: {0}")]
    Tls(rustls::Error),
    #[error("socket closed by the server{}", .0.as_deref().map(|r| format!(" ({r})")).unwrap_or_default())]
    Closed(Option<String>),
    /// The server did not switch to WebSocket as RFC 6455 asks.
    #[error("websocket upgrade refused: {0}")]
    Upgrade(String),
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

    /// The TLS handshake's error: tokio-rustls hands rustls' own over inside an I/O error.
    fn from_tls(e: std::io::Error) -> Self {
        match e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            Some(tls) => TransportError::Tls(tls.clone()),
            None => WsError::Io(e).into(),
        }
    }
}

impl From<WsError> for TransportError {
    fn from(e: WsError) -> Self {
        TransportError::Ws(Box::new(e))
    }
}

/// An open WebSocket carrying WhatsApp frames.
pub(crate) struct Connection {
    /// On the heap: the stream with its TLS state is over 3 KiB, and a value that size is
    /// copied through the stack frames of every future that holds or returns a `Connection`.
    ws: Box<WsStream>,
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
        let mode = uri_mode(request.uri())?;
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
        // Each step's future goes to the heap, awaited on its own, and the upgrade is done
        // here: tokio-tungstenite's one-call dial nests them in a future of over 10 KiB whose
        // polls reserved 40 to 70 KiB of stack, and a worker keeps every stack page it touched.
        let stream = on_heap(|| dial_stream(request.uri().clone(), mode)).await?;
        let ws = on_heap(|| upgrade(stream, request, config)).await?;
        Ok(Connection {
            ws: Box::new(ws),
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
        if let Err(e) = WsStream::close(&mut self.ws, None).await {
            debug!(error = %e, "socket close failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// A server on loopback that reads one upgrade request and answers `answer(key)` (the key
    /// is the request's `Sec-WebSocket-Key`); the request's head comes back through the handle.
    async fn server(
        answer: impl FnOnce(&str) -> Vec<u8> + Send + 'static,
    ) -> (String, tokio::task::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("ws://{}/ws/chat", listener.local_addr().expect("addr"));
        let handle = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.expect("accept");
            let mut head = Vec::new();
            while !head.ends_with(b"\r\n\r\n") {
                let mut byte = [0u8; 1];
                socket.read_exact(&mut byte).await.expect("request");
                head.push(byte[0]);
            }
            let head = String::from_utf8(head).expect("utf-8");
            let key = head
                .lines()
                .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
                .expect("a key")
                .to_owned();
            socket.write_all(&answer(&key)).await.expect("answer");
            // Hold the socket until the client is done with it.
            let _ = socket.read(&mut [0u8; 1]).await;
            head
        });
        (url, handle)
    }

    fn switching(accept: &str) -> Vec<u8> {
        format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {accept}\r\n\r\n"
        )
        .into_bytes()
    }

    #[tokio::test]
    async fn the_upgrade_sends_whatsapp_web_headers_and_keeps_bytes_after_the_answer() {
        let (url, request) = server(|key| {
            let mut answer = switching(&derive_accept_key(key.as_bytes()));
            // A binary WebSocket frame in the same segment: one WhatsApp frame of 3 bytes.
            answer.extend_from_slice(&[0x82, 6, 0, 0, 3, 7, 8, 9]);
            answer
        })
        .await;
        let mut conn = Connection::open(&url).await.expect("upgraded");
        assert_eq!(conn.read_raw().await.expect("a frame"), vec![7, 8, 9]);
        drop(conn);
        let head = request.await.expect("server");
        assert!(head.starts_with("GET /ws/chat HTTP/1.1\r\n"), "{head}");
        for line in [
            "Upgrade: websocket",
            "Connection: Upgrade",
            "Sec-WebSocket-Version: 13",
            "Origin: https://web.whatsapp.com",
        ] {
            assert!(
                head.contains(&format!("{line}\r\n")),
                "{line} missing: {head}"
            );
        }
    }

    #[tokio::test]
    async fn a_refused_upgrade_names_the_status() {
        let (url, _request) =
            server(|_| b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n".to_vec()).await;
        let err = Connection::open(&url).await.expect_err("refused");
        assert!(
            matches!(&err, TransportError::Upgrade(why) if why == "HTTP 403 Forbidden"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn an_accept_key_for_another_key_is_refused() {
        let (url, _request) = server(|_| switching(&derive_accept_key(b"another key"))).await;
        let err = Connection::open(&url).await.expect_err("refused");
        assert!(
            matches!(&err, TransportError::Upgrade(why) if why.contains("does not match")),
            "{err}"
        );
    }

    #[tokio::test]
    async fn an_answer_cut_short_is_a_closed_socket() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("ws://{}/ws/chat", listener.local_addr().expect("addr"));
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.expect("accept");
            let _ = socket.read(&mut [0u8; 4096]).await;
            let _ = socket.write_all(b"HTTP/1.1 101 Switching").await;
        });
        let err = Connection::open(&url).await.expect_err("cut short");
        assert!(matches!(err, TransportError::Closed(_)), "{err}");
    }
}
