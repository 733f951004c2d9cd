// The dashboard in a real browser: Debian's headless Chromium, driven over CDP by playwright-core
// (no browser download), against the real debug binaries on loopback:
//   1. start wa-sim and the supervisor (ports bound to 0, read from their output); two accounts
//      made over the API for company: one left waiting for its QR, one paired then taken over
//      (`conflict`, with its error text);
//   2. log in through /login; add an account from the page; its QR shows on the page;
//   3. the sim's phone scans the QR read from the page's DOM; the row turns `connected` without
//      a reload (a marker on `window` survives), problems stay first, and the account's events
//      panel shows the change and a message the sim sent;
//   4. a pairing code (ABCD-EFGH) and a test message from the panel show their answers;
//   5. at 390 px the page does not scroll sideways, rows become cards;
//   6. log out from the page through its confirmation dialog: the row turns `logged_out`;
//   7. restart takes the florist back (`connected`); delete, cancelled once then confirmed,
//      removes the bakery; with the session gone, the next action leads to /login.
// Screenshots go to target/browser-screenshots/ (printed). Every wait has a deadline; every
// process (sim, supervisor, browser and its children) is killed by pid at the end, also on
// failure. Exit 0 means every step happened; anything else prints why and exits 1.
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '..', '..');
const target = join(root, 'target', 'debug');
const simBin = process.env.WA_SIM_BIN ?? join(target, 'wa-sim');
const supervisorBin = process.env.SUPERVISOR_BIN ?? join(target, 'supervisor');
const chromiumBin = process.env.CHROMIUM_BIN ?? '/usr/bin/chromium';
const shots = process.env.SCREENSHOT_DIR ?? join(root, 'target', 'browser-screenshots');
const TOKEN = 'browser-test-token';
const DEADLINE_MS = 150_000;
const STEP_MS = 30_000;
const PHONE_SHOP = '15550001111';
const PHONE_FLORIST = '15550003333';
const PHONE_FRIEND = '15550002222';
const CHROMIUM_FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

const log = (...args) => console.log('[browser]', ...args);
const children = [];

// A process whose first matching output line resolves `ready`; killed by pid (its group) at exit.
function start(name, bin, args, env, stream, isReady) {
  const child = spawn(bin, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  children.push({ name, child });
  const tail = [];
  const ready = new Promise((resolveReady, reject) => {
    child.on('error', reject);
    child.on('exit', (code, signal) => reject(new Error(`${name} exited early (${code ?? signal}):\n${tail.join('\n')}`)));
    for (const [which, input] of [['stdout', child.stdout], ['stderr', child.stderr]]) {
      createInterface({ input }).on('line', (line) => {
        tail.push(line);
        if (tail.length > 100) tail.shift();
        if (which !== stream) return;
        const value = isReady(line);
        if (value !== undefined) resolveReady(value);
      });
    }
  });
  return { child, ready, tail };
}

// Ends every process still running: SIGTERM first (Chromium then reaps its own renderers),
// SIGKILL to each one's process group after a deadline, and waits until each is reaped.
async function killAll() {
  const running = children.filter(({ child }) => child.exitCode === null && child.signalCode === null);
  const exits = running.map(({ child }) => new Promise((r) => child.once('exit', r)));
  for (const { child } of running) {
    try { process.kill(child.pid, 'SIGTERM'); } catch { /* gone */ }
  }
  await within(5_000, 'the processes to stop', Promise.all(exits)).catch(() => {});
  for (const { child } of children) {
    // Each was spawned as its own process group: whatever is left of it goes too.
    try { process.kill(-child.pid, 'SIGKILL'); } catch { /* the group is gone */ }
  }
  await within(5_000, 'the processes to be reaped', Promise.all(exits)).catch((e) => log(e.message));
}

async function stopSupervisor(sup) {
  if (sup.child.exitCode !== null || sup.child.signalCode !== null) return;
  const exited = new Promise((r) => sup.child.once('exit', r));
  sup.child.kill('SIGTERM');
  await within(15_000, 'the supervisor to stop', exited);
}

function within(ms, what, promise) {
  let timer;
  const timeout = new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms); });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

async function call(method, url, body, headers = {}) {
  const r = await fetch(url, {
    method,
    headers: { 'content-type': 'application/json', ...headers },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const json = await r.json().catch(() => null);
  if (!r.ok) throw new Error(`${method} ${url}: ${r.status} ${JSON.stringify(json)}`);
  return json;
}

// The API with the admin token, for the accounts the page does not make itself.
const admin = (base, method, path, body) => call(method, `${base}${path}`, body, { authorization: `Bearer ${TOKEN}` });

// Polls the API under a deadline (set-up only: the page itself is checked through the DOM).
async function until(what, probe) {
  return within(STEP_MS, what, (async () => {
    for (;;) {
      const value = await probe();
      if (value !== undefined) return value;
      await new Promise((r) => setTimeout(r, 100));
    }
  })());
}

async function statusOf(base, id) {
  const d = await admin(base, 'GET', '/api/status/dashboard');
  return d.accounts.find((a) => a.accountId === id);
}

// The whole page at phone width. A full-page screenshot would lay the page out again without
// its scrollbar and crop it to the width measured with one; a viewport as tall as the page
// shows what a phone shows.
async function tall(page, file) {
  const size = page.viewportSize();
  const height = await page.evaluate(() => document.documentElement.scrollHeight);
  await page.setViewportSize({ width: size.width, height });
  await page.screenshot({ path: file });
  await page.setViewportSize(size);
}

async function main() {
  mkdirSync(shots, { recursive: true });
  const sessions = mkdtempSync(join(tmpdir(), 'wafleet-browser-'));
  const profile = mkdtempSync(join(tmpdir(), 'wafleet-chromium-'));
  const timer = setTimeout(() => { log(`FAILED: the ${DEADLINE_MS} ms deadline passed`); killAll().then(() => process.exit(1)); }, DEADLINE_MS);
  let sup;
  let browser;
  let page;
  try {
    const sim = start('wa-sim', simBin, ['--listen', '127.0.0.1:0', '--control', '127.0.0.1:0'], {}, 'stdout',
      (line) => { try { return JSON.parse(line); } catch { return undefined; } });
    const info = await within(STEP_MS, 'wa-sim to start', sim.ready);
    const control = info.control_url;
    sup = start('supervisor', supervisorBin, [], {
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
    }, 'stderr', (line) => {
      try {
        const e = JSON.parse(line);
        if ((e.fields?.message ?? e.message) === 'http listening') return `http://${e.fields?.addr ?? e.addr}`;
      } catch { /* not a JSON line */ }
      return undefined;
    });
    const base = await within(STEP_MS, 'the supervisor to listen', sup.ready);
    log('supervisor at', base, '; wa-sim at', info.ws_url);

    // Company for the shop: one account waiting for its QR, one taken over by another client.
    await admin(base, 'POST', '/api/whatsapp/add-account', { name: 'Bakery Lisbon', accountId: 'bakery' });
    await admin(base, 'POST', '/api/whatsapp/add-account', { name: 'Florist Madrid', accountId: 'florist' });
    const floristQr = await until('a QR for the florist', async () => (await admin(base, 'GET', '/api/whatsapp/qr/florist?format=json')).qr ?? undefined);
    const paired = await call('POST', `${control}/scan`, { qr: floristQr, phone: PHONE_FLORIST });
    await until('the florist to connect', async () => ((await statusOf(base, 'florist'))?.status === 'connected' ? true : undefined));
    await call('POST', `${control}/conflict`, { jid: paired.jid });
    await until('the florist to be taken over', async () => ((await statusOf(base, 'florist'))?.status === 'conflict' ? true : undefined));
    log('company: bakery waits for its QR, florist is in conflict');

    // The browser: Debian's Chromium with a fresh profile, driven over CDP.
    const chrome = start('chromium', chromiumBin, [...CHROMIUM_FLAGS, `--user-data-dir=${profile}`, '--remote-debugging-port=0', 'about:blank'],
      {}, 'stderr', (line) => /DevTools listening on (ws:\/\/\S+)/.exec(line)?.[1]);
    const endpoint = await within(STEP_MS, 'Chromium to listen for DevTools', chrome.ready);
    browser = await within(STEP_MS, 'the CDP connection', chromium.connectOverCDP(endpoint));
    log('browser:', browser.version());
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    context.setDefaultTimeout(STEP_MS);
    page = await context.newPage();
    const problems = [];
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
    page.on('console', (m) => {
      // A 4xx the page shows as text is a "failed to load" console line; anything else is not ours.
      if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) problems.push(`console: ${m.text()}`);
    });

    // Log in through /login.
    await page.goto(`${base}/`);
    if (!page.url().startsWith(`${base}/login`)) throw new Error(`without a session / should lead to /login, not ${page.url()}`);
    await page.getByLabel('Admin token').fill(TOKEN);
    await Promise.all([page.waitForURL(`${base}/`), page.getByRole("button", { name: "Log in" }).click()]).catch(async (e) => { throw new Error(`${e.message}\n${await page.content()}`); });
    await page.locator('#live', { hasText: 'live' }).waitFor();
    await page.locator('tbody.acct[data-id="florist"][data-status="conflict"]').waitFor();
    log('logged in; the page is live');
    // From here on the page must never load again: the marker lives as long as this document.
    await page.evaluate(() => { window.wafleetMarker = 'same document'; });
    let navigations = 0;
    page.on('framenavigated', (f) => { if (f === page.mainFrame()) navigations++; });

    // Add an account from the page; its QR shows there.
    await page.getByLabel('Account name').fill('Shop Berlin');
    await page.getByRole('button', { name: 'Add account' }).click();
    const body = page.locator('tbody.acct', { has: page.locator('.name', { hasText: 'Shop Berlin' }) });
    await body.waitFor();
    const id = await body.getAttribute('data-id');
    const figure = body.locator('figure.qr');
    await body.locator('figure.qr:not([data-qr=""]) img').waitFor({ state: 'visible' });
    await page.waitForFunction((sel) => document.querySelector(sel)?.naturalWidth > 0, `tbody[data-id="${id}"] figure.qr img`);
    const qr = await figure.getAttribute('data-qr');
    log(`account ${id} added from the page; its QR shows (${qr.slice(0, 12)}…)`);
    await page.screenshot({ path: join(shots, '2-qr-shown.png'), fullPage: true });

    // The sim's phone scans the QR the page shows.
    await call('POST', `${control}/scan`, { qr, phone: PHONE_SHOP });
    await page.locator(`tbody[data-id="${id}"][data-status="connected"]`).waitFor();
    const marker = await page.evaluate(() => window.wafleetMarker);
    if (marker !== 'same document' || navigations !== 0) throw new Error(`the page reloaded (marker ${marker}, ${navigations} navigations)`);
    log('the row turned connected without a reload');
    await body.locator('li[data-type="account.status"]', { hasText: 'connected' }).waitFor();
    await call('POST', `${control}/send`, { from: PHONE_FRIEND, to: PHONE_SHOP, text: 'Hello shop, are you open?' });
    await body.locator('li[data-type="message.received"]', { hasText: 'Hello shop, are you open?' }).waitFor();
    log('its events panel shows the change and an incoming message');

    // Problems first: the connected shop sorts after the two that need attention.
    const order = await page.locator('tbody.acct:not([hidden])').evaluateAll((bs) => bs.map((b) => `${b.dataset.id}:${b.dataset.status}`));
    if (order[order.length - 1] !== `${id}:connected`) throw new Error(`problems are not first: ${order.join(', ')}`);
    const conflictText = await page.locator('tbody[data-id="florist"] td.why').innerText();
    if (!/another client/i.test(conflictText)) throw new Error(`the conflict row does not say what happened: ${conflictText}`);
    await page.getByLabel('Filter', { exact: true }).fill('bakery');
    await page.waitForFunction(() => [...document.querySelectorAll('tbody.acct')].filter((b) => !b.hidden).map((b) => b.dataset.id).join() === 'bakery');
    await page.getByLabel('Filter', { exact: true }).fill('');
    await page.getByLabel('Sort by').selectOption('name');
    await page.waitForFunction(() => document.querySelector('tbody.acct')?.dataset.id === 'bakery');
    await page.getByLabel('Sort by').selectOption('urgency');
    log('order:', order.join(', '), '; the filter and the sort work');

    // A pairing code for the bakery, shown as ABCD-EFGH, and a test message.
    const bakery = page.locator('tbody[data-id="bakery"]');
    await bakery.getByRole('button', { name: 'Manage' }).click();
    await bakery.getByLabel('Phone number of the account').fill('+351 912 345 678');
    await bakery.getByRole('button', { name: 'Get pairing code' }).click();
    const pairOut = bakery.locator('form.pair output');
    await page.waitForFunction((el) => el.textContent && el.textContent !== 'asking\u2026', await pairOut.elementHandle());
    const pairAnswer = await pairOut.innerText();
    if (!/\b[1-9A-HJ-NP-TV-Z]{4}-[1-9A-HJ-NP-TV-Z]{4}\b/.test(pairAnswer)) {
      throw new Error(`the page shows no pairing code (ABCD-EFGH): ${pairAnswer}`);
    }
    log('pairing code answer:', pairAnswer);
    await bakery.getByRole('button', { name: 'Manage' }).click();
    await body.getByLabel('To (phone number or JID)').fill(`+${PHONE_FRIEND}`);
    await body.getByRole('button', { name: 'Send test message' }).click();
    const sendOut = body.locator('form.send output');
    await sendOut.filter({ hasText: /^(queued|sent|delivered|read) \(id / }).waitFor();
    log('test message:', await sendOut.innerText());
    // Its status moves on live, in the form and in the events panel.
    await sendOut.filter({ hasText: /^(sent|delivered|read) \(id / }).waitFor();
    await body.locator('li[data-type="message.status"]').first().waitFor();
    log('test message, live:', await sendOut.innerText());
    await page.screenshot({ path: join(shots, '3-connected-events.png'), fullPage: true });
    await body.getByRole('button', { name: 'Manage' }).click();
    await page.screenshot({ path: join(shots, '1-desktop-dashboard.png'), fullPage: true });

    // At phone width: no sideways scroll, rows as cards, with a panel open too.
    const phone = await context.newPage();
    await phone.setViewportSize({ width: 390, height: 844 });
    phone.on('pageerror', (e) => problems.push(`page error (390 px): ${e.message}`));
    phone.on('console', (m) => { if (m.type() === 'error') problems.push(`console (390 px): ${m.text()}`); });
    await phone.goto(`${base}/`);
    await phone.locator('#live', { hasText: 'live' }).waitFor();
    await phone.locator(`tbody[data-id="${id}"][data-status="connected"]`).waitFor();
    const wide = async (what) => {
      const w = await phone.evaluate(() => document.scrollingElement.scrollWidth);
      if (w > 390) throw new Error(`at 390 px the page is ${w} px wide (${what})`);
      return w;
    };
    await wide('the list');
    await tall(phone, join(shots, '4-phone-390.png'));
    await phone.locator(`tbody[data-id="${id}"]`).getByRole('button', { name: 'Manage' }).click();
    await phone.locator(`tbody[data-id="${id}"] li[data-type="account.status"]`).first().waitFor();
    log(`at 390 px: ${await wide('a panel open')} px wide, no sideways scroll`);
    await tall(phone, join(shots, '5-phone-390-panel.png'));
    await phone.close();

    // Log out from the page, through its confirmation.
    await body.getByRole('button', { name: 'Manage' }).click();
    await body.getByRole('button', { name: 'Log out\u2026' }).click();
    const dialog = page.locator('dialog#confirm');
    await dialog.waitFor({ state: 'visible' });
    const question = await dialog.innerText();
    if (!question.includes(id)) throw new Error(`the confirmation does not name the account: ${question}`);
    await dialog.getByRole('button', { name: 'Log out' }).click();
    await page.locator(`tbody[data-id="${id}"][data-status="logged_out"]`).waitFor();
    await body.locator('li[data-type="account.status"]', { hasText: 'logged_out' }).waitFor();
    if (await page.evaluate(() => window.wafleetMarker) !== 'same document' || navigations !== 0) throw new Error('the page reloaded');
    log('logged out from the page: the row turned logged_out, still without a reload');
    await page.screenshot({ path: join(shots, '6-logged-out.png'), fullPage: true });

    // Restart takes the florist back from the other client; delete removes the bakery.
    const florist = page.locator('tbody[data-id="florist"]');
    await florist.getByRole('button', { name: 'Manage' }).click();
    await florist.getByRole('button', { name: 'Restart' }).click();
    await page.locator('tbody[data-id="florist"][data-status="connected"]').waitFor();
    await florist.getByRole('button', { name: 'Manage' }).click();
    await bakery.getByRole('button', { name: 'Manage' }).click();
    await bakery.getByRole('button', { name: 'Delete\u2026' }).click();
    await dialog.waitFor({ state: 'visible' });
    await dialog.getByRole('button', { name: 'Cancel' }).click();
    if (await bakery.count() !== 1) throw new Error('a cancelled delete removed the row');
    await bakery.getByRole('button', { name: 'Delete\u2026' }).click();
    await dialog.getByRole('button', { name: 'Delete' }).click();
    await bakery.waitFor({ state: 'detached' });
    await until('the bakery to be gone', async () => ((await statusOf(base, 'bakery')) === undefined ? true : undefined));
    log('restart took the florist back (connected); delete (after a cancelled one) removed the bakery');

    if (problems.length) throw new Error(`the page reported errors:\n${problems.join('\n')}`);

    // A session that ends: the next API call sends the page to /login.
    await context.clearCookies();
    await florist.getByRole('button', { name: 'Manage' }).click();
    await Promise.all([page.waitForURL(/\/login/), florist.getByRole('button', { name: 'Restart' }).click()]);
    log('with the session gone, an action leads to /login');
    log('screenshots in', shots);
    log('OK: logged in, added an account, scanned its QR from the page, saw it connect and log out live, restarted and deleted from the page, fits 390 px');
  } catch (e) {
    if (page) {
      await page.screenshot({ path: join(shots, 'failure.png'), fullPage: true }).catch(() => {});
      log('the page at the failure (screenshot failure.png):', (await page.locator('main').innerText().catch(() => '?')).slice(0, 4000));
    }
    throw e;
  } finally {
    clearTimeout(timer);
    await browser?.close().catch(() => {});
    if (sup) await stopSupervisor(sup).catch(() => {});
    await killAll();
    rmSync(sessions, { recursive: true, force: true });
    rmSync(profile, { recursive: true, force: true });
  }
}

for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => { killAll().then(() => process.exit(1)); });
main().then(() => process.exit(0), async (e) => {
  log('FAILED:', e.stack ?? e.message);
  await killAll();
  process.exit(1);
});
