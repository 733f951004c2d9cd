// Baileys' binary-node codec (WABinary, 7.0.0-rc.9) timed over the corpus the worker's `codec`
// bench writes, for the ratio that bench prints (`cargo bench -p worker --bench codec`).
//
//   node codec-bench.mjs CORPUS            times every set and operation, prints one JSON line
//   node codec-bench.mjs CORPUS --serve    prints the header line, then answers timing requests
//
// CORPUS has one frame per line: `<set> <name> <hex>`, where <set> is small, medium or large and
// the hex is a frame plaintext (flags byte 0x00, then the node). Every frame is first decoded
// once, and its decoded node encoded again: a frame Baileys cannot decode is listed under
// `failed` and left out of every timing (the caller leaves it out of its own), and
// `reencoded_identical` counts the frames Baileys writes back byte for byte.
//
// The operations, each one whole pass over the frames of a set (`all`: every frame):
//   decode          await decodeBinaryNode(frame)         (what Baileys' socket runs per frame)
//   encode          encodeBinaryNode(node)                 (the nodes Baileys decoded)
//   roundtrip       decode, then encode the result
//   decode_sync     decodeDecompressedBinaryNode on the bytes after the flags byte: the
//                   synchronous core, without the promise per frame
//   roundtrip_sync  decode_sync, then encode
//
// A round runs passes for at least the given milliseconds and reports ns per pass by the clock
// (`wall_ns`) and in the process's CPU time (`cpu_ns`: user + system, every thread, the garbage
// collector's included). With --serve, each stdin line `<set> <op> <ms>` runs one round and
// answers `{"passes", "wall_ns", "cpu_ns"}`; `quit` ends. The Rust side alternates these rounds
// with its own, so that both see the same machine. Without --serve: per set and operation, a
// warm-up, then ROUNDS rounds, the median printed.
// On a missing Baileys either mode prints {"error": …} and exits 0.
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';

const WARMUP_MS = 400;
const ROUND_MS = 60;
const ROUNDS = 11;
const SETS = ['all', 'small', 'medium', 'large'];

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

// The five operations over one set's frames and their decoded nodes.
function operations(b, frames, nodes) {
  return {
    decode: async () => {
      for (const f of frames) sink += (await b.decodeBinaryNode(f)).tag.length;
    },
    encode: async () => {
      for (const n of nodes) sink += b.encodeBinaryNode(n).length;
    },
    roundtrip: async () => {
      for (const f of frames) sink += b.encodeBinaryNode(await b.decodeBinaryNode(f)).length;
    },
    decode_sync: async () => {
      for (const f of frames) sink += b.decodeDecompressedBinaryNode(f.subarray(1), b.constants).tag.length;
    },
    roundtrip_sync: async () => {
      for (const f of frames) {
        sink += b.encodeBinaryNode(b.decodeDecompressedBinaryNode(f.subarray(1), b.constants)).length;
      }
    },
  };
}

// One round: passes until `ms` have gone by; ns per pass by the clock and in CPU time.
async function round(pass, ms) {
  let passes = 0;
  const start = process.hrtime.bigint();
  const startCpu = process.cpuUsage();
  const deadline = performance.now() + ms;
  do {
    await pass();
    passes++;
  } while (performance.now() < deadline);
  const used = process.cpuUsage(startCpu);
  return {
    passes,
    wall_ns: Number(process.hrtime.bigint() - start) / passes,
    cpu_ns: ((used.user + used.system) * 1000) / passes,
  };
}

function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

async function main() {
  const [path, flag] = process.argv.slice(2);
  if (!path) {
    out({ error: 'usage: node codec-bench.mjs CORPUS [--serve]' });
    return;
  }
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
  const ops = {};
  for (const set of SETS) {
    const entries = kept.filter((e) => set === 'all' || e.set === set);
    if (entries.length === 0) continue;
    const frames = entries.map((e) => e.frame);
    sets[set] = { frames: frames.length, bytes: frames.reduce((sum, f) => sum + f.length, 0) };
    ops[set] = operations(b, frames, entries.map((e) => e.node));
  }
  const header = {
    baileys: b.version,
    node: process.version,
    frames: corpus.length,
    reencoded_identical: identical,
    failed,
  };

  if (flag === '--serve') {
    out({ ...header, sets });
    const lines = createInterface({ input: process.stdin });
    for await (const line of lines) {
      const [set, op, ms] = line.trim().split(' ');
      if (set === 'quit') break;
      const pass = ops[set]?.[op];
      if (!pass) {
        out({ error: `unknown request: ${line}` });
        continue;
      }
      out(await round(pass, Number(ms)));
    }
    lines.close();
    return;
  }

  for (const set of Object.keys(ops)) {
    for (const [op, pass] of Object.entries(ops[set])) {
      await round(pass, WARMUP_MS);
      const rounds = [];
      for (let r = 0; r < ROUNDS; r++) rounds.push(await round(pass, ROUND_MS));
      const wall = median(rounds.map((x) => x.wall_ns));
      const cpu = median(rounds.map((x) => x.cpu_ns));
      const { frames, bytes } = sets[set];
      sets[set][op] = {
        ns_per_pass: Math.round(wall),
        cpu_ns_per_pass: Math.round(cpu),
        cpu_ns_per_node: Math.round(cpu / frames),
        bytes_per_cpu_s: Math.round((bytes * 1e9) / cpu),
        nodes_per_cpu_s: Math.round((frames * 1e9) / cpu),
      };
    }
  }
  out({ ...header, sets, checksum: sink });
}

main().catch((e) => {
  out({ error: String(e.stack ?? e) });
});
