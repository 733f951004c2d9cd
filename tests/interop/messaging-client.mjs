// What the interop scripts share: wa-sim started on loopback, its control API, a deadline
// helper, and a Baileys client that pairs through the sim's phone and collects the texts it
// receives. Our own test code (MIT); Baileys itself comes from the npm registry.
import { spawn } from 'node:child_process';
import { join, dirname } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import makeWASocket, { useMultiFileAuthState, DisconnectReason } from '@whiskeysockets/baileys';

const here = dirname(fileURLToPath(import.meta.url));
/** The wa-sim binary the scripts run. */
export const simBin = process.env.WA_SIM_BIN ?? join(here, '..', '..', 'target', 'debug', 'wa-sim');
/** The longest one step may take. */
export const STEP_MS = 30_000;

export const silent = { level: 'silent', child: () => silent, trace() {}, debug() {}, info() {}, warn() {}, error() {}, fatal() {} };

// --edge-latency-ms: see baileys-interop.mjs (Baileys switches to transport keys only after its
// ClientFinish write completes).
export function startSim() {
  const sim = spawn(simBin, ['--listen', '127.0.0.1:0', '--control', '127.0.0.1:0', '--edge-latency-ms', '100'], { stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    sim.on('error', reject);
    sim.on('exit', (code) => reject(new Error(`wa-sim exited early with ${code}`)));
    createInterface({ input: sim.stdout }).once('line', (line) => resolve({ sim, info: JSON.parse(line) }));
  });
}

export async function post(url, body) {
  const r = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const json = await r.json();
  if (!r.ok) throw new Error(`${url}: ${r.status} ${JSON.stringify(json)}`);
  return json;
}

export async function get(url) {
  const r = await fetch(url);
  const json = await r.json();
  if (!r.ok) throw new Error(`${url}: ${r.status} ${JSON.stringify(json)}`);
  return json;
}

export function within(ms, what, promise) {
  let timer;
  const timeout = new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms); });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

export const textOf = (m) => m.message?.conversation ?? m.message?.extendedTextMessage?.text;

// One Baileys client: its socket, the texts it received, and waiters for them.
export class Client {
  constructor(name, info, dir, log = () => {}) {
    this.name = name;
    this.log = log;
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
    // Saves run one after another; `flush()` waits for the last one.
    this.saving = Promise.resolve();
    sock.ev.on('creds.update', () => { this.saving = this.saving.then(saveCreds); });
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
    this.log(`${this.name} paired as ${this.device} and is online`);
  }

  async disconnect() {
    this.sock.end(undefined);
    await this.closed;
  }

  // Waits until every creds update so far is on disk.
  async flush() {
    await this.saving;
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

/** What the sim relayed to a companion device. */
export async function relayedTo(info, device) {
  return get(`${info.control_url}/relayed?jid=${encodeURIComponent(device)}`);
}
