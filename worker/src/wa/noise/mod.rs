//! `Noise_XX_25519_AESGCM_SHA256` as WhatsApp runs it (wa-protocol.md §2), and the server
//! certificate chain it carries (§3).
//!
//! ```text
//!  ClientHandshake::start ──ClientHello──▶ ServerHandshake::respond
//!  ClientHandshake::finish ◀─ServerHello── (ephemeral, encrypted static, encrypted CertChain)
//!     verifies the chain (cert.rs), then ──ClientFinish──▶ ServerHandshake::finish
//!  both sides: NoiseTransport (split keys, one counter per direction)
//! ```
//!
//! The handshake types are consumed by the step that ends them, so a half-finished handshake
//! can never encrypt a frame; only [`NoiseTransport`] does.

pub mod cert;
mod handshake;
mod symmetric;
mod transport;

pub use cert::{CertError, TrustPolicy};
pub use handshake::{ClientFinished, ClientHandshake, ServerFinished, ServerHandshake};
pub use symmetric::SymmetricState;
pub use transport::{DecryptError, NoiseTransport};

/// Why a handshake failed.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// A handshake message is not the protobuf it should be.
    #[error("handshake message is malformed: {0}")]
    Malformed(&'static str),
    /// A ciphertext did not authenticate: wrong keys or tampering.
    #[error("handshake ciphertext failed to authenticate ({0})")]
    Decrypt(&'static str),
    /// The server's certificate chain was refused.
    #[error(transparent)]
    Certificate(#[from] CertError),
}
