//! Stored Signal records (`signal/`'s session and sender-key files, which a full disk or a bad
//! copy can damage): `from_bytes`, then the record used as the worker uses it.
//!
//! Modes (first byte):
//! - 0: a `SessionRecord`: read, decrypt a message with it, encrypt one, written again;
//! - 1: a `SenderKeyRecord`: read, decrypt a group message, encrypt and hand out its key if it
//!   is ours, written again.
//!
//! A record written by `to_bytes` must read back.

use rand::rngs::StdRng;
use rand::SeedableRng;
use worker::signal::{pad, SenderKeyMessage, SenderKeyRecord, SessionRecord, SignalMessage};

use crate::signal::{read_payload, Peers};
use crate::{mode, with_mode, Target};

const MODES: u8 = 2;
const RNG_SEED: u64 = 0x5245_434F_5244;

const DICTIONARY: &[&[u8]] = &[
    &[0x0A, 0x00],
    &[0x12, 0x00],
    &[0x0A, 0x20],
    &[0x0A, 0x21, 0x05],
    &[0x40, 0xFF, 0xFF, 0xFF, 0xFF, 0x0F],
    &[0x18, 0xFF, 0xFF, 0xFF, 0xFF, 0x0F],
    &[0x10, 0xFF, 0xFF, 0xFF, 0xFF, 0x0F],
    &[0x10, 0xFE, 0xFF, 0xFF, 0xFF, 0x0F],
    &[0x4A, 0x00],
    &[0x5A, 0x00],
    &[0x22, 0x00],
    &[0x32, 0x00],
    &[0x08, 0x00],
];

/// The record readers.
#[derive(Debug)]
pub struct Records {
    peers: Option<Peers>,
    rng: StdRng,
}

impl Records {
    pub fn new() -> Self {
        Self {
            peers: Peers::new().ok(),
            rng: StdRng::seed_from_u64(RNG_SEED),
        }
    }
}

impl Target for Records {
    fn seeds(&self) -> Vec<Vec<u8>> {
        let Some(p) = &self.peers else {
            return vec![vec![0]];
        };
        let (sessions, sender_keys) = p.records();
        let mut seeds = Vec::new();
        for record in &sessions {
            seeds.push(with_mode(0, record));
        }
        for record in &sender_keys {
            seeds.push(with_mode(1, record));
        }
        seeds
    }

    fn dictionary(&self) -> &'static [&'static [u8]] {
        DICTIONARY
    }

    fn run(&mut self, input: &[u8]) -> bool {
        let Some(p) = &self.peers else {
            return false;
        };
        let rng = &mut self.rng;
        let (mode, data) = mode(input, MODES);
        if mode == 0 {
            let Ok(record) = SessionRecord::from_bytes(data) else {
                return false;
            };
            let _ = (record.has_current_session(), record.archived_count());
            let _ = record.remote_identity().map(|k| k.serialize());
            if let Some(state) = record.current() {
                let _ = (state.receiving_chain_count(), state.has_pending_pre_key());
            }
            if let Ok(message) = SignalMessage::parse(&p.msg) {
                let mut copy = record.clone();
                let _ = copy
                    .decrypt(&message, rng)
                    .map(|padded| read_payload(&padded));
            }
            let mut copy = record.clone();
            if let Ok(sent) = copy.encrypt(&pad(b"\x0a\x02hi", rng)) {
                let _ = (sent.enc_type(), sent.as_bytes().len());
            }
            let again = SessionRecord::from_bytes(&copy.to_bytes());
            assert!(again.is_ok(), "a written session record does not read back");
            true
        } else {
            let Ok(record) = SenderKeyRecord::from_bytes(data) else {
                return false;
            };
            let _ = record.is_empty();
            if let Some(state) = record.current() {
                let _ = (state.key_id(), state.iteration(), state.signing_key());
                let _ = record.state(state.key_id());
            }
            if let Ok(message) = SenderKeyMessage::parse(&p.skmsg) {
                let mut copy = record.clone();
                let _ = copy.decrypt(&message).map(|padded| read_payload(&padded));
            }
            let mut copy = record.clone();
            let _ = copy.encrypt(&pad(b"\x0a\x02hi", rng), rng);
            let _ = copy.distribution_message();
            let again = SenderKeyRecord::from_bytes(&copy.to_bytes());
            assert!(
                again.is_ok(),
                "a written sender key record does not read back"
            );
            true
        }
    }
}
