//! The side-by-side half of the codec bench: Baileys' WABinary, run by
//! `tests/interop/codec-bench.mjs --serve` in a child process, and our codec, timed in paired
//! rounds over the same frames.
//!
//! Per set and operation: a warm-up of [`WARMUP`] on each side, then [`ROUNDS`] rounds, each an
//! ours/theirs pair in alternating order, each side running whole passes over the set for at
//! least [`ROUND`]. A round gives ns per pass by the clock and in CPU time (the process's user +
//! system time: ours one thread, Node's every thread, its collector's included). The ratio is
//! the median over the rounds of Baileys' CPU time / ours: the two sides of a pair see the same
//! machine, and CPU time leaves out the waiting for a core on a machine shared with other work.

use std::hint::black_box;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use worker::wa::binary;

use crate::corpus::Entry;

const WARMUP: Duration = Duration::from_millis(300);
const ROUND: Duration = Duration::from_millis(60);
const ROUNDS: usize = 11;

/// What the comparison gave.
pub enum Outcome {
    /// No ratio, and why (no node, no Baileys, the script failed).
    Skipped(String),
    /// Both codecs ran over the corpus.
    Measured(Comparison),
}

/// The script's header and the paired timings.
pub struct Comparison {
    baileys: String,
    node: String,
    frames: u64,
    reencoded_identical: u64,
    /// Frames Baileys could not decode, with its error; left out on both sides.
    failed: Vec<(String, String)>,
    rows: Vec<Row>,
}

/// One set and operation.
struct Row {
    set: &'static str,
    op: Op,
    frames: usize,
    bytes: usize,
    /// Median ns per pass, ours and Baileys'.
    ours: Pass,
    theirs: Pass,
    /// Medians of the per-round ratios, Baileys / ours.
    ratio_cpu: f64,
    ratio_wall: f64,
    ratio_sync: Option<f64>,
}

/// One paired round: ours, Baileys', and Baileys' synchronous core (decode, roundtrip).
struct Paired {
    ours: Pass,
    theirs: Pass,
    sync: Option<Pass>,
}

/// One round's time of one pass, ns.
#[derive(Clone, Copy)]
struct Pass {
    wall: f64,
    cpu: f64,
}

#[derive(Clone, Copy, Eq, PartialEq)]
enum Op {
    Decode,
    Encode,
    Roundtrip,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Decode => "decode",
            Op::Encode => "encode",
            Op::Roundtrip => "roundtrip",
        }
    }

    /// Baileys' synchronous-core counterpart.
    fn sync_name(self) -> Option<&'static str> {
        match self {
            Op::Decode => Some("decode_sync"),
            Op::Encode => None,
            Op::Roundtrip => Some("roundtrip_sync"),
        }
    }
}

/// Starts Baileys over `corpus`, drops from `corpus` the frames it cannot decode, and times
/// both codecs over `sets`. Never fails: says why there is no ratio.
pub fn compare(corpus: &mut Vec<Entry>, sets: &[&'static str]) -> Outcome {
    let mut node = match Baileys::start(corpus) {
        Ok(node) => node,
        Err(why) => return Outcome::Skipped(why),
    };
    let header = &node.header;
    let failed: Vec<(String, String)> = header["failed"]
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
    corpus.retain(|e| !failed.iter().any(|(name, _)| name == e.name));
    let mut comparison = Comparison {
        baileys: header["baileys"].as_str().unwrap_or("?").to_owned(),
        node: header["node"].as_str().unwrap_or("?").to_owned(),
        frames: header["frames"].as_u64().unwrap_or(0),
        reencoded_identical: header["reencoded_identical"].as_u64().unwrap_or(0),
        failed,
        rows: Vec::new(),
    };
    eprintln!("codec: timing ours and Baileys' in paired rounds (about a minute)");
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
        for op in [Op::Decode, Op::Encode, Op::Roundtrip] {
            let ours = || match op {
                Op::Decode => round(|| {
                    for f in &frames {
                        black_box(binary::decode(black_box(f)).expect("decodes"));
                    }
                }),
                Op::Encode => round(|| {
                    for n in &nodes {
                        black_box(binary::encode(black_box(n)));
                    }
                }),
                Op::Roundtrip => round(|| {
                    for f in &frames {
                        let node = binary::decode(black_box(f)).expect("decodes");
                        black_box(binary::encode(&node));
                    }
                }),
            };
            match paired(
                &mut node,
                set,
                op,
                ours,
                frames.len(),
                frames.iter().map(|f| f.len()).sum(),
            ) {
                Ok(row) => comparison.rows.push(row),
                Err(why) => return Outcome::Skipped(why),
            }
        }
    }
    Outcome::Measured(comparison)
}

/// The warm-up and the paired rounds of one set and operation.
fn paired(
    node: &mut Baileys,
    set: &'static str,
    op: Op,
    ours: impl Fn() -> Pass,
    frames: usize,
    bytes: usize,
) -> Result<Row, String> {
    let ms = |d: Duration| d.as_millis();
    let warm = Instant::now();
    while warm.elapsed() < WARMUP {
        ours();
    }
    node.round(set, op.name(), ms(WARMUP))?;
    if let Some(sync) = op.sync_name() {
        node.round(set, sync, ms(WARMUP))?;
    }
    let mut rounds = Vec::with_capacity(ROUNDS);
    for r in 0..ROUNDS {
        let (mine, theirs) = if r % 2 == 0 {
            let mine = ours();
            (mine, node.round(set, op.name(), ms(ROUND))?)
        } else {
            let theirs = node.round(set, op.name(), ms(ROUND))?;
            (ours(), theirs)
        };
        let sync = match op.sync_name() {
            Some(name) => Some(node.round(set, name, ms(ROUND))?),
            None => None,
        };
        rounds.push(Paired {
            ours: mine,
            theirs,
            sync,
        });
    }
    let med = |f: &dyn Fn(&Paired) -> f64| median(rounds.iter().map(f));
    Ok(Row {
        set,
        op,
        frames,
        bytes,
        ours: Pass {
            wall: med(&|r| r.ours.wall),
            cpu: med(&|r| r.ours.cpu),
        },
        theirs: Pass {
            wall: med(&|r| r.theirs.wall),
            cpu: med(&|r| r.theirs.cpu),
        },
        ratio_cpu: med(&|r| r.theirs.cpu / r.ours.cpu),
        ratio_wall: med(&|r| r.theirs.wall / r.ours.wall),
        ratio_sync: op
            .sync_name()
            .map(|_| med(&|r| r.sync.map_or(f64::NAN, |p| p.cpu) / r.ours.cpu)),
    })
}

/// Whole passes for at least [`ROUND`].
fn round(mut pass: impl FnMut()) -> Pass {
    let start = Instant::now();
    let start_cpu = crate::clock::cpu();
    let mut n = 0u32;
    while start.elapsed() < ROUND || n == 0 {
        pass();
        n += 1;
    }
    Pass {
        wall: start.elapsed().as_nanos() as f64 / f64::from(n),
        cpu: crate::clock::cpu().saturating_sub(start_cpu).as_nanos() as f64 / f64::from(n),
    }
}

fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut values: Vec<f64> = values.collect();
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

/// The script in `--serve` mode, killed when dropped.
struct Baileys {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    header: Value,
}

impl Baileys {
    /// Writes the corpus file, starts the script and reads its header.
    fn start(corpus: &[Entry]) -> Result<Self, String> {
        let interop = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/interop");
        let node = std::env::var("NODE").unwrap_or_else(|_| "node".to_owned());
        if Command::new(&node).arg("--version").output().is_err() {
            return Err(format!("`{node}` not found: no Baileys ratio"));
        }
        if !interop
            .join("node_modules/@whiskeysockets/baileys/package.json")
            .exists()
        {
            return Err(
                "Baileys is not installed (`cd tests/interop && npm ci`): no Baileys ratio".into(),
            );
        }
        let path = write_corpus(corpus).map_err(|e| format!("cannot write the corpus: {e}"))?;
        eprintln!("codec: corpus for Baileys at {}", path.display());
        let mut child = Command::new(&node)
            .arg(interop.join("codec-bench.mjs"))
            .arg(&path)
            .arg("--serve")
            .current_dir(&interop)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot run {node}: {e}"))?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            let _ = child.kill();
            return Err("no pipes to the script".into());
        };
        let mut baileys = Self {
            child,
            stdin,
            stdout: BufReader::new(stdout),
            header: Value::Null,
        };
        baileys.header = baileys.read()?;
        Ok(baileys)
    }

    /// One round of `op` over `set`, at least `ms` long.
    fn round(&mut self, set: &str, op: &str, ms: u128) -> Result<Pass, String> {
        writeln!(self.stdin, "{set} {op} {ms}")
            .and_then(|()| self.stdin.flush())
            .map_err(|e| format!("the script is gone: {e}"))?;
        let answer = self.read()?;
        match (answer["wall_ns"].as_f64(), answer["cpu_ns"].as_f64()) {
            (Some(wall), Some(cpu)) => Ok(Pass { wall, cpu }),
            _ => Err(format!("codec-bench.mjs answered {answer}")),
        }
    }

    /// The next JSON line; its `error` as an error.
    fn read(&mut self) -> Result<Value, String> {
        let mut line = String::new();
        match self.stdout.read_line(&mut line) {
            Ok(0) => return Err("codec-bench.mjs ended early".into()),
            Ok(_) => {}
            Err(e) => return Err(format!("cannot read codec-bench.mjs: {e}")),
        }
        let value: Value = serde_json::from_str(&line)
            .map_err(|e| format!("codec-bench.mjs wrote {line:?}: {e}"))?;
        match value["error"].as_str() {
            Some(error) => Err(format!("codec-bench.mjs: {error}")),
            None => Ok(value),
        }
    }
}

impl Drop for Baileys {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "quit");
        let _ = self.stdin.flush();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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

/// The side-by-side table.
pub fn print(outcome: &Outcome) {
    println!();
    let c = match outcome {
        Outcome::Skipped(why) => {
            println!("codec vs Baileys: skipped: {why}");
            return;
        }
        Outcome::Measured(c) => c,
    };
    println!(
        "codec vs Baileys {} (node {}): the same {} stanzas, {ROUNDS} paired rounds of {} ms",
        c.baileys,
        c.node,
        c.frames as usize - c.failed.len(),
        ROUND.as_millis()
    );
    if c.failed.is_empty() {
        println!("  Baileys decodes every frame; none left out");
    } else {
        println!(
            "  left out on both sides, {} Baileys cannot decode:",
            c.failed.len()
        );
        for (name, error) in &c.failed {
            println!("    {name}: {error}");
        }
    }
    println!(
        "  Baileys re-encodes {} of {} frames byte for byte",
        c.reencoded_identical, c.frames
    );
    println!(
        "  {:<6} {:<9} {:>9} {:>9} {:>10} {:>9} {:>6} {:>6} {:>6}",
        "set", "op", "ours ns", "ours MB/s", "Baileys ns", "Bail MB/s", "ratio", "wall", "sync"
    );
    for r in &c.rows {
        let per = |ns: f64| format!("{:.0}", ns / r.frames as f64);
        let mbs = |ns: f64| format!("{:.1}", r.bytes as f64 * 1e3 / ns);
        let x = |ratio: f64| format!("{ratio:.1}x");
        println!(
            "  {:<6} {:<9} {:>9} {:>9} {:>10} {:>9} {:>6} {:>6} {:>6}",
            r.set,
            r.op.name(),
            per(r.ours.cpu),
            mbs(r.ours.cpu),
            per(r.theirs.cpu),
            mbs(r.theirs.cpu),
            x(r.ratio_cpu),
            x(r.ratio_wall),
            r.ratio_sync.map_or_else(|| "-".to_owned(), x),
        );
    }
    println!(
        "  ns: CPU ns per stanza (median round); MB/s: 10^6 bytes of frame plaintext per CPU \
         second; ratio: Baileys' CPU time / ours (median of the paired rounds); wall: the same \
         by the clock; sync: Baileys' synchronous core (no promise per frame) / ours, CPU time"
    );
}
