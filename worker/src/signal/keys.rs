//! Curve25519 keys as Signal structures carry them: 32-byte private scalars, public keys
//! serialized as `0x05 || u` (33 bytes, wa-messaging.md §2.1), X25519 DH and XEdDSA.

use std::fmt;

use rand::{CryptoRng, RngCore};

use super::error::{Result, SignalError};
use crate::store::secret::Secret;
use crate::wa::xeddsa;

/// The DJB key-type byte in front of every serialized public key.
pub const DJB_KEY_TYPE: u8 = 0x05;

/// Length of a serialized public key (`05 || u`).
pub const SERIALIZED_PUBLIC_KEY_LEN: usize = 33;

/// An X25519 public key (the 32-byte Montgomery u-coordinate).
#[derive(Clone, Copy, Eq, Hash, PartialEq)]
pub struct PublicKey([u8; 32]);

impl PublicKey {
    /// Wraps 32 raw bytes (the stanza form, `<value>` of a prekey).
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The 32 raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The 33-byte form used inside Signal messages and signatures: `05 || u`.
    pub fn serialize(&self) -> [u8; SERIALIZED_PUBLIC_KEY_LEN] {
        let mut out = [0u8; SERIALIZED_PUBLIC_KEY_LEN];
        out[0] = DJB_KEY_TYPE;
        out[1..].copy_from_slice(&self.0);
        out
    }

    /// Parses the 33-byte `05 || u` form.
    ///
    /// # Errors
    /// [`SignalError::InvalidKey`] for another length or type byte.
    pub fn deserialize(bytes: &[u8]) -> Result<Self> {
        match bytes {
            [DJB_KEY_TYPE, rest @ ..] => rest
                .try_into()
                .map(Self)
                .map_err(|_| SignalError::InvalidKey("public key is not 32 bytes")),
            _ => Err(SignalError::InvalidKey("public key lacks the 05 type byte")),
        }
    }

    /// Checks an XEdDSA signature made by this key's private half over `message`.
    pub fn verify_signature(&self, message: &[u8], signature: &[u8; 64]) -> bool {
        xeddsa::verify(&self.0, message, signature)
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PublicKey(")?;
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        f.write_str(")")
    }
}

/// An X25519 private key. Its `Debug` prints nothing of the key.
#[derive(Clone, Eq, PartialEq)]
pub struct PrivateKey(Secret<[u8; 32]>);

impl PrivateKey {
    /// Wraps 32 bytes (X25519 clamps them on use).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(Secret::new(bytes))
    }

    /// A fresh clamped private key drawn from `rng`.
    pub fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> Self {
        let mut bytes = [0u8; 32];
        rng.fill_bytes(&mut bytes);
        Self::from_bytes(xeddsa::clamp(bytes))
    }

    /// The private bytes, for persisting. Never log them.
    pub fn expose(&self) -> &[u8; 32] {
        self.0.expose()
    }

    /// The matching public key.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(xeddsa::public_key(self.0.expose()))
    }

    /// X25519 agreement with `their`.
    pub fn agree(&self, their: &PublicKey) -> Secret<[u8; 32]> {
        Secret::new(xeddsa::dh(self.0.expose(), &their.0))
    }

    /// XEdDSA signature over `message` with 64 nonce bytes from `rng`.
    pub fn sign<R: RngCore + CryptoRng>(&self, message: &[u8], rng: &mut R) -> [u8; 64] {
        let mut z = [0u8; 64];
        rng.fill_bytes(&mut z);
        self.sign_with_nonce(message, &z)
    }

    /// XEdDSA signature over `message` with the given nonce bytes (deterministic; vectors).
    pub fn sign_with_nonce(&self, message: &[u8], z: &[u8; 64]) -> [u8; 64] {
        xeddsa::sign_with_nonce(self.0.expose(), message, z)
    }
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PrivateKey(..)")
    }
}

/// A private key with its public key.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct KeyPair {
    /// The public half.
    pub public: PublicKey,
    /// The private half.
    pub private: PrivateKey,
}

impl KeyPair {
    /// A fresh key pair from `rng`.
    pub fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> Self {
        Self::from_private(PrivateKey::generate(rng))
    }

    /// The pair for a known private key.
    pub fn from_private(private: PrivateKey) -> Self {
        Self {
            public: private.public_key(),
            private,
        }
    }
}

/// This device's long-term Signal identity: identity key pair and registration id (§3.1).
#[derive(Clone, Debug)]
pub struct LocalIdentity {
    /// The identity key pair.
    pub key_pair: KeyPair,
    /// The registration id (`<registration>` in uploads and retry receipts).
    pub registration_id: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_keys_round_trip_through_the_33_byte_form() {
        let pair = KeyPair::generate(&mut rand::thread_rng());
        let ser = pair.public.serialize();
        assert_eq!(ser[0], 5);
        assert_eq!(PublicKey::deserialize(&ser), Ok(pair.public));
        assert!(PublicKey::deserialize(&ser[1..]).is_err());
        let mut wrong_type = ser;
        wrong_type[0] = 6;
        assert!(PublicKey::deserialize(&wrong_type).is_err());
        assert!(PublicKey::deserialize(&[5u8; 34]).is_err());
    }

    #[test]
    fn dh_agrees_both_ways_and_debug_hides_private_keys() {
        let mut rng = rand::thread_rng();
        let a = KeyPair::generate(&mut rng);
        let b = KeyPair::generate(&mut rng);
        assert_eq!(
            a.private.agree(&b.public).expose(),
            b.private.agree(&a.public).expose()
        );
        let shown = format!("{a:?}");
        assert!(shown.contains("PrivateKey(..)"));
        let hex: String = a
            .private
            .expose()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert!(!shown.contains(&hex));
    }
}
