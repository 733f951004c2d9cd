// The peer in fleet-bench's side-by-side row: N real Baileys clients (7.0.0-rc.9) in one Node
// process against a wa-sim that fleet-bench started (loopback only). Two runs, as a Baileys
// backend lives them:
//   MODE=pair   pair N clients, each with its own phone and auth folder (POST /scan), then exit;
//   MODE=serve  a fresh process logs all N in again with their saved creds at once, as a
//               restarted Baileys backend does, times it until every one is open, prints one JSON
//               line `{"ready":true,"pid":…,"accounts":N,"connect_all_ms":…}` on stdout and stays
//               online until SIGTERM, while fleet-bench reads its memory and CPU.
// Settings come from the environment: MODE, SIM_WS_URL, SIM_CONTROL_URL, ACCOUNTS, PHONE_BASE
// (the first phone number; the others follow it), AUTH_DIR. A wss:// sim needs
// NODE_EXTRA_CA_CERTS. Any failure prints `{"error":…}` and exits 1.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { Client, STEP_MS, within } from './messaging-client.mjs';

const info = { ws_url: process.env.SIM_WS_URL, control_url: process.env.SIM_CONTROL_URL };
const accounts = Number(process.env.ACCOUNTS ?? '30');
const phoneBase = BigInt(process.env.PHONE_BASE ?? '15557000000');
const authDir = process.env.AUTH_DIR;

async function main() {
  const mode = process.env.MODE;
  if (!info.ws_url || !info.control_url || !authDir || !(accounts > 0) || !['pair', 'serve'].includes(mode)) {
    throw new Error('MODE (pair|serve), SIM_WS_URL, SIM_CONTROL_URL, AUTH_DIR and ACCOUNTS > 0 are required');
  }
  const clients = [];
  for (let i = 0; i < accounts; i += 1) {
    const dir = join(authDir, `client-${i}`);
    mkdirSync(dir, { recursive: true });
    clients.push(new Client(`baileys-${i}`, info, dir));
  }
  if (mode === 'pair') {
    for (const [i, client] of clients.entries()) {
      await within(STEP_MS, `client ${i} to pair`, client.pair(String(phoneBase + BigInt(i))));
    }
    await Promise.all(clients.map((c) => c.disconnect()));
    await Promise.all(clients.map((c) => c.flush()));
    console.log(JSON.stringify({ paired: accounts }));
    process.exit(0);
  }
  const start = performance.now();
  const outcomes = await within(STEP_MS * 2, 'every client to log in again', Promise.all(clients.map((c) => c.connect(null))));
  const connectAllMs = Math.round(performance.now() - start);
  if (outcomes.some((o) => o !== 'open')) throw new Error(`not every client opened: ${outcomes.join(',')}`);
  console.log(JSON.stringify({ ready: true, pid: process.pid, accounts, connect_all_ms: connectAllMs }));
  process.on('SIGTERM', () => {
    for (const c of clients) c.sock.end(undefined);
    process.exit(0);
  });
}

main().catch((e) => {
  console.log(JSON.stringify({ error: e.message }));
  process.exit(1);
});
