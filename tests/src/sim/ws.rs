//! The WebSocket under one simulated connection (wa-protocol.md §1.1): tungstenite's sans-IO
//! protocol core driven over a tokio `TcpStream`, plain or through TLS (`tls`), for both the
//! server side (the simulator) and the client side (its tests).
//!
//! tungstenite reads and writes through `std::io`; the socket here answers `WouldBlock` instead
//! of blocking, tungstenite keeps whatever it has read or not yet written in its own buffers, and
//! the async wrappers wait for the readiness the socket (or TLS) asked for, then call again.
//! (tokio-tungstenite's `WebSocketStream` is only usable through the `futures` `Stream`/`Sink`
//! traits, and the workspace has no `futures` crate to name them with.)
//!
//! 1. [`WsConnection::accept`] reads the HTTP upgrade (on a plain socket or a TLS stream whose
//!    handshake is done), lets a check refuse it (path, `refuse` switch) and answers `101`;
//!    [`WsConnection::connect`] is the client's side of the same (`ws://` only).
//! 2. [`WsConnection::recv`] yields binary messages (text is ignored as whatsmeow ignores it;
//!    pings are answered by tungstenite); `None` once the peer closed.
//! 3. [`WsConnection::send`] writes one binary message; [`WsConnection::close`] sends a close
//!    frame (and TLS its `close_notify`) and [`WsConnection::linger`] waits briefly for the
//!    peer's; [`WsConnection::abort`] drops the TCP stream.

use std::io::{self, Read, Write};
use std::sync::Arc;
use std::time::Duration;

use rustls::ClientConfig;
use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::handshake::HandshakeError;
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message, WebSocket};

use super::error::{Error, Result};
use super::tls::TlsStream;

/// The largest message either side accepts: one maximal frame plus its length prefix and the
/// intro (§1.3).
const MAX_MESSAGE_LEN: usize = (1 << 24) + 16;
/// How long [`WsConnection::close`] waits for the peer's close frame.
const CLOSE_LINGER: Duration = Duration::from_secs(1);

/// A WebSocket over TCP or TLS, either role.
///
/// # Cancel safety
/// [`recv`](Self::recv) is cancel safe: bytes read so far stay in tungstenite's buffer. The other
/// methods are not meant to be raced in a `select!`.
#[derive(Debug)]
pub struct WsConnection {
    ws: WebSocket<Stream>,
}

impl WsConnection {
    /// Accepts the HTTP upgrade on `stream`. `check` sees the request first and may refuse it
    /// with an HTTP status (the answer then has that status and a short text body).
    ///
    /// # Errors
    /// [`Error::WebSocket`] when the request is not a WebSocket upgrade, `check` refused it, or
    /// the socket failed.
    pub(crate) async fn accept(
        stream: Stream,
        check: impl FnOnce(&Request) -> std::result::Result<(), StatusCode>,
    ) -> Result<Self> {
        // tungstenite's `Callback` fixes this signature, large error response included.
        #[allow(clippy::result_large_err)]
        let callback = move |request: &Request, response: Response| match check(request) {
            Ok(()) => Ok(response),
            Err(status) => {
                let mut refusal = ErrorResponse::new(Some(
                    status.canonical_reason().unwrap_or("refused").to_owned(),
                ));
                *refusal.status_mut() = status;
                Err(refusal)
            }
        };
        let mut attempt = tungstenite::accept_hdr_with_config(stream, callback, Some(config()));
        loop {
            match attempt {
                Ok(ws) => return Ok(Self { ws }),
                Err(HandshakeError::Interrupted(mid)) => {
                    mid.get_ref().get_ref().ready().await?;
                    attempt = mid.handshake();
                }
                Err(HandshakeError::Failure(e)) => return Err(e.into()),
            }
        }
    }

    /// Connects to `url` (`ws://host:port/path`) with the Origin header the web clients send
    /// (§1.1).
    ///
    /// # Errors
    /// [`Error::Io`] when the TCP connection fails, [`Error::WebSocket`] when the upgrade does.
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_with(url, None).await
    }

    /// Connects to `url` (`wss://host:port/path`) trusting what `tls` trusts; the certificate
    /// must name the URL's host.
    ///
    /// # Errors
    /// As [`WsConnection::connect`]; [`Error::Io`] when the TLS handshake fails too.
    pub async fn connect_tls(url: &str, tls: Arc<ClientConfig>) -> Result<Self> {
        Self::connect_with(url, Some(tls)).await
    }

    async fn connect_with(url: &str, tls: Option<Arc<ClientConfig>>) -> Result<Self> {
        let mut request = url.into_client_request()?;
        request.headers_mut().insert(
            "Origin",
            HeaderValue::from_static("https://web.whatsapp.com"),
        );
        let host = request
            .uri()
            .authority()
            .map(|a| a.as_str().to_owned())
            .ok_or(Error::BadUrl)?;
        let tcp = TcpStream::connect(host).await?;
        tcp.set_nodelay(true)?;
        let stream = match tls {
            None => Stream::from(tcp),
            Some(config) => {
                let name = request.uri().host().ok_or(Error::BadUrl)?;
                let name = name.trim_start_matches('[').trim_end_matches(']');
                Stream::from(TlsStream::connect(tcp, config, name).await?)
            }
        };
        let mut attempt = tungstenite::client::client_with_config(request, stream, Some(config()));
        loop {
            match attempt {
                Ok((ws, _response)) => return Ok(Self { ws }),
                Err(HandshakeError::Interrupted(mid)) => {
                    mid.get_ref().get_ref().ready().await?;
                    attempt = mid.handshake();
                }
                Err(HandshakeError::Failure(e)) => return Err(e.into()),
            }
        }
    }

    /// The next binary message; `None` when the peer closed the connection.
    ///
    /// # Errors
    /// [`Error::WebSocket`] on a protocol violation or a socket error.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn recv(&mut self) -> Result<Option<Vec<u8>>> {
        loop {
            match self.ws.read() {
                Ok(Message::Binary(bytes)) => return Ok(Some(bytes.to_vec())),
                Ok(Message::Close(_)) => {
                    // Drive tungstenite's close reply out; the peer is gone either way.
                    let _ = self.flush().await;
                    return Ok(None);
                }
                Ok(_) => continue,
                Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                    return Ok(None)
                }
                Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.ready().await?;
                }
                Err(tungstenite::Error::Io(e))
                    if matches!(
                        e.kind(),
                        io::ErrorKind::ConnectionReset | io::ErrorKind::UnexpectedEof
                    ) =>
                {
                    return Ok(None)
                }
                Err(tungstenite::Error::Protocol(
                    tungstenite::error::ProtocolError::ResetWithoutClosingHandshake,
                )) => return Ok(None),
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Sends one binary message.
    ///
    /// # Errors
    /// [`Error::WebSocket`] when the socket is closed or failed.
    pub async fn send(&mut self, bytes: Vec<u8>) -> Result<()> {
        match self.ws.write(Message::Binary(bytes.into())) {
            Ok(()) => {}
            Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e.into()),
        }
        self.flush().await
    }

    /// Sends a normal close frame (over TLS, then its `close_notify`); [`linger`](Self::linger)
    /// then waits for the peer's answer.
    pub async fn close(&mut self) {
        match self.ws.close(None) {
            Ok(()) => {}
            Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => return,
        }
        let _ = self.flush().await;
        if let Stream::Tls(tls) = self.ws.get_mut() {
            tls.close_notify();
        }
    }

    /// Reads and drops whatever still arrives until the peer closes, for up to a second.
    pub async fn linger(mut self) {
        let drain = async { while let Ok(Some(_)) = self.recv().await {} };
        let _ = tokio::time::timeout(CLOSE_LINGER, drain).await;
    }

    /// Drops the TCP stream without a close frame (a network failure, as the peer sees it).
    pub fn abort(self) {
        drop(self);
    }

    async fn flush(&mut self) -> Result<()> {
        loop {
            match self.ws.flush() {
                Ok(()) => return Ok(()),
                Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.ready().await?;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    async fn ready(&self) -> Result<()> {
        Ok(self.ws.get_ref().ready().await?)
    }
}

fn config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE_LEN))
        .max_frame_size(Some(MAX_MESSAGE_LEN))
}

/// A tokio socket seen through `std::io`: every call is a `try_` call, and a `WouldBlock`
/// remembers which readiness to wait for.
#[derive(Debug)]
pub(crate) struct NonBlocking {
    tcp: TcpStream,
    blocked_on: Interest,
}

impl NonBlocking {
    pub(crate) fn new(tcp: TcpStream) -> Self {
        Self {
            tcp,
            blocked_on: Interest::READABLE,
        }
    }

    /// What the last call that would have blocked was waiting for.
    pub(crate) fn blocked_on(&self) -> Interest {
        self.blocked_on
    }

    /// Waits until the socket is ready for what the last call blocked on.
    async fn ready(&self) -> io::Result<()> {
        self.ready_for(self.blocked_on).await
    }

    /// Waits until the socket is ready for any of `interest`.
    pub(crate) async fn ready_for(&self, interest: Interest) -> io::Result<()> {
        self.tcp.ready(interest).await?;
        Ok(())
    }
}

impl Read for NonBlocking {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let result = self.tcp.try_read(buf);
        if matches!(&result, Err(e) if e.kind() == io::ErrorKind::WouldBlock) {
            self.blocked_on = Interest::READABLE;
        }
        result
    }
}

impl Write for NonBlocking {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let result = self.tcp.try_write(buf);
        if matches!(&result, Err(e) if e.kind() == io::ErrorKind::WouldBlock) {
            self.blocked_on = Interest::WRITABLE;
        }
        result
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The bytes under a WebSocket: the socket itself (`ws://`), or TLS over it (`wss://`).
#[derive(Debug)]
pub(crate) enum Stream {
    /// `ws://`.
    Plain(NonBlocking),
    /// `wss://`: the handshake is done.
    Tls(Box<TlsStream>),
}

impl Stream {
    /// Whether the bytes go through TLS.
    pub(crate) fn is_tls(&self) -> bool {
        matches!(self, Stream::Tls(_))
    }

    /// Waits until the call that would have blocked can make progress.
    async fn ready(&self) -> io::Result<()> {
        match self {
            Stream::Plain(socket) => socket.ready().await,
            Stream::Tls(tls) => tls.ready().await,
        }
    }
}

impl From<TcpStream> for Stream {
    fn from(tcp: TcpStream) -> Self {
        Stream::Plain(NonBlocking::new(tcp))
    }
}

impl From<TlsStream> for Stream {
    fn from(tls: TlsStream) -> Self {
        Stream::Tls(Box::new(tls))
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(socket) => socket.read(buf),
            Stream::Tls(tls) => tls.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(socket) => socket.write(buf),
            Stream::Tls(tls) => tls.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(socket) => socket.flush(),
            Stream::Tls(tls) => tls.flush(),
        }
    }
}
