// The sim's phones are Signal peers: a real Baileys client (7.0.0-rc.9) and a sim contact talk
// through wa-sim, on loopback only:
//   1. start wa-sim (target/debug/wa-sim); A pairs with its phone (POST /scan) and logs in;
//   2. a contact (a number with no account) sends A a text (POST /send, a pkmsg from the sim's
//      Signal layer); A decrypts it; A replies; the contact's phone decrypts the reply
//      (GET /inbox) and its delivery receipt reaches A; A's own phone decrypts the DSM copy;
//   3. a group made with POST /group (the contact and A): the contact sends (its own sender
//      key, SKDM pairwise, skmsg), A gets it; A sends, the contact's phone decrypts it.
// Exit 0 means every step happened; anything else prints why and exits 1.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client, STEP_MS, get, post, relayedTo, simBin, startSim, within } from './messaging-client.mjs';

const DEADLINE_MS = 120_000;
const PHONE_A = '15550001111';
const CONTACT = '15550009999';

const log = (...args) => console.log('[phone]', ...args);

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
    const a = new Client('A', info, dirs[0], log);
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
