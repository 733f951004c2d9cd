//! The Signal protocol as WhatsApp uses it (wa-messaging.md §2–§4): X3DH, the Double
//! Ratchet, sender keys and their wire formats. IO-free: callers load and store records
//! as opaque bytes, supply prekey lookups and an RNG, and decide trust.
//!
//! ```text
//!  send 1:1     Message bytes ─ padding::pad ─ SessionRecord::encrypt ─▶ pkmsg | msg
//!                 (first send: SessionRecord::process_bundle(PreKeyBundle) ── x3dh)
//!  receive 1:1  pkmsg ─ PreKeySignalMessage::parse ─ TOFU on identity_key()
//!                     ─ SessionRecord::decrypt_pre_key ─ persist record ─ delete prekey
//!               msg   ─ SignalMessage::parse ─ SessionRecord::decrypt ─ persist record
//!                     ─ padding::unpad ─ wa::e2e::Message
//!  send group   SenderKeyRecord::create_own ─ distribution_message ─▶ SKDM, sent pairwise
//!               padding::pad ─ SenderKeyRecord::encrypt ─▶ skmsg
//!  receive grp  SKDM (from a pairwise payload) ─ SenderKeyRecord::process_distribution
//!               skmsg ─ SenderKeyMessage::parse ─ SenderKeyRecord::decrypt ─ unpad
//!
//!  address.rs    ProtocolAddress (name.device) and SenderKeyName, the storage keys
//!  keys.rs       PublicKey (05||u), PrivateKey, KeyPair, LocalIdentity
//!  kdf.rs        HKDF / HMAC chains: root, chain, message and sender message keys
//!  aes_cbc.rs    AES-256-CBC + PKCS#7
//!  wire.rs       SignalMessage, PreKeySignalMessage, SenderKeyMessage, SKDM
//!  x3dh.rs       PreKeyBundle; initiator and responder key agreement
//!  ratchet.rs    SessionState: chains, DH step, skipped keys; CiphertextMessage
//!  session.rs    SessionRecord: archive (40), promotion, pkmsg handling, bytes
//!  sender_key.rs SenderKeyRecord: states (5), group encrypt/decrypt, bytes
//!  padding.rs    WhatsApp random padding (1..=16)
//!  parts.rs      records from plain parts (imports from other clients)
//!  storage.rs    the protobufs records are stored as
//!  error.rs      SignalError with retry-receipt reason codes
//! ```
//!
//! Every decryption changes a record only when it succeeds, so a forged message can
//! never advance a chain. Key material is held in [`crate::store::secret::Secret`] or in
//! types whose `Debug` prints nothing of it.

#![warn(missing_docs)]
mod address;
mod aes_cbc;
mod error;
mod kdf;
mod keys;
mod padding;
mod parts;
mod ratchet;
mod sender_key;
mod session;
mod storage;
mod wire;
mod x3dh;

pub use address::{AddressError, ProtocolAddress, SenderKeyName};
pub use error::{Result, SignalError};
pub use kdf::{ChainKey, MessageKeys, RootKey, SenderChainKey, SenderMessageKeys};
pub use keys::{
    KeyPair, LocalIdentity, PrivateKey, PublicKey, DJB_KEY_TYPE, SERIALIZED_PUBLIC_KEY_LEN,
};
pub use padding::{pad, unpad, MAX_PADDING};
pub use parts::{ChainParts, SenderKeyStateParts, SessionStateParts};
pub use ratchet::{
    CiphertextMessage, SessionState, MAX_FORWARD_JUMP, MAX_RECEIVING_CHAINS, MAX_SKIPPED_KEYS,
};
pub use sender_key::{SenderKeyRecord, SenderKeyState, MAX_SENDER_KEY_STATES};
pub use session::{PreKeyDecryption, PreKeyLookup, SessionRecord, MAX_ARCHIVED_STATES};
pub use wire::{
    PreKeySignalMessage, SenderKeyDistributionMessage, SenderKeyMessage, SignalMessage, MAC_LEN,
    MESSAGE_VERSION, SIGNATURE_LEN, VERSION_BYTE,
};
pub use x3dh::PreKeyBundle;

#[cfg(test)]
mod tests;
