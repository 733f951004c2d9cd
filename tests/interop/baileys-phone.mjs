// The sim's phones are Signal peers: a real Baileys client (7.0.0-rc.9) and a sim contact talk
// through wa-sim, on loopback only:
//   1. start wa-sim (target/debug/wa-sim); A pairs with its phone (POST /scan) and logs in;
//   2. a contact (a number with no account) sends A a text (POST /send, a pkmsg from the sim's
//      Signal layer); A decrypts it; A replies; the contact's phone decrypts the reply
//      (GET /inbox) and its delivery receipt reaches A; A's own phone decrypts the DSM copy;
//   3. a group made with POST /group (the contact and A): the contact sends (its own sender
//      key, SKDM pairwise, skmsg), A gets it; A sends, the contact's phone decrypts it.
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
const DEADLINE_MS = 120_000;
const STEP_MS = 30_000;
const PHONE_A = '15550001111';
const CONTACT = '15550009999';

const silent = { level: 'silent', child: () => silent, trace() {}, debug() {}, info() {}, warn() {}, error() {}, fatal() {} };
const log = (...args) => console.log('[phone]', ...args);

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

async function inboxOf(info, who) {
  return get(`${info.control_url}/inbox?jid=${encodeURIComponent(who)}`);
}

// Resolves with the first inbox row of `who` that `match` accepts, polling under STEP_MS.
async function inboxRow(info, who, what, match) {
  return within(STEP_MS, what, (async () => {
    for (;;) {
      const { messages } = await inboxOf(info, who);
      const bad = messages.find((m) => m.kind === 'undecryptable');
      if (bad) throw new Error(`${who}'s phone could not decrypt ${bad.id}: ${bad.error}`);
      const row = messages.find(match);
      if (row) return row;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  })());
}

async function main() {
  const { sim, info } = await startSim();
  const dirs = [mkdtempSync(join(tmpdir(), 'baileys-a-'))];
  const timer = setTimeout(() => { log('FAILED: deadline passed'); sim.kill('SIGKILL'); process.exit(1); }, DEADLINE_MS);
  try {
    log('wa-sim at', info.ws_url);
    const a = new Client('A', info, dirs[0]);
    await within(STEP_MS, 'A to pair', a.pair(PHONE_A));

    // The contact writes first: the sim's Signal layer builds a session from A's bundle.
    const sent = await post(`${info.control_url}/send`, { from: CONTACT, to: PHONE_A, text: 'hello A, from a contact' });
    const keyAtA = await a.receive('the contact\'s text', (k, t) => t === 'hello A, from a contact' && k.id === sent.id);
    log('A received the contact\'s text in chat', keyAtA.remoteJid);

    const reply = await a.sock.sendMessage(keyAtA.remoteJid, { text: 'hi contact, A here' });
    const atContact = await inboxRow(info, CONTACT, 'the contact\'s phone to decrypt A\'s reply', (m) => m.id === reply.key.id);
    if (atContact.text !== 'hi contact, A here' || atContact.kind !== 'text') throw new Error(`bad inbox row ${JSON.stringify(atContact)}`);
    log('the contact\'s phone decrypted A\'s reply from', atContact.from);
    const dsm = await inboxRow(info, PHONE_A, 'A\'s phone to decrypt the DSM of A\'s reply', (m) => m.id === reply.key.id);
    if (dsm.kind !== 'dsm' || dsm.text !== 'hi contact, A here') throw new Error(`bad DSM row ${JSON.stringify(dsm)}`);
    log('A\'s phone decrypted the DSM copy for chat', dsm.chat);
    await within(STEP_MS, 'A\'s receipt for the contact\'s text', (async () => {
      for (;;) {
        const { receipts } = await inboxOf(info, CONTACT);
        if (receipts.some((r) => r.id === sent.id)) return;
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    })());
    log('the contact\'s phone got A\'s receipt');

    // Group: the contact's sender key to Baileys, Baileys' sender key to the contact.
    const group = await post(`${info.control_url}/group`, { subject: 'wa-sim phone', participants: [CONTACT, PHONE_A], addressing_mode: 'lid' });
    log('group created:', group.jid);
    await post(`${info.control_url}/send`, { from: CONTACT, to: group.jid, text: 'group hello from the contact' });
    const inGroupA = await a.receive('the contact\'s group text', (k, t) => t === 'group hello from the contact' && k.remoteJid === group.jid);
    log('A received the contact\'s group text from', inGroupA.participant);
    const fromA = await a.sock.sendMessage(group.jid, { text: 'group hello from A' });
    const inGroup = await inboxRow(info, CONTACT, 'the contact\'s phone to decrypt A\'s group text', (m) => m.id === fromA.key.id);
    if (inGroup.text !== 'group hello from A' || inGroup.chat !== group.jid) throw new Error(`bad group row ${JSON.stringify(inGroup)}`);
    log('the contact\'s phone decrypted A\'s group text (skmsg)');

    await a.disconnect();
    log('PASSED');
  } finally {
    clearTimeout(timer);
    sim.kill('SIGTERM');
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  }
}

main().then(() => process.exit(0), (e) => { log('FAILED:', e.message); process.exit(1); });
