// Two real Baileys clients (7.0.0-rc.9) message each other through wa-sim, on loopback only:
//   1. start wa-sim (target/debug/wa-sim); A and B pair with two phones (POST /scan) and log in;
//   2. A sends B a text (the first is a pkmsg); B gets the plaintext; B replies and A gets it;
//   3. a group made with POST /group: A sends, B gets it; B sends, A gets it;
//   4. B goes offline, A sends, B logs in again and gets it from the offline queue;
//   5. the sim's phones (device 0, Signal peers) decrypted their copies (GET /inbox).
// The sim relays: every plaintext below was encrypted by one Baileys and decrypted by the other. Exit 0 means every step happened; anything else prints why and exits 1.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import makeWASocket, { useMultiFileAuthState, DisconnectReason } from '@whiskeysockets/baileys';

const here = dirname(fileURLToPath(import.meta.url));
const simBin = process.env.WA_SIM_BIN ?? join(here, '..', '..', 'target', 'debug', 'wa-sim');
const DEADLINE_MS = 120_000;
const STEP_MS = 30_000;
const PHONE_A = '15550001111';
const PHONE_B = '15550002222';

const silent = { level: 'silent', child: () => silent, trace() {}, debug() {}, info() {}, warn() {}, error() {}, fatal() {} };
const log = (...args) => console.log('[messaging]', ...args);

// --edge-latency-ms: see baileys-interop.mjs (Baileys switches to transport keys only after its
// ClientFinish write completes).
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

async function get(url) {
  const r = await fetch(url);
  const json = await r.json();
  if (!r.ok) throw new Error(`${url}: ${r.status} ${JSON.stringify(json)}`);
  return json;
}

function within(ms, what, promise) {
  let timer;
  const timeout = new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms); });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

const textOf = (m) => m.message?.conversation ?? m.message?.extendedTextMessage?.text;

// One Baileys client: its socket, the texts it received, and waiters for them.
class Client {
  constructor(name, info, dir) {
    this.name = name;
    this.info = info;
    this.dir = dir;
    this.received = [];
    this.waiters = [];
  }

  // Opens a socket; resolves 'open' once the offline queue has been drained (`<ib><offline>`),
  // or 'restart' on the 515 after pairing.
  async connect(onQr) {
    const { state, saveCreds } = await useMultiFileAuthState(this.dir);
    const sock = makeWASocket({
      waWebSocketUrl: this.info.ws_url,
      auth: state,
      logger: silent,
      printQRInTerminal: false,
      markOnlineOnConnect: false,
      shouldSyncHistoryMessage: () => false,
      getMessage: async () => undefined,
    });
    this.sock = sock;
    sock.ev.on('creds.update', saveCreds);
    sock.ev.on('messages.upsert', ({ messages }) => {
      for (const m of messages) {
        const text = textOf(m);
        if (m.key.fromMe || text === undefined) continue;
        this.received.push({ text, key: m.key });
        this.waiters = this.waiters.filter((w) => !w(m.key, text));
      }
    });
    this.closed = new Promise((resolve) => {
      sock.ev.on('connection.update', ({ connection }) => { if (connection === 'close') resolve(); });
    });
    // `<ib><offline>` may come before or after `connection: open`; both must have happened.
    let opened = false;
    let drained = false;
    return new Promise((resolve, reject) => {
      sock.ev.on('connection.update', ({ connection, qr, lastDisconnect, receivedPendingNotifications }) => {
        if (qr) {
          if (onQr) onQr(qr).catch(reject);
          else reject(new Error(`${this.name} was shown a QR on a login with saved creds`));
        }
        if (connection === 'open') opened = true;
        if (receivedPendingNotifications) drained = true;
        if (opened && drained) resolve('open');
        if (connection === 'close' && !opened) {
          const status = lastDisconnect?.error?.output?.statusCode;
          if (status === DisconnectReason.restartRequired) resolve('restart');
          else reject(new Error(`${this.name}: connection closed with status ${status}: ${lastDisconnect?.error?.message}`));
        }
      });
    });
  }

  // Pairs with `phone` through the sim's phone, then logs in.
  async pair(phone) {
    const scan = async (qr) => {
      const answer = await post(`${this.info.control_url}/scan`, { qr, phone });
      this.device = answer.jid;
    };
    if ((await this.connect(scan)) !== 'restart') throw new Error(`${this.name}: expected the 515 restart after pairing`);
    await this.closed;
    if ((await this.connect(null)) !== 'open') throw new Error(`${this.name}: expected connection: open`);
    log(`${this.name} paired as ${this.device} and is online`);
  }

  async disconnect() {
    this.sock.end(undefined);
    await this.closed;
  }

  // Resolves with the key of the first text (already received or arriving) that `match` accepts.
  receive(what, match) {
    const seen = this.received.find((r) => match(r.key, r.text));
    if (seen) return Promise.resolve(seen.key);
    return within(STEP_MS, `${this.name} to receive ${what}`, new Promise((resolve) => {
      this.waiters.push((key, text) => {
        if (!match(key, text)) return false;
        resolve(key);
        return true;
      });
    }));
  }
}

async function relayedTo(info, device) {
  return get(`${info.control_url}/relayed?jid=${encodeURIComponent(device)}`);
}

async function main() {
  const { sim, info } = await startSim();
  const dirs = [mkdtempSync(join(tmpdir(), 'baileys-a-')), mkdtempSync(join(tmpdir(), 'baileys-b-'))];
  const timer = setTimeout(() => { log('FAILED: deadline passed'); sim.kill('SIGKILL'); process.exit(1); }, DEADLINE_MS);
  try {
    log('wa-sim at', info.ws_url);
    const a = new Client('A', info, dirs[0]);
    const b = new Client('B', info, dirs[1]);
    await within(STEP_MS, 'A to pair', a.pair(PHONE_A));
    await within(STEP_MS, 'B to pair', b.pair(PHONE_B));
    const jidA = `${PHONE_A}@s.whatsapp.net`;
    const jidB = `${PHONE_B}@s.whatsapp.net`;

    // 1:1, first contact: a pkmsg built from B's prekey bundle.
    const first = await a.sock.sendMessage(jidB, { text: 'hello B, from A' });
    const keyAtB = await b.receive('A\'s first text', (k, t) => t === 'hello B, from A' && k.id === first.key.id);
    const copy = (await relayedTo(info, b.device)).find((r) => r.id === first.key.id);
    if (!copy?.encs.includes('pkmsg')) throw new Error(`A's first message reached B without a pkmsg: ${JSON.stringify(copy)}`);
    log('B received A\'s first text (pkmsg) in chat', keyAtB.remoteJid);

    await b.sock.sendMessage(keyAtB.remoteJid, { text: 'hi A, B here' });
    const keyAtA = await a.receive('B\'s reply', (_, t) => t === 'hi A, B here');
    log('A received B\'s reply in chat', keyAtA.remoteJid);

    // Group: SKDMs pairwise, the text as skmsg.
    const group = await post(`${info.control_url}/group`, { subject: 'wa-sim interop', participants: [PHONE_A, PHONE_B], addressing_mode: 'lid' });
    log('group created:', group.jid);
    await a.sock.sendMessage(group.jid, { text: 'group hello from A' });
    const inGroupB = await b.receive('A\'s group text', (k, t) => t === 'group hello from A' && k.remoteJid === group.jid);
    log('B received A\'s group text from', inGroupB.participant);
    await b.sock.sendMessage(group.jid, { text: 'group hello from B' });
    const inGroupA = await a.receive('B\'s group text', (k, t) => t === 'group hello from B' && k.remoteJid === group.jid);
    log('A received B\'s group text from', inGroupA.participant);

    // Offline queue: B is gone while A sends; it gets the message at its next login.
    await b.disconnect();
    log('B went offline');
    const late = await a.sock.sendMessage(jidB, { text: 'while you were away' });
    await within(STEP_MS, 'the sim to queue A\'s message for B', (async () => {
      for (;;) {
        const rows = await relayedTo(info, b.device);
        if (rows.some((r) => r.id === late.key.id && r.pending)) return;
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    })());
    log('A\'s message is queued for B');
    if ((await within(STEP_MS, 'B to log in again', b.connect(null))) !== 'open') throw new Error('B did not log in again');
    await b.receive('the queued text', (k, t) => t === 'while you were away' && k.id === late.key.id);
    log('B logged in again and received the queued text from the offline queue');
    await within(STEP_MS, 'B to confirm the queued text', (async () => {
      for (;;) {
        const rows = await relayedTo(info, b.device);
        if (!rows.some((r) => r.id === late.key.id && r.pending)) return;
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    })());
    log('B confirmed it; nothing left in its queue for that id');

    // The phones (device 0) are Signal peers too: each got its own copy of every text.
    for (const [phone, text] of [[PHONE_B, 'hello B, from A'], [PHONE_A, 'hi A, B here'], [PHONE_B, 'group hello from A']]) {
      const { messages } = await get(`${info.control_url}/inbox?jid=${phone}`);
      const bad = messages.find((m) => m.kind === 'undecryptable');
      if (bad) throw new Error(`${phone}'s phone could not decrypt ${bad.id}: ${bad.error}`);
      if (!messages.some((m) => m.text === text)) throw new Error(`${phone}'s phone lacks "${text}": ${JSON.stringify(messages)}`);
    }
    log('both phones decrypted their copies, DSMs included');

    const stats = await get(`${info.control_url}/stats`);
    log('sim stats', JSON.stringify(stats));
    if (!(stats.messages_relayed >= 5 && stats.receipts_relayed >= 1 && stats.usync_queries >= 1 && stats.bundle_fetches >= 2)) {
      throw new Error('the sim\'s counters do not show the relaying');
    }
    await a.disconnect();
    await b.disconnect();
    log('PASSED');
  } finally {
    clearTimeout(timer);
    sim.kill('SIGTERM');
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  }
}

main().then(() => process.exit(0), (e) => { log('FAILED:', e.message); process.exit(1); });
