// Baileys' binary-node codec (WABinary, 7.0.0-rc.9) timed over the corpus the worker's `codec`
// bench writes, for the ratio that bench prints (`cargo bench -p worker --bench codec`).
//
//   node codec-bench.mjs CORPUS [--quick]
//
// CORPUS has one frame per line: `<set> <name> <hex>`, where <set> is small, medium or large and
// the hex is a frame plaintext (flags byte 0x00, then the node). Every frame is first decoded
// once: a frame Baileys cannot decode is listed under `failed` and left out of every timing, and
// the caller leaves it out of its own. Then, per set and for the whole corpus, each operation
// runs whole passes over the frames, in the same shape as the Rust side's loop:
//   decode        await decodeBinaryNode(frame)          (what Baileys' socket runs per frame)
//   encode        encodeBinaryNode(node)                  (the nodes Baileys decoded)
//   roundtrip     decode, then encode the result
//   decode_sync / roundtrip_sync: the synchronous core, decodeDecompressedBinaryNode on the
//                 bytes after the flags byte, without the promise per frame
// Warm-up first, then rounds of at least ROUND_MS each; the median round gives ns per pass, by
// the clock and in CPU time.
// Prints one JSON line on stdout; on a missing Baileys it prints {"error": …} and exits 0.
import { readFileSync } from 'node:fs';

const WARMUP_MS = 400;
const ROUND_MS = 60;
const ROUNDS = 11;

// Every result feeds this, so no pass can be optimised away; printed as `checksum`.
let sink = 0;

function out(obj) {
  process.stdout.write(`${JSON.stringify(obj)}\n`);
}

async function loadBaileys() {
  try {
    const binary = await import('@whiskeysockets/baileys/lib/WABinary/index.js');
    const constants = await import('@whiskeysockets/baileys/lib/WABinary/constants.js');
    const pkg = JSON.parse(readFileSync(new URL('./node_modules/@whiskeysockets/baileys/package.json', import.meta.url)));
    return { ...binary, constants, version: pkg.version };
  } catch (e) {
    return { error: `cannot load @whiskeysockets/baileys (run npm ci in tests/interop): ${e.message}` };
  }
}

function readCorpus(path) {
  return readFileSync(path, 'utf8')
    .split('\n')
    .filter((line) => line.length > 0)
    .map((line) => {
      const [set, name, hex] = line.split(' ');
      return { set, name, frame: Buffer.from(hex, 'hex') };
    });
}

// Median ns per call of `pass` (one whole pass over a set), after a warm-up: `wall` from the
// clock, `cpu` from the process's CPU time (user + system, every thread: the collector's too),
// which a busy machine does not inflate.
async function time(pass, quick) {
  const warmup = quick ? 20 : WARMUP_MS;
  const roundMs = quick ? 5 : ROUND_MS;
  const rounds = quick ? 3 : ROUNDS;
  const until = performance.now() + warmup;
  while (performance.now() < until) await pass();
  const wall = [];
  const cpu = [];
  for (let r = 0; r < rounds; r++) {
    let n = 0;
    const start = process.hrtime.bigint();
    const startCpu = process.cpuUsage();
    const deadline = performance.now() + roundMs;
    do {
      await pass();
      n++;
    } while (performance.now() < deadline);
    const used = process.cpuUsage(startCpu);
    wall.push(Number(process.hrtime.bigint() - start) / n);
    cpu.push(((used.user + used.system) * 1000) / n);
  }
  return { wall: median(wall), cpu: median(cpu) };
}

function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

function rate({ wall, cpu }, frames, bytes) {
  return {
    ns_per_pass: Math.round(wall),
    cpu_ns_per_pass: Math.round(cpu),
    ns_per_node: Math.round(wall / frames),
    cpu_ns_per_node: Math.round(cpu / frames),
    bytes_per_s: Math.round((bytes * 1e9) / wall),
    nodes_per_s: Math.round((frames * 1e9) / wall),
  };
}

async function main() {
  const [path, flag] = process.argv.slice(2);
  if (!path) {
    out({ error: 'usage: node codec-bench.mjs CORPUS [--quick]' });
    return;
  }
  const quick = flag === '--quick';
  const b = await loadBaileys();
  if (b.error) {
    out({ error: b.error });
    return;
  }
  const corpus = readCorpus(path);
  const failed = [];
  const kept = [];
  let identical = 0;
  for (const entry of corpus) {
    try {
      const node = await b.decodeBinaryNode(entry.frame);
      const again = b.encodeBinaryNode(node);
      if (Buffer.compare(again, entry.frame) === 0) identical++;
      kept.push({ ...entry, node });
    } catch (e) {
      failed.push({ name: entry.name, error: String(e.message ?? e) });
    }
  }
  const sets = {};
  for (const set of ['all', 'small', 'medium', 'large']) {
    const entries = kept.filter((e) => set === 'all' || e.set === set);
    if (entries.length === 0) continue;
    const frames = entries.map((e) => e.frame);
    const nodes = entries.map((e) => e.node);
    const bytes = frames.reduce((sum, f) => sum + f.length, 0);
    const decode = async () => {
      for (const f of frames) sink += (await b.decodeBinaryNode(f)).tag.length;
    };
    const encode = async () => {
      for (const n of nodes) sink += b.encodeBinaryNode(n).length;
    };
    const roundtrip = async () => {
      for (const f of frames) sink += b.encodeBinaryNode(await b.decodeBinaryNode(f)).length;
    };
    const decodeSync = async () => {
      for (const f of frames) sink += b.decodeDecompressedBinaryNode(f.subarray(1), b.constants).tag.length;
    };
    const roundtripSync = async () => {
      for (const f of frames) {
        sink += b.encodeBinaryNode(b.decodeDecompressedBinaryNode(f.subarray(1), b.constants)).length;
      }
    };
    sets[set] = {
      frames: frames.length,
      bytes,
      decode: rate(await time(decode, quick), frames.length, bytes),
      encode: rate(await time(encode, quick), frames.length, bytes),
      roundtrip: rate(await time(roundtrip, quick), frames.length, bytes),
      decode_sync: rate(await time(decodeSync, quick), frames.length, bytes),
      roundtrip_sync: rate(await time(roundtripSync, quick), frames.length, bytes),
    };
  }
  out({
    baileys: b.version,
    node: process.version,
    frames: corpus.length,
    reencoded_identical: identical,
    failed,
    sets,
    checksum: sink,
  });
}

main().catch((e) => {
  out({ error: String(e.stack ?? e) });
});
