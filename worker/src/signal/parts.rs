//! Records from plain parts: how a session or sender-key record kept by another client (the
//! libsignal-node records of a Baileys auth folder, read by `supervisor import baileys`)
//! becomes one of ours. The parts are the stored fields themselves, so what goes in is checked
//! exactly as a record loaded from the volume is.

use prost::Message as _;

use super::error::Result;
use super::sender_key::SenderKeyRecord;
use super::session::SessionRecord;
use super::storage::{
    ChainStructure, PendingPreKeyStructure, RecordStructure, SenderKeyRecordStructure,
    SenderKeyStateStructure, SessionStructure, SkippedKeyStructure,
};

/// One session state, field by field. Public keys are the 32 bytes without the `0x05` type.
pub struct SessionStateParts {
    /// Our identity public key.
    pub local_identity: [u8; 32],
    /// The peer's identity public key.
    pub remote_identity: [u8; 32],
    /// Our registration id.
    pub local_registration_id: u32,
    /// The peer's registration id.
    pub remote_registration_id: u32,
    /// The root key.
    pub root_key: [u8; 32],
    /// Our current ratchet private key.
    pub sending_ratchet_private: [u8; 32],
    /// The sending chain key.
    pub sending_chain_key: [u8; 32],
    /// The index of the message the sending chain key encrypts next.
    pub sending_index: u32,
    /// The receiving chains, oldest first.
    pub receiving: Vec<ChainParts>,
    /// The length of our previous sending chain, as the next message announces it.
    pub previous_counter: u32,
    /// `(one-time prekey id, signed prekey id, base key)` while our messages go out as pkmsg.
    pub pending_pre_key: Option<(Option<u32>, u32, [u8; 32])>,
    /// The X3DH base key that started the session.
    pub base_key: [u8; 32],
}

/// One receiving chain.
pub struct ChainParts {
    /// The peer's ratchet public key of this chain.
    pub ratchet_key: [u8; 32],
    /// The chain key.
    pub chain_key: [u8; 32],
    /// The index of the message the chain key decrypts next.
    pub index: u32,
    /// `(index, message seed)` of messages skipped on this chain, oldest first.
    pub skipped: Vec<(u32, [u8; 32])>,
}

/// One sender-key state.
pub struct SenderKeyStateParts {
    /// The sender-key id.
    pub key_id: u32,
    /// The iteration the chain key encrypts next.
    pub iteration: u32,
    /// The chain key.
    pub chain_key: [u8; 32],
    /// The signing public key.
    pub signing_public: [u8; 32],
    /// The signing private key: only for our own sender key.
    pub signing_private: Option<[u8; 32]>,
    /// `(iteration, message seed)` of skipped iterations, oldest first.
    pub skipped: Vec<(u32, [u8; 32])>,
}

/// Names the parts, never their keys.
macro_rules! opaque_debug {
    ($($ty:ident),*) => {$(
        impl std::fmt::Debug for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(concat!(stringify!($ty), "(..)"))
            }
        }
    )*};
}

opaque_debug!(SessionStateParts, ChainParts, SenderKeyStateParts);

impl SessionRecord {
    /// The record of `current` and the archived `previous` states (newest first).
    ///
    /// # Errors
    /// As [`SessionRecord::from_bytes`].
    pub fn from_parts(
        current: Option<SessionStateParts>,
        previous: Vec<SessionStateParts>,
    ) -> Result<Self> {
        let record = RecordStructure {
            current: current.map(session_structure),
            previous: previous.into_iter().map(session_structure).collect(),
        };
        SessionRecord::from_bytes(&record.encode_to_vec())
    }
}

impl SenderKeyRecord {
    /// The record of `states`, newest first.
    ///
    /// # Errors
    /// As [`SenderKeyRecord::from_bytes`].
    pub fn from_parts(states: Vec<SenderKeyStateParts>) -> Result<Self> {
        let record = SenderKeyRecordStructure {
            states: states
                .into_iter()
                .map(|s| SenderKeyStateStructure {
                    key_id: s.key_id,
                    iteration: s.iteration,
                    chain_key: s.chain_key.to_vec(),
                    signing_public: s.signing_public.to_vec(),
                    signing_private: s.signing_private.map(|k| k.to_vec()),
                    skipped: skipped(s.skipped),
                })
                .collect(),
        };
        SenderKeyRecord::from_bytes(&record.encode_to_vec())
    }
}

fn session_structure(s: SessionStateParts) -> SessionStructure {
    SessionStructure {
        local_identity: s.local_identity.to_vec(),
        remote_identity: s.remote_identity.to_vec(),
        local_registration_id: s.local_registration_id,
        remote_registration_id: s.remote_registration_id,
        root_key: s.root_key.to_vec(),
        sender_ratchet_private: s.sending_ratchet_private.to_vec(),
        sender_chain_key: s.sending_chain_key.to_vec(),
        sender_chain_index: s.sending_index,
        receiving: s
            .receiving
            .into_iter()
            .map(|c| ChainStructure {
                ratchet_key: c.ratchet_key.to_vec(),
                chain_key: c.chain_key.to_vec(),
                index: c.index,
                skipped: skipped(c.skipped),
            })
            .collect(),
        previous_counter: s.previous_counter,
        pending_pre_key: s
            .pending_pre_key
            .map(
                |(pre_key_id, signed_pre_key_id, base_key)| PendingPreKeyStructure {
                    pre_key_id,
                    signed_pre_key_id,
                    base_key: base_key.to_vec(),
                },
            ),
        base_key: s.base_key.to_vec(),
    }
}

fn skipped(keys: Vec<(u32, [u8; 32])>) -> Vec<SkippedKeyStructure> {
    keys.into_iter()
        .map(|(index, seed)| SkippedKeyStructure {
            index,
            seed: seed.to_vec(),
        })
        .collect()
}
