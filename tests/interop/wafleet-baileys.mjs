// The real Baileys client (7.0.0-rc.9, libsignal 6.0.0) as a contact of a wafleet account,
// through wa-sim, on loopback only:
//   1. start wa-sim and the real supervisor (target/debug); add an account over the admin API and
//      let the sim's phone scan its QR; Baileys pairs with another phone;
//   2. Baileys sends the account a text (the first is a pkmsg): wafleet decrypts it and lists it;
//   3. wafleet sends Baileys a text through POST …/messages: Baileys decrypts it, and its
//      delivery receipt makes the message `delivered` in wafleet;
//   4. the supervisor restarts; both directions again, on the stored sessions;
//   5. a group with both: Baileys' group text (SKDM + skmsg) reaches wafleet, and wafleet's
//      (its own sender key) reaches Baileys, twice.
// Real libsignal decrypts what wafleet encrypts and wafleet decrypts what real libsignal
// encrypts. Exit 0 means every step happened; anything else prints why and exits 1.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { Client, STEP_MS, get, post, relayedTo, simBin, startSim, within } from './messaging-client.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const target = join(here, '..', '..', 'target', 'debug');
const supervisorBin = process.env.SUPERVISOR_BIN ?? join(target, 'supervisor');
const DEADLINE_MS = 150_000;
const PHONE_W = '15550007777';
const PHONE_B = '15550008888';
const TOKEN = 'interop-token';
const ACCOUNT = 'shop';


// The supervisor with JSON logs on a free port; resolves once it listens.
function startSupervisor(info, sessions) {
  const env = {
    ...process.env,
    WA_WS_URL: info.ws_url,
    WA_TRUST_ROOT: info.root_public_key,
    WA_VERSION_URL: '',
    ADMIN_TOKEN: TOKEN,
    SESSIONS_PATH: sessions,
    PORT: '0',
    BIND_ADDR: '127.0.0.1',
    LOG_FORMAT: 'json',
    BOOT_JITTER_MIN_MS: '0',
    BOOT_JITTER_MAX_MS: '0',
  };
  const child = spawn(supervisorBin, [], { env, stdio: ['ignore', 'ignore', 'pipe'] });
  const tail = [];
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('exit', (code) => reject(new Error(`supervisor exited early with ${code}:\n${tail.join('\n')}`)));
    createInterface({ input: child.stderr }).on('line', (line) => {
      tail.push(line);
      if (tail.length > 200) tail.shift();
      try {
        const event = JSON.parse(line);
        if ((event.fields?.message ?? event.message) === 'http listening') {
          child.removeAllListeners('exit');
          resolve({ child, base: `http://${event.fields?.addr ?? event.addr}`, tail });
        }
      } catch { /* not a JSON line */ }
    });
  });
}

async function stopSupervisor(sup) {
  const exited = new Promise((resolve) => sup.child.once('exit', resolve));
  sup.child.kill('SIGTERM');
  await within(15_000, 'the supervisor to stop', exited);
}

async function api(sup, method, path, body) {
  const r = await fetch(`${sup.base}${path}`, {
    method,
    headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const json = await r.json();
  return { status: r.status, json };
}

// Polls `probe` (which returns a value or undefined) until it yields, under STEP_MS.
async function until(what, probe) {
  return within(STEP_MS, what, (async () => {
    for (;;) {
      const value = await probe();
      if (value !== undefined) return value;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  })());
}

async function accountStatus(sup) {
  const { json } = await api(sup, 'GET', '/api/status/dashboard');
  return json.accounts?.find((a) => a.accountId === ACCOUNT);
}

async function inbox(sup) {
  const { json } = await api(sup, 'GET', `/api/whatsapp/accounts/${ACCOUNT}/messages?direction=in&limit=500`);
  return json.messages ?? [];
}

const log = (...args) => console.log('[wafleet-baileys]', ...args);



async function expectInbox(sup, what, match) {
  const found = await until(`wafleet to receive ${what}`, async () => (await inbox(sup)).find(match));
  log(`wafleet received ${what}:`, JSON.stringify({ id: found.id, chat: found.chat, from: found.from, type: found.type }));
  return found;
}

async function sendFromWafleet(sup, b, text) {
  const { status, json } = await api(sup, 'POST', `/api/whatsapp/accounts/${ACCOUNT}/messages`, { to: `+${PHONE_B}`, text });
  if (status !== 202) throw new Error(`send answered ${status}: ${JSON.stringify(json)}`);
  const id = json.message.id;
  const key = await b.receive(`wafleet's "${text}"`, (k, t) => t === text && k.id === id);
  log(`Baileys decrypted wafleet's "${text}" (id ${id}) in chat`, key.remoteJid);
  await until(`"${text}" to be delivered`, async () => {
    const { json: m } = await api(sup, 'GET', `/api/whatsapp/accounts/${ACCOUNT}/messages/${id}`);
    return ['delivered', 'read'].includes(m.message?.status) ? m : undefined;
  });
  log(`wafleet saw "${text}" delivered`);
}

async function main() {
  const { sim, info } = await startSim();
  const sessions = mkdtempSync(join(tmpdir(), 'wafleet-interop-'));
  const dirB = mkdtempSync(join(tmpdir(), 'baileys-contact-'));
  let sup;
  const timer = setTimeout(() => {
    log('FAILED: deadline passed');
    sup?.child.kill('SIGKILL');
    sim.kill('SIGKILL');
    process.exit(1);
  }, DEADLINE_MS);
  try {
    sup = await startSupervisor(info, sessions);
    log('supervisor at', sup.base, '; wa-sim at', info.ws_url);
    const added = await api(sup, 'POST', '/api/whatsapp/add-account', { name: 'Shop', accountId: ACCOUNT });
    if (added.status !== 201) throw new Error(`add-account answered ${added.status}`);
    const qr = await until('a QR', async () => {
      const { json } = await api(sup, 'GET', `/api/whatsapp/qr/${ACCOUNT}?format=json`);
      return json.qr ?? undefined;
    });
    await post(`${info.control_url}/scan`, { qr, phone: PHONE_W });
    await until('wafleet to connect', async () => ((await accountStatus(sup))?.status === 'connected' ? true : undefined));
    log('wafleet account connected as', PHONE_W);

    const b = new Client('Baileys', info, dirB, log);
    await within(STEP_MS, 'Baileys to pair', b.pair(PHONE_B));
    const jidW = `${PHONE_W}@s.whatsapp.net`;

    // Baileys -> wafleet: a pkmsg first.
    const first = await b.sock.sendMessage(jidW, { text: 'hello wafleet, Baileys here' });
    await expectInbox(sup, 'Baileys\' first text', (m) => m.id === first.key.id && m.text === 'hello wafleet, Baileys here');
    const rows = await get(`${info.control_url}/sessions`);
    const wDevice = rows.map((r) => r.jid).find((j) => j?.startsWith(`${PHONE_W}:`));
    if (wDevice) {
      const copy = (await relayedTo(info, wDevice)).find((r) => r.id === first.key.id);
      if (!copy?.encs.includes('pkmsg')) throw new Error(`the first message reached wafleet without a pkmsg: ${JSON.stringify(copy)}`);
      log('the first message was a pkmsg');
    }

    // wafleet -> Baileys.
    await sendFromWafleet(sup, b, 'hi Baileys, wafleet answering');

    // Restart wafleet: the sessions are on the volume.
    await stopSupervisor(sup);
    sup = await startSupervisor(info, sessions);
    await until('wafleet to reconnect', async () => ((await accountStatus(sup))?.status === 'connected' ? true : undefined));
    log('wafleet restarted and reconnected');
    const second = await b.sock.sendMessage(jidW, { text: 'still there after the restart?' });
    await expectInbox(sup, 'a text after the restart', (m) => m.id === second.key.id && m.text === 'still there after the restart?');
    await sendFromWafleet(sup, b, 'yes, after the restart');

    // A group: Baileys distributes its sender key pairwise, then sends the skmsg.
    const group = await post(`${info.control_url}/group`, { subject: 'wafleet interop', participants: [PHONE_W, PHONE_B], addressing_mode: 'lid' });
    const inGroup = await b.sock.sendMessage(group.jid, { text: 'group hello from Baileys' });
    await expectInbox(sup, 'Baileys\' group text', (m) => m.id === inGroup.key.id && m.chat === group.jid && m.text === 'group hello from Baileys');
    // wafleet's own sender key: its SKDM pairwise to Baileys, then the skmsg.
    for (const text of ['group hello from wafleet', 'and again, on the same key']) {
      const { status, json } = await api(sup, 'POST', `/api/whatsapp/accounts/${ACCOUNT}/messages`, { to: group.jid, text });
      if (status !== 202) throw new Error(`group send answered ${status}: ${JSON.stringify(json)}`);
      const key = await b.receive(`wafleet's group text "${text}"`, (k, t) => t === text && k.remoteJid === group.jid && k.id === json.message.id);
      log(`Baileys decrypted wafleet's group text "${text}" from`, key.participant);
    }

    await b.disconnect();
    log('OK: Baileys and wafleet exchanged 1:1 texts both ways (before and after a restart) and group texts both ways');
  } finally {
    clearTimeout(timer);
    if (sup) await stopSupervisor(sup).catch(() => sup.child.kill('SIGKILL'));
    sim.kill('SIGTERM');
    rmSync(sessions, { recursive: true, force: true });
    rmSync(dirB, { recursive: true, force: true });
  }
}

main().then(() => process.exit(0), (e) => {
  log('FAILED:', e.message);
  process.exit(1);
});
