//! The Signal wire parsers (`signal::wire`) and what the receive path does right after them.
//!
//! Modes (first byte):
//! - 0: `SignalMessage::parse`, then a copy of an established session decrypts it;
//! - 1: `PreKeySignalMessage::parse`, then a fresh record decrypts it (X3DH as responder);
//! - 2: `SenderKeyMessage::parse`, then a copy of a group receiver's record decrypts it;
//! - 3: `SenderKeyDistributionMessage::parse`, then a copy of that record processes it and
//!   decrypts a group message with what it then holds;
//! - 4: a SenderKeyMessage body (the protobuf), signed here with a sender key whose signing
//!   key the fuzzer holds, so the mutations get past the signature to the iteration, the
//!   chain and AES-CBC;
//! - 5: `PreKeySignalMessage::parse`, then a copy of Bob's established session decrypts it
//!   (a known base key reuses its state; a new one starts a session and archives the old).
//!
//! Every plaintext then goes through `unpad` and `wa::e2e::classify`, as `session::decrypt`
//! does.

use prost::Message as _;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use worker::signal::{
    pad, unpad, CiphertextMessage, KeyPair, LocalIdentity, PreKeyBundle, PreKeyLookup,
    PreKeySignalMessage, PrivateKey, SenderKeyDistributionMessage, SenderKeyMessage,
    SenderKeyRecord, SessionRecord, SignalMessage, SIGNATURE_LEN, VERSION_BYTE,
};

use crate::{mode, with_mode, Target};

const MODES: u8 = 6;
const CONTEXT_SEED: u64 = 0x5349_474E_414C;
const SIGNED_PRE_KEY_ID: u32 = 1;
const ONE_TIME_PRE_KEY_ID: u32 = 31;
/// The id of the sender key whose signing key the fuzzer holds.
const FORGED_KEY_ID: u32 = 0x00C0_FFEE;
const NONCE: [u8; 64] = [0x11; 64];

/// Protobuf keys of the four messages, version bytes and boundary varints.
const DICTIONARY: &[&[u8]] = &[
    &[0x33],
    &[0x23],
    &[0x0A, 0x21, 0x05],
    &[0x0A, 0x20],
    &[0x10, 0x00],
    &[0x10, 0xFF, 0xFF, 0xFF, 0xFF, 0x0F],
    &[0x18, 0x00],
    &[0x22, 0x10],
    &[0x22, 0x00],
    &[0x08, 0x00],
    &[0x08, 0x1F],
    &[0x12, 0x21, 0x05],
    &[0x1A, 0x21, 0x05],
    &[0x1A, 0x20],
    &[0x28, 0x01],
    &[0x30, 0x01],
    &[0x10, 0xD0, 0x0F],
    &[0x10, 0xD1, 0x0F],
];

/// Two devices with a pairwise session, a group sender key between them, and a sender key
/// the fuzzer can sign for. Built the way the worker and wa-sim's phones build them.
#[derive(Debug)]
pub struct Peers {
    pub bob: LocalIdentity,
    pub lookup: Lookup,
    /// Bob's session after Alice's first message and his reply.
    pub bob_session: SessionRecord,
    pub alice_session: SessionRecord,
    /// Alice's first message (pkmsg), and a later one (msg) Bob has not decrypted yet.
    pub pkmsg: Vec<u8>,
    pub msg: Vec<u8>,
    /// The first message of a second session Alice starts (after a reinstall, say).
    pub restart: Vec<u8>,
    /// Alice's sender key and the record Bob holds of it, with a group message not yet read.
    pub alice_group: SenderKeyRecord,
    pub bob_group: SenderKeyRecord,
    pub skdm: Vec<u8>,
    pub skmsg: Vec<u8>,
    /// A sender key whose signing key the fuzzer holds, Bob's copy of it, and message bodies
    /// (the protobuf between the version byte and the signature) it decrypts.
    pub forger: PrivateKey,
    pub forger_group: SenderKeyRecord,
    pub bob_forged: SenderKeyRecord,
    pub forged_bodies: Vec<Vec<u8>>,
}

/// Bob's prekeys.
#[derive(Debug)]
pub struct Lookup {
    signed: KeyPair,
    one_time: KeyPair,
}

impl PreKeyLookup for Lookup {
    fn signed_pre_key(&self, id: u32) -> Option<KeyPair> {
        (id == SIGNED_PRE_KEY_ID).then(|| self.signed.clone())
    }

    fn pre_key(&self, id: u32) -> Option<KeyPair> {
        (id == ONE_TIME_PRE_KEY_ID).then(|| self.one_time.clone())
    }
}

impl Peers {
    /// The peers, or why a step of building them failed (a bug in the setup, not a finding).
    pub fn new() -> Result<Self, String> {
        let rng = &mut StdRng::seed_from_u64(CONTEXT_SEED);
        let e = |e: worker::signal::SignalError| e.to_string();
        let identity = |rng: &mut StdRng| LocalIdentity {
            key_pair: KeyPair::generate(rng),
            registration_id: rng.gen_range(1..16_380),
        };
        let alice = identity(rng);
        let bob = identity(rng);
        let lookup = Lookup {
            signed: KeyPair::generate(rng),
            one_time: KeyPair::generate(rng),
        };
        let bundle = PreKeyBundle {
            registration_id: bob.registration_id,
            identity_key: bob.key_pair.public,
            signed_pre_key_id: SIGNED_PRE_KEY_ID,
            signed_pre_key: lookup.signed.public,
            signed_pre_key_signature: bob
                .key_pair
                .private
                .sign(&lookup.signed.public.serialize(), rng),
            pre_key: Some((ONE_TIME_PRE_KEY_ID, lookup.one_time.public)),
        };
        let payloads = crate::e2e::payloads();
        let text = |i: usize| payloads[i % payloads.len()].clone();

        let mut alice_session = SessionRecord::new();
        alice_session
            .process_bundle(&alice, &bundle, rng)
            .map_err(e)?;
        let pkmsg = alice_session
            .encrypt(&pad(&text(0), rng))
            .map_err(e)?
            .as_bytes()
            .to_vec();
        let mut bob_session = SessionRecord::new();
        bob_session
            .decrypt_pre_key(
                &bob,
                &PreKeySignalMessage::parse(&pkmsg).map_err(e)?,
                &lookup,
                rng,
            )
            .map_err(e)?;
        let reply = bob_session.encrypt(&pad(&text(1), rng)).map_err(e)?;
        let CiphertextMessage::Whisper(reply) = reply else {
            return Err("Bob's reply is not a msg".into());
        };
        alice_session.decrypt(&reply, rng).map_err(e)?;
        let msg = alice_session
            .encrypt(&pad(&text(2), rng))
            .map_err(e)?
            .as_bytes()
            .to_vec();

        let mut again = SessionRecord::new();
        again.process_bundle(&alice, &bundle, rng).map_err(e)?;
        let restart = again
            .encrypt(&pad(&text(4), rng))
            .map_err(e)?
            .as_bytes()
            .to_vec();

        let mut alice_group = SenderKeyRecord::create_own(rng);
        let skdm = alice_group.distribution_message().map_err(e)?;
        let mut bob_group = SenderKeyRecord::new();
        bob_group.process_distribution(&skdm);
        let skmsg = alice_group
            .encrypt(&pad(&text(3), rng), rng)
            .map_err(e)?
            .as_bytes()
            .to_vec();

        let forger = KeyPair::generate(rng);
        let mut forger_group = SenderKeyRecord::from_bytes(
            &SenderKeyRecordProto {
                states: vec![SenderKeyStateProto {
                    key_id: FORGED_KEY_ID,
                    iteration: 0,
                    chain_key: rng.gen::<[u8; 32]>().to_vec(),
                    signing_public: forger.public.as_bytes().to_vec(),
                    signing_private: Some(forger.private.expose().to_vec()),
                }],
            }
            .encode_to_vec(),
        )
        .map_err(e)?;
        let mut bob_forged = SenderKeyRecord::new();
        bob_forged.process_distribution(&forger_group.distribution_message().map_err(e)?);
        let mut forged_bodies = Vec::new();
        for i in 0..2 {
            let sent = forger_group.encrypt(&pad(&text(i), rng), rng).map_err(e)?;
            let bytes = sent.as_bytes();
            forged_bodies.push(bytes[1..bytes.len() - SIGNATURE_LEN].to_vec());
        }
        Ok(Self {
            bob,
            lookup,
            bob_session,
            alice_session,
            pkmsg,
            msg,
            restart,
            alice_group,
            bob_group,
            skdm: skdm.as_bytes().to_vec(),
            skmsg,
            forger: forger.private,
            forger_group,
            bob_forged,
            forged_bodies,
        })
    }

    /// The stored form of every record above: sessions first, then sender keys.
    pub fn records(&self) -> ([Vec<u8>; 2], [Vec<u8>; 3]) {
        (
            [self.bob_session.to_bytes(), self.alice_session.to_bytes()],
            [
                self.bob_group.to_bytes(),
                self.alice_group.to_bytes(),
                self.forger_group.to_bytes(),
            ],
        )
    }

    /// `0x33 || body || signature`, signed with the forger's key.
    fn sign_body(&self, body: &[u8]) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(1 + body.len() + SIGNATURE_LEN);
        bytes.push(VERSION_BYTE);
        bytes.extend_from_slice(body);
        let signature = self.forger.sign_with_nonce(&bytes, &NONCE);
        bytes.extend_from_slice(&signature);
        bytes
    }
}

/// `SenderKeyRecordStructure` as the worker stores it (`signal/storage.rs`), to make a
/// record whose signing key the fuzzer knows.
#[derive(Clone, PartialEq, prost::Message)]
struct SenderKeyRecordProto {
    #[prost(message, repeated, tag = "1")]
    states: Vec<SenderKeyStateProto>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct SenderKeyStateProto {
    #[prost(uint32, tag = "1")]
    key_id: u32,
    #[prost(uint32, tag = "2")]
    iteration: u32,
    #[prost(bytes = "vec", tag = "3")]
    chain_key: Vec<u8>,
    #[prost(bytes = "vec", tag = "4")]
    signing_public: Vec<u8>,
    #[prost(bytes = "vec", optional, tag = "5")]
    signing_private: Option<Vec<u8>>,
}

/// The wire parsers and the decryptions behind them.
#[derive(Debug)]
pub struct Signal {
    peers: Option<Peers>,
    rng: StdRng,
}

impl Signal {
    pub fn new() -> Self {
        Self {
            peers: Peers::new().ok(),
            rng: StdRng::seed_from_u64(CONTEXT_SEED),
        }
    }
}

impl Target for Signal {
    fn seeds(&self) -> Vec<Vec<u8>> {
        let Some(p) = &self.peers else {
            return vec![vec![0x33]];
        };
        let mut seeds = vec![
            with_mode(0, &p.msg),
            with_mode(0, &p.msg),
            with_mode(1, &p.pkmsg),
            with_mode(2, &p.skmsg),
            with_mode(2, &p.skmsg),
            with_mode(3, &p.skdm),
            with_mode(3, &p.skdm),
        ];
        for body in &p.forged_bodies {
            seeds.push(with_mode(4, body));
        }
        seeds.push(with_mode(5, &p.restart));
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
        match mode {
            0 => {
                let Ok(message) = SignalMessage::parse(data) else {
                    return false;
                };
                let _ = (message.counter(), message.previous_counter());
                let _ = (message.ratchet_key(), message.ciphertext().len());
                let mut session = p.bob_session.clone();
                session
                    .decrypt(&message, rng)
                    .map(|padded| read_payload(&padded))
                    .is_ok()
            }
            1 => {
                let Ok(message) = PreKeySignalMessage::parse(data) else {
                    return false;
                };
                let _ = (message.registration_id(), message.pre_key_id());
                let _ = (message.signed_pre_key_id(), message.base_key());
                let _ = message.identity_key().serialize();
                let mut session = SessionRecord::new();
                session
                    .decrypt_pre_key(&p.bob, &message, &p.lookup, rng)
                    .map(|done| read_payload(&done.plaintext))
                    .is_ok()
            }
            2 => {
                let Ok(message) = SenderKeyMessage::parse(data) else {
                    return false;
                };
                let _ = (message.key_id(), message.iteration());
                let mut record = p.bob_group.clone();
                record
                    .decrypt(&message)
                    .map(|padded| read_payload(&padded))
                    .is_ok()
            }
            3 => {
                let Ok(skdm) = SenderKeyDistributionMessage::parse(data) else {
                    return false;
                };
                let _ = (skdm.key_id(), skdm.iteration(), format!("{skdm:?}"));
                let mut record = p.bob_group.clone();
                record.process_distribution(&skdm);
                let _ = record.state(skdm.key_id()).map(|s| s.iteration());
                if let Ok(message) = SenderKeyMessage::parse(&p.skmsg) {
                    let _ = record.decrypt(&message).map(|padded| read_payload(&padded));
                }
                true
            }
            4 => {
                let signed = p.sign_body(data);
                let Ok(message) = SenderKeyMessage::parse(&signed) else {
                    return false;
                };
                let mut record = p.bob_forged.clone();
                record
                    .decrypt(&message)
                    .map(|padded| read_payload(&padded))
                    .is_ok()
            }
            _ => {
                let Ok(message) = PreKeySignalMessage::parse(data) else {
                    return false;
                };
                let mut session = p.bob_session.clone();
                let done = session.decrypt_pre_key(&p.bob, &message, &p.lookup, rng);
                let _ = (session.archived_count(), session.to_bytes().len());
                done.map(|done| read_payload(&done.plaintext)).is_ok()
            }
        }
    }
}

/// What the receive path does with a decrypted payload: strip the padding, classify it.
pub fn read_payload(padded: &[u8]) {
    if let Ok(payload) = unpad(padded) {
        crate::e2e::use_payload(payload);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_peers_build_and_their_messages_decrypt() {
        let peers = Peers::new().expect("peers");
        let mut target = Signal {
            peers: Some(peers),
            rng: StdRng::seed_from_u64(1),
        };
        for seed in target.seeds() {
            assert!(target.run(&seed), "seed in mode {} refused", seed[0]);
        }
    }
}
