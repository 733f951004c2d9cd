//! The end-to-end payload inside every `<enc>`: the subset of `waE2E.Message` a text
//! client needs (wa-messaging.md §5 and its Appendix), as hand-written prost messages, plus
//! [`classify`], which names what a decrypted payload is without modelling every kind.
//!
//! Unknown fields are skipped on decode (prost), so richer payloads still parse. Types
//! that carry key material (`messageSecret`, the sender key inside an SKDM) print no
//! bytes in `Debug`.

#![allow(missing_docs)]

use std::fmt;

use prost::Message as _;
use thiserror::Error;

/// `waE2E.Message` (subset).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Message {
    #[prost(string, optional, tag = "1")]
    pub conversation: Option<String>,
    #[prost(message, optional, tag = "2")]
    pub sender_key_distribution_message: Option<SenderKeyDistribution>,
    #[prost(message, optional, tag = "6")]
    pub extended_text_message: Option<ExtendedTextMessage>,
    #[prost(message, optional, tag = "12")]
    pub protocol_message: Option<ProtocolMessage>,
    #[prost(message, optional, tag = "15")]
    pub fast_ratchet_key_sender_key_distribution_message: Option<SenderKeyDistribution>,
    #[prost(message, optional, boxed, tag = "31")]
    pub device_sent_message: Option<Box<DeviceSentMessage>>,
    #[prost(message, optional, tag = "35")]
    pub message_context_info: Option<MessageContextInfo>,
    #[prost(message, optional, boxed, tag = "40")]
    pub ephemeral_message: Option<Box<FutureProofMessage>>,
}

impl Message {
    /// `Message{conversation: text}`, the plain text form (§5.3).
    pub fn from_text(text: impl Into<String>) -> Self {
        Self {
            conversation: Some(text.into()),
            ..Self::default()
        }
    }

    /// The copy of an outgoing 1:1 message for our own other devices (§5.2):
    /// `deviceSentMessage{destinationJID, message}`, with `messageContextInfo` copied out.
    pub fn device_sent(destination_jid: impl Into<String>, message: Message) -> Self {
        Self {
            message_context_info: message.message_context_info.clone(),
            device_sent_message: Some(Box::new(DeviceSentMessage {
                destination_jid: Some(destination_jid.into()),
                message: Some(message),
                phash: None,
            })),
            ..Self::default()
        }
    }

    /// The SKDM carried in field 2, else field 15 (§4.4, §5.1).
    pub fn sender_key_distribution(&self) -> Option<&SenderKeyDistribution> {
        self.sender_key_distribution_message.as_ref().or(self
            .fast_ratchet_key_sender_key_distribution_message
            .as_ref())
    }
}

/// `waE2E.SenderKeyDistributionMessage`: a group id and the Signal SKDM bytes. `Debug`
/// shows only the group and the length (the bytes hold a chain key).
#[derive(Clone, PartialEq, prost::Message)]
#[prost(skip_debug)]
pub struct SenderKeyDistribution {
    #[prost(string, optional, tag = "1")]
    pub group_id: Option<String>,
    #[prost(bytes = "vec", optional, tag = "2")]
    pub axolotl_sender_key_distribution_message: Option<Vec<u8>>,
}

impl fmt::Debug for SenderKeyDistribution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SenderKeyDistribution")
            .field("group_id", &self.group_id)
            .field(
                "skdm_len",
                &self
                    .axolotl_sender_key_distribution_message
                    .as_ref()
                    .map(Vec::len),
            )
            .finish()
    }
}

/// `waE2E.ExtendedTextMessage` (subset).
#[derive(Clone, PartialEq, prost::Message)]
pub struct ExtendedTextMessage {
    #[prost(string, optional, tag = "1")]
    pub text: Option<String>,
    #[prost(string, optional, tag = "2")]
    pub matched_text: Option<String>,
    #[prost(string, optional, tag = "5")]
    pub description: Option<String>,
    #[prost(string, optional, tag = "6")]
    pub title: Option<String>,
    #[prost(int32, optional, tag = "10")]
    pub preview_type: Option<i32>,
    #[prost(message, optional, tag = "17")]
    pub context_info: Option<ContextInfo>,
}

/// `waE2E.ContextInfo` (subset): replies, mentions, the disappearing timer.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ContextInfo {
    #[prost(string, optional, tag = "1")]
    pub stanza_id: Option<String>,
    #[prost(string, optional, tag = "2")]
    pub participant: Option<String>,
    #[prost(message, optional, boxed, tag = "3")]
    pub quoted_message: Option<Box<Message>>,
    #[prost(string, optional, tag = "4")]
    pub remote_jid: Option<String>,
    #[prost(string, repeated, tag = "15")]
    pub mentioned_jid: Vec<String>,
    #[prost(bool, optional, tag = "22")]
    pub is_forwarded: Option<bool>,
    #[prost(uint32, optional, tag = "25")]
    pub expiration: Option<u32>,
    #[prost(int64, optional, tag = "26")]
    pub ephemeral_setting_timestamp: Option<i64>,
}

/// `waE2E.ProtocolMessage` (subset): the key of the message it acts on and its type
/// (0 revoke, 3 ephemeral setting, 14 edit, 22 LID mapping sync, …).
#[derive(Clone, PartialEq, prost::Message)]
pub struct ProtocolMessage {
    #[prost(message, optional, tag = "1")]
    pub key: Option<MessageKey>,
    #[prost(int32, optional, tag = "2")]
    pub r#type: Option<i32>,
}

/// `waCommon.MessageKey`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct MessageKey {
    #[prost(string, optional, tag = "1")]
    pub remote_jid: Option<String>,
    #[prost(bool, optional, tag = "2")]
    pub from_me: Option<bool>,
    #[prost(string, optional, tag = "3")]
    pub id: Option<String>,
    #[prost(string, optional, tag = "4")]
    pub participant: Option<String>,
}

/// `waE2E.DeviceSentMessage`: our own device's copy of a 1:1 message (§5.2).
#[derive(Clone, PartialEq, prost::Message)]
pub struct DeviceSentMessage {
    #[prost(string, optional, tag = "1")]
    pub destination_jid: Option<String>,
    #[prost(message, optional, tag = "2")]
    pub message: Option<Message>,
    #[prost(string, optional, tag = "3")]
    pub phash: Option<String>,
}

/// `waE2E.FutureProofMessage`: the wrapper of `ephemeralMessage`, `editedMessage`, ….
#[derive(Clone, PartialEq, prost::Message)]
pub struct FutureProofMessage {
    #[prost(message, optional, tag = "1")]
    pub message: Option<Message>,
}

/// `waE2E.MessageContextInfo` (subset). `Debug` hides the secrets.
#[derive(Clone, PartialEq, prost::Message)]
#[prost(skip_debug)]
pub struct MessageContextInfo {
    #[prost(message, optional, tag = "1")]
    pub device_list_metadata: Option<DeviceListMetadata>,
    #[prost(int32, optional, tag = "2")]
    pub device_list_metadata_version: Option<i32>,
    /// 32 random bytes later add-ons (reactions, polls, edits) derive keys from.
    #[prost(bytes = "vec", optional, tag = "3")]
    pub message_secret: Option<Vec<u8>>,
    #[prost(bytes = "vec", optional, tag = "4")]
    pub padding_bytes: Option<Vec<u8>>,
    #[prost(bytes = "vec", optional, tag = "6")]
    pub bot_message_secret: Option<Vec<u8>>,
    #[prost(int32, optional, tag = "8")]
    pub reporting_token_version: Option<i32>,
}

impl fmt::Debug for MessageContextInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MessageContextInfo")
            .field("device_list_metadata", &self.device_list_metadata)
            .field(
                "device_list_metadata_version",
                &self.device_list_metadata_version,
            )
            .field("has_message_secret", &self.message_secret.is_some())
            .field("has_bot_message_secret", &self.bot_message_secret.is_some())
            .field("reporting_token_version", &self.reporting_token_version)
            .finish_non_exhaustive()
    }
}

/// `waE2E.DeviceListMetadata`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct DeviceListMetadata {
    #[prost(bytes = "vec", optional, tag = "1")]
    pub sender_key_hash: Option<Vec<u8>>,
    #[prost(uint64, optional, tag = "2")]
    pub sender_timestamp: Option<u64>,
    #[prost(uint32, repeated, packed = "true", tag = "3")]
    pub sender_key_indexes: Vec<u32>,
    #[prost(int32, optional, tag = "4")]
    pub sender_account_type: Option<i32>,
    #[prost(int32, optional, tag = "5")]
    pub receiver_account_type: Option<i32>,
    #[prost(bytes = "vec", optional, tag = "8")]
    pub recipient_key_hash: Option<Vec<u8>>,
    #[prost(uint64, optional, tag = "9")]
    pub recipient_timestamp: Option<u64>,
    #[prost(uint32, repeated, packed = "true", tag = "10")]
    pub recipient_key_indexes: Vec<u32>,
}

/// A payload that is not a well-formed `waE2E.Message` (nack it with 491, §8.2).
#[derive(Clone, Debug, Eq, Error, PartialEq)]
pub enum PayloadError {
    /// prost refused the bytes.
    #[error("payload is not a valid message protobuf")]
    Protobuf(#[from] prost::DecodeError),
    /// The light tag scan found a truncated or impossible field.
    #[error("payload protobuf is malformed: {0}")]
    Malformed(&'static str),
}

/// What a decrypted payload is, after unwrapping `ephemeralMessage` and
/// `deviceSentMessage`.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Classified {
    /// The kind of the innermost message.
    pub kind: PayloadKind,
    /// `deviceSentMessage.destinationJID` when this is our own device's copy: the chat.
    pub device_sent_to: Option<String>,
    /// Whether an `ephemeralMessage` wrapper was removed.
    pub ephemeral: bool,
    /// Whether the payload carries an SKDM (field 2 or 15) to process (§4.4).
    pub has_sender_key_distribution: bool,
}

/// The kind of a message, named by the content field present.
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum PayloadKind {
    /// Text: `conversation` or `extendedTextMessage.text`.
    Text(String),
    /// A protocol message (revoke, edit, …) with its type when present.
    Protocol(Option<i32>),
    /// Nothing but an SKDM (and metadata): confirm it, show nothing (§8.2 step 5).
    SenderKeyDistributionOnly,
    /// Another known kind, e.g. `"imageMessage"`, `"reactionMessage"`.
    Other(&'static str),
    /// A content field we have no name for.
    Unknown(u32),
    /// No content at all.
    Empty,
}

/// Message fields that are metadata or wrappers, not content.
const META_FIELDS: [u32; 5] = [2, 15, 31, 35, 40];
/// Wrappers unwrapped before classifying; deeper nesting is refused.
const MAX_WRAPPERS: usize = 4;

/// Content fields of `waE2E.Message` we can name.
const KIND_NAMES: [(u32, &str); 13] = [
    (1, "conversation"),
    (3, "imageMessage"),
    (4, "contactMessage"),
    (5, "locationMessage"),
    (6, "extendedTextMessage"),
    (7, "documentMessage"),
    (8, "audioMessage"),
    (9, "videoMessage"),
    (12, "protocolMessage"),
    (26, "stickerMessage"),
    (46, "reactionMessage"),
    (49, "pollCreationMessage"),
    (58, "editedMessage"),
];

/// Decodes an unpadded payload and says what it is.
///
/// # Errors
/// [`PayloadError`] when the bytes are not a message protobuf.
pub fn classify(payload: &[u8]) -> Result<Classified, PayloadError> {
    let mut message = Message::decode(payload)?;
    let mut device_sent_to = None;
    let mut ephemeral = false;
    let mut has_skdm = message.sender_key_distribution().is_some();
    for _ in 0..MAX_WRAPPERS {
        let inner = if let Some(dsm) = message.device_sent_message.take() {
            device_sent_to = dsm.destination_jid.or(device_sent_to);
            dsm.message
        } else if let Some(eph) = message.ephemeral_message.take() {
            ephemeral = true;
            eph.message
        } else {
            break;
        };
        let Some(inner) = inner else {
            return Ok(Classified {
                kind: PayloadKind::Empty,
                device_sent_to,
                ephemeral,
                has_sender_key_distribution: has_skdm,
            });
        };
        message = inner;
        has_skdm |= message.sender_key_distribution().is_some();
    }
    let kind = if let Some(text) = message.conversation.take() {
        PayloadKind::Text(text)
    } else if let Some(text) = message
        .extended_text_message
        .as_mut()
        .and_then(|e| e.text.take())
    {
        PayloadKind::Text(text)
    } else if let Some(p) = &message.protocol_message {
        PayloadKind::Protocol(p.r#type)
    } else {
        // prost dropped unknown fields: find them in the raw bytes of the innermost message.
        let raw = raw_inner(payload)?;
        kind_from_fields(&field_numbers(raw)?, has_skdm)
    };
    Ok(Classified {
        kind,
        device_sent_to,
        ephemeral,
        has_sender_key_distribution: has_skdm,
    })
}

/// The raw bytes of the innermost wrapped message, following fields 31→2 and 40→1.
fn raw_inner(payload: &[u8]) -> Result<&[u8], PayloadError> {
    let mut current = payload;
    for _ in 0..MAX_WRAPPERS {
        let fields = scan(current)?;
        let wrapper = fields.iter().find_map(|(n, v)| match (n, v) {
            (31, Field::Bytes(b)) => Some((2, *b)),
            (40, Field::Bytes(b)) => Some((1, *b)),
            _ => None,
        });
        let Some((inner_field, wrapper)) = wrapper else {
            break;
        };
        let inner = scan(wrapper)?.into_iter().find_map(|(n, v)| match v {
            Field::Bytes(b) if n == inner_field => Some(b),
            _ => None,
        });
        let Some(inner) = inner else {
            break;
        };
        current = inner;
    }
    Ok(current)
}

fn kind_from_fields(fields: &[u32], has_skdm: bool) -> PayloadKind {
    let content = fields.iter().copied().find(|n| !META_FIELDS.contains(n));
    match content {
        Some(n) => KIND_NAMES
            .iter()
            .find(|(f, _)| *f == n)
            .map_or(PayloadKind::Unknown(n), |(_, name)| {
                PayloadKind::Other(name)
            }),
        None if has_skdm => PayloadKind::SenderKeyDistributionOnly,
        None => PayloadKind::Empty,
    }
}

/// The field numbers present at the top level of a protobuf, in order, deduplicated.
pub fn field_numbers(bytes: &[u8]) -> Result<Vec<u32>, PayloadError> {
    let mut out: Vec<u32> = Vec::new();
    for (n, _) in scan(bytes)? {
        if !out.contains(&n) {
            out.push(n);
        }
    }
    Ok(out)
}

enum Field<'a> {
    Scalar,
    Bytes(&'a [u8]),
}

/// A light walk over the top-level fields of a protobuf. Never panics.
fn scan(mut bytes: &[u8]) -> Result<Vec<(u32, Field<'_>)>, PayloadError> {
    let mut fields = Vec::new();
    while !bytes.is_empty() {
        let key = varint(&mut bytes)?;
        let number = u32::try_from(key >> 3)
            .ok()
            .filter(|&n| n != 0 && n < (1 << 29))
            .ok_or(PayloadError::Malformed("bad field number"))?;
        let field = match key & 7 {
            0 => {
                varint(&mut bytes)?;
                Field::Scalar
            }
            1 => {
                take(&mut bytes, 8)?;
                Field::Scalar
            }
            2 => {
                let len = usize::try_from(varint(&mut bytes)?)
                    .map_err(|_| PayloadError::Malformed("length overflows"))?;
                Field::Bytes(take(&mut bytes, len)?)
            }
            5 => {
                take(&mut bytes, 4)?;
                Field::Scalar
            }
            _ => return Err(PayloadError::Malformed("unsupported wire type")),
        };
        fields.push((number, field));
    }
    Ok(fields)
}

fn varint(bytes: &mut &[u8]) -> Result<u64, PayloadError> {
    let mut value = 0u64;
    for shift in (0..70).step_by(7) {
        let (&b, rest) = bytes
            .split_first()
            .ok_or(PayloadError::Malformed("truncated varint"))?;
        *bytes = rest;
        value |= u64::from(b & 0x7F).checked_shl(shift).unwrap_or(0);
        if b & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(PayloadError::Malformed("varint longer than 10 bytes"))
}

fn take<'a>(bytes: &mut &'a [u8], len: usize) -> Result<&'a [u8], PayloadError> {
    if bytes.len() < len {
        return Err(PayloadError::Malformed("field runs past the end"));
    }
    let (head, rest) = bytes.split_at(len);
    *bytes = rest;
    Ok(head)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use sha2::{Digest, Sha256};

    use super::*;

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s).expect("hex")
    }

    #[test]
    fn encodes_the_documented_examples() {
        // wa-messaging.md §5.3 / §11.2.3
        assert_eq!(
            hex::encode(Message::from_text("hello").encode_to_vec()),
            "0a0568656c6c6f"
        );
        let ext = Message {
            extended_text_message: Some(ExtendedTextMessage {
                text: Some("hello".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(hex::encode(ext.encode_to_vec()), "32070a0568656c6c6f");
        let dsm = Message::device_sent("15551234567@s.whatsapp.net", Message::from_text("hello"));
        assert_eq!(
            hex::encode(dsm.encode_to_vec()),
            "fa01250a1a313535353132333435363740732e77686174736170702e6e657412070a0568656c6c6f"
        );
        let with_secret = Message {
            message_context_info: Some(MessageContextInfo {
                message_secret: Some(Sha256::digest(b"vec-message-secret").to_vec()),
                ..Default::default()
            }),
            ..Message::from_text("hello")
        };
        assert_eq!(hex::encode(with_secret.encode_to_vec()), "0a0568656c6c6f9a02221a20acf67b96abad956f59ad2712de26d099026067382ff7bd7a65541dcf7e278e13");
        assert!(!format!("{with_secret:?}").contains("172"), "secret hidden");
    }

    #[test]
    fn encodes_the_sender_key_distribution_wrapper() {
        // wa-messaging.md §11.2.2
        let skdm = h("3308f8acd1910110001a20be24d201c69a8da0dda4dcc50fd50877909b1b23fe9f0d018ff088b6780c83ae222105686588f12f82ef025b11ef870c82de88e5ffc9ad75fdfb9b95e1ee2623c2b054");
        let msg = Message {
            sender_key_distribution_message: Some(SenderKeyDistribution {
                group_id: Some("120363000000000001@g.us".into()),
                axolotl_sender_key_distribution_message: Some(skdm.clone()),
            }),
            ..Default::default()
        };
        let bytes = msg.encode_to_vec();
        assert_eq!(hex::encode(&bytes), "12690a1731323033363330303030303030303030303140672e7573124e3308f8acd1910110001a20be24d201c69a8da0dda4dcc50fd50877909b1b23fe9f0d018ff088b6780c83ae222105686588f12f82ef025b11ef870c82de88e5ffc9ad75fdfb9b95e1ee2623c2b054");
        let classified = classify(&bytes).expect("decodes");
        assert_eq!(classified.kind, PayloadKind::SenderKeyDistributionOnly);
        assert!(classified.has_sender_key_distribution);
        let decoded = Message::decode(&bytes[..]).expect("decodes");
        assert_eq!(
            decoded
                .sender_key_distribution()
                .and_then(|s| s.axolotl_sender_key_distribution_message.clone()),
            Some(skdm)
        );
        assert!(!format!("{decoded:?}").contains("190"), "skdm bytes hidden");
    }

    #[test]
    fn classifies_text_through_wrappers() {
        let dsm =
            h("fa01250a1a313535353132333435363740732e77686174736170702e6e657412070a0568656c6c6f");
        let c = classify(&dsm).expect("decodes");
        assert_eq!(c.kind, PayloadKind::Text("hello".into()));
        assert_eq!(
            c.device_sent_to.as_deref(),
            Some("15551234567@s.whatsapp.net")
        );
        assert!(!c.ephemeral);
        let eph = Message {
            ephemeral_message: Some(Box::new(FutureProofMessage {
                message: Some(Message {
                    extended_text_message: Some(ExtendedTextMessage {
                        text: Some("later".into()),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
            })),
            ..Default::default()
        };
        let c = classify(&eph.encode_to_vec()).expect("decodes");
        assert_eq!(c.kind, PayloadKind::Text("later".into()));
        assert!(c.ephemeral);
        assert_eq!(c.device_sent_to, None);
    }

    #[test]
    fn names_other_kinds_by_their_field() {
        // imageMessage (3) with a caption field inside, plus messageContextInfo.
        let image = h("1a050a03616263" /* field 3 */)
            .into_iter()
            .chain(h("9a0200"))
            .collect::<Vec<_>>();
        assert_eq!(
            classify(&image).map(|c| c.kind),
            Ok(PayloadKind::Other("imageMessage"))
        );
        // reactionMessage (46), wrapped in an ephemeral message.
        let reaction = h("f202020a00" /* 46: {1: {}} */);
        let wrapped = {
            let mut inner = vec![0x0a, reaction.len() as u8];
            inner.extend_from_slice(&reaction);
            let mut outer = vec![0xc2, 0x02, inner.len() as u8];
            outer.extend_from_slice(&inner);
            outer
        };
        let c = classify(&wrapped).expect("decodes");
        assert_eq!(c.kind, PayloadKind::Other("reactionMessage"));
        assert!(c.ephemeral);
        // pollCreationMessage (49) and stickerMessage (26).
        assert_eq!(
            classify(&h("8a0300")).map(|c| c.kind),
            Ok(PayloadKind::Other("pollCreationMessage"))
        );
        assert_eq!(
            classify(&h("d20100")).map(|c| c.kind),
            Ok(PayloadKind::Other("stickerMessage"))
        );
        // A protocol message (revoke = type 0) and an unnamed field (999).
        let revoke = Message {
            protocol_message: Some(ProtocolMessage {
                key: None,
                r#type: Some(0),
            }),
            ..Default::default()
        };
        assert_eq!(
            classify(&revoke.encode_to_vec()).map(|c| c.kind),
            Ok(PayloadKind::Protocol(Some(0)))
        );
        assert_eq!(
            classify(&h("ba3e00")).map(|c| c.kind),
            Ok(PayloadKind::Unknown(999))
        );
        assert_eq!(classify(&[]).map(|c| c.kind), Ok(PayloadKind::Empty));
    }

    #[test]
    fn unknown_fields_are_tolerated() {
        // conversation plus an unknown field 999 and an imageMessage: text wins.
        let mut bytes = h("ba3e00");
        bytes.extend(h("0a0568656c6c6f"));
        let c = classify(&bytes).expect("decodes");
        assert_eq!(c.kind, PayloadKind::Text("hello".into()));
        assert!(classify(&h("0a05")).is_err(), "truncated");
    }

    proptest! {
        #[test]
        fn decoding_and_classifying_never_panic(
            bytes in proptest::collection::vec(any::<u8>(), 0..300)
        ) {
            let _ = Message::decode(&bytes[..]);
            let _ = classify(&bytes);
            let _ = field_numbers(&bytes);
        }
    }
}
