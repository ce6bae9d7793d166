// Drives the node's dashboard in headless Chromium (Debian's `chromium`,
// through playwright-core), for testnet/tests/it/dashboard.rs, which starts
// the market and talks to this script over stdin/stdout, one line each:
//
//   script → test   `ready`                 both dashboards are signed in
//   test → script   `job ID`                the test submitted job ID
//   script → test   `succeeded ID`          the requester's page showed it succeed
//   test → script   `earned UNITS`          what the ledger paid the provider
//   script → test   `ok`                    the provider's page shows that figure
//
// The nodes' URLs and tokens come in the environment (never in a URL):
// AGORA_DASHBOARD_{REQUESTER,PROVIDER}_{URL,TOKEN}; screenshots go to
// AGORA_DASHBOARD_SHOTS; AGORA_CHROMIUM is the browser (/usr/bin/chromium).
import { createInterface } from 'node:readline';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
};
const requester = { url: env('AGORA_DASHBOARD_REQUESTER_URL'), token: env('AGORA_DASHBOARD_REQUESTER_TOKEN') };
const provider = { url: env('AGORA_DASHBOARD_PROVIDER_URL'), token: env('AGORA_DASHBOARD_PROVIDER_TOKEN') };
const shots = env('AGORA_DASHBOARD_SHOTS');
const executablePath = process.env.AGORA_CHROMIUM || '/usr/bin/chromium';
const TIMEOUT = 90_000;
mkdirSync(shots, { recursive: true });

const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
async function expectLine(word) {
  const { value, done } = await lines.next();
  if (done) throw new Error(`stdin closed while waiting for "${word} …"`);
  const [got, arg] = value.trim().split(/\s+/, 2);
  if (got !== word) throw new Error(`expected "${word} …" from the test, got ${JSON.stringify(value)}`);
  return arg;
}
const say = (line) => process.stdout.write(`${line}\n`);
const log = (line) => process.stderr.write(`dashboard.test: ${line}\n`);
function check(ok, what) { if (!ok) throw new Error(what); }

const browser = await chromium.launch({ executablePath, args: ['--no-sandbox', '--disable-gpu'] });
const problems = [];
let pages = [];
try {
  const context = await browser.newContext({ viewport: { width: 1360, height: 900 } });
  // Anything the page fetches from outside the node fails the test.
  await context.route('**/*', (route) => {
    const url = new URL(route.request().url());
    if (url.hostname !== '127.0.0.1') {
      problems.push(`fetched from outside the node: ${url}`);
      return route.abort();
    }
    check(!url.search.includes(requester.token) && !url.search.includes(provider.token), `a token in a URL: ${url}`);
    return route.continue();
  });

  async function open(node, name) {
    const page = await context.newPage();
    pages.push([name, page]);
    page.on('console', (msg) => {
      // CSP violations, script errors and missing routes are failures; the
      // two refusals this script provokes (a wrong token: 401, a bad
      // query: 400) are the API's answers, which the page shows.
      if (msg.type() === 'error' && !/status of 40[01] /.test(msg.text())) problems.push(`${name} console: ${msg.text()}`);
    });
    page.on('pageerror', (e) => problems.push(`${name} page error: ${e.message}`));
    await page.goto(`${node.url}/`);
    check(!page.url().includes(node.token), 'the token is in the URL');
    return page;
  }

  async function signIn(page, node, name) {
    await page.waitForSelector('#login-form', { state: 'visible' });
    await page.fill('#token', node.token);
    await page.click('#login-submit');
    await page.waitForSelector('#app', { state: 'visible' });
    await page.waitForFunction(() => document.getElementById('live').textContent === 'live', null, { timeout: TIMEOUT });
    const stored = await page.evaluate(() => localStorage.getItem('agora.api_token'));
    check(stored === node.token, `${name}: the token is not kept in localStorage`);
    check(!page.url().includes(node.token), `${name}: the token is in the URL`);
  }

  // ---- the requester: a wrong token first, then the right one ----
  const req = await open(requester, 'requester');
  await req.waitForSelector('#login-form', { state: 'visible' });
  await req.screenshot({ path: join(shots, 'login.png') });
  await req.fill('#token', 'not-the-token');
  await req.click('#login-submit');
  await req.waitForFunction(() => /wrong API token/.test(document.getElementById('login-error').textContent));
  check(await req.isVisible('#login-form'), 'a wrong token did not ask again');
  check(await req.evaluate(() => localStorage.getItem('agora.api_token')) === null, 'a wrong token was kept');
  await signIn(req, requester, 'requester');
  check(await req.isVisible('#tab-jobs'), 'a requester opens on its jobs');

  // Every state the job's row shows, in order.
  await req.evaluate(() => {
    window.seenStates = {};
    const note = () => {
      for (const row of document.querySelectorAll('#jobs tr[data-job]')) {
        const state = row.querySelector('[data-state]').dataset.state;
        const seen = (window.seenStates[row.dataset.job] ||= []);
        if (seen[seen.length - 1] !== state) seen.push(state);
      }
    };
    new MutationObserver(note).observe(document.getElementById('jobs'), { childList: true, subtree: true });
  });

  // ---- the provider ----
  const prov = await open(provider, 'provider');
  await signIn(prov, provider, 'provider');
  check(await prov.isVisible('#tab-provider'), 'a provider opens on its provider panels');
  await prov.waitForFunction(() => document.getElementById('gpu-total').textContent !== '–', null, { timeout: TIMEOUT });
  await prov.waitForSelector('#offers tr td', { timeout: TIMEOUT });
  say('ready');

  // ---- a job, watched from bidding to succeeded ----
  const job = await expectLine('job');
  log(`watching job ${job}`);
  const row = `#jobs tr[data-job="${job}"]`;
  await req.waitForSelector(row, { timeout: TIMEOUT });
  await req.waitForFunction((id) => {
    const cell = document.querySelector(`#jobs tr[data-job="${id}"] [data-state]`);
    return cell && cell.dataset.state === 'succeeded';
  }, job, { timeout: TIMEOUT, polling: 100 });
  const states = await req.evaluate((id) => window.seenStates[id] || [], job);
  log(`the job's row showed: ${states.join(' → ')}`);
  const order = ['bidding', 'leasing', 'leased', 'running', 'settling', 'succeeded'];
  check(states[0] === 'bidding', `the row first showed ${states[0]}, not bidding`);
  check(states.every((s, i) => i === 0 || order.indexOf(s) > order.indexOf(states[i - 1])), `states out of order: ${states}`);
  // The live log viewer followed the job's stream.
  await req.waitForFunction(() => /hello from the dashboard test/.test(document.getElementById('log').textContent), null, { timeout: TIMEOUT });
  await req.waitForFunction(() => /— end: succeeded/.test(document.getElementById('log').textContent), null, { timeout: TIMEOUT });
  await req.waitForFunction(() => document.getElementById('bill-all').dataset.amount !== undefined, null, { timeout: TIMEOUT });
  await req.screenshot({ path: join(shots, 'jobs.png'), fullPage: true });
  say(`succeeded ${job}`);

  // ---- the provider's earnings against the ledger ----
  const earned = await expectLine('earned');
  log(`the ledger paid the provider ${earned} base units`);
  await prov.waitForFunction((want) => {
    const all = document.getElementById('earn-all');
    const settled = document.getElementById('earn-settled');
    return all.dataset.amount === want && settled.dataset.amount === want;
  }, earned, { timeout: TIMEOUT, polling: 200 });
  const shown = await prov.textContent('#earn-all');
  log(`the provider's page shows ${shown} all time`);
  await prov.waitForSelector('#runs tr', { timeout: TIMEOUT });
  await prov.waitForFunction(() => document.getElementById('lease-total').textContent === '1', null, { timeout: TIMEOUT });
  await prov.screenshot({ path: join(shots, 'provider.png'), fullPage: true });

  // ---- the network tab: the offer book and the query language ----
  await req.click('#tabs button[data-tab="network"]');
  await req.fill('#book-q', 'simulated count>=1');
  await req.click('#book-form button[type="submit"]');
  await req.waitForSelector('#book tr td', { timeout: TIMEOUT });
  await req.fill('#book-q', 'vram>>80');
  await req.click('#book-form button[type="submit"]');
  await req.waitForFunction(() => /at column/.test(document.getElementById('book-error').textContent), null, { timeout: TIMEOUT });
  log(`a bad query shows: ${await req.textContent('#book-error')}`);
  await req.screenshot({ path: join(shots, 'network.png'), fullPage: true });

  // ---- signing out forgets the token ----
  await req.click('#signout');
  await req.waitForSelector('#login-form', { state: 'visible' });
  check(await req.evaluate(() => localStorage.getItem('agora.api_token')) === null, 'sign out kept the token');
  await req.reload();
  await req.waitForSelector('#login-form', { state: 'visible' });

  check(problems.length === 0, `the pages had problems:\n${problems.join('\n')}`);
  say('ok');
} catch (e) {
  for (const [name, page] of pages) {
    await page.screenshot({ path: join(shots, `failed-${name}.png`), fullPage: true }).catch(() => {});
  }
  log(`FAILED: ${e.stack || e}`);
  if (problems.length) log(`and: ${problems.join('\n')}`);
  process.exitCode = 1;
} finally {
  await browser.close();
  lines.return && lines.return();
  process.stdin.destroy();
}
