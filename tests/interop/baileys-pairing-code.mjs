// Runs the real Baileys client (7.0.0-rc.9) through pairing by phone-number code against
// wa-sim, on loopback only (wa-protocol.md §7):
//   1. start wa-sim (target/debug/wa-sim) and read its first JSON line;
//   2. Baileys connects; at its first QR it calls requestPairingCode(phone) (companion_hello);
//   3. the script types the code on the sim's phone (POST /enter-code): the sim relays the
//      phone's wrapped ephemeral, Baileys answers companion_finish, the phone checks the key
//      bundle and sends pair-success;
//   4. after the 515 restart Baileys reconnects and reaches `connection: open`.
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
const DEADLINE_MS = 90_000;
const PHONE = '15550004321';
const ALPHABET = /^[123456789ABCDEFGHJKLMNPQRSTVWXYZ]{8}$/;

const silent = { level: 'silent', child: () => silent, trace() {}, debug() {}, info() {}, warn() {}, error() {}, fatal() {} };
const log = (...args) => console.log('[pairing-code]', ...args);

// --edge-latency-ms: as in baileys-interop.mjs, a real edge's round trip before the handshake
// answer (Baileys switches to its transport keys only once its ClientFinish write completed).
function startSim() {
  const sim = spawn(simBin, ['--listen', '127.0.0.1:0', '--control', '127.0.0.1:0', '--edge-latency-ms', '100'], { stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    sim.on('error', reject);
    sim.on('exit', (code) => reject(new Error(`wa-sim exited early with ${code}`)));
    createInterface({ input: sim.stdout }).once('line', (line) => resolve({ sim, info: JSON.parse(line) }));
  });
}

// One Baileys socket until it opens; resolves 'open', or 'restart' on the 515. `onQr` runs for
// every QR; `closed` settles when the socket is gone.
function runSocket(info, auth, saveCreds, onQr) {
  const sock = makeWASocket({ waWebSocketUrl: info.ws_url, auth, logger: silent, printQRInTerminal: false, markOnlineOnConnect: false });
  sock.ev.on('creds.update', saveCreds);
  let closed;
  const whenClosed = new Promise((resolve) => { closed = resolve; });
  let opened = false;
  return new Promise((resolve, reject) => {
    sock.ev.on('connection.update', ({ connection, qr, lastDisconnect }) => {
      if (qr) onQr(sock, qr).catch(reject);
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

async function main() {
  const { sim, info } = await startSim();
  const dir = mkdtempSync(join(tmpdir(), 'baileys-pairing-code-'));
  const timer = setTimeout(() => { log('FAILED: deadline passed'); sim.kill('SIGKILL'); process.exit(1); }, DEADLINE_MS);
  try {
    log('wa-sim at', info.ws_url);
    const { state, saveCreds } = await useMultiFileAuthState(dir);
    let asked = false;
    const byCode = async (sock) => {
      if (asked) return; // the QR keeps rotating; one code is enough
      asked = true;
      const code = await sock.requestPairingCode(PHONE);
      if (!ALPHABET.test(code)) throw new Error(`Baileys made a code outside the alphabet: ${code}`);
      log('Baileys asked for a pairing code; typing it on the phone');
      // Baileys sends the hello without waiting for its answer: the phone retries until the
      // sim has taken it (404 until then).
      for (let attempt = 0; ; attempt += 1) {
        const r = await fetch(`${info.control_url}/enter-code`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ phone: PHONE, code: `${code.slice(0, 4)}-${code.slice(4)}` }) });
        const json = await r.json();
        if (r.ok) { log('phone took the code; device', json.jid); return; }
        if (r.status !== 404 || attempt >= 50) throw new Error(`/enter-code: ${r.status} ${JSON.stringify(json)}`);
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    };
    const first = await runSocket(info, state, saveCreds, byCode);
    if (first.outcome !== 'restart') throw new Error('expected the 515 restart after pairing');
    await first.closed;
    log('pair-success accepted; 515 received');
    const second = await runSocket(info, state, saveCreds, async () => { throw new Error('a QR was shown after pairing'); });
    if (second.outcome !== 'open') throw new Error('expected connection: open after the restart');
    log('connection: open as', second.sock.user?.id);
    const linked = await (await fetch(`${info.control_url}/linked-devices?phone=${PHONE}`)).json();
    log('the phone lists', JSON.stringify(linked));
    await new Promise((resolve) => setTimeout(resolve, 500));
    second.sock.end(undefined);
    await second.closed;
    const stats = await (await fetch(`${info.control_url}/stats`)).json();
    if (stats.pairings !== 1) throw new Error(`expected one pairing at the sim, got ${stats.pairings}`);
    log('PASSED');
  } finally {
    clearTimeout(timer);
    sim.kill('SIGTERM');
    rmSync(dir, { recursive: true, force: true });
  }
}

main().then(() => process.exit(0), (e) => { log('FAILED:', e.message); process.exit(1); });
