//! Dialling WhatsApp and running the Noise XX handshake over the socket (wa-protocol.md §1, §2).
//!
//! 1. Open the WebSocket.
//! 2. Send the intro (with the `ED` routing pre-intro when we hold routing info) and the
//!    ClientHello in one message.
//! 3. Read the ServerHello, verify the certificate chain, send the ClientFinish with our payload.
//! 4. Hand back a [`Connection`] in transport mode.

use std::time::SystemTime;

use crate::transport::{Connection, TransportError};
use crate::wa::frame;
use crate::wa::noise::{ClientHandshake, HandshakeError, TrustPolicy};
use crate::wa::xeddsa;

/// Everything one connection attempt needs, owned so the attempt can run as a future.
#[derive(Debug)]
pub(crate) struct Dial {
    /// The WebSocket URL.
    pub(crate) url: String,
    /// Routing info from the last `edge_routing`, for the pre-intro.
    pub(crate) routing_info: Option<Vec<u8>>,
    /// The trusted root of the certificate chain.
    pub(crate) root: [u8; 32],
    /// Our Noise static private key.
    pub(crate) noise_private: crate::store::secret::Secret<[u8; 32]>,
    /// The serialized ClientPayload.
    pub(crate) payload: Vec<u8>,
}

/// Why an attempt failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectError {
    /// The socket could not be opened or broke.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The handshake failed (including a refused certificate chain).
    #[error("noise handshake failed: {0}")]
    Handshake(#[from] HandshakeError),
    /// Dial and handshake took longer than the deadline.
    #[error("connect and handshake timed out")]
    TimedOut,
}

impl ConnectError {
    /// Whether the server's certificate chain (Noise) or TLS certificate was refused.
    pub(crate) fn is_certificate(&self) -> bool {
        match self {
            ConnectError::Handshake(HandshakeError::Certificate(_)) => true,
            ConnectError::Transport(e) => e.is_certificate(),
            _ => false,
        }
    }
}

/// Runs steps 1 to 4.
///
/// # Errors
/// [`ConnectError`] from the socket or the handshake.
pub(crate) async fn connect(dial: Dial) -> Result<Connection, ConnectError> {
    let mut conn = Connection::open(&dial.url).await?;
    let (handshake, hello) = ClientHandshake::start(xeddsa::generate_private());
    conn.send_raw(&frame::client_intro(dial.routing_info.as_deref()), &hello)
        .await?;
    let server_hello = conn.read_raw().await?;
    let now_unix = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let trust = TrustPolicy {
        root: dial.root,
        now_unix,
    };
    let done = handshake.finish(
        &server_hello,
        dial.noise_private.expose(),
        &dial.payload,
        &trust,
    )?;
    conn.send_raw(&[], &done.client_finish).await?;
    conn.start_transport(done.transport);
    Ok(conn)
}
