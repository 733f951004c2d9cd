//! Why the simulator, or one of its connections, stopped. A connection's error ends that
//! connection only; only [`Error::Bind`], [`Error::NotLoopback`] and [`Error::Tls`] stop the
//! simulator.

use std::net::SocketAddr;

use worker::wa::binary::DecodeError;
use worker::wa::frame::FrameTooLarge;
use worker::wa::noise::{DecryptError, HandshakeError};

/// The simulator's errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A listening socket could not be bound.
    #[error("cannot bind the {what} listener on {addr}")]
    Bind {
        /// Which listener: `websocket` or `control`.
        what: &'static str,
        /// The address asked for.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The simulator only ever listens on loopback addresses.
    #[error("{0} is not a loopback address; wa-sim only listens on loopback")]
    NotLoopback(SocketAddr),
    /// The certificate chain for `wss://` could not be made.
    #[error(transparent)]
    Tls(#[from] super::tls::TlsSetupError),
    /// A socket failed.
    #[error("socket error")]
    Io(#[from] std::io::Error),
    /// The WebSocket layer failed or the peer broke its protocol.
    #[error("websocket error")]
    WebSocket(#[source] Box<tokio_tungstenite::tungstenite::Error>),
    /// A URL without a host (client side only).
    #[error("websocket url has no host")]
    BadUrl,
    /// The first bytes were neither `ED…` nor `WA 06 03` (wa-protocol.md §1.2).
    #[error("client intro is not a WhatsApp intro")]
    BadIntro,
    /// The peer closed the connection in the middle of an exchange.
    #[error("peer closed the connection during {0}")]
    Closed(&'static str),
    /// The peer did not send the next message in time.
    #[error("timed out waiting for {0}")]
    Timeout(&'static str),
    /// The Noise handshake failed (wa-protocol.md §2).
    #[error("noise handshake failed")]
    Handshake(#[from] HandshakeError),
    /// The ClientPayload is not a protobuf (wa-protocol.md §4).
    #[error("client payload does not decode")]
    Payload(#[source] prost::DecodeError),
    /// A transport frame did not authenticate (wa-protocol.md §2.5).
    #[error("transport frame does not decrypt")]
    Decrypt(#[from] DecryptError),
    /// A frame plaintext is not a binary node (wa-protocol.md §5).
    #[error("frame is not a binary node")]
    Decode(#[from] DecodeError),
    /// An outgoing frame exceeds the 3-byte length prefix.
    #[error("outgoing frame is too large")]
    FrameTooLarge(#[from] FrameTooLarge),
}

impl From<tokio_tungstenite::tungstenite::Error> for Error {
    fn from(e: tokio_tungstenite::tungstenite::Error) -> Self {
        Error::WebSocket(Box::new(e))
    }
}

/// The simulator's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
