//! The worker's Signal implementation (`worker::signal`): pairwise sessions (X3DH and the Double
//! Ratchet) and sender keys, over a padded 64-byte plaintext (a short text `Message`).
//!
//! `cargo bench -p worker --bench signal`
//!
//! Group `signal`, one message per iteration (throughput: messages/s):
//! - `msg_encrypt`: `SessionRecord::encrypt` on a confirmed session (a `msg`);
//! - `msg_decrypt/initiator_to_responder`, `msg_decrypt/responder_to_initiator`: parse and
//!   `SessionRecord::decrypt` of the next message on the current receiving chain, each
//!   direction of a session the initiator started from the responder's bundle;
//! - `msg_decrypt/new_ratchet_key`: the same when the message answers one of ours, so it carries
//!   a new ratchet key (the DH ratchet step: two agreements and a key pair);
//! - `pkmsg_encrypt`: the first send to a new device, `process_bundle` (X3DH as initiator,
//!   signed-prekey signature check included) and the `pkmsg` encrypt;
//! - `pkmsg_decrypt`: the first message of a new device, parse and `decrypt_pre_key` (X3DH as
//!   responder, with a one-time prekey) into an empty record;
//! - `skmsg_encrypt`: `SenderKeyRecord::encrypt` (a group message, XEdDSA signature included);
//! - `skmsg_decrypt`: parse and `SenderKeyRecord::decrypt` of the next group message
//!   (signature check included);
//! - `session_record_load_store`: `SessionRecord::from_bytes` and `to_bytes`, what the receive
//!   path does around every decrypt (without the file IO), for a record with only its current
//!   state and for one whose archive is full (40 more states);
//! - `x25519_public_key`, `x25519_agree`, `xeddsa_sign`, `xeddsa_verify`: the curve operations
//!   the rest are made of (`KeyPair::from_private`, `PrivateKey::agree`, `PrivateKey::sign`,
//!   `PublicKey::verify_signature`).
//!
//! Messages to decrypt are made by the peer outside the timed part, in order. Times are CPU time
//! unless `BENCH_CLOCK=wall` (`common/clock.rs`).

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use rand::rngs::StdRng;
use rand::SeedableRng;
use worker::signal::{
    pad, CiphertextMessage, KeyPair, LocalIdentity, PreKeyBundle, PreKeyLookup,
    PreKeySignalMessage, SenderKeyMessage, SenderKeyRecord, SessionRecord, SignalMessage,
    MAX_ARCHIVED_STATES,
};

#[path = "common/clock.rs"]
mod clock;

/// A `Message` protobuf with `conversation` (field 1) set: 64 bytes before padding.
const PLAINTEXT: &[u8] = b"\x0a\x3eSee you at the market on Saturday, I'll bring the fruit basket";

/// One device: an identity, signed prekey 1 and one one-time prekey (id 100) that a benchmark
/// never deletes, so that every new session can consume it again.
struct Device {
    identity: LocalIdentity,
    signed: KeyPair,
    signed_signature: [u8; 64],
    one_time: KeyPair,
}

impl Device {
    fn new(rng: &mut StdRng, registration_id: u32) -> Self {
        let identity = LocalIdentity {
            key_pair: KeyPair::generate(rng),
            registration_id,
        };
        let signed = KeyPair::generate(rng);
        let signed_signature = identity
            .key_pair
            .private
            .sign(&signed.public.serialize(), rng);
        Self {
            identity,
            signed,
            signed_signature,
            one_time: KeyPair::generate(rng),
        }
    }

    fn bundle(&self) -> PreKeyBundle {
        PreKeyBundle {
            registration_id: self.identity.registration_id,
            identity_key: self.identity.key_pair.public,
            signed_pre_key_id: 1,
            signed_pre_key: self.signed.public,
            signed_pre_key_signature: self.signed_signature,
            pre_key: Some((100, self.one_time.public)),
        }
    }
}

impl PreKeyLookup for Device {
    fn signed_pre_key(&self, id: u32) -> Option<KeyPair> {
        (id == 1).then(|| self.signed.clone())
    }
    fn pre_key(&self, id: u32) -> Option<KeyPair> {
        (id == 100).then(|| self.one_time.clone())
    }
}

/// Receives `<enc type=pkmsg|msg>` bytes as the session layer does: parse by type, decrypt.
fn receive(
    device: &Device,
    record: &mut SessionRecord,
    message: &CiphertextMessage,
    rng: &mut StdRng,
) -> Vec<u8> {
    match message.enc_type() {
        "pkmsg" => {
            let parsed = PreKeySignalMessage::parse(message.as_bytes()).expect("a pkmsg");
            record
                .decrypt_pre_key(&device.identity, &parsed, device, rng)
                .expect("decrypts")
                .plaintext
        }
        _ => {
            let parsed = SignalMessage::parse(message.as_bytes()).expect("a msg");
            record.decrypt(&parsed, rng).expect("decrypts")
        }
    }
}

/// Alice started a session from Bob's bundle; one message each way, so both sides send `msg`.
struct Pair {
    alice: Device,
    alice_record: SessionRecord,
    bob_record: SessionRecord,
}

impl Pair {
    fn new(rng: &mut StdRng) -> Self {
        let alice = Device::new(rng, 1);
        let bob = Device::new(rng, 2);
        let mut alice_record = SessionRecord::new();
        alice_record
            .process_bundle(&alice.identity, &bob.bundle(), rng)
            .expect("a good bundle");
        let mut bob_record = SessionRecord::new();
        let first = alice_record.encrypt(&pad(PLAINTEXT, rng)).expect("session");
        assert_eq!(first.enc_type(), "pkmsg");
        receive(&bob, &mut bob_record, &first, rng);
        let answer = bob_record.encrypt(&pad(PLAINTEXT, rng)).expect("session");
        receive(&alice, &mut alice_record, &answer, rng);
        Self {
            alice,
            alice_record,
            bob_record,
        }
    }
}

fn signal(c: &mut Criterion<clock::Clock>) {
    eprintln!("signal: {}", clock::describe());
    let mut rng = StdRng::seed_from_u64(0x5167_4A11);
    let mut group = c.benchmark_group("signal");
    group
        .sample_size(30)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_millis(1500))
        .throughput(Throughput::Elements(1));
    let padded = pad(PLAINTEXT, &mut rng);

    let mut pair = Pair::new(&mut rng);
    group.bench_function("msg_encrypt", |b| {
        b.iter(|| black_box(pair.alice_record.encrypt(black_box(&padded)).expect("msg")))
    });

    for direction in ["initiator_to_responder", "responder_to_initiator"] {
        let mut pair = Pair::new(&mut rng);
        let Pair {
            alice_record,
            bob_record,
            ..
        } = &mut pair;
        let (sender, receiver) = match direction {
            "initiator_to_responder" => (alice_record, bob_record),
            _ => (bob_record, alice_record),
        };
        let mut rng = rng.clone();
        group.bench_function(BenchmarkId::new("msg_decrypt", direction), |b| {
            // Batches keep their order: each message is the next on the chain.
            b.iter_batched(
                || sender.encrypt(&padded).expect("msg"),
                |message| {
                    let parsed = SignalMessage::parse(message.as_bytes()).expect("a msg");
                    receiver.decrypt(&parsed, &mut rng).expect("decrypts")
                },
                BatchSize::SmallInput,
            )
        });
    }

    let mut pair = Pair::new(&mut rng);
    let mut ratchet_rng = rng.clone();
    group.bench_function(BenchmarkId::new("msg_decrypt", "new_ratchet_key"), |b| {
        // Each decrypt depends on the answer to the one before, so each is timed alone: hundreds
        // of microseconds, well above the clock's microsecond.
        b.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            for _ in 0..iters {
                let message = pair.alice_record.encrypt(&padded).expect("msg");
                let start = clock::now();
                let parsed = SignalMessage::parse(message.as_bytes()).expect("a msg");
                black_box(
                    pair.bob_record
                        .decrypt(&parsed, &mut ratchet_rng)
                        .expect("decrypts"),
                );
                spent += clock::now().saturating_sub(start);
                // Bob answers, so Alice's next message carries a new ratchet key again.
                let answer = pair.bob_record.encrypt(&padded).expect("msg");
                receive(
                    &pair.alice,
                    &mut pair.alice_record,
                    &answer,
                    &mut ratchet_rng,
                );
            }
            spent
        })
    });

    let alice = Device::new(&mut rng, 1);
    let bob = Device::new(&mut rng, 2);
    let bundle = bob.bundle();
    let mut x3dh_rng = rng.clone();
    group.bench_function("pkmsg_encrypt", |b| {
        b.iter(|| {
            let mut record = SessionRecord::new();
            record
                .process_bundle(&alice.identity, black_box(&bundle), &mut x3dh_rng)
                .expect("a good bundle");
            black_box(record.encrypt(&padded).expect("pkmsg"))
        })
    });
    group.bench_function("pkmsg_decrypt", |b| {
        b.iter_batched(
            || {
                let mut record = SessionRecord::new();
                record
                    .process_bundle(&alice.identity, &bundle, &mut x3dh_rng)
                    .expect("a good bundle");
                record.encrypt(&padded).expect("pkmsg")
            },
            |message| {
                let parsed = PreKeySignalMessage::parse(message.as_bytes()).expect("pkmsg");
                let mut record = SessionRecord::new();
                let plaintext = record
                    .decrypt_pre_key(&bob.identity, &parsed, &bob, &mut rng)
                    .expect("decrypts");
                (record, plaintext)
            },
            BatchSize::SmallInput,
        )
    });

    let mut sender = SenderKeyRecord::create_own(&mut rng);
    let mut sign_rng = rng.clone();
    group.bench_function("skmsg_encrypt", |b| {
        b.iter(|| {
            black_box(
                sender
                    .encrypt(black_box(&padded), &mut sign_rng)
                    .expect("skmsg"),
            )
        })
    });
    // The receiver learns the sender's chain where the encrypt benchmark left it.
    let mut receiver = SenderKeyRecord::new();
    receiver.process_distribution(&sender.distribution_message().expect("own state"));
    group.bench_function("skmsg_decrypt", |b| {
        b.iter_batched(
            || sender.encrypt(&padded, &mut sign_rng).expect("skmsg"),
            |message| {
                let parsed = SenderKeyMessage::parse(message.as_bytes()).expect("skmsg");
                receiver.decrypt(&parsed).expect("decrypts")
            },
            BatchSize::SmallInput,
        )
    });

    // The curve operations the numbers above are made of.
    let private = KeyPair::generate(&mut rng).private;
    let their = KeyPair::generate(&mut rng).public;
    let signature = private.sign(PLAINTEXT, &mut rng);
    let public = private.public_key();
    group.bench_function("x25519_public_key", |b| {
        b.iter(|| black_box(black_box(&private).public_key()))
    });
    group.bench_function("x25519_agree", |b| {
        b.iter(|| black_box(private.agree(black_box(&their))))
    });
    group.bench_function("xeddsa_sign", |b| {
        b.iter(|| black_box(private.sign(black_box(PLAINTEXT), &mut rng)))
    });
    group.bench_function("xeddsa_verify", |b| {
        b.iter(|| black_box(public.verify_signature(black_box(PLAINTEXT), &signature)))
    });

    // A record as the receive path loads and stores it: one state, then the archive full.
    let mut full = SessionRecord::new();
    for _ in 0..=MAX_ARCHIVED_STATES {
        full.process_bundle(&alice.identity, &bundle, &mut rng)
            .expect("a good bundle");
    }
    for (label, bytes) in [
        ("current_only", pair.bob_record.to_bytes()),
        ("archive_full", full.to_bytes()),
    ] {
        group.bench_function(BenchmarkId::new("session_record_load_store", label), |b| {
            b.iter(|| {
                let record = SessionRecord::from_bytes(black_box(&bytes)).expect("a record");
                black_box(record.to_bytes())
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().with_measurement(clock::Clock::new());
    targets = signal
}
criterion_main!(benches);
