// Runs the real Baileys client (7.0.0-rc.9) against wa-sim, on loopback only:
//   1. start wa-sim (target/debug/wa-sim) and read its first JSON line;
//   2. Baileys connects to it, receives a QR, and the sim's phone scans it (POST /scan);
//   3. after the 515 restart Baileys reconnects and reaches `connection: open`;
//   4. a new socket with the saved creds logs in again without any QR.
// Exit 0 means every step happened; anything else prints why and exits 1.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import makeWASocket, { useMultiFileAuthState, DisconnectReason } from '@whiskeysockets/baileys';

const here = dirname(fileURLToPath(import.meta.url));
const simBin = process.env.WA_SIM_BIN ?? join(here, '..', '..', 'target', 'debug', 'wa-sim');
const DEADLINE_MS = 60_000;
const PHONE = '15550001234';

const silent = { level: 'silent', child: () => silent, trace() {}, debug() {}, info() {}, warn() {}, error() {}, fatal() {} };
const log = (...args) => console.log('[interop]', ...args);

// --edge-latency-ms: a real edge answers the handshake after a network round trip; Baileys
// switches to its transport keys only once its ClientFinish write has completed, so a stanza
// that arrives sooner (loopback, no latency) is lost to it. 100 ms models the round trip.
function startSim() {
  const sim = spawn(simBin, ['--listen', '127.0.0.1:0', '--control', '127.0.0.1:0', '--edge-latency-ms', '100'], { stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    sim.on('error', reject);
    sim.on('exit', (code) => reject(new Error(`wa-sim exited early with ${code}`)));
    createInterface({ input: sim.stdout }).once('line', (line) => resolve({ sim, info: JSON.parse(line) }));
  });
}

async function post(url, body) {
  const r = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const json = await r.json();
  if (!r.ok) throw new Error(`${url}: ${r.status} ${JSON.stringify(json)}`);
  return json;
}

// One Baileys socket until it opens; resolves 'open', or 'restart' on the 515. `closed`
// settles when the socket is gone, so the next one never overlaps it.
function runSocket(info, auth, saveCreds, onQr) {
  const sock = makeWASocket({ waWebSocketUrl: info.ws_url, auth, logger: silent, printQRInTerminal: false, markOnlineOnConnect: false });
  sock.ev.on('creds.update', saveCreds);
  let closed;
  const whenClosed = new Promise((resolve) => { closed = resolve; });
  let opened = false;
  return new Promise((resolve, reject) => {
    sock.ev.on('connection.update', ({ connection, qr, lastDisconnect }) => {
      if (qr) onQr(qr).catch(reject);
      if (connection === 'open') {
        opened = true;
        resolve({ outcome: 'open', sock, closed: whenClosed });
      }
      if (connection === 'close') {
        closed();
        const status = lastDisconnect?.error?.output?.statusCode;
        if (opened) return;
        if (status === DisconnectReason.restartRequired) resolve({ outcome: 'restart', sock, closed: whenClosed });
        else reject(new Error(`connection closed with status ${status}: ${lastDisconnect?.error?.message}`));
      }
    });
  });
}

// Ends a socket once its start-up queries have been answered, and waits until it is gone.
async function finish(run) {
  await new Promise((resolve) => setTimeout(resolve, 500));
  run.sock.end(undefined);
  await run.closed;
}

async function main() {
  const { sim, info } = await startSim();
  const dir = mkdtempSync(join(tmpdir(), 'baileys-interop-'));
  const timer = setTimeout(() => { log('FAILED: deadline passed'); sim.kill('SIGKILL'); process.exit(1); }, DEADLINE_MS);
  try {
    log('wa-sim at', info.ws_url);
    const { state, saveCreds } = await useMultiFileAuthState(dir);
    let qrs = 0;
    const scan = async (qr) => {
      qrs += 1;
      const answer = await post(`${info.control_url}/scan`, { qr, phone: PHONE });
      log('phone scanned the QR; device', answer.jid);
    };
    const first = await runSocket(info, state, saveCreds, scan);
    if (first.outcome !== 'restart') throw new Error('expected the 515 restart after pairing');
    await first.closed;
    log('pair-success accepted; 515 received');
    const second = await runSocket(info, state, saveCreds, scan);
    if (second.outcome !== 'open') throw new Error('expected connection: open after the restart');
    log('connection: open as', second.sock.user?.id);
    await finish(second);

    const before = qrs;
    const again = await useMultiFileAuthState(dir);
    const third = await runSocket(info, again.state, again.saveCreds, async () => { throw new Error('a QR was shown on a login with saved creds'); });
    if (third.outcome !== 'open' || qrs !== before) throw new Error('expected a login without a QR');
    log('logged in again with saved creds, no QR');
    const live = (await (await fetch(`${info.control_url}/sessions`)).json()).find((x) => x.state === 'logged_in');
    if (!live?.routing_info) throw new Error('Baileys sent no ED routing pre-intro after receiving edge_routing');
    log('Baileys named the edge routing info in its ED pre-intro:', live.routing_info);
    await finish(third);
    const stats = await (await fetch(`${info.control_url}/stats`)).json();
    log('sim stats', JSON.stringify(stats));
    log('PASSED');
  } finally {
    clearTimeout(timer);
    sim.kill('SIGTERM');
    rmSync(dir, { recursive: true, force: true });
  }
}

main().then(() => process.exit(0), (e) => { log('FAILED:', e.message); process.exit(1); });
