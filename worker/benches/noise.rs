//! The Noise transport (`worker::wa::noise::NoiseTransport`, AES-256-GCM with a counter nonce)
//! of a completed handshake between the worker's own `ClientHandshake` and `ServerHandshake`,
//! over a certificate chain issued as the simulator issues it.
//!
//! `cargo bench -p worker --bench noise`
//!
//! Group `noise`: `encrypt` and `decrypt` of one frame payload of 100 B (a receipt, an ack),
//! 1 KB (a message with its `<enc>`) and 16 KB (group metadata, a prekey upload), throughput in
//! payload bytes/s. `decrypt` includes the 16-byte tag check; its ciphertexts come from the
//! peer's transport, encrypted in counter order outside the timed part. `handshake` is one whole
//! XX handshake on both sides, certificate-chain check included (once per connection).
//! Times are CPU time unless `BENCH_CLOCK=wall` (`common/clock.rs`).

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use worker::wa::noise::cert::issue_chain;
use worker::wa::noise::{ClientHandshake, NoiseTransport, ServerHandshake, TrustPolicy};
use worker::wa::xeddsa::{generate_private, public_key};

#[path = "common/clock.rs"]
mod clock;

const SIZES: [(&str, usize); 3] = [("100B", 100), ("1KB", 1_000), ("16KB", 16_000)];

/// The server's long-term keys and its chain, as wa-sim holds them.
struct Pki {
    server_static: [u8; 32],
    chain: Vec<u8>,
    trust: TrustPolicy,
}

impl Pki {
    fn new() -> Self {
        let root = generate_private();
        let intermediate = generate_private();
        let server_static = generate_private();
        let chain = issue_chain(
            &root,
            &intermediate,
            &public_key(&server_static),
            (1, 2),
            (0, u64::MAX),
        );
        Self {
            server_static,
            chain,
            trust: TrustPolicy {
                root: public_key(&root),
                now_unix: 1_800_000_000,
            },
        }
    }

    /// One XX handshake; the client's and the server's transports.
    fn handshake(&self, noise_private: &[u8; 32]) -> (NoiseTransport, NoiseTransport) {
        let (client, hello) = ClientHandshake::start(generate_private());
        let (server, server_hello) =
            ServerHandshake::respond(&hello, generate_private(), &self.server_static, &self.chain)
                .expect("the server answers the hello");
        let client = client
            .finish(&server_hello, noise_private, b"client payload", &self.trust)
            .expect("the client accepts the server");
        let server = server
            .finish(&client.client_finish)
            .expect("the server accepts the client");
        (client.transport, server.transport)
    }
}

fn noise(c: &mut Criterion<clock::Clock>) {
    eprintln!("noise: {}", clock::describe());
    let pki = Pki::new();
    let noise_private = generate_private();
    let mut group = c.benchmark_group("noise");
    group
        .sample_size(30)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    for (label, size) in SIZES {
        let payload: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
        group.throughput(Throughput::Bytes(size as u64));

        let (mut client, _) = pki.handshake(&noise_private);
        group.bench_function(BenchmarkId::new("encrypt", label), |b| {
            b.iter(|| black_box(client.encrypt(black_box(&payload))))
        });

        let (mut client, mut server) = pki.handshake(&noise_private);
        group.bench_function(BenchmarkId::new("decrypt", label), |b| {
            // Batches keep their order, so the two counters stay in step.
            b.iter_batched(
                || client.encrypt(&payload),
                |frame| server.decrypt(black_box(&frame)).expect("in step"),
                BatchSize::SmallInput,
            )
        });
    }
    group.throughput(Throughput::Elements(1));
    group.bench_function("handshake", |b| {
        b.iter(|| black_box(pki.handshake(&noise_private)))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().with_measurement(clock::Clock::new());
    targets = noise
}
criterion_main!(benches);
