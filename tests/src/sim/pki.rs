//! The simulator's own certificate authority (wa-protocol.md §3.5, §10.1): a root key pair made
//! at start, an intermediate signed by it, and a leaf for the server's Noise static key. Workers
//! under test trust [`Pki::root_public`] instead of WhatsApp's root.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use worker::wa::noise::cert::issue_chain;
use worker::wa::xeddsa;

/// How far back the certificates' validity starts: clocks in tests may lag.
const VALID_BEFORE_NOW_SECS: u64 = 24 * 3600;
/// How long the certificates stay valid after start.
const VALID_AFTER_NOW_SECS: u64 = 10 * 365 * 24 * 3600;

/// The keys and the serialized `CertChain` every ServerHello carries.
pub struct Pki {
    root_public: [u8; 32],
    static_private: [u8; 32],
    chain: Vec<u8>,
}

impl fmt::Debug for Pki {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pki")
            .field("root_public", &hex::encode(self.root_public))
            .finish_non_exhaustive()
    }
}

impl Pki {
    /// Fresh random root, intermediate and server static keys; random serials; validity from a
    /// day ago to ten years ahead.
    pub fn generate() -> Self {
        let root = xeddsa::generate_private();
        let intermediate = xeddsa::generate_private();
        let static_private = xeddsa::generate_private();
        let intermediate_serial = rand::random::<u16>() as u32 + 1;
        let leaf_serial = intermediate_serial + 1 + rand::random::<u16>() as u32;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let chain = issue_chain(
            &root,
            &intermediate,
            &xeddsa::public_key(&static_private),
            (intermediate_serial, leaf_serial),
            (
                now.saturating_sub(VALID_BEFORE_NOW_SECS),
                now + VALID_AFTER_NOW_SECS,
            ),
        );
        Self {
            root_public: xeddsa::public_key(&root),
            static_private,
            chain,
        }
    }

    /// The root public key a client must trust.
    pub fn root_public(&self) -> [u8; 32] {
        self.root_public
    }

    /// The server's Noise static private key.
    pub(crate) fn static_private(&self) -> &[u8; 32] {
        &self.static_private
    }

    /// The serialized `CertChain` (leaf and intermediate).
    pub(crate) fn chain(&self) -> &[u8] {
        &self.chain
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use worker::wa::noise::{ClientHandshake, ServerHandshake, TrustPolicy};

    #[test]
    fn a_client_trusting_the_root_completes_the_handshake() {
        let pki = Pki::generate();
        let (client, hello) = ClientHandshake::start(xeddsa::generate_private());
        let (_server, server_hello) = ServerHandshake::respond(
            &hello,
            xeddsa::generate_private(),
            pki.static_private(),
            pki.chain(),
        )
        .expect("respond");
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("after 1970")
            .as_secs();
        let trust = TrustPolicy {
            root: pki.root_public(),
            now_unix: now,
        };
        let done = client
            .finish(&server_hello, &xeddsa::generate_private(), b"p", &trust)
            .expect("the chain verifies under the sim's root");
        assert_eq!(done.server_static, xeddsa::public_key(pki.static_private()));
    }

    #[test]
    fn debug_shows_no_private_key() {
        let pki = Pki::generate();
        let shown = format!("{pki:?}");
        assert!(!shown.contains(&hex::encode(pki.static_private())));
    }
}
