//! The end-to-end payload of a decrypted message: its padding, its `waE2E.Message` protobuf,
//! what `classify` makes of it, and the SKDM it may carry, in the order `session::decrypt`
//! reads them.
//!
//! Modes (first byte):
//! - 0: an unpadded payload: `classify`, `Message::decode`, `field_numbers`, and the
//!   `deviceSentMessage` destination read as a JID;
//! - 1: a padded plaintext: `unpad`, then as mode 0;
//! - 2: a payload carrying a sender key: the SKDM bytes inside it parsed and stored.

use prost::Message as _;
use worker::signal::{pad, unpad, SenderKeyDistributionMessage, SenderKeyRecord};
use worker::wa::binary::Jid;
use worker::wa::e2e::{
    classify, field_numbers, ContextInfo, DeviceSentMessage, ExtendedTextMessage,
    FutureProofMessage, Message, MessageContextInfo, MessageKey, PayloadKind, ProtocolMessage,
    SenderKeyDistribution,
};

use crate::{mode, with_mode, Target};

const MODES: u8 = 3;

/// A real SKDM (wa-messaging.md §11.2.2).
const SKDM: &str = "3308f8acd1910110001a20be24d201c69a8da0dda4dcc50fd50877909b1b23fe9f0d018ff088b6780c83ae222105686588f12f82ef025b11ef870c82de88e5ffc9ad75fdfb9b95e1ee2623c2b054";

/// Field keys of `waE2E.Message` the classifier looks for, and boundary varints.
const DICTIONARY: &[&[u8]] = &[
    &[0x0A, 0x00],
    &[0x12, 0x00],
    &[0x32, 0x00],
    &[0x62, 0x00],
    &[0x7A, 0x00],
    &[0xFA, 0x01, 0x00],
    &[0x9A, 0x02, 0x00],
    &[0xC2, 0x02, 0x00],
    &[0x1A, 0x00],
    &[0xF2, 0x02, 0x00],
    &[0xBA, 0x3E, 0x00],
    &[0x08, 0x00],
    &[0x10, 0x00],
    &[0x0B],
    &[0x0C],
    &[0xFF, 0xFF, 0xFF, 0xFF, 0x0F],
    &[0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01],
    &[0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10],
];

/// Payloads of each kind `classify` names, nested as clients nest them.
pub fn payloads() -> Vec<Vec<u8>> {
    let skdm = hex::decode(SKDM).unwrap_or_default();
    let text = Message::from_text("hello");
    let extended = Message {
        extended_text_message: Some(ExtendedTextMessage {
            text: Some("a reply".into()),
            context_info: Some(ContextInfo {
                stanza_id: Some("3EB0".into()),
                participant: Some("15551234567@s.whatsapp.net".into()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let group_skdm = Message {
        sender_key_distribution_message: Some(SenderKeyDistribution {
            group_id: Some("120363000000000001@g.us".into()),
            axolotl_sender_key_distribution_message: Some(skdm),
        }),
        message_context_info: Some(MessageContextInfo {
            message_secret: Some(vec![7; 32]),
            ..Default::default()
        }),
        ..Message::from_text("to the group")
    };
    let revoke = Message {
        protocol_message: Some(ProtocolMessage {
            key: Some(MessageKey {
                remote_jid: Some("15551234567@s.whatsapp.net".into()),
                from_me: Some(true),
                id: Some("3EB0ABC".into()),
                ..Default::default()
            }),
            r#type: Some(0),
        }),
        ..Default::default()
    };
    let ephemeral = Message {
        ephemeral_message: Some(Box::new(FutureProofMessage {
            message: Some(extended.clone()),
        })),
        ..Default::default()
    };
    let device_sent = Message::device_sent("15551234567@s.whatsapp.net", ephemeral.clone());
    let nested = Message {
        device_sent_message: Some(Box::new(DeviceSentMessage {
            destination_jid: Some("100000000000001:3@lid".into()),
            message: Some(device_sent.clone()),
            phash: Some("2:abc".into()),
        })),
        ..Default::default()
    };
    let mut out: Vec<Vec<u8>> = [
        text,
        extended,
        group_skdm,
        revoke,
        ephemeral,
        device_sent,
        nested,
    ]
    .iter()
    .map(Message::encode_to_vec)
    .collect();
    // imageMessage (3) with messageContextInfo; a reaction (46) in an ephemeral wrapper; an
    // unnamed field (999); nothing at all.
    for h in ["1a050a036162639a0200", "c202070a05f202020a00", "ba3e00", ""] {
        out.push(hex::decode(h).unwrap_or_default());
    }
    out
}

/// What `session::decrypt` does with an unpadded payload.
pub fn use_payload(payload: &[u8]) -> bool {
    let _ = field_numbers(payload);
    if let Ok(message) = Message::decode(payload) {
        let _ = format!("{message:?}");
        let _ = message.sender_key_distribution().map(|s| format!("{s:?}"));
    }
    match classify(payload) {
        Ok(classified) => {
            if let Some(to) = classified.device_sent_to.as_deref() {
                let _ = to.parse::<Jid>().map(|j| j.to_non_ad().to_string());
            }
            if let PayloadKind::Other(name) = classified.kind {
                let _ = name.trim_end_matches("Message");
            }
            true
        }
        Err(e) => {
            let _ = e.to_string();
            false
        }
    }
}

/// The payload decoders.
#[derive(Debug)]
pub struct E2e {
    payloads: Vec<Vec<u8>>,
}

impl E2e {
    pub fn new() -> Self {
        Self {
            payloads: payloads(),
        }
    }
}

impl Target for E2e {
    fn seeds(&self) -> Vec<Vec<u8>> {
        let mut seeds = Vec::new();
        for (i, payload) in self.payloads.iter().enumerate() {
            seeds.push(with_mode(0, payload));
            let padding = (i % 16) as u32 + 1;
            seeds.push(with_mode(1, &pad(payload, &mut Fixed(padding - 1))));
            if Message::decode(&payload[..]).is_ok_and(|m| m.sender_key_distribution().is_some()) {
                seeds.push(with_mode(2, payload));
            }
        }
        seeds
    }

    fn dictionary(&self) -> &'static [&'static [u8]] {
        DICTIONARY
    }

    fn run(&mut self, input: &[u8]) -> bool {
        let (mode, data) = mode(input, MODES);
        match mode {
            0 => use_payload(data),
            1 => unpad(data).is_ok_and(use_payload),
            _ => {
                let Ok(message) = Message::decode(data) else {
                    return false;
                };
                let Some(bytes) = message
                    .sender_key_distribution()
                    .and_then(|s| s.axolotl_sender_key_distribution_message.as_deref())
                else {
                    return false;
                };
                let Ok(skdm) = SenderKeyDistributionMessage::parse(bytes) else {
                    return false;
                };
                let mut record = SenderKeyRecord::new();
                record.process_distribution(&skdm);
                let _ = record.to_bytes();
                true
            }
        }
    }
}

/// An RNG that always says `n`: padding of a chosen length for the seeds.
struct Fixed(u32);

impl rand::RngCore for Fixed {
    fn next_u32(&mut self) -> u32 {
        self.0
    }

    fn next_u64(&mut self) -> u64 {
        u64::from(self.0)
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        dest.fill(self.0 as u8);
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}
