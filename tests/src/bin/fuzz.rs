//! `fuzz`: feeds every parser of received bytes millions of mutated inputs, on stable Rust.
//!
//! ```text
//! cargo run --release -p wa-sim --bin fuzz -- --inputs N [--target NAME]... [--seed S]
//! cargo run --release -p wa-sim --bin fuzz -- --target NAME --replay HEX
//! ```
//!
//! No sanitizer coverage and no nightly: inputs start from valid seeds (real stanzas, frames,
//! handshake messages, Signal messages, IPC frames, built with the crates' own encoders) and
//! are mutated (`mutate.rs`); inputs a parser accepts become starting points too. Everything
//! is deterministic from `--seed` (and each target's inputs do not depend on which other
//! targets run). Each call runs under `catch_unwind` with a silent panic hook; a panic is a
//! bug in the parser. For each target one line
//! `target=<name> inputs=<N> panics=<P> elapsed_ms=<ms>`, then
//! `fuzz: inputs=<total> panics=<total>`. Exit status 1 when anything panicked; each failing
//! input is printed as hex, with a shortened one that still panics the same way, ready for a
//! regression test or `--replay`.
//!
//! Release builds wrap on integer overflow; run the long form with
//! `CARGO_PROFILE_RELEASE_OVERFLOW_CHECKS=true` so that an overflow panics as in a debug build.
//!
//! Targets (`--target`, repeatable; all by default):
//!
//! | name           | what it feeds                                                             |
//! |----------------|---------------------------------------------------------------------------|
//! | binary         | `wa::binary::decode`/`decode_node` (plain and zlib frames), then `Jid`    |
//! | frame          | the socket's frame reader, the Noise transport decrypt, then decode       |
//! | handshake      | handshake protobufs, `ServerHandshake`/`ClientHandshake`, `verify_chain`  |
//! | ipc            | `ipc_protocol::FrameReader`/`FrameDecoder` into `ToSupervisor`/`ToWorker` |
//! | signal         | `signal::wire` parsers and the decrypt paths behind them                  |
//! | e2e            | `signal::unpad`, `wa::e2e::classify`, the SKDM inside a payload           |
//! | signal-records | stored session and sender-key records (`from_bytes`), then used           |

#[path = "fuzz/binary.rs"]
mod binary;
#[path = "fuzz/e2e.rs"]
mod e2e;
#[path = "fuzz/frame.rs"]
mod frame;
#[path = "fuzz/handshake.rs"]
mod handshake;
#[path = "fuzz/ipc.rs"]
mod ipc;
#[path = "fuzz/mutate.rs"]
mod mutate;
#[path = "fuzz/records.rs"]
mod records;
#[path = "fuzz/signal.rs"]
mod signal;

use std::panic::{self, AssertUnwindSafe};
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use clap::Parser;
use rand::rngs::StdRng;
use rand::SeedableRng;

use mutate::Mutator;

/// One parser (or a few behind one entry point) under test.
trait Target {
    /// Valid inputs to start from; where a target has modes, the first byte picks the mode.
    fn seeds(&self) -> Vec<Vec<u8>>;

    /// Tokens worth inserting whole (tag bytes, protobuf keys, JSON fragments).
    fn dictionary(&self) -> &'static [&'static [u8]] {
        &[]
    }

    /// Feeds one input; `true` when the parser accepted it. Must not panic.
    fn run(&mut self, input: &[u8]) -> bool;
}

/// A target by name.
struct Spec {
    name: &'static str,
    make: fn() -> Box<dyn Target>,
}

const TARGETS: &[Spec] = &[
    Spec {
        name: "binary",
        make: || Box::new(binary::Binary::new()),
    },
    Spec {
        name: "frame",
        make: || Box::new(frame::Frames::new()),
    },
    Spec {
        name: "handshake",
        make: || Box::new(handshake::Handshake::new()),
    },
    Spec {
        name: "ipc",
        make: || Box::new(ipc::Ipc::new()),
    },
    Spec {
        name: "signal",
        make: || Box::new(signal::Signal::new()),
    },
    Spec {
        name: "e2e",
        make: || Box::new(e2e::E2e::new()),
    },
    Spec {
        name: "signal-records",
        make: || Box::new(records::Records::new()),
    },
];

/// Failing inputs printed per target; the rest are only counted.
const MAX_REPORTED: usize = 3;
/// Runs the shortening of one failing input may take.
const MINIMIZE_BUDGET: usize = 4000;

/// Feeds the parsers mutated inputs and counts panics.
#[derive(Debug, Parser)]
#[command(name = "fuzz")]
struct Args {
    /// Inputs per target.
    #[arg(long, default_value_t = 10_000)]
    inputs: u64,
    /// A target to run (repeatable; default: all).
    #[arg(long = "target", value_name = "NAME")]
    targets: Vec<String>,
    /// The seed every input derives from.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Runs one hex input through the one --target given, and reports what happened.
    #[arg(long, value_name = "HEX")]
    replay: Option<String>,
}

/// What one target's run found.
#[derive(Debug)]
struct Outcome {
    inputs: u64,
    panics: u64,
    elapsed: Duration,
    failures: Vec<Failure>,
}

/// One input that panicked.
#[derive(Debug)]
struct Failure {
    index: u64,
    input: Vec<u8>,
    message: String,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let specs = match select(&args.targets) {
        Ok(specs) => specs,
        Err(unknown) => {
            let names: Vec<_> = TARGETS.iter().map(|s| s.name).collect();
            eprintln!(
                "fuzz: unknown target {unknown:?}; targets: {}",
                names.join(", ")
            );
            return ExitCode::from(2);
        }
    };
    install_silent_hook();
    let code = match &args.replay {
        Some(hex_input) => replay(&specs, hex_input),
        None => fuzz_all(&specs, args.inputs, args.seed),
    };
    drop(panic::take_hook());
    code
}

fn select(names: &[String]) -> Result<Vec<&'static Spec>, String> {
    if names.is_empty() {
        return Ok(TARGETS.iter().collect());
    }
    names
        .iter()
        .map(|name| {
            TARGETS
                .iter()
                .find(|s| s.name == name)
                .ok_or_else(|| name.clone())
        })
        .collect()
}

fn fuzz_all(specs: &[&Spec], inputs: u64, seed: u64) -> ExitCode {
    let (mut total_inputs, mut total_panics) = (0, 0);
    for spec in specs {
        let outcome = fuzz(spec, inputs, seed);
        println!(
            "target={} inputs={} panics={} elapsed_ms={}",
            spec.name,
            outcome.inputs,
            outcome.panics,
            outcome.elapsed.as_millis()
        );
        for failure in &outcome.failures {
            report(spec, failure);
        }
        total_inputs += outcome.inputs;
        total_panics += outcome.panics;
    }
    println!("fuzz: inputs={total_inputs} panics={total_panics}");
    if total_panics == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Runs `inputs` inputs through one target: its seeds first, then mutants.
fn fuzz(spec: &Spec, inputs: u64, seed: u64) -> Outcome {
    let started = Instant::now();
    let mut target = (spec.make)();
    let seeds = target.seeds();
    let mut mutator = Mutator::new(seeds.clone(), target.dictionary());
    let mut rng = StdRng::seed_from_u64(seed ^ fnv1a(spec.name.as_bytes()));
    let mut outcome = Outcome {
        inputs,
        panics: 0,
        elapsed: Duration::ZERO,
        failures: Vec::new(),
    };
    for index in 0..inputs {
        let input = match usize::try_from(index).ok().and_then(|i| seeds.get(i)) {
            Some(seed) => seed.clone(),
            None => mutator.generate(&mut rng),
        };
        match run_one(target.as_mut(), &input) {
            Ok(true) => mutator.keep(&input, &mut rng),
            Ok(false) => {}
            Err(message) => {
                outcome.panics += 1;
                if outcome.failures.len() < MAX_REPORTED {
                    outcome.failures.push(Failure {
                        index,
                        input,
                        message,
                    });
                }
                // A panic may have left the target's state half-changed.
                target = (spec.make)();
            }
        }
    }
    outcome.elapsed = started.elapsed();
    outcome
}

/// One input under `catch_unwind`; the panic message on a panic.
fn run_one(target: &mut dyn Target, input: &[u8]) -> Result<bool, String> {
    panic::catch_unwind(AssertUnwindSafe(|| target.run(input))).map_err(|_| last_panic())
}

fn report(spec: &Spec, failure: &Failure) {
    let short = minimize(spec, &failure.input, &failure.message);
    println!(
        "  panic at input {}: {}",
        failure.index,
        one_line(&failure.message)
    );
    println!("    input: {}", hex::encode(&failure.input));
    println!("    shortest found: {}", hex::encode(&short));
    println!(
        "    replay: cargo run -p wa-sim --bin fuzz -- --target {} --replay {}",
        spec.name,
        hex::encode(&short)
    );
}

/// A shorter input that panics at the same place: chunks removed while it still does.
fn minimize(spec: &Spec, input: &[u8], message: &str) -> Vec<u8> {
    let place = panic_place(message);
    let mut target = (spec.make)();
    let mut best = input.to_vec();
    let mut budget = MINIMIZE_BUDGET;
    let mut chunk = best.len().div_ceil(2);
    while chunk > 0 && budget > 0 {
        let mut shrank = false;
        let mut at = 0;
        while at + chunk <= best.len() && budget > 0 {
            budget -= 1;
            let mut candidate = best.clone();
            candidate.drain(at..at + chunk);
            match run_one(target.as_mut(), &candidate) {
                Err(m) if panic_place(&m) == place => {
                    best = candidate;
                    shrank = true;
                    target = (spec.make)();
                }
                Err(_) => target = (spec.make)(),
                Ok(_) => at += chunk,
            }
        }
        if !shrank {
            chunk /= 2;
        }
    }
    best
}

fn replay(specs: &[&Spec], hex_input: &str) -> ExitCode {
    let [spec] = specs else {
        eprintln!("fuzz: --replay takes exactly one --target");
        return ExitCode::from(2);
    };
    let Ok(input) = hex::decode(hex_input.trim()) else {
        eprintln!("fuzz: --replay takes hex");
        return ExitCode::from(2);
    };
    let mut target = (spec.make)();
    match run_one(target.as_mut(), &input) {
        Ok(accepted) => {
            println!("target={} accepted={accepted} panics=0", spec.name);
            ExitCode::SUCCESS
        }
        Err(message) => {
            println!("target={} panics=1: {}", spec.name, one_line(&message));
            ExitCode::FAILURE
        }
    }
}

/// The last panic's message, as the silent hook saved it.
static LAST_PANIC: Mutex<String> = Mutex::new(String::new());

/// Panics are expected here and counted; the hook only keeps the message.
fn install_silent_hook() {
    panic::set_hook(Box::new(|info| {
        if let Ok(mut last) = LAST_PANIC.lock() {
            *last = info.to_string();
        }
    }));
}

fn last_panic() -> String {
    LAST_PANIC
        .lock()
        .map(|m| m.clone())
        .unwrap_or_else(|_| "panic (message lost)".to_owned())
}

/// `panicked at file:line:col:` — where, without the message (which may quote the input).
fn panic_place(message: &str) -> &str {
    message.lines().next().unwrap_or(message)
}

fn one_line(message: &str) -> String {
    message.replace('\n', " ")
}

/// FNV-1a, to give every target its own stream of inputs from one seed.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Splits the first byte off an input: `(byte, rest)`; an empty input gives 0.
fn split_byte(input: &[u8]) -> (u8, &[u8]) {
    match input.split_first() {
        Some((&b, rest)) => (b, rest),
        None => (0, input),
    }
}

/// Splits the mode byte off an input: `(mode % modes, rest)`; an empty input is mode 0.
fn mode(input: &[u8], modes: u8) -> (u8, &[u8]) {
    let (m, rest) = split_byte(input);
    (m % modes, rest)
}

/// A mode byte followed by `data`.
fn with_mode(mode: u8, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + data.len());
    out.push(mode);
    out.extend_from_slice(data);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Panics on any input that starts with `!`.
    struct Fragile;

    impl Target for Fragile {
        fn seeds(&self) -> Vec<Vec<u8>> {
            vec![b"ok".to_vec(), b"!boom".to_vec()]
        }

        fn run(&mut self, input: &[u8]) -> bool {
            assert!(input.first() != Some(&b'!'), "fragile");
            true
        }
    }

    const FRAGILE: Spec = Spec {
        name: "fragile",
        make: || Box::new(Fragile),
    };

    #[test]
    fn a_panicking_target_is_counted_and_its_input_kept_and_shortened() {
        install_silent_hook();
        let outcome = fuzz(&FRAGILE, 300, 1);
        drop(panic::take_hook());
        assert_eq!(outcome.inputs, 300);
        assert!(outcome.panics >= 1, "{outcome:?}");
        let first = &outcome.failures[0];
        assert_eq!(first.index, 1);
        assert_eq!(first.input, b"!boom");
        assert!(first.message.contains("fragile"), "{}", first.message);
        install_silent_hook();
        let short = minimize(&FRAGILE, &first.input, &first.message);
        drop(panic::take_hook());
        assert_eq!(short, b"!");
    }

    #[test]
    fn every_target_accepts_its_own_seeds() {
        for spec in TARGETS {
            let mut target = (spec.make)();
            let seeds = target.seeds();
            assert!(seeds.len() > 1, "{}", spec.name);
            for seed in &seeds {
                assert!(
                    target.run(seed),
                    "{}: seed {}",
                    spec.name,
                    hex::encode(seed)
                );
            }
        }
    }

    #[test]
    fn targets_are_selected_by_name() {
        assert_eq!(select(&[]).map(|s| s.len()), Ok(TARGETS.len()));
        let names = |s: Vec<&Spec>| s.iter().map(|s| s.name).collect::<Vec<_>>();
        assert_eq!(
            select(&["ipc".into(), "binary".into()]).map(names),
            Ok(vec!["ipc", "binary"])
        );
        assert_eq!(select(&["nope".into()]).map(names), Err("nope".into()));
    }
}
