//! Why a Signal operation failed, and what a retry receipt should say about it
//! (wa-messaging.md §8.3, §8.6).

use thiserror::Error;

/// A failed Signal operation. Nothing here carries key bytes.
///
/// Callers ask [`SignalError::retry_reason`] for the `<retry error>` code and
/// [`SignalError::is_duplicate`] whether to confirm the message like a success (§8.3).
#[derive(Clone, Debug, Eq, Error, PartialEq)]
pub enum SignalError {
    /// There is no session for the address (or the record holds no usable state).
    #[error("no session for this address")]
    NoSession,
    /// No sender-key state with this id is known for the group sender.
    #[error("no sender key state with id {0}")]
    NoSenderKey(u32),
    /// A key has the wrong length or type byte, or a needed private key is missing.
    #[error("invalid key: {0}")]
    InvalidKey(&'static str),
    /// The pkmsg names a one-time prekey we do not have (used or never issued).
    #[error("unknown one-time prekey {0}")]
    InvalidPreKeyId(u32),
    /// The pkmsg names a signed prekey we do not have.
    #[error("unknown signed prekey {0}")]
    InvalidSignedPreKeyId(u32),
    /// The bytes are not a well-formed message of the expected kind.
    #[error("invalid message: {0}")]
    InvalidMessage(&'static str),
    /// The protobuf inside a message does not decode.
    #[error("malformed protobuf in message")]
    Protobuf(#[from] prost::DecodeError),
    /// The version byte's high nibble is not 3 (§2.2).
    #[error("unsupported message version byte {0:#04x}")]
    UnsupportedVersion(u8),
    /// An XEdDSA signature (signed prekey or sender-key message) does not verify.
    #[error("invalid signature")]
    InvalidSignature,
    /// The 8-byte MAC of a SignalMessage does not match.
    #[error("bad message mac")]
    BadMac,
    /// The counter or iteration is further ahead of its chain than we derive keys for.
    #[error("message {counter} is too far ahead of its chain at {chain_index}")]
    TooFarInFuture {
        /// Counter (pairwise) or iteration (sender key) of the message.
        counter: u32,
        /// Where the receiving chain stood.
        chain_index: u32,
    },
    /// The message key was already used: a duplicate or a replay.
    #[error("duplicate message with counter {0}")]
    Duplicate(u32),
    /// AES-CBC decryption failed (wrong length or PKCS#7 padding).
    #[error("ciphertext does not decrypt")]
    BadCiphertext,
    /// The WhatsApp random padding of a decrypted payload is malformed (§5.4).
    #[error("bad random padding")]
    BadPadding,
    /// A stored session or sender-key record does not parse.
    #[error("stored record is corrupt: {0}")]
    CorruptRecord(&'static str),
}

/// `Result` with a [`SignalError`].
pub type Result<T> = std::result::Result<T, SignalError>;

impl SignalError {
    /// The `<retry error="…">` reason code (§8.6): 1 no session, 2 invalid key, 3 invalid
    /// prekey id, 4 invalid message, 5 invalid signature, 6 future message, 7 bad MAC,
    /// 8 invalid session, 9 invalid message key. A missing sender key counts as "no
    /// session"; a duplicate is not a failure (see [`Self::is_duplicate`]) and gives 0.
    pub fn retry_reason(&self) -> u8 {
        match self {
            Self::Duplicate(_) => 0,
            Self::NoSession | Self::NoSenderKey(_) => 1,
            Self::InvalidKey(_) => 2,
            Self::InvalidPreKeyId(_) | Self::InvalidSignedPreKeyId(_) => 3,
            Self::InvalidMessage(_)
            | Self::Protobuf(_)
            | Self::UnsupportedVersion(_)
            | Self::BadPadding => 4,
            Self::InvalidSignature => 5,
            Self::TooFarInFuture { .. } => 6,
            Self::BadMac => 7,
            Self::CorruptRecord(_) => 8,
            Self::BadCiphertext => 9,
        }
    }

    /// Whether the message was already decrypted once: confirm it like a success and send
    /// no retry receipt (§8.3).
    pub fn is_duplicate(&self) -> bool {
        matches!(self, Self::Duplicate(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_follow_the_retry_receipt_codes() {
        assert_eq!(SignalError::NoSession.retry_reason(), 1);
        assert_eq!(SignalError::NoSenderKey(7).retry_reason(), 1);
        assert_eq!(SignalError::InvalidKey("x").retry_reason(), 2);
        assert_eq!(SignalError::InvalidPreKeyId(31).retry_reason(), 3);
        assert_eq!(SignalError::InvalidMessage("x").retry_reason(), 4);
        assert_eq!(SignalError::InvalidSignature.retry_reason(), 5);
        assert_eq!(SignalError::BadMac.retry_reason(), 7);
        assert_eq!(SignalError::BadCiphertext.retry_reason(), 9);
        assert!(SignalError::Duplicate(3).is_duplicate());
        assert!(!SignalError::BadMac.is_duplicate());
    }
}
