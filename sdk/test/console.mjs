#!/usr/bin/env node
/*
 * Browser test of the web console (crates/pushapi/console/, served at /console) in Debian's
 * headless Chromium, driven over the DevTools protocol with puppeteer-core, against a running
 * pushapi with a parser and a sender delivering to the push-service simulator.
 *
 * Environment:
 *   API_BASE     pushapi's address, e.g. http://127.0.0.1:18080
 *   ADMIN_TOKEN  the admin token to sign in with
 *   SITE_ID      the site whose push is followed
 *   PUSH_ID      a pending push of that site, with an audience large and slow enough to
 *                be seen moving (the test's simulator answers in seconds)
 *   SCREENSHOT   optional: where to save a PNG of the console at the end
 *   CHROMIUM     optional: the browser binary (default /usr/bin/chromium)
 *
 * Steps: open /console, sign in with the admin token; pick the site in the sites table, the
 * push in its pushes table; press Send; wait until the push's settled deliveries are seen
 * above zero, then higher again (the progress moves); press Cancel (accepting the
 * confirmation); wait until the push shows `canceled` and final; check where the token is
 * kept (sessionStorage, never a cookie or the URL) and that the Content-Security-Policy
 * refused nothing; wait for the dead-letter and realtime panels; screenshot.
 *
 * Output: ONE JSON line on stdout,
 *   {"ok":true,"settledSeen":[n1,n2,...],"finalStatus":"canceled","tokenInCookie":false,
 *    "tokenInUrl":false,"tokenInSessionStorage":true,"cspViolations":[],"consoleErrors":[]}
 * or {"ok":false,"error":"...","step":"..."} with exit code 1 on failure or after 240 s (a
 * guard against a hang, not a measurement). Progress goes to stderr.
 */
import puppeteer from 'puppeteer-core';

const OVERALL_TIMEOUT_MS = 240_000;
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

let step = 'starting';
let browser = null;
let finished = false;
const consoleErrors = [];
const cspViolations = [];

function log(...args) {
  console.error('[console-test]', ...args);
}

async function finish(result) {
  if (finished) return;
  finished = true;
  clearTimeout(overallTimer);
  process.stdout.write(JSON.stringify(result) + '\n');
  if (browser) {
    await Promise.race([browser.close().catch(() => {}), sleep(5000)]);
    const child = browser.process();
    if (child && child.exitCode === null) child.kill('SIGKILL');
  }
  process.exit(result.ok ? 0 : 1);
}

function fail(message) {
  log('FAILED:', message);
  return finish({ ok: false, error: message, step, consoleErrors, cspViolations });
}

const overallTimer = setTimeout(() => {
  fail(`timed out after ${OVERALL_TIMEOUT_MS / 1000} s while ${step}`);
}, OVERALL_TIMEOUT_MS);

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls `check` (async, returns a value or null) until it returns non-null. */
async function until(what, check, { timeoutMs = 60_000, everyMs = 200 } = {}) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value != null && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`${what}: nothing after ${timeoutMs / 1000} s`);
    await sleep(everyMs);
  }
}

async function main() {
  const apiBase = (process.env.API_BASE || '').replace(/\/+$/, '');
  const token = process.env.ADMIN_TOKEN || '';
  const siteId = process.env.SITE_ID || '';
  const pushId = process.env.PUSH_ID || '';
  const screenshot = process.env.SCREENSHOT || '';
  if (!apiBase || !token || !siteId || !pushId) {
    return fail('API_BASE, ADMIN_TOKEN, SITE_ID and PUSH_ID must be set');
  }

  step = 'launching Chromium';
  browser = await puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless=new', '--no-sandbox', '--no-first-run', '--window-size=1440,1000'],
    defaultViewport: { width: 1440, height: 1000 },
    protocolTimeout: 60_000,
  });
  log('Chromium', await browser.version());
  const page = await browser.newPage();
  page.on('console', (message) => {
    const text = `page ${message.type()}: ${message.text()}`;
    log(text);
    if (message.type() === 'error') {
      consoleErrors.push(text);
      if (/Content Security Policy/i.test(text)) cspViolations.push(text);
    }
  });
  page.on('pageerror', (error) => consoleErrors.push(`page error: ${error.message}`));
  // The console asks before canceling or replaying: say yes, as an operator would.
  page.on('dialog', async (dialog) => {
    log('dialog:', dialog.message().replace(/\n/g, ' | '));
    await dialog.accept();
  });

  step = 'opening the console';
  await page.goto(`${apiBase}/console`, { waitUntil: 'load' });
  // A policy violation reported by the page itself (inline code, foreign origins).
  await page.evaluate(() => {
    window.__csp = [];
    document.addEventListener('securitypolicyviolation', (e) => window.__csp.push(`${e.violatedDirective} ${e.blockedURI}`));
  });
  await page.waitForSelector('[data-testid=token]', { visible: true });

  step = 'signing in';
  await page.type('[data-testid=token]', token);
  await page.click('[data-testid=signin]');
  await page.waitForSelector(`tr[data-site="${siteId}"]`, { visible: true, timeout: 60_000 });

  step = 'opening the site and its push';
  await page.click(`tr[data-site="${siteId}"]`);
  await page.waitForSelector(`tr[data-push="${pushId}"]`, { visible: true, timeout: 60_000 });
  await page.click(`tr[data-push="${pushId}"]`);
  await until('the pending push in the detail panel', () =>
    page.$eval('[data-testid=detail]', (d, id) => !d.hidden && d.dataset.push === id && d.dataset.status === 'pending', pushId)
  );

  step = 'sending the push';
  await page.waitForSelector('[data-testid=send]', { visible: true });
  await page.click('[data-testid=send]');

  step = 'watching the progress move';
  const settled = () => page.$eval('[data-testid=detail]', (d) => ({ n: Number(d.dataset.settled || 0), status: d.dataset.status, final: d.dataset.final }));
  const settledSeen = [];
  const first = await until('deliveries settling', async () => {
    const s = await settled();
    return s.n > 0 ? s : null;
  }, { timeoutMs: 120_000 });
  settledSeen.push(first.n);
  log('settled', first.n, first.status);
  const second = await until('more deliveries settling', async () => {
    const s = await settled();
    return s.n > first.n ? s : null;
  }, { timeoutMs: 120_000 });
  settledSeen.push(second.n);
  log('settled', second.n, second.status);
  if (second.status !== 'processing') return fail(`the push is ${second.status} before the cancel`);

  step = 'canceling the push';
  await page.click('[data-testid=cancel]');
  const end = await until('the push canceled and final', async () => {
    const s = await settled();
    return s.status === 'canceled' && s.final === 'true' ? s : null;
  }, { timeoutMs: 180_000, everyMs: 500 });
  log('final', end);

  step = 'checking where the token is kept';
  const kept = await page.evaluate((t) => ({
    cookie: document.cookie.includes(t),
    url: location.href.includes(t),
    session: Object.values(sessionStorage).includes(t),
    local: Object.values(localStorage).includes(t),
    csp: window.__csp,
  }), token);

  step = 'waiting for the dead-letter and realtime panels';
  await until('dead letters listed', () => page.$eval('[data-testid=dlq-summary]', (p) => /dead letters/.test(p.textContent)));
  await until('realtime figures', () => page.$eval('[data-testid=realtime]', (d) => d.children.length > 0));
  // The pushes list is refreshed every 5 s: let it show the canceled status too.
  await until('the pushes list showing the cancel', () =>
    page.$eval(`tr[data-push="${pushId}"]`, (tr) => tr.dataset.status === 'canceled').catch(() => false)
  );

  if (screenshot) {
    step = 'taking the screenshot';
    await page.screenshot({ path: screenshot, fullPage: true });
    log('screenshot saved to', screenshot);
  }
  return finish({
    ok: true,
    settledSeen,
    finalStatus: end.status,
    tokenInCookie: kept.cookie,
    tokenInUrl: kept.url,
    tokenInSessionStorage: kept.session && !kept.local,
    cspViolations: cspViolations.concat(kept.csp || []),
    consoleErrors,
  });
}

main().catch((error) => fail(error && error.stack ? error.stack : String(error)));
