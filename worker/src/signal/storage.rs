//! The on-disk forms of session and sender-key records: compact hand-written protobufs
//! (no `.proto` compilation). They hold private keys and chain keys, so their `Debug`
//! output is redacted. Conversion to and from the live types lives next to those types.

use std::fmt;

macro_rules! redacted_debug {
    ($($ty:ident),*) => {$(
        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(concat!(stringify!($ty), "(..)"))
            }
        }
    )*};
}

/// A whole session record: the current state and the archived ones, newest first.
#[derive(Clone, PartialEq, prost::Message)]
#[prost(skip_debug)]
pub(crate) struct RecordStructure {
    #[prost(message, optional, tag = "1")]
    pub current: Option<SessionStructure>,
    #[prost(message, repeated, tag = "2")]
    pub previous: Vec<SessionStructure>,
}

/// One session state.
#[derive(Clone, PartialEq, prost::Message)]
#[prost(skip_debug)]
pub(crate) struct SessionStructure {
    #[prost(bytes = "vec", tag = "1")]
    pub local_identity: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub remote_identity: Vec<u8>,
    #[prost(uint32, tag = "3")]
    pub local_registration_id: u32,
    #[prost(uint32, tag = "4")]
    pub remote_registration_id: u32,
    #[prost(bytes = "vec", tag = "5")]
    pub root_key: Vec<u8>,
    #[prost(bytes = "vec", tag = "6")]
    pub sender_ratchet_private: Vec<u8>,
    #[prost(bytes = "vec", tag = "7")]
    pub sender_chain_key: Vec<u8>,
    #[prost(uint32, tag = "8")]
    pub sender_chain_index: u32,
    #[prost(message, repeated, tag = "9")]
    pub receiving: Vec<ChainStructure>,
    #[prost(uint32, tag = "10")]
    pub previous_counter: u32,
    #[prost(message, optional, tag = "11")]
    pub pending_pre_key: Option<PendingPreKeyStructure>,
    #[prost(bytes = "vec", tag = "12")]
    pub base_key: Vec<u8>,
}

/// A receiving chain with its skipped message keys (stored as seeds).
#[derive(Clone, PartialEq, prost::Message)]
#[prost(skip_debug)]
pub(crate) struct ChainStructure {
    #[prost(bytes = "vec", tag = "1")]
    pub ratchet_key: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub chain_key: Vec<u8>,
    #[prost(uint32, tag = "3")]
    pub index: u32,
    #[prost(message, repeated, tag = "4")]
    pub skipped: Vec<SkippedKeyStructure>,
}

/// A skipped message key: the index and the message seed it derives from.
#[derive(Clone, PartialEq, prost::Message)]
#[prost(skip_debug)]
pub(crate) struct SkippedKeyStructure {
    #[prost(uint32, tag = "1")]
    pub index: u32,
    #[prost(bytes = "vec", tag = "2")]
    pub seed: Vec<u8>,
}

/// The prekey data an initiator repeats until the peer answers.
#[derive(Clone, PartialEq, prost::Message)]
#[prost(skip_debug)]
pub(crate) struct PendingPreKeyStructure {
    #[prost(uint32, optional, tag = "1")]
    pub pre_key_id: Option<u32>,
    #[prost(uint32, tag = "2")]
    pub signed_pre_key_id: u32,
    #[prost(bytes = "vec", tag = "3")]
    pub base_key: Vec<u8>,
}

/// A sender-key record: up to five states, newest first.
#[derive(Clone, PartialEq, prost::Message)]
#[prost(skip_debug)]
pub(crate) struct SenderKeyRecordStructure {
    #[prost(message, repeated, tag = "1")]
    pub states: Vec<SenderKeyStateStructure>,
}

/// One sender-key state.
#[derive(Clone, PartialEq, prost::Message)]
#[prost(skip_debug)]
pub(crate) struct SenderKeyStateStructure {
    #[prost(uint32, tag = "1")]
    pub key_id: u32,
    #[prost(uint32, tag = "2")]
    pub iteration: u32,
    #[prost(bytes = "vec", tag = "3")]
    pub chain_key: Vec<u8>,
    #[prost(bytes = "vec", tag = "4")]
    pub signing_public: Vec<u8>,
    #[prost(bytes = "vec", optional, tag = "5")]
    pub signing_private: Option<Vec<u8>>,
    #[prost(message, repeated, tag = "6")]
    pub skipped: Vec<SkippedKeyStructure>,
}

redacted_debug!(
    RecordStructure,
    SessionStructure,
    ChainStructure,
    SkippedKeyStructure,
    PendingPreKeyStructure,
    SenderKeyRecordStructure,
    SenderKeyStateStructure
);

/// Reads exactly 32 bytes of a stored key.
pub(crate) fn key32(
    bytes: &[u8],
    what: &'static str,
) -> Result<[u8; 32], super::error::SignalError> {
    bytes
        .try_into()
        .map_err(|_| super::error::SignalError::CorruptRecord(what))
}
