//! The transport phase: AES-256-GCM, one key and one counter per direction, empty associated
//! data (wa-protocol.md §2.5).

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::Aes256Gcm;

use super::symmetric::nonce;

/// Encrypts outgoing and decrypts incoming frame payloads after the handshake.
pub struct NoiseTransport {
    write: Aes256Gcm,
    read: Aes256Gcm,
    write_counter: u32,
    read_counter: u32,
}

impl std::fmt::Debug for NoiseTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NoiseTransport")
            .field("write_counter", &self.write_counter)
            .field("read_counter", &self.read_counter)
            .finish_non_exhaustive()
    }
}

/// A frame that did not authenticate.
#[derive(Clone, Copy, Debug, Eq, PartialEq, thiserror::Error)]
#[error("frame {counter} failed to authenticate")]
pub struct DecryptError {
    /// The read counter the frame was tried with.
    pub counter: u32,
}

impl NoiseTransport {
    /// The transport from the two keys a handshake's `split()` gave: this side writes with
    /// `write_key` and reads with `read_key`. Public so that a handshake pattern implemented
    /// elsewhere (the simulator's Noise IK and XXfallback) can hand its keys over.
    pub fn new(write_key: [u8; 32], read_key: [u8; 32]) -> Self {
        NoiseTransport {
            write: Aes256Gcm::new(&write_key.into()),
            read: Aes256Gcm::new(&read_key.into()),
            write_counter: 0,
            read_counter: 0,
        }
    }

    /// Encrypts one outgoing payload.
    pub fn encrypt(&mut self, plaintext: &[u8]) -> Vec<u8> {
        let ciphertext = self
            .write
            .encrypt(&nonce(self.write_counter).into(), plaintext)
            .expect("AES-GCM encryption of an in-memory buffer cannot fail");
        self.write_counter = self.write_counter.wrapping_add(1);
        ciphertext
    }

    /// Decrypts one incoming payload. The read counter advances even when it fails, as
    /// whatsmeow does, so a dropped frame does not desynchronise the two sides.
    ///
    /// # Errors
    /// [`DecryptError`] when the frame does not authenticate.
    pub fn decrypt(&mut self, ciphertext: &[u8]) -> Result<Vec<u8>, DecryptError> {
        let counter = self.read_counter;
        self.read_counter = self.read_counter.wrapping_add(1);
        self.read
            .decrypt(&nonce(counter).into(), ciphertext)
            .map_err(|_| DecryptError { counter })
    }
}
