#!/usr/bin/env node
/*
 * Browser test of the realtime SDK (sdk/realtime.js, through sdk/realtime-demo.html) in
 * Debian's headless Chromium, driven with puppeteer-core, against running gateways. A harness
 * (crates/gateway/tests/browser.rs) runs it and follows the exchange below over its stdin and
 * stdout; everything else the script says goes to stderr.
 *
 * Environment:
 *   PAGE_URL         the demo page, e.g. http://127.0.0.1:18080/sdk/realtime-demo.html (it must
 *                    load realtime.js; its origin must be allowed by the site, and the gateway
 *                    must answer it with CORS headers for SSE and the SSE ack endpoint)
 *   GATEWAY_URL      the gateway's base URL; several separated by commas: the SSE client starts
 *                    on the first, the WebSocket client on the second (each moves to the next
 *                    after a failed attempt)
 *   TOKEN            a connection token allowing both channels; or, instead:
 *   SITE_ID, REALTIME_SECRET  the script mints HS256 tokens itself (user RT_USER, channels
 *                    CHANNEL_SSE and CHANNEL_WS, one hour), and hands each client an already
 *                    expired token first (unless EXPIRED_FIRST=0): the gateway must refuse it
 *                    and the SDK must call getToken() again
 *   RT_USER          the token's user (default browser-test)
 *   CHANNEL_SSE      the SSE client's channel (default room:browser-sse)
 *   CHANNEL_WS       the WebSocket client's channel (default room:browser-ws)
 *   SCREENSHOT       optional: a PNG of the page at the end
 *   SETTLE_MS        how long to watch for duplicates after the recovered messages (1500)
 *   TIMEOUT_MS       overall limit (120000)
 *   CHROMIUM         the browser (default /usr/bin/chromium)
 *
 * Exchange (one line each; the harness only ever writes `RESTARTED`):
 *   script  → READY sse <channel>       the SSE client is connected and subscribed;
 *                                        the harness publishes one message to <channel>
 *   script  → GOT sse <message JSON>    it arrived: {"channel","offset","id","data","ts"}
 *   script  → READY ws <channel>        the same for the WebSocket client
 *   script  → GOT ws <message JSON>
 *   script  → RESTART                   the harness stops the gateway(s), publishes N messages
 *                                        to each of the two channels while they are down,
 *                                        starts them again (same addresses), then writes:
 *   harness → RESTARTED [N]             (N defaults to 1)
 *   script  → RECOVERED sse <JSON array of the messages received since RESTART>
 *   script  → RECOVERED ws <JSON array>
 *   script  → DONE <JSON summary>       exit code 0
 * Any failure prints `FAIL <JSON {"ok":false,"error","step"}>` and exits with code 1.
 *
 * "Recovered" means: each client reconnected after RESTART (a new `connected` event), was told
 * `recovered: true` for its channel, and received exactly the N messages published while the
 * gateway was down, once each, in order (the SDK's own duplicate guard must not have had to
 * drop anything: `stats.duplicates` is 0), and nothing more within SETTLE_MS.
 */
import crypto from 'node:crypto';
import readline from 'node:readline';
import puppeteer from 'puppeteer-core';

const env = process.env;
const CHROMIUM = env.CHROMIUM || '/usr/bin/chromium';
const TIMEOUT_MS = Number(env.TIMEOUT_MS || 120_000);
const SETTLE_MS = Number(env.SETTLE_MS || 1500);
const USER = env.RT_USER || 'browser-test';
const CHANNEL_SSE = env.CHANNEL_SSE || 'room:browser-sse';
const CHANNEL_WS = env.CHANNEL_WS || 'room:browser-ws';

let step = 'starting';
let browser = null;
let finished = false;
const consoleErrors = [];

function log(...args) {
  console.error('[realtime-test]', ...args);
}

function say(line) {
  process.stdout.write(line + '\n');
}

async function finish(ok, summary) {
  if (finished) return;
  finished = true;
  clearTimeout(overallTimer);
  say((ok ? 'DONE ' : 'FAIL ') + JSON.stringify(summary));
  if (browser) {
    await Promise.race([browser.close().catch(() => {}), sleep(5000)]);
    const child = browser.process();
    if (child && child.exitCode === null) child.kill('SIGKILL');
  }
  process.exit(ok ? 0 : 1);
}

function fail(message, extra = {}) {
  log('FAILED:', message);
  return finish(false, { ok: false, error: message, step, consoleErrors, ...extra });
}

const overallTimer = setTimeout(() => fail(`timed out after ${TIMEOUT_MS / 1000} s while ${step}`), TIMEOUT_MS);

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls `check` (async; a value or null) every `everyMs` until it gives a value. */
async function until(what, check, { timeoutMs = 30_000, everyMs = 100 } = {}) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value != null && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs / 1000} s`);
    await sleep(everyMs);
  }
}

// The harness's lines, one promise each.
const stdinLines = [];
const stdinWaiters = [];
let stdinClosed = false;
readline.createInterface({ input: process.stdin }).on('line', (line) => {
  const waiter = stdinWaiters.shift();
  if (waiter) waiter.resolve(line.trim());
  else stdinLines.push(line.trim());
}).on('close', () => {
  stdinClosed = true;
  for (const waiter of stdinWaiters.splice(0)) waiter.reject(new Error('the harness closed stdin'));
});
function nextLine() {
  if (stdinLines.length) return Promise.resolve(stdinLines.shift());
  if (stdinClosed) return Promise.reject(new Error('the harness closed stdin'));
  return new Promise((resolve, reject) => stdinWaiters.push({ resolve, reject }));
}

/** An HS256 JWT, as a site's backend would mint it. */
function mintToken(secret, claims) {
  const b64 = (value) => Buffer.from(JSON.stringify(value)).toString('base64url');
  const unsigned = b64({ alg: 'HS256', typ: 'JWT' }) + '.' + b64(claims);
  return unsigned + '.' + crypto.createHmac('sha256', secret).update(unsigned).digest('base64url');
}

/** What getToken() answers for each client: an expired token first when minting. */
function tokenSource() {
  if (env.TOKEN) return () => env.TOKEN;
  if (!env.SITE_ID || !env.REALTIME_SECRET) return null;
  const calls = { sse: 0, websocket: 0 };
  return (transport) => {
    calls[transport] = (calls[transport] || 0) + 1;
    const now = Math.floor(Date.now() / 1000);
    const expired = env.EXPIRED_FIRST !== '0' && calls[transport] === 1;
    return mintToken(env.REALTIME_SECRET, {
      site: env.SITE_ID,
      sub: USER,
      channels: [CHANNEL_SSE, CHANNEL_WS],
      iat: expired ? now - 7200 : now,
      exp: expired ? now - 3600 : now + 3600,
    });
  };
}

async function main() {
  const pageUrl = env.PAGE_URL || '';
  const gateways = (env.GATEWAY_URL || '').split(',').map((s) => s.trim()).filter(Boolean);
  const getToken = tokenSource();
  if (!pageUrl || !gateways.length || !getToken) {
    return fail('PAGE_URL, GATEWAY_URL and TOKEN (or SITE_ID and REALTIME_SECRET) must be set');
  }
  const minted = !env.TOKEN;
  const expiredFirst = minted && env.EXPIRED_FIRST !== '0';
  // The SSE client starts on the first gateway, the WebSocket client on the second.
  const rotate = (n) => gateways.slice(n % gateways.length).concat(gateways.slice(0, n % gateways.length));

  step = 'launching Chromium';
  browser = await puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless=new', '--no-sandbox', '--no-first-run', '--window-size=1000,1200'],
    defaultViewport: { width: 1000, height: 1200 },
    protocolTimeout: 30_000,
  });
  log('Chromium', await browser.version());
  const page = await browser.newPage();
  page.on('console', (message) => {
    const text = `page ${message.type()}: ${message.text()}`;
    log(text);
    // A refused connection is logged by the browser itself as an error (expected here when a
    // gateway is down or a token is refused): only the page's own errors count.
    if (message.type() === 'error' && !/Failed to load resource|WebSocket connection to|EventSource/.test(message.text())) {
      consoleErrors.push(text);
    }
  });
  page.on('pageerror', (err) => {
    const text = `page exception: ${err.message}`;
    log(text);
    consoleErrors.push(text);
  });
  await page.exposeFunction('rtTestToken', (transport) => getToken(transport));

  step = 'opening the demo page';
  log('opening', pageUrl);
  const response = await page.goto(pageUrl, { waitUntil: 'load' });
  if (!response || !response.ok()) return fail(`GET ${pageUrl} answered ${response ? response.status() : 'nothing'}`);
  if (!(await page.evaluate(() => typeof window.PushserviceRealtime === 'object' && !!window.rtDemo))) {
    return fail('the page has no window.PushserviceRealtime and window.rtDemo (realtime.js or the demo not loaded?)');
  }

  const start = (transport, urls, channel) =>
    page.evaluate(
      (transport, urls, channel) =>
        window.rtDemo.start({
          url: urls,
          transport,
          channels: [channel],
          getToken: () => window.rtTestToken(transport),
          minDelayMs: 200,
          maxDelayMs: 2000,
        }),
      transport,
      urls,
      channel
    );
  // A client's state, as plain data.
  const snapshot = (index) =>
    page.evaluate((index) => {
      const entry = window.rtDemo.clients[index];
      const c = entry.client;
      return {
        state: c.state,
        user: c.user,
        positions: c.positions(),
        stats: { ...c.stats },
        messages: entry.messages.map((m) => ({ channel: m.channel, offset: m.offset, id: m.id, data: m.data, ts: m.ts })),
        events: entry.events.map((e) => ({ event: e.event, detail: e.detail })),
      };
    }, index);

  /** Starts a client, waits until it is subscribed, announces it, waits for one message. */
  async function firstMessage(label, transport, urls, channel) {
    step = `connecting the ${label} client`;
    const index = await start(transport, urls, channel);
    await until(`the ${label} client connected and subscribed to ${channel}`, async () => {
      const s = await snapshot(index);
      const subscribed = s.events.some((e) => e.event === 'subscribed' && e.detail.channel === channel);
      return s.state === 'connected' && subscribed ? s : null;
    });
    const before = await snapshot(index);
    if (expiredFirst) {
      // The expired token was refused and getToken() was asked again.
      const refused = before.events.some((e) => e.event === 'error' && /expired/.test(e.detail.message || ''));
      if (before.stats.tokenRequests < 2 || !refused) {
        throw new Error(`the ${label} client did not get a new token after the expired one was refused (tokenRequests ${before.stats.tokenRequests}, events ${JSON.stringify(before.events)})`);
      }
    }
    say(`READY ${label} ${channel}`);
    step = `waiting for the message published to ${channel} (${label})`;
    const got = await until(`a message on ${channel} (${label})`, async () => {
      const s = await snapshot(index);
      return s.messages.length ? s : null;
    });
    if (got.messages.length !== 1 || got.messages[0].channel !== channel) {
      throw new Error(`expected one message on ${channel}, got ${JSON.stringify(got.messages)}`);
    }
    say(`GOT ${label} ${JSON.stringify(got.messages[0])}`);
    return index;
  }

  const sse = await firstMessage('sse', 'sse', rotate(0), CHANNEL_SSE);
  const ws = await firstMessage('ws', 'websocket', rotate(1), CHANNEL_WS);
  const clients = [
    { label: 'sse', index: sse, channel: CHANNEL_SSE },
    { label: 'ws', index: ws, channel: CHANNEL_WS },
  ];
  for (const c of clients) c.before = await snapshot(c.index);

  step = 'waiting for RESTARTED from the harness';
  say('RESTART');
  const line = await nextLine();
  const match = /^RESTARTED(?:\s+(\d+))?$/.exec(line);
  if (!match) throw new Error(`expected "RESTARTED [N]" from the harness, got ${JSON.stringify(line)}`);
  const missed = match[1] ? Number(match[1]) : 1;

  for (const c of clients) {
    step = `waiting for the ${c.label} client to reconnect and recover ${missed} message(s)`;
    const eventsBefore = c.before.events.length;
    const messagesBefore = c.before.messages.length;
    c.after = await until(step, async () => {
      const s = await snapshot(c.index);
      const later = s.events.slice(eventsBefore);
      const reconnected = later.some((e) => e.event === 'disconnected') && later.some((e) => e.event === 'connected');
      return reconnected && s.messages.length - messagesBefore >= missed ? s : null;
    }, { timeoutMs: 60_000 });
  }
  step = `watching for duplicates for ${SETTLE_MS} ms`;
  await sleep(SETTLE_MS);
  for (const c of clients) {
    const s = await snapshot(c.index);
    const recovered = s.messages.slice(c.before.messages.length);
    const later = s.events.slice(c.before.events.length);
    const verdict = later.filter((e) => e.event === 'recovered' && e.detail.channel === c.channel);
    const problems = [];
    if (recovered.length !== missed) problems.push(`${recovered.length} messages instead of ${missed}`);
    if (recovered.some((m) => m.channel !== c.channel)) problems.push('a message from another channel');
    const offsets = recovered.map((m) => m.offset);
    if (offsets.some((o, i) => i > 0 && o <= offsets[i - 1])) problems.push(`offsets not increasing: ${offsets}`);
    const lastBefore = c.before.messages[c.before.messages.length - 1];
    if (lastBefore && offsets.some((o) => o <= lastBefore.offset)) problems.push('a message from before the restart again');
    if (s.stats.duplicates !== 0) problems.push(`the gateway sent ${s.stats.duplicates} duplicate(s) (dropped by the SDK)`);
    if (!verdict.length || verdict.some((e) => e.detail.recovered !== true)) {
      problems.push(`no "recovered: true" for ${c.channel}: ${JSON.stringify(verdict)}`);
    }
    if (problems.length) {
      throw new Error(`the ${c.label} client after the restart: ${problems.join('; ')} (messages ${JSON.stringify(recovered)})`);
    }
    c.final = s;
    say(`RECOVERED ${c.label} ${JSON.stringify(recovered)}`);
  }

  if (env.SCREENSHOT) {
    step = 'taking the screenshot';
    await page.screenshot({ path: env.SCREENSHOT, fullPage: true });
    log('screenshot saved to', env.SCREENSHOT);
  }
  if (consoleErrors.length) throw new Error(`the page logged errors: ${consoleErrors.join(' | ')}`);
  return finish(true, {
    ok: true,
    missedPerChannel: missed,
    clients: Object.fromEntries(
      clients.map((c) => [c.label, { channel: c.channel, stats: c.final.stats, messages: c.final.messages, events: c.final.events }])
    ),
    consoleErrors,
  });
}

main().catch((err) => fail(`${err && err.message ? err.message : err}`));
