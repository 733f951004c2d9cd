//! The binary-node codec (`worker::wa::binary`) over a corpus of the stanzas a real session sees
//! (`corpus.rs`), and Baileys' codec over the same corpus in the same run, for a ratio.
//!
//! `cargo bench -p worker --bench codec`
//!
//! - criterion, group `codec`: `decode`, `encode` and `roundtrip` (decode, then encode the
//!   result), each over the whole corpus (`all`) and over its size sets (`small` < 256 B,
//!   `medium` < 4 KiB, `large`), one iteration being one pass over the set; throughput in
//!   stanzas/s and bytes/s of frame plaintext (the flags byte and the node). Times are CPU time
//!   unless `BENCH_CLOCK=wall` (`common/clock.rs`).
//! - Baileys, first, when `node` and `tests/interop/node_modules` are there: the corpus is
//!   written to `target/tmp/codec-corpus.txt`, `tests/interop/codec-bench.mjs --serve` decodes
//!   every frame with Baileys (a frame it cannot decode is listed and left out on both sides,
//!   criterion's runs included), then both codecs run in paired rounds (`baileys.rs`), and after
//!   criterion a table prints both and the ratio. Without node or Baileys it says so and
//!   prints no ratio.
//!
//! `NODE` names the node binary (default `node`).

mod baileys;
#[path = "../common/clock.rs"]
mod clock;
mod corpus;

use std::hint::black_box;
use std::time::Duration;

use clock::Clock;
use criterion::{BenchmarkId, Criterion, Throughput};
use worker::wa::binary;

use corpus::Entry;

/// The sets results are reported for, `all` first.
const SETS: [&str; 4] = ["all", "small", "medium", "large"];

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let has = |flag: &str| {
        args.iter()
            .any(|a| a == flag || a.starts_with(&format!("{flag}=")))
    };
    // `cargo bench` passes --bench; `cargo test --benches` does not (criterion's test mode).
    let benchmarking = has("--bench") && !has("--test") && !has("--list") && !has("--profile-time");

    let mut corpus = corpus::build();
    for entry in &corpus {
        let node = binary::decode(&entry.frame).expect("the corpus decodes");
        assert_eq!(
            binary::encode(&node),
            entry.frame,
            "{} re-encodes byte for byte",
            entry.name
        );
    }
    let comparison = benchmarking.then(|| baileys::compare(&mut corpus, &SETS));

    eprintln!("codec: {}", clock::describe());
    let mut c = Criterion::default()
        .with_measurement(Clock::new())
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_millis(1500))
        .configure_from_args();
    bench(&mut c, &corpus);
    c.final_summary();

    print_corpus(&corpus);
    if let Some(outcome) = comparison {
        baileys::print(&outcome);
    }
}

fn bench(c: &mut Criterion<Clock>, corpus: &[Entry]) {
    let mut group = c.benchmark_group("codec");
    for set in SETS {
        let entries: Vec<&Entry> = in_set(corpus, set).collect();
        if entries.is_empty() {
            continue;
        }
        let frames: Vec<&[u8]> = entries.iter().map(|e| e.frame.as_slice()).collect();
        let nodes: Vec<binary::Node> = frames
            .iter()
            .map(|f| binary::decode(f).expect("the corpus decodes"))
            .collect();
        group.throughput(Throughput::ElementsAndBytes {
            elements: frames.len() as u64,
            bytes: frames.iter().map(|f| f.len() as u64).sum(),
        });
        group.bench_with_input(BenchmarkId::new("decode", set), &frames, |b, frames| {
            b.iter(|| {
                for f in frames {
                    black_box(binary::decode(black_box(f)).expect("decodes"));
                }
            })
        });
        group.bench_with_input(BenchmarkId::new("encode", set), &nodes, |b, nodes| {
            b.iter(|| {
                for n in nodes {
                    black_box(binary::encode(black_box(n)));
                }
            })
        });
        group.bench_with_input(BenchmarkId::new("roundtrip", set), &frames, |b, frames| {
            b.iter(|| {
                for f in frames {
                    let node = binary::decode(black_box(f)).expect("decodes");
                    black_box(binary::encode(&node));
                }
            })
        });
    }
    group.finish();
}

/// The entries of `set` (`all`: every entry).
fn in_set<'a>(corpus: &'a [Entry], set: &'a str) -> impl Iterator<Item = &'a Entry> + 'a {
    corpus.iter().filter(move |e| set == "all" || e.set == set)
}

fn print_corpus(corpus: &[Entry]) {
    println!();
    println!("codec corpus: {} stanzas", corpus.len());
    for set in SETS {
        let sizes: Vec<usize> = in_set(corpus, set).map(|e| e.frame.len()).collect();
        if let (Some(min), Some(max)) = (sizes.iter().min(), sizes.iter().max()) {
            println!(
                "  {set:<6} {:>3} stanzas, {:>7} bytes, {min}..={max} bytes each",
                sizes.len(),
                sizes.iter().sum::<usize>()
            );
        }
    }
}
