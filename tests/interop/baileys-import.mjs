// Moving from the Node.js backend without a QR: a real Baileys client's auth folder (7.0.0-rc.9,
// libsignal 6.0.0) imported with `supervisor import baileys`, through wa-sim, on loopback only:
//   1. start wa-sim; Baileys pairs with a multi-file auth folder (`<tmp>/baileys_auth/shop`, the
//      seed's layout) through the sim's phone;
//   2. a contact (the sim's phone of another number) and Baileys exchange texts both ways, 1:1
//      and in a group (each side's sender key);
//   3. Baileys stops; the real supervisor, started beside the folder, logs the command that
//      imports it; `supervisor import baileys <tmp>/baileys_auth` writes the account (sealed
//      under SESSIONS_KEY) while the supervisor runs;
//   4. the supervisor restarts against the same sim: the account reaches `connected` and is
//      never asked for a QR;
//   5. the contact writes again: wafleet decrypts it over the imported session (a `msg`, not a
//      new `pkmsg`), and its group text over the imported sender key; wafleet answers and the
//      contact's phone decrypts it;
//   6. the auth folder is byte for byte what Baileys left (hash before and after).
// Exit 0 means every step happened; anything else prints why and exits 1.
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { Client, STEP_MS, get, post, relayedTo, startSim, within } from './messaging-client.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const target = join(here, '..', '..', 'target', 'debug');
const supervisorBin = process.env.SUPERVISOR_BIN ?? join(target, 'supervisor');
const DEADLINE_MS = 150_000;
const PHONE_W = '15550006666';
const CONTACT = '15550009999';
const TOKEN = 'interop-token';
const ACCOUNT = 'shop';
const SESSIONS_KEY = '00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff';

const log = (...args) => console.log('[baileys-import]', ...args);

// Names, sizes, modes, mtimes and contents of every file under `dir`.
function hashTree(dir) {
  const h = createHash('sha256');
  for (const name of readdirSync(dir).sort()) {
    const path = join(dir, name);
    const st = statSync(path);
    h.update(`${name}|${st.mode}|${st.size}|${st.mtimeMs}|`);
    if (st.isDirectory()) h.update(hashTree(path));
    else h.update(readFileSync(path));
  }
  return h.digest('hex');
}

function supervisorEnv(info, sessions) {
  return {
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
    // Both the import and the supervisor seal: the import writes what the worker reads.
    SESSIONS_KEY: SESSIONS_KEY,
  };
}

// The supervisor with JSON logs on a free port; resolves once it listens.
function startSupervisor(info, sessions) {
  const child = spawn(supervisorBin, [], { env: supervisorEnv(info, sessions), stdio: ['ignore', 'ignore', 'pipe'] });
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
  return { status: r.status, json: await r.json() };
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

// The first inbox row of the sim phone `who` that `match` accepts; an undecryptable row fails.
async function phoneInboxRow(info, who, what, match) {
  return until(what, async () => {
    const { messages } = await get(`${info.control_url}/inbox?jid=${encodeURIComponent(who)}`);
    const bad = messages.find((m) => m.kind === 'undecryptable');
    if (bad) throw new Error(`${who}'s phone could not decrypt ${bad.id}: ${bad.error}`);
    return messages.find(match);
  });
}

async function wafleetInbox(sup, what, match) {
  return until(`wafleet to receive ${what}`, async () => {
    const { json } = await api(sup, 'GET', `/api/whatsapp/accounts/${ACCOUNT}/messages?direction=in&limit=500`);
    return (json.messages ?? []).find(match);
  });
}

async function main() {
  const { sim, info } = await startSim();
  const root = mkdtempSync(join(tmpdir(), 'wafleet-import-'));
  const authParent = join(root, 'baileys_auth');
  const auth = join(authParent, ACCOUNT);
  const sessions = join(root, 'sessions');
  mkdirSync(auth, { recursive: true });
  let sup;
  const timer = setTimeout(() => {
    log('FAILED: deadline passed');
    sup?.child.kill('SIGKILL');
    sim.kill('SIGKILL');
    process.exit(1);
  }, DEADLINE_MS);
  try {
    log('wa-sim at', info.ws_url);
    // 1-2. The Node.js backend's life: pair, then talk with a contact, 1:1 and in a group.
    const a = new Client('Baileys', info, auth, log);
    await within(STEP_MS, 'Baileys to pair', a.pair(PHONE_W));
    const device = a.device;
    const first = await post(`${info.control_url}/send`, { from: CONTACT, to: PHONE_W, text: 'hello shop, a customer here' });
    const key = await a.receive('the contact\'s text', (k, t) => t === 'hello shop, a customer here' && k.id === first.id);
    const reply = await a.sock.sendMessage(key.remoteJid, { text: 'hello customer, the shop (on Baileys)' });
    await phoneInboxRow(info, CONTACT, 'the contact to decrypt Baileys\' reply', (m) => m.id === reply.key.id && m.text === 'hello customer, the shop (on Baileys)');
    const second = await post(`${info.control_url}/send`, { from: CONTACT, to: PHONE_W, text: 'thanks!' });
    await a.receive('the contact\'s second text', (k, t) => t === 'thanks!' && k.id === second.id);
    log('Baileys and the contact exchanged texts both ways');
    const group = await post(`${info.control_url}/group`, { subject: 'shop customers', participants: [CONTACT, PHONE_W], addressing_mode: 'lid' });
    await post(`${info.control_url}/send`, { from: CONTACT, to: group.jid, text: 'group hello from the contact' });
    await a.receive('the contact\'s group text', (k, t) => t === 'group hello from the contact' && k.remoteJid === group.jid);
    const fromA = await a.sock.sendMessage(group.jid, { text: 'group hello from the shop (on Baileys)' });
    await phoneInboxRow(info, CONTACT, 'the contact to decrypt Baileys\' group text', (m) => m.id === fromA.key.id);
    log('and in a group, each with its own sender key');
    await a.flush();
    await a.disconnect();
    await a.flush();
    log('Baileys stopped');

    // 3. The supervisor, already running, names the folder and the command; the import runs
    //    beside it, and the account appears at the supervisor's next start.
    const before = hashTree(authParent);
    sup = await startSupervisor(info, sessions);
    const hint = await until('the boot hint', async () => sup.tail
      .map((line) => { try { return JSON.parse(line); } catch { return undefined; } })
      .find((e) => (e?.fields?.message ?? e?.message ?? '').includes('not imported yet')));
    const command = hint.fields?.command ?? hint.command;
    if (!command?.startsWith('supervisor import baileys ') || !command.endsWith('baileys_auth')) throw new Error(`bad boot hint ${JSON.stringify(hint)}`);
    log('the supervisor said:', hint.fields?.message ?? hint.message, '->', command);
    const imported = spawnSync(supervisorBin, ['import', 'baileys', authParent], {
      env: supervisorEnv(info, sessions),
      encoding: 'utf8',
    });
    if (imported.status !== 0) throw new Error(`import exited with ${imported.status}:\n${imported.stdout}${imported.stderr}`);
    log('import said:\n' + imported.stdout.trimEnd());
    if (!imported.stdout.includes(`imported ${ACCOUNT} `)) throw new Error('the import did not name the account');
    if (!imported.stdout.includes('a supervisor is running')) throw new Error('the import did not say a supervisor runs');
    if (imported.stdout.includes(PHONE_W)) throw new Error('the import printed the phone number unmasked');
    const creds = readFileSync(join(sessions, ACCOUNT, 'creds.json'));
    if (creds.subarray(0, 4).toString() !== 'WFS1') throw new Error('creds.json is not sealed under SESSIONS_KEY');

    // 4. At its next start wafleet logs in with the imported identity, never asking for a QR.
    await stopSupervisor(sup);
    sup = await startSupervisor(info, sessions);
    log('supervisor restarted at', sup.base);
    if (sup.tail.some((line) => line.includes('not imported yet'))) throw new Error('the boot hint is still there after the import');
    await until('wafleet to connect without a QR', async () => {
      const { json } = await api(sup, 'GET', '/api/status/dashboard');
      const row = json.accounts?.find((r) => r.accountId === ACCOUNT);
      if (row?.status === 'needs_qr' || row?.needsQR) throw new Error(`the imported account asks for a QR: ${JSON.stringify(row)}`);
      return row?.status === 'connected' ? row : undefined;
    });
    log('wafleet connected as the Baileys device', device);

    // 5. The contact writes over the existing session; wafleet decrypts it.
    const after = await post(`${info.control_url}/send`, { from: CONTACT, to: PHONE_W, text: 'are you still there?' });
    const got = await wafleetInbox(sup, 'the contact\'s text', (m) => m.id === after.id && m.text === 'are you still there?');
    log('wafleet decrypted the contact\'s text from', got.from);
    const copy = (await relayedTo(info, device)).find((r) => r.id === after.id);
    if (!copy) throw new Error(`the sim did not relay ${after.id} to ${device}`);
    if (copy.encs.includes('pkmsg') || !copy.encs.includes('msg')) throw new Error(`expected a msg over the existing session, got ${JSON.stringify(copy.encs)}`);
    log('it came as a msg over the imported session, not a new pkmsg');

    const { status, json } = await api(sup, 'POST', `/api/whatsapp/accounts/${ACCOUNT}/messages`, { to: `+${CONTACT}`, text: 'yes, now on wafleet' });
    if (status !== 202) throw new Error(`send answered ${status}: ${JSON.stringify(json)}`);
    const row = await phoneInboxRow(info, CONTACT, 'the contact to decrypt wafleet\'s text', (m) => m.id === json.message.id);
    if (row.text !== 'yes, now on wafleet') throw new Error(`bad inbox row ${JSON.stringify(row)}`);
    log('the contact decrypted wafleet\'s answer');

    await post(`${info.control_url}/send`, { from: CONTACT, to: group.jid, text: 'group, after the move' });
    const inGroup = await wafleetInbox(sup, 'the contact\'s group text', (m) => m.chat === group.jid && m.text === 'group, after the move');
    const groupCopy = (await relayedTo(info, device)).find((r) => r.id === inGroup.id);
    log('wafleet decrypted the contact\'s group text', groupCopy ? `(${groupCopy.encs.join('+')})` : '');

    // 6. The source is untouched.
    if (hashTree(authParent) !== before) throw new Error('the Baileys folder changed during the import or after');
    log('the Baileys folder is unchanged');
    log('OK: the Baileys account moved to wafleet without a QR and kept its sessions');
  } finally {
    clearTimeout(timer);
    if (sup) await stopSupervisor(sup).catch(() => sup.child.kill('SIGKILL'));
    sim.kill('SIGTERM');
    rmSync(root, { recursive: true, force: true });
  }
}

main().then(() => process.exit(0), (e) => {
  log('FAILED:', e.message);
  process.exit(1);
});
