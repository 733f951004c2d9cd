//! The key derivations of the Double Ratchet and of sender keys (wa-messaging.md §3.2–§3.3,
//! §4.2): HKDF-SHA256 splits and HMAC-SHA256 chain steps.
//!
//! ```text
//! master secret --HKDF "WhisperText"-------> RK0 | CK0
//! RK, DH(ours, theirs) --HKDF "WhisperRatchet"--> RK' | CK
//! CK --HMAC 0x02--> next CK          CK --HMAC 0x01--> seed
//! seed --HKDF "WhisperMessageKeys" (80)--> cipher | mac | iv        (pairwise)
//! seed --HKDF "WhisperGroup" (48)---------> iv | cipher              (sender keys)
//! ```

use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::keys::{PrivateKey, PublicKey};
use crate::store::secret::Secret;

const MASTER_INFO: &[u8] = b"WhisperText";
const RATCHET_INFO: &[u8] = b"WhisperRatchet";
const MESSAGE_KEYS_INFO: &[u8] = b"WhisperMessageKeys";
const GROUP_INFO: &[u8] = b"WhisperGroup";
const MESSAGE_SEED_INPUT: u8 = 0x01;
const CHAIN_STEP_INPUT: u8 = 0x02;

/// A 32-byte secret (chain key, root key or message seed).
pub(crate) type Key32 = Secret<[u8; 32]>;

/// A root key of the Double Ratchet.
#[derive(Clone, Debug)]
pub struct RootKey(Key32);

impl RootKey {
    /// Wraps stored bytes.
    pub(crate) fn new(key: [u8; 32]) -> Self {
        Self(Secret::new(key))
    }

    /// The key bytes, for persisting.
    pub(crate) fn expose(&self) -> &[u8; 32] {
        self.0.expose()
    }

    /// One DH ratchet step: `(RK', CK) = HKDF(DH(ours, theirs), salt = RK, "WhisperRatchet")`.
    pub(crate) fn step(&self, theirs: &PublicKey, ours: &PrivateKey) -> (RootKey, ChainKey) {
        let shared = ours.agree(theirs);
        let okm: [u8; 64] = hkdf(shared.expose(), Some(self.0.expose()), RATCHET_INFO);
        split(okm)
    }
}

/// `(RK0, CK0)` from an X3DH master secret.
pub(crate) fn from_master_secret(master: &[u8]) -> (RootKey, ChainKey) {
    split(hkdf(master, None, MASTER_INFO))
}

fn split(okm: [u8; 64]) -> (RootKey, ChainKey) {
    let mut root = [0u8; 32];
    let mut chain = [0u8; 32];
    root.copy_from_slice(&okm[..32]);
    chain.copy_from_slice(&okm[32..]);
    (RootKey::new(root), ChainKey::new(chain, 0))
}

/// A chain key and its index in the chain (pairwise sending or receiving chain).
#[derive(Clone, Debug)]
pub struct ChainKey {
    key: Key32,
    index: u32,
}

impl ChainKey {
    /// A chain key at `index`.
    pub(crate) fn new(key: [u8; 32], index: u32) -> Self {
        Self {
            key: Secret::new(key),
            index,
        }
    }

    /// The index of the message this key would encrypt next.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// The key bytes, for persisting.
    pub(crate) fn expose(&self) -> &[u8; 32] {
        self.key.expose()
    }

    /// The next chain key (`HMAC(CK, 0x02)`). Saturates at `u32::MAX`; callers refuse to
    /// use a chain that far.
    pub(crate) fn next(&self) -> ChainKey {
        Self {
            key: Secret::new(hmac(self.key.expose(), &[CHAIN_STEP_INPUT])),
            index: self.index.saturating_add(1),
        }
    }

    /// The message key seed of this index (`HMAC(CK, 0x01)`).
    pub(crate) fn message_seed(&self) -> Key32 {
        Secret::new(hmac(self.key.expose(), &[MESSAGE_SEED_INPUT]))
    }

    /// The message keys of this index.
    pub(crate) fn message_keys(&self) -> MessageKeys {
        MessageKeys::from_seed(&self.message_seed())
    }
}

/// The keys of one pairwise message: AES-256 key, HMAC key and CBC IV.
#[derive(Clone, Debug)]
pub struct MessageKeys {
    pub(crate) cipher_key: Key32,
    pub(crate) mac_key: Key32,
    pub(crate) iv: Secret<[u8; 16]>,
}

impl MessageKeys {
    /// `HKDF(seed, salt = none, "WhisperMessageKeys", 80)` split 32 | 32 | 16.
    pub(crate) fn from_seed(seed: &Key32) -> Self {
        let okm: [u8; 80] = hkdf(seed.expose(), None, MESSAGE_KEYS_INFO);
        let mut cipher_key = [0u8; 32];
        let mut mac_key = [0u8; 32];
        let mut iv = [0u8; 16];
        cipher_key.copy_from_slice(&okm[..32]);
        mac_key.copy_from_slice(&okm[32..64]);
        iv.copy_from_slice(&okm[64..]);
        Self {
            cipher_key: Secret::new(cipher_key),
            mac_key: Secret::new(mac_key),
            iv: Secret::new(iv),
        }
    }
}

/// A sender-key chain key and its iteration (§4.2).
#[derive(Clone, Debug)]
pub struct SenderChainKey {
    key: Key32,
    iteration: u32,
}

impl SenderChainKey {
    /// A chain key at `iteration`.
    pub(crate) fn new(key: [u8; 32], iteration: u32) -> Self {
        Self {
            key: Secret::new(key),
            iteration,
        }
    }

    /// The iteration this key would encrypt next.
    pub fn iteration(&self) -> u32 {
        self.iteration
    }

    /// The key bytes, for persisting and for distribution messages.
    pub(crate) fn expose(&self) -> &[u8; 32] {
        self.key.expose()
    }

    /// The next chain key (`HMAC(CK, 0x02)`), saturating at `u32::MAX`.
    pub(crate) fn next(&self) -> SenderChainKey {
        Self {
            key: Secret::new(hmac(self.key.expose(), &[CHAIN_STEP_INPUT])),
            iteration: self.iteration.saturating_add(1),
        }
    }

    /// The message seed of this iteration (`HMAC(CK, 0x01)`).
    pub(crate) fn message_seed(&self) -> Key32 {
        Secret::new(hmac(self.key.expose(), &[MESSAGE_SEED_INPUT]))
    }
}

/// The keys of one sender-key message: CBC IV and AES-256 key.
#[derive(Clone, Debug)]
pub struct SenderMessageKeys {
    pub(crate) iv: Secret<[u8; 16]>,
    pub(crate) cipher_key: Key32,
}

impl SenderMessageKeys {
    /// `HKDF(seed, salt = none, "WhisperGroup", 48)` split 16 (IV) | 32 (key).
    pub(crate) fn from_seed(seed: &Key32) -> Self {
        let okm: [u8; 48] = hkdf(seed.expose(), None, GROUP_INFO);
        let mut iv = [0u8; 16];
        let mut cipher_key = [0u8; 32];
        iv.copy_from_slice(&okm[..16]);
        cipher_key.copy_from_slice(&okm[16..]);
        Self {
            iv: Secret::new(iv),
            cipher_key: Secret::new(cipher_key),
        }
    }
}

/// RFC 5869 HKDF-SHA256 with `N` output bytes. `None` salt is 32 zero bytes.
fn hkdf<const N: usize>(ikm: &[u8], salt: Option<&[u8]>, info: &[u8]) -> [u8; N] {
    let mut okm = [0u8; N];
    Hkdf::<Sha256>::new(salt, ikm)
        .expand(info, &mut okm)
        .expect("at most 80 bytes, far below HKDF-SHA256's 8160");
    okm
}

/// HMAC-SHA256.
pub(crate) fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h32(s: &str) -> [u8; 32] {
        hex::decode(s).expect("hex").try_into().expect("32 bytes")
    }

    #[test]
    fn chain_step_matches_the_libsignal_vector() {
        // wa-messaging.md §11.1.1
        let ck = ChainKey::new(
            h32("8ab72d6f4cc5ac0d387eaf463378ddb28edd07385b1cb01250c715982e7ad48f"),
            0,
        );
        let keys = ck.message_keys();
        assert_eq!(
            hex::encode(keys.cipher_key.expose()),
            "bf51e9d75e0e31031051f82a2491ffc084fa298b7793bd9db620056febf45217"
        );
        assert_eq!(
            hex::encode(keys.mac_key.expose()),
            "c6c77d6a73a354337a56435e34607dfe48e3ace14e77314dc6abc172e7a7030b"
        );
        assert_eq!(
            hex::encode(keys.iv.expose()),
            "afa8207986b692a116d4b40bbff72d6c"
        );
        let next = ck.next();
        assert_eq!(next.index(), 1);
        assert_eq!(
            hex::encode(next.expose()),
            "28e8f8fee54b801eef7c5cfb2f17f32c7b334485bbb70fac6ec10342a246d15d"
        );
    }

    #[test]
    fn responder_master_secret_matches_the_libsignal_vector() {
        // wa-messaging.md §11.1.2: Bob, X3DH without one-time prekey.
        let bob_identity = PrivateKey::from_bytes(h32(
            "4875cc69ddf8ea0719ec947d61081135868d5fd801f02c0225e516df2156605e",
        ));
        let bob_spk = PrivateKey::from_bytes(h32(
            "583900131fb727998b7803fe6ac22cc591f342e4e42a8c8d5d78194209b8d253",
        ));
        assert_eq!(
            hex::encode(bob_identity.public_key().serialize()),
            "05f1f43874f6966956c2dd473f8fa15adeb71d1cb991b2341692324cefb1c5e626"
        );
        let alice_identity = PublicKey::from_bytes(h32(
            "b4a8455660ada65b401007f615e654041746432e3339c6875149bceefcb42b4a",
        ));
        let alice_base = PublicKey::from_bytes(h32(
            "472d1fb1a9862c3af6beaca8920277e2b26f4a79213ec7c906aeb35e03cf8950",
        ));
        let mut ms = vec![0xFFu8; 32];
        ms.extend_from_slice(bob_spk.agree(&alice_identity).expose());
        ms.extend_from_slice(bob_identity.agree(&alice_base).expose());
        ms.extend_from_slice(bob_spk.agree(&alice_base).expose());
        let (rk, ck) = from_master_secret(&ms);
        assert_eq!(
            hex::encode(ck.expose()),
            "9797caca53c989bbe229a40ca7727010eb2604fc14945d77958a0aeda088b44d"
        );
        assert_eq!(
            hex::encode(rk.expose()),
            "3e6130d0a8c8e5b8ad65eb8b7d95fa3ab84710d48d92f34dcda43f9909261bca"
        );
    }

    #[test]
    fn sender_chain_matches_the_derived_vector() {
        // wa-messaging.md §11.2.2
        let ck = SenderChainKey::new(
            h32("be24d201c69a8da0dda4dcc50fd50877909b1b23fe9f0d018ff088b6780c83ae"),
            0,
        );
        let seed = ck.message_seed();
        assert_eq!(
            hex::encode(seed.expose()),
            "a490e5706b9483f7d78f5c06418e29c09e58bbc0705786cd0c7ba10f76923b2c"
        );
        let keys = SenderMessageKeys::from_seed(&seed);
        assert_eq!(
            hex::encode(keys.iv.expose()),
            "a70c9c27cccd500194b7c4b3ac229618"
        );
        assert_eq!(
            hex::encode(keys.cipher_key.expose()),
            "2f5a2749630d77d02f717d9626ad11187b30f34bf0c34f17de63d77a817ae113"
        );
        let one = ck.next();
        assert_eq!(
            hex::encode(one.expose()),
            "3c9fb543235f182327a3ae6f4efafa4f4e6c6ce7cfbfd662d7fb693062e72b92"
        );
        let keys1 = SenderMessageKeys::from_seed(&one.message_seed());
        assert_eq!(
            hex::encode(keys1.iv.expose()),
            "35b1d503bec5312e85e82e60c56b27c8"
        );
        assert_eq!(
            hex::encode(keys1.cipher_key.expose()),
            "9a17c502cc5a3fb2b59cc4e308294712bc66a47c6d372d03c7f76940cd56a252"
        );
        assert_eq!(one.next().iteration(), 2);
        assert_eq!(
            hex::encode(one.next().expose()),
            "d984c26387aca81d65d364db83077ecf53899acbe52778df9111a48900da2c7b"
        );
    }
}
