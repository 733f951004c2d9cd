// Two real Baileys clients (7.0.0-rc.9) message each other through wa-sim, on loopback only:
//   1. start wa-sim (target/debug/wa-sim); A and B pair with two phones (POST /scan) and log in;
//   2. A sends B a text (the first is a pkmsg); B gets the plaintext; B replies and A gets it;
//   3. a group made with POST /group: A sends, B gets it; B sends, A gets it;
//   4. B goes offline, A sends, B logs in again and gets it from the offline queue;
//   5. the sim's phones (device 0, Signal peers) decrypted their copies (GET /inbox).
// The sim relays: every plaintext below was encrypted by one Baileys and decrypted by the other. Exit 0 means every step happened; anything else prints why and exits 1.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client, STEP_MS, get, post, relayedTo, simBin, startSim, within } from './messaging-client.mjs';

const DEADLINE_MS = 120_000;
const PHONE_A = '15550001111';
const PHONE_B = '15550002222';

const log = (...args) => console.log('[messaging]', ...args);


async function main() {
  const { sim, info } = await startSim();
  const dirs = [mkdtempSync(join(tmpdir(), 'baileys-a-')), mkdtempSync(join(tmpdir(), 'baileys-b-'))];
  const timer = setTimeout(() => { log('FAILED: deadline passed'); sim.kill('SIGKILL'); process.exit(1); }, DEADLINE_MS);
  try {
    log('wa-sim at', info.ws_url);
    const a = new Client('A', info, dirs[0], log);
    const b = new Client('B', info, dirs[1], log);
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
