//! The four Signal wire messages as WhatsApp sends them (wa-messaging.md §2): a version
//! byte, a protobuf, and a trailer.
//!
//! ```text
//! SignalMessage                 0x33 || proto || mac[8]       <enc type="msg">
//! PreKeySignalMessage           0x33 || proto                 <enc type="pkmsg">
//! SenderKeyMessage              0x33 || proto || signature[64] <enc type="skmsg">
//! SenderKeyDistributionMessage  0x33 || proto                 inside waE2E.Message
//! ```
//!
//! Encoding is canonical: fields in ascending order, counters written even when 0 (§2.3).
//! Each parsed message keeps its received bytes, so MACs and signatures are checked over
//! exactly what arrived. Parsers never panic.

use std::fmt;

use prost::Message as _;
use subtle::ConstantTimeEq;

use super::error::{Result, SignalError};
use super::kdf::hmac;
use super::keys::{PrivateKey, PublicKey};
use crate::store::secret::Secret;

/// The message version WhatsApp speaks (high nibble of the version byte).
pub const MESSAGE_VERSION: u8 = 3;
/// The version byte every sender writes: `(3 << 4) | 3`.
pub const VERSION_BYTE: u8 = (MESSAGE_VERSION << 4) | MESSAGE_VERSION;
/// Length of the truncated MAC after a SignalMessage.
pub const MAC_LEN: usize = 8;
/// Length of the XEdDSA signature after a SenderKeyMessage.
pub const SIGNATURE_LEN: usize = 64;

/// Splits the version byte off and checks its high nibble (§2.2).
fn split_version(bytes: &[u8]) -> Result<&[u8]> {
    match bytes.split_first() {
        None => Err(SignalError::InvalidMessage("empty message")),
        Some((&v, rest)) if v >> 4 == MESSAGE_VERSION => Ok(rest),
        Some((&v, _)) => Err(SignalError::UnsupportedVersion(v)),
    }
}

fn versioned(proto: &impl prost::Message) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + proto.encoded_len());
    out.push(VERSION_BYTE);
    proto.encode(&mut out).expect("a Vec grows as needed");
    out
}

fn key_field(field: Option<Vec<u8>>, missing: &'static str) -> Result<PublicKey> {
    PublicKey::deserialize(&field.ok_or(SignalError::InvalidMessage(missing))?)
}

/// A pairwise message of an established session (`<enc type="msg">`, §2.3).
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct SignalMessage {
    ratchet_key: PublicKey,
    counter: u32,
    previous_counter: u32,
    ciphertext: Vec<u8>,
    serialized: Vec<u8>,
}

impl SignalMessage {
    /// Builds and MACs a message; `sender` is our identity, `receiver` the peer's.
    pub(crate) fn new(
        mac_key: &[u8; 32],
        sender: &PublicKey,
        receiver: &PublicKey,
        ratchet_key: PublicKey,
        counter: u32,
        previous_counter: u32,
        ciphertext: Vec<u8>,
    ) -> Self {
        let proto = SignalMessageProto {
            ratchet_key: Some(ratchet_key.serialize().to_vec()),
            counter: Some(counter),
            previous_counter: Some(previous_counter),
            ciphertext: Some(ciphertext.clone()),
        };
        let mut serialized = versioned(&proto);
        let mac = compute_mac(mac_key, sender, receiver, &serialized);
        serialized.extend_from_slice(&mac);
        Self {
            ratchet_key,
            counter,
            previous_counter,
            ciphertext,
            serialized,
        }
    }

    /// Parses `0x33 || proto || mac[8]`.
    ///
    /// # Errors
    /// [`SignalError::UnsupportedVersion`], [`SignalError::Protobuf`], or
    /// [`SignalError::InvalidMessage`]/[`SignalError::InvalidKey`] for missing or bad fields.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        if bytes.len() < 1 + MAC_LEN {
            return Err(SignalError::InvalidMessage("signal message too short"));
        }
        let body = split_version(&bytes[..bytes.len() - MAC_LEN])?;
        let proto = SignalMessageProto::decode(body)?;
        Ok(Self {
            ratchet_key: key_field(proto.ratchet_key, "signal message without ratchet key")?,
            counter: proto.counter.ok_or(SignalError::InvalidMessage(
                "signal message without counter",
            ))?,
            previous_counter: proto.previous_counter.unwrap_or(0),
            ciphertext: proto.ciphertext.ok_or(SignalError::InvalidMessage(
                "signal message without ciphertext",
            ))?,
            serialized: bytes.to_vec(),
        })
    }

    /// The sender's current ratchet public key.
    pub fn ratchet_key(&self) -> &PublicKey {
        &self.ratchet_key
    }

    /// The message's index in the sender's chain.
    pub fn counter(&self) -> u32 {
        self.counter
    }

    /// The sender's claim about its previous chain's length; informational only.
    pub fn previous_counter(&self) -> u32 {
        self.previous_counter
    }

    /// The AES-CBC ciphertext.
    pub fn ciphertext(&self) -> &[u8] {
        &self.ciphertext
    }

    /// The bytes on the wire.
    pub fn as_bytes(&self) -> &[u8] {
        &self.serialized
    }

    /// Checks the MAC over the received bytes, in constant time. `sender` is the peer's
    /// identity, `receiver` ours.
    pub(crate) fn verify_mac(
        &self,
        mac_key: &[u8; 32],
        sender: &PublicKey,
        receiver: &PublicKey,
    ) -> bool {
        let (body, mac) = self.serialized.split_at(self.serialized.len() - MAC_LEN);
        let expected = compute_mac(mac_key, sender, receiver, body);
        expected.ct_eq(mac).into()
    }
}

/// `HMAC-SHA256(mac_key, sender33 || receiver33 || 0x33 || proto)[..8]`.
fn compute_mac(
    mac_key: &[u8; 32],
    sender: &PublicKey,
    receiver: &PublicKey,
    versioned_body: &[u8],
) -> [u8; MAC_LEN] {
    let mut data = Vec::with_capacity(66 + versioned_body.len());
    data.extend_from_slice(&sender.serialize());
    data.extend_from_slice(&receiver.serialize());
    data.extend_from_slice(versioned_body);
    let full = hmac(mac_key, &data);
    let mut out = [0u8; MAC_LEN];
    out.copy_from_slice(&full[..MAC_LEN]);
    out
}

/// The first messages of a session, until the peer answers (`<enc type="pkmsg">`, §2.4).
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct PreKeySignalMessage {
    registration_id: u32,
    pre_key_id: Option<u32>,
    signed_pre_key_id: u32,
    base_key: PublicKey,
    identity_key: PublicKey,
    message: SignalMessage,
    serialized: Vec<u8>,
}

impl PreKeySignalMessage {
    /// Wraps `message` with the pending prekey data of the session.
    pub(crate) fn new(
        registration_id: u32,
        pre_key_id: Option<u32>,
        signed_pre_key_id: u32,
        base_key: PublicKey,
        identity_key: PublicKey,
        message: SignalMessage,
    ) -> Self {
        let proto = PreKeySignalMessageProto {
            pre_key_id,
            base_key: Some(base_key.serialize().to_vec()),
            identity_key: Some(identity_key.serialize().to_vec()),
            message: Some(message.as_bytes().to_vec()),
            registration_id: Some(registration_id),
            signed_pre_key_id: Some(signed_pre_key_id),
        };
        Self {
            registration_id,
            pre_key_id,
            signed_pre_key_id,
            base_key,
            identity_key,
            message,
            serialized: versioned(&proto),
        }
    }

    /// Parses `0x33 || proto`, including the embedded SignalMessage. A `preKeyId` of 0
    /// counts as absent (as go.mau.fi/libsignal reads it).
    ///
    /// # Errors
    /// As [`SignalMessage::parse`], for the outer and the embedded message.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        let proto = PreKeySignalMessageProto::decode(split_version(bytes)?)?;
        let message = SignalMessage::parse(&proto.message.ok_or(SignalError::InvalidMessage(
            "prekey message without message",
        ))?)?;
        Ok(Self {
            registration_id: proto.registration_id.unwrap_or(0),
            pre_key_id: proto.pre_key_id.filter(|&id| id != 0),
            signed_pre_key_id: proto.signed_pre_key_id.ok_or(SignalError::InvalidMessage(
                "prekey message without signed prekey id",
            ))?,
            base_key: key_field(proto.base_key, "prekey message without base key")?,
            identity_key: key_field(proto.identity_key, "prekey message without identity")?,
            message,
            serialized: bytes.to_vec(),
        })
    }

    /// The sender's registration id.
    pub fn registration_id(&self) -> u32 {
        self.registration_id
    }

    /// Our one-time prekey the sender used, if any.
    pub fn pre_key_id(&self) -> Option<u32> {
        self.pre_key_id
    }

    /// Our signed prekey the sender used.
    pub fn signed_pre_key_id(&self) -> u32 {
        self.signed_pre_key_id
    }

    /// The sender's X3DH base (ephemeral) key; identifies the session it starts.
    pub fn base_key(&self) -> &PublicKey {
        &self.base_key
    }

    /// The sender's identity key: check it against the stored identity (TOFU, §3.8)
    /// before decrypting.
    pub fn identity_key(&self) -> &PublicKey {
        &self.identity_key
    }

    /// The embedded SignalMessage.
    pub fn message(&self) -> &SignalMessage {
        &self.message
    }

    /// The bytes on the wire.
    pub fn as_bytes(&self) -> &[u8] {
        &self.serialized
    }
}

/// A group (or status) message encrypted with a sender key (`<enc type="skmsg">`, §2.5).
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct SenderKeyMessage {
    key_id: u32,
    iteration: u32,
    ciphertext: Vec<u8>,
    serialized: Vec<u8>,
}

impl SenderKeyMessage {
    /// Builds and signs a message with the state's signing key and nonce bytes `z`.
    pub(crate) fn new(
        key_id: u32,
        iteration: u32,
        ciphertext: Vec<u8>,
        signing_key: &PrivateKey,
        z: &[u8; 64],
    ) -> Self {
        let proto = SenderKeyMessageProto {
            id: Some(key_id),
            iteration: Some(iteration),
            ciphertext: Some(ciphertext.clone()),
        };
        let mut serialized = versioned(&proto);
        let signature = signing_key.sign_with_nonce(&serialized, z);
        serialized.extend_from_slice(&signature);
        Self {
            key_id,
            iteration,
            ciphertext,
            serialized,
        }
    }

    /// Parses `0x33 || proto || signature[64]`. The signature is checked later, against
    /// the sender-key state the `id` selects.
    ///
    /// # Errors
    /// As [`SignalMessage::parse`].
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        if bytes.len() < 1 + SIGNATURE_LEN {
            return Err(SignalError::InvalidMessage("sender key message too short"));
        }
        let body = split_version(&bytes[..bytes.len() - SIGNATURE_LEN])?;
        let proto = SenderKeyMessageProto::decode(body)?;
        Ok(Self {
            key_id: proto
                .id
                .ok_or(SignalError::InvalidMessage("sender key message without id"))?,
            iteration: proto.iteration.ok_or(SignalError::InvalidMessage(
                "sender key message without iteration",
            ))?,
            ciphertext: proto.ciphertext.ok_or(SignalError::InvalidMessage(
                "sender key message without ciphertext",
            ))?,
            serialized: bytes.to_vec(),
        })
    }

    /// The sender-key id ("chain id") of the state used.
    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// The chain iteration of the message key.
    pub fn iteration(&self) -> u32 {
        self.iteration
    }

    /// The AES-CBC ciphertext.
    pub fn ciphertext(&self) -> &[u8] {
        &self.ciphertext
    }

    /// The bytes on the wire.
    pub fn as_bytes(&self) -> &[u8] {
        &self.serialized
    }

    /// Checks the XEdDSA signature over `0x33 || proto` with `signing_key`.
    pub fn verify_signature(&self, signing_key: &PublicKey) -> bool {
        let (body, sig) = self
            .serialized
            .split_at(self.serialized.len() - SIGNATURE_LEN);
        let Ok(sig) = <&[u8; SIGNATURE_LEN]>::try_from(sig) else {
            return false;
        };
        signing_key.verify_signature(body, sig)
    }
}

/// A sender key handed to one recipient device, pairwise encrypted (§2.6, §4.4). Its
/// `Debug` shows the id and iteration, never the chain key.
#[derive(Clone, Eq, PartialEq)]
pub struct SenderKeyDistributionMessage {
    key_id: u32,
    iteration: u32,
    chain_key: Secret<[u8; 32]>,
    signing_key: PublicKey,
    serialized: Vec<u8>,
}

impl SenderKeyDistributionMessage {
    /// Builds the message for a sender-key state.
    pub(crate) fn new(
        key_id: u32,
        iteration: u32,
        chain_key: [u8; 32],
        signing_key: PublicKey,
    ) -> Self {
        let proto = SenderKeyDistributionMessageProto {
            id: Some(key_id),
            iteration: Some(iteration),
            chain_key: Some(chain_key.to_vec()),
            signing_key: Some(signing_key.serialize().to_vec()),
        };
        Self {
            key_id,
            iteration,
            chain_key: Secret::new(chain_key),
            signing_key,
            serialized: versioned(&proto),
        }
    }

    /// Parses `0x33 || proto`.
    ///
    /// # Errors
    /// As [`SignalMessage::parse`]; [`SignalError::InvalidKey`] for a chain key that is
    /// not 32 bytes.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        let proto = SenderKeyDistributionMessageProto::decode(split_version(bytes)?)?;
        let chain_key: [u8; 32] = proto
            .chain_key
            .ok_or(SignalError::InvalidMessage(
                "distribution without chain key",
            ))?
            .try_into()
            .map_err(|_| SignalError::InvalidKey("sender chain key is not 32 bytes"))?;
        Ok(Self {
            key_id: proto
                .id
                .ok_or(SignalError::InvalidMessage("distribution without id"))?,
            iteration: proto.iteration.ok_or(SignalError::InvalidMessage(
                "distribution without iteration",
            ))?,
            chain_key: Secret::new(chain_key),
            signing_key: key_field(proto.signing_key, "distribution without signing key")?,
            serialized: bytes.to_vec(),
        })
    }

    /// The sender-key id.
    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// The iteration of the chain key.
    pub fn iteration(&self) -> u32 {
        self.iteration
    }

    /// The chain key at [`Self::iteration`].
    pub(crate) fn chain_key(&self) -> &[u8; 32] {
        self.chain_key.expose()
    }

    /// The signing public key of the state.
    pub fn signing_key(&self) -> &PublicKey {
        &self.signing_key
    }

    /// The bytes to put in `axolotlSenderKeyDistributionMessage`. They contain the chain
    /// key: never log them.
    pub fn as_bytes(&self) -> &[u8] {
        &self.serialized
    }
}

impl fmt::Debug for SenderKeyDistributionMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SenderKeyDistributionMessage")
            .field("key_id", &self.key_id)
            .field("iteration", &self.iteration)
            .field("signing_key", &self.signing_key)
            .finish_non_exhaustive()
    }
}

/// `SignalMessage` (WhisperTextProtocol).
#[derive(Clone, PartialEq, prost::Message)]
struct SignalMessageProto {
    #[prost(bytes = "vec", optional, tag = "1")]
    ratchet_key: Option<Vec<u8>>,
    #[prost(uint32, optional, tag = "2")]
    counter: Option<u32>,
    #[prost(uint32, optional, tag = "3")]
    previous_counter: Option<u32>,
    #[prost(bytes = "vec", optional, tag = "4")]
    ciphertext: Option<Vec<u8>>,
}

/// `PreKeySignalMessage`.
#[derive(Clone, PartialEq, prost::Message)]
struct PreKeySignalMessageProto {
    #[prost(uint32, optional, tag = "1")]
    pre_key_id: Option<u32>,
    #[prost(bytes = "vec", optional, tag = "2")]
    base_key: Option<Vec<u8>>,
    #[prost(bytes = "vec", optional, tag = "3")]
    identity_key: Option<Vec<u8>>,
    #[prost(bytes = "vec", optional, tag = "4")]
    message: Option<Vec<u8>>,
    #[prost(uint32, optional, tag = "5")]
    registration_id: Option<u32>,
    #[prost(uint32, optional, tag = "6")]
    signed_pre_key_id: Option<u32>,
}

/// `SenderKeyMessage`.
#[derive(Clone, PartialEq, prost::Message)]
struct SenderKeyMessageProto {
    #[prost(uint32, optional, tag = "1")]
    id: Option<u32>,
    #[prost(uint32, optional, tag = "2")]
    iteration: Option<u32>,
    #[prost(bytes = "vec", optional, tag = "3")]
    ciphertext: Option<Vec<u8>>,
}

/// `SenderKeyDistributionMessage`; holds a chain key, so its `Debug` is redacted.
#[derive(Clone, PartialEq, prost::Message)]
#[prost(skip_debug)]
struct SenderKeyDistributionMessageProto {
    #[prost(uint32, optional, tag = "1")]
    id: Option<u32>,
    #[prost(uint32, optional, tag = "2")]
    iteration: Option<u32>,
    #[prost(bytes = "vec", optional, tag = "3")]
    chain_key: Option<Vec<u8>>,
    #[prost(bytes = "vec", optional, tag = "4")]
    signing_key: Option<Vec<u8>>,
}

impl fmt::Debug for SenderKeyDistributionMessageProto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SenderKeyDistributionMessageProto(..)")
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::signal::keys::KeyPair;

    fn key(byte: u8) -> PublicKey {
        PublicKey::from_bytes([byte; 32])
    }

    #[test]
    fn signal_message_writes_zero_counters_and_verifies_its_mac() {
        let msg = SignalMessage::new(&[1; 32], &key(2), &key(3), key(4), 0, 0, vec![9; 16]);
        let bytes = msg.as_bytes();
        assert_eq!(bytes[0], 0x33);
        // ratchet key field (2 + 33 bytes) then counter 0 and previousCounter 0.
        assert_eq!(&bytes[36..40], &[0x10, 0x00, 0x18, 0x00]);
        let parsed = SignalMessage::parse(bytes).expect("parses");
        assert_eq!(parsed, msg);
        assert!(parsed.verify_mac(&[1; 32], &key(2), &key(3)));
        assert!(
            !parsed.verify_mac(&[1; 32], &key(3), &key(2)),
            "order matters"
        );
        assert!(!parsed.verify_mac(&[5; 32], &key(2), &key(3)));
        let mut tampered = bytes.to_vec();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        let tampered = SignalMessage::parse(&tampered).expect("still parses");
        assert!(!tampered.verify_mac(&[1; 32], &key(2), &key(3)));
    }

    #[test]
    fn version_nibble_is_checked() {
        let msg = SignalMessage::new(&[1; 32], &key(2), &key(3), key(4), 5, 1, vec![9; 16]);
        let mut bytes = msg.as_bytes().to_vec();
        bytes[0] = 0x32;
        assert!(
            SignalMessage::parse(&bytes).is_ok(),
            "low nibble is not checked"
        );
        bytes[0] = 0x23;
        assert_eq!(
            SignalMessage::parse(&bytes),
            Err(SignalError::UnsupportedVersion(0x23))
        );
    }

    #[test]
    fn prekey_message_round_trips_and_treats_id_zero_as_absent() {
        let inner = SignalMessage::new(&[1; 32], &key(2), &key(3), key(4), 0, 0, vec![9; 16]);
        let msg = PreKeySignalMessage::new(7, Some(31), 1, key(5), key(2), inner.clone());
        assert_eq!(PreKeySignalMessage::parse(msg.as_bytes()), Ok(msg));
        let zero = PreKeySignalMessage::new(7, Some(0), 1, key(5), key(2), inner);
        assert_eq!(
            PreKeySignalMessage::parse(zero.as_bytes())
                .expect("parses")
                .pre_key_id(),
            None
        );
    }

    #[test]
    fn sender_key_message_signature_binds_the_bytes() {
        let signer = KeyPair::generate(&mut rand::thread_rng());
        let msg = SenderKeyMessage::new(42, 0, vec![1; 16], &signer.private, &[3; 64]);
        let parsed = SenderKeyMessage::parse(msg.as_bytes()).expect("parses");
        assert_eq!(parsed, msg);
        assert!(parsed.verify_signature(&signer.public));
        assert!(!parsed.verify_signature(&key(9)));
        let mut tampered = msg.as_bytes().to_vec();
        let last_ciphertext_byte = tampered.len() - SIGNATURE_LEN - 1;
        tampered[last_ciphertext_byte] ^= 1;
        let tampered = SenderKeyMessage::parse(&tampered).expect("parses");
        assert!(!tampered.verify_signature(&signer.public));
    }

    #[test]
    fn distribution_message_round_trips_and_hides_its_key() {
        let skdm = SenderKeyDistributionMessage::new(1, 0, [0xAB; 32], key(7));
        let parsed = SenderKeyDistributionMessage::parse(skdm.as_bytes()).expect("parses");
        assert_eq!(parsed, skdm);
        assert!(!format!("{parsed:?}").contains("171"));
        assert!(!format!("{parsed:?}").to_lowercase().contains("abab"));
    }

    proptest! {
        #[test]
        fn every_message_round_trips(
            keys in any::<[[u8; 32]; 3]>(),
            counters in any::<(u32, u32, Option<u32>)>(),
            ciphertext in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let [a, b, c] = keys.map(PublicKey::from_bytes);
            let (counter, previous, pre_key) = counters;
            let msg = SignalMessage::new(&keys[0], &a, &b, c, counter, previous, ciphertext.clone());
            prop_assert_eq!(SignalMessage::parse(msg.as_bytes()), Ok(msg.clone()));
            prop_assert!(msg.verify_mac(&keys[0], &a, &b));
            let pkmsg = PreKeySignalMessage::new(previous, pre_key, counter, b, a, msg);
            let parsed = PreKeySignalMessage::parse(pkmsg.as_bytes());
            prop_assert_eq!(parsed.map(|p| p.pre_key_id()), Ok(pre_key.filter(|&id| id != 0)));
            let signer = PrivateKey::from_bytes(keys[1]);
            let skmsg = SenderKeyMessage::new(counter, previous, ciphertext, &signer, &[0; 64]);
            prop_assert_eq!(SenderKeyMessage::parse(skmsg.as_bytes()), Ok(skmsg.clone()));
            prop_assert!(skmsg.verify_signature(&signer.public_key()));
            let skdm = SenderKeyDistributionMessage::new(counter, previous, keys[2], c);
            prop_assert_eq!(SenderKeyDistributionMessage::parse(skdm.as_bytes()), Ok(skdm));
        }

        #[test]
        fn parsers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = SignalMessage::parse(&bytes);
            let _ = PreKeySignalMessage::parse(&bytes);
            let _ = SenderKeyMessage::parse(&bytes);
            let _ = SenderKeyDistributionMessage::parse(&bytes);
        }

        #[test]
        fn parsers_never_panic_behind_a_good_version_byte(
            bytes in proptest::collection::vec(any::<u8>(), 0..300)
        ) {
            let mut v = vec![0x33];
            v.extend_from_slice(&bytes);
            let _ = SignalMessage::parse(&v);
            let _ = PreKeySignalMessage::parse(&v);
            let _ = SenderKeyMessage::parse(&v);
            let _ = SenderKeyDistributionMessage::parse(&v);
        }
    }
}
