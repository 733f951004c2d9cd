//! The Noise symmetric state: `h`, `ck`, `k` and one nonce counter (wa-protocol.md §2.1, §2.2).

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::Aes256Gcm;
use hkdf::Hkdf;
use sha2::{Digest, Sha256};

/// `"Noise_XX_25519_AESGCM_SHA256"` padded to 32 bytes: used as is, not hashed.
const PROTOCOL_NAME: &[u8; 32] = b"Noise_XX_25519_AESGCM_SHA256\0\0\0\0";

/// The handshake's symmetric state. Its `Debug` shows no key material.
pub struct SymmetricState {
    h: [u8; 32],
    ck: [u8; 32],
    k: [u8; 32],
    n: u32,
}

impl std::fmt::Debug for SymmetricState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SymmetricState")
            .field("n", &self.n)
            .finish_non_exhaustive()
    }
}

impl SymmetricState {
    /// Initialized with the XX protocol name, then the prologue mixed in.
    pub fn new(prologue: &[u8]) -> Self {
        Self::named(PROTOCOL_NAME, prologue)
    }

    /// Initialized with another pattern's `name` (§2.6: IK, XXfallback), then the prologue
    /// mixed in: a name of up to 32 bytes is zero-padded and used as is, a longer one hashed.
    pub fn named(name: &[u8], prologue: &[u8]) -> Self {
        let h: [u8; 32] = if name.len() <= 32 {
            let mut h = [0u8; 32];
            h[..name.len()].copy_from_slice(name);
            h
        } else {
            Sha256::digest(name).into()
        };
        let mut state = SymmetricState {
            h,
            ck: h,
            k: h,
            n: 0,
        };
        state.mix_hash(prologue);
        state
    }

    /// `h = SHA256(h || data)`.
    pub fn mix_hash(&mut self, data: &[u8]) {
        self.h = Sha256::new()
            .chain_update(self.h)
            .chain_update(data)
            .finalize()
            .into();
    }

    /// `(ck, k) = HKDF(ck, ikm)`, `n = 0`.
    pub fn mix_key(&mut self, ikm: &[u8]) {
        let (ck, k) = hkdf_pair(&self.ck, ikm);
        self.ck = ck;
        self.k = k;
        self.n = 0;
    }

    /// Encrypts with `h` as associated data, then mixes the ciphertext into `h`.
    pub fn encrypt_and_hash(&mut self, plaintext: &[u8]) -> Vec<u8> {
        let cipher = Aes256Gcm::new(&self.k.into());
        let ciphertext = cipher
            .encrypt(
                &nonce(self.n).into(),
                Payload {
                    msg: plaintext,
                    aad: &self.h,
                },
            )
            .expect("AES-GCM encryption of an in-memory buffer cannot fail");
        self.n = self.n.wrapping_add(1);
        self.mix_hash(&ciphertext);
        ciphertext
    }

    /// Decrypts with `h` as associated data; mixes the ciphertext into `h` only on success.
    pub fn decrypt_and_hash(&mut self, ciphertext: &[u8]) -> Option<Vec<u8>> {
        let cipher = Aes256Gcm::new(&self.k.into());
        let plaintext = cipher
            .decrypt(
                &nonce(self.n).into(),
                Payload {
                    msg: ciphertext,
                    aad: &self.h,
                },
            )
            .ok()?;
        self.n = self.n.wrapping_add(1);
        self.mix_hash(ciphertext);
        Some(plaintext)
    }

    /// The two transport keys: `(initiator → responder, responder → initiator)`.
    pub fn split(self) -> ([u8; 32], [u8; 32]) {
        hkdf_pair(&self.ck, &[])
    }
}

/// HKDF-SHA256 with `salt`, empty info, 64 bytes split in two.
fn hkdf_pair(salt: &[u8; 32], ikm: &[u8]) -> ([u8; 32], [u8; 32]) {
    let mut okm = [0u8; 64];
    Hkdf::<Sha256>::new(Some(salt), ikm)
        .expand(&[], &mut okm)
        .expect("64 bytes is a valid HKDF-SHA256 output length");
    let mut a = [0u8; 32];
    let mut b = [0u8; 32];
    a.copy_from_slice(&okm[..32]);
    b.copy_from_slice(&okm[32..]);
    (a, b)
}

/// The 12-byte IV: eight zero bytes, then the counter big-endian (§2.1).
pub(super) fn nonce(counter: u32) -> [u8; 12] {
    let mut iv = [0u8; 12];
    iv[8..].copy_from_slice(&counter.to_be_bytes());
    iv
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonce_is_the_counter_big_endian_after_eight_zero_bytes() {
        assert_eq!(hex::encode(nonce(0)), "000000000000000000000000");
        assert_eq!(hex::encode(nonce(1)), "000000000000000000000001");
        assert_eq!(hex::encode(nonce(0x0102_0304)), "000000000000000001020304");
    }

    #[test]
    fn prologue_hash_matches_the_real_trace() {
        // wa-protocol.md §11.1.1
        let s = SymmetricState::new(&crate::wa::frame::INTRO);
        assert_eq!(
            hex::encode(s.h),
            "ffff0c9267310966f1311170c04b38c79504285bf5edf763e5c946492a50a755"
        );
    }
}
