//! The side-by-side half of the codec bench: Baileys' WABinary timed by
//! `tests/interop/codec-bench.mjs` over the corpus, ours timed with the same loop, one table.
//!
//! The loop on both sides: per set and operation, a warm-up of [`WARMUP`], then [`ROUNDS`]
//! rounds of whole passes over the set, each round at least [`ROUND`] long; the median round
//! gives the time of one pass, by the clock and in the process's CPU time (user + system, all
//! threads: Node's collector threads count). Keep these in step with the script's constants.
//! The ratios use CPU time: on a machine shared with other work the clock also counts the time
//! the process waited for a core, and the two sides run half a minute apart.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use worker::wa::binary;

use crate::corpus::Entry;

const WARMUP: Duration = Duration::from_millis(400);
const ROUND: Duration = Duration::from_millis(60);
const ROUNDS: usize = 11;

/// What the Baileys side gave.
pub enum Outcome {
    /// No ratio, and why (no node, no Baileys, the script failed).
    Skipped(String),
    /// Baileys ran over the corpus.
    Measured(Report),
}

/// The script's report.
pub struct Report {
    baileys: String,
    node: String,
    frames: u64,
    reencoded_identical: u64,
    /// Frames Baileys could not decode, with its error; left out on both sides.
    pub failed: Vec<(String, String)>,
    sets: Value,
}

/// Our times for one set.
pub struct Ours {
    set: &'static str,
    frames: usize,
    bytes: usize,
    decode: Pass,
    encode: Pass,
    roundtrip: Pass,
}

/// The median time of one pass over a set, ns.
#[derive(Clone, Copy)]
struct Pass {
    wall: f64,
    cpu: f64,
}

/// Writes the corpus for the script and runs it; never fails, says why when it cannot.
pub fn run(corpus: &[Entry]) -> Outcome {
    let interop = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/interop");
    let node = std::env::var("NODE").unwrap_or_else(|_| "node".to_owned());
    if Command::new(&node).arg("--version").output().is_err() {
        return Outcome::Skipped(format!("`{node}` not found: no Baileys ratio"));
    }
    if !interop
        .join("node_modules/@whiskeysockets/baileys/package.json")
        .exists()
    {
        return Outcome::Skipped(
            "Baileys is not installed (`cd tests/interop && npm ci`): no Baileys ratio".into(),
        );
    }
    let path = match write_corpus(corpus) {
        Ok(path) => path,
        Err(e) => return Outcome::Skipped(format!("cannot write the corpus file: {e}")),
    };
    eprintln!(
        "codec: timing Baileys over {} (about half a minute)",
        path.display()
    );
    let output = match Command::new(&node)
        .arg(interop.join("codec-bench.mjs"))
        .arg(&path)
        .current_dir(&interop)
        .output()
    {
        Ok(output) => output,
        Err(e) => return Outcome::Skipped(format!("cannot run {node}: {e}")),
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let parsed = stdout
        .lines()
        .last()
        .and_then(|line| serde_json::from_str::<Value>(line).ok());
    let Some(json) = parsed else {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Outcome::Skipped(format!(
            "codec-bench.mjs gave no report ({}): {}",
            output.status,
            stderr.trim()
        ));
    };
    if let Some(error) = json["error"].as_str() {
        return Outcome::Skipped(format!("codec-bench.mjs: {error}"));
    }
    let failed = json["failed"]
        .as_array()
        .map(|failed| {
            failed
                .iter()
                .map(|f| {
                    (
                        f["name"].as_str().unwrap_or("?").to_owned(),
                        f["error"].as_str().unwrap_or("?").to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    Outcome::Measured(Report {
        baileys: json["baileys"].as_str().unwrap_or("?").to_owned(),
        node: json["node"].as_str().unwrap_or("?").to_owned(),
        frames: json["frames"].as_u64().unwrap_or(0),
        reencoded_identical: json["reencoded_identical"].as_u64().unwrap_or(0),
        failed,
        sets: json["sets"].clone(),
    })
}

/// `target/tmp/codec-corpus.txt`: one `<set> <name> <hex>` line per frame.
fn write_corpus(corpus: &[Entry]) -> std::io::Result<PathBuf> {
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("codec-corpus.txt");
    let text: String = corpus
        .iter()
        .map(|e| format!("{} {} {}\n", e.set, e.name, hex::encode(&e.frame)))
        .collect();
    std::fs::write(&path, text)?;
    Ok(path)
}

/// Times our codec over each set with the script's loop.
pub fn time_ours(corpus: &[Entry], sets: &[&'static str]) -> Vec<Ours> {
    let mut out = Vec::new();
    for &set in sets {
        let frames: Vec<&[u8]> = crate::in_set(corpus, set)
            .map(|e| e.frame.as_slice())
            .collect();
        if frames.is_empty() {
            continue;
        }
        let nodes: Vec<binary::Node> = frames
            .iter()
            .map(|f| binary::decode(f).expect("the corpus decodes"))
            .collect();
        let decode = median_pass(|| {
            for f in &frames {
                black_box(binary::decode(black_box(f)).expect("decodes"));
            }
        });
        let encode = median_pass(|| {
            for n in &nodes {
                black_box(binary::encode(black_box(n)));
            }
        });
        let roundtrip = median_pass(|| {
            for f in &frames {
                let node = binary::decode(black_box(f)).expect("decodes");
                black_box(binary::encode(&node));
            }
        });
        out.push(Ours {
            set,
            frames: frames.len(),
            bytes: frames.iter().map(|f| f.len()).sum(),
            decode,
            encode,
            roundtrip,
        });
    }
    out
}

/// The median time of one call of `pass`.
fn median_pass(mut pass: impl FnMut()) -> Pass {
    let warm = Instant::now();
    while warm.elapsed() < WARMUP {
        pass();
    }
    let (mut wall, mut cpu): (Vec<f64>, Vec<f64>) = (0..ROUNDS)
        .map(|_| {
            let start = Instant::now();
            let start_cpu = crate::clock::cpu();
            let mut n = 0u32;
            while start.elapsed() < ROUND || n == 0 {
                pass();
                n += 1;
            }
            let cpu = (crate::clock::cpu() - start_cpu).as_nanos() as f64 / f64::from(n);
            (start.elapsed().as_nanos() as f64 / f64::from(n), cpu)
        })
        .unzip();
    wall.sort_by(f64::total_cmp);
    cpu.sort_by(f64::total_cmp);
    Pass {
        wall: wall[ROUNDS / 2],
        cpu: cpu[ROUNDS / 2],
    }
}

/// The side-by-side table.
pub fn print(outcome: &Outcome, ours: &[Ours]) {
    println!();
    let report = match outcome {
        Outcome::Skipped(why) => {
            println!("codec vs Baileys: skipped: {why}");
            return;
        }
        Outcome::Measured(report) => report,
    };
    println!(
        "codec vs Baileys {} (node {}): same {} stanzas, same loop (median of {ROUNDS} rounds)",
        report.baileys,
        report.node,
        report.frames as usize - report.failed.len()
    );
    if report.failed.is_empty() {
        println!("  Baileys decodes every frame; none excluded");
    } else {
        println!(
            "  excluded on both sides ({} Baileys cannot decode):",
            report.failed.len()
        );
        for (name, error) in &report.failed {
            println!("    {name}: {error}");
        }
    }
    println!(
        "  Baileys re-encodes {} of {} frames byte for byte",
        report.reencoded_identical, report.frames
    );
    println!(
        "  {:<6} {:<9} {:>10} {:>9} {:>10} {:>9} {:>6} {:>7} {:>7}",
        "set", "op", "ours ns", "ours MB/s", "Baileys ns", "Bail MB/s", "ratio", "wall", "sync"
    );
    for o in ours {
        let theirs = &report.sets[o.set];
        for (op, key, sync, pass) in [
            ("decode", "decode", Some("decode_sync"), o.decode),
            ("encode", "encode", None, o.encode),
            ("dec+enc", "roundtrip", Some("roundtrip_sync"), o.roundtrip),
        ] {
            let cpu = theirs[key]["cpu_ns_per_pass"].as_f64();
            let wall = theirs[key]["ns_per_pass"].as_f64();
            let sync = sync.and_then(|k| theirs[k]["cpu_ns_per_pass"].as_f64());
            let per = |ns: f64| format!("{:.0}", ns / o.frames as f64);
            let mbs = |ns: f64| format!("{:.1}", o.bytes as f64 * 1e3 / ns);
            let ratio = |theirs: Option<f64>, ours: f64| {
                theirs.map_or_else(|| "-".to_owned(), |t| format!("{:.1}x", t / ours))
            };
            println!(
                "  {:<6} {:<9} {:>10} {:>9} {:>10} {:>9} {:>6} {:>7} {:>7}",
                o.set,
                op,
                per(pass.cpu),
                mbs(pass.cpu),
                cpu.map_or_else(|| "-".to_owned(), per),
                cpu.map_or_else(|| "-".to_owned(), mbs),
                ratio(cpu, pass.cpu),
                ratio(wall, pass.wall),
                ratio(sync, pass.cpu),
            );
        }
    }
    println!(
        "  ns: CPU ns per stanza; MB/s: 10^6 bytes of frame plaintext per CPU second; ratio: \
         Baileys' CPU time / ours; wall: the same by the clock; sync: against Baileys' \
         synchronous decode core (no promise per frame), CPU time"
    );
}
