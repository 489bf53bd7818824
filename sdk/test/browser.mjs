#!/usr/bin/env node
/*
 * Browser test of the SDK (sdk/pushservice.js, sdk/sw.js, sdk/demo.html) in Debian's headless
 * Chromium, driven over the DevTools protocol with puppeteer-core, against a running pushapi.
 *
 * Environment:
 *   API_BASE      pushapi's address, e.g. http://127.0.0.1:18080 (it serves sdk/ under /sdk/)
 *   SITE_ID       the site to subscribe to
 *   PUSH_PAYLOAD  the exact JSON payload our senders encrypt, delivered to the service worker
 *   EXTERNAL_ID   optional: the subscriber's externalId
 *   SCREENSHOT    optional: where to save a PNG of the demo page at the end
 *   CHROMIUM      optional: the browser binary (default /usr/bin/chromium)
 *
 * Steps:
 *   1. open ${API_BASE}/sdk/demo.html?siteId=..., with notifications granted for that origin
 *      (CDP Browser.grantPermissions) and PushManager.subscribe/getSubscription replaced by a
 *      stand-in (Google's push service is unreachable here) whose subscription has a real
 *      P-256 key and auth secret, made with WebCrypto;
 *   2. click the demo's Subscribe button: the real SDK registers the service worker, fetches
 *      the VAPID key and registers the subscription with the API;
 *   3. deliver PUSH_PAYLOAD to the worker (CDP ServiceWorker.deliverPushMessage) and wait for
 *      the notification in registration.getNotifications(), and for the worker's `delivered`
 *      report to be answered by the API.
 *
 * Output: ONE JSON line on stdout,
 *   {"ok":true,"subscriberId","endpoint","notifications":[{"title","body","tag","data",...}],
 *    "reports":[{"event","ok","status",...}],"pushDeliveries":1,"consoleErrors":[...]}
 * or {"ok":false,"error":"...","step":"...","workerStatus":"..."} with exit code 1 on failure or
 * after 60 s. Progress goes to stderr.
 */
import puppeteer from 'puppeteer-core';

const OVERALL_TIMEOUT_MS = 60_000;
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

let step = 'starting';
// Describes the service worker versions (set once the DevTools session is up), for failures.
let workerStatus = () => 'unknown';
let browser = null;
let finished = false;
const consoleErrors = [];

function log(...args) {
  console.error('[browser-test]', ...args);
}

/** Prints the one result line and exits (once). */
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
  log('FAILED:', message, '| service worker:', workerStatus());
  return finish({ ok: false, error: message, step, workerStatus: workerStatus(), consoleErrors });
}

const overallTimer = setTimeout(() => {
  fail(`timed out after ${OVERALL_TIMEOUT_MS / 1000} s while ${step}`);
}, OVERALL_TIMEOUT_MS);

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls `check` (async, returns a value or null) every `everyMs` until it returns non-null. */
async function until(what, check, { timeoutMs = 20_000, everyMs = 200 } = {}) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value != null && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`${what}: nothing after ${timeoutMs / 1000} s`);
    await sleep(everyMs);
  }
}

/**
 * Runs in the page before its scripts: replaces PushManager.prototype.subscribe and
 * getSubscription with a stand-in that behaves like Chromium's (one subscription per
 * registration, same key again returns it, another key is refused, needs the permission and an
 * active worker) without talking to a push service. Its toJSON() has the shape the API
 * validates: an FCM endpoint, a real uncompressed P-256 public key and a 16-byte auth secret.
 */
function installPushStandIn() {
  const b64url = (buffer) =>
    btoa(String.fromCharCode(...new Uint8Array(buffer))).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
  const fromB64url = (text) => {
    let b64 = text.replace(/-/g, '+').replace(/_/g, '/');
    while (b64.length % 4) b64 += '=';
    return Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  };
  const keyBytes = (key) => {
    if (typeof key === 'string') return fromB64url(key);
    if (ArrayBuffer.isView(key)) return new Uint8Array(key.buffer.slice(key.byteOffset, key.byteOffset + key.byteLength));
    return new Uint8Array(key.slice(0));
  };
  const same = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);

  // One subscription per registration (keyed by scope), as the browser keeps.
  const subscriptions = new Map();
  window.__pushStandIn = { subscribeCalls: 0 };

  async function registrationOf(pushManager) {
    const registrations = await navigator.serviceWorker.getRegistrations();
    return registrations.find((r) => r.pushManager === pushManager) || null;
  }

  async function makeSubscription(scope, serverKey) {
    const pair = await crypto.subtle.generateKey({ name: 'ECDH', namedCurve: 'P-256' }, true, ['deriveBits']);
    const p256dh = new Uint8Array(await crypto.subtle.exportKey('raw', pair.publicKey)); // 65 bytes, 0x04 || x || y
    const auth = crypto.getRandomValues(new Uint8Array(16));
    const endpoint = 'https://fcm.googleapis.com/fcm/send/' + b64url(crypto.getRandomValues(new Uint8Array(24)));
    const subscription = {
      endpoint,
      expirationTime: null,
      options: { userVisibleOnly: true, applicationServerKey: serverKey.slice().buffer },
      getKey(name) {
        if (name === 'p256dh') return p256dh.slice().buffer;
        if (name === 'auth') return auth.slice().buffer;
        return null;
      },
      toJSON() {
        return { endpoint, expirationTime: null, keys: { p256dh: b64url(p256dh), auth: b64url(auth) } };
      },
      async unsubscribe() {
        if (subscriptions.get(scope) === subscription) subscriptions.delete(scope);
        return true;
      },
    };
    return subscription;
  }

  PushManager.prototype.subscribe = async function (options = {}) {
    window.__pushStandIn.subscribeCalls++;
    if (Notification.permission !== 'granted') {
      throw new DOMException('Registration failed - permission denied', 'NotAllowedError');
    }
    if (!options.userVisibleOnly) throw new DOMException('userVisibleOnly is required', 'NotAllowedError');
    if (!options.applicationServerKey) throw new DOMException('applicationServerKey is required', 'AbortError');
    const serverKey = keyBytes(options.applicationServerKey);
    if (serverKey.length !== 65 || serverKey[0] !== 4) {
      throw new DOMException('The provided applicationServerKey is not valid.', 'InvalidAccessError');
    }
    const registration = await registrationOf(this);
    if (!registration || !registration.active) {
      throw new DOMException('Subscription failed - no active Service Worker', 'AbortError');
    }
    const existing = subscriptions.get(registration.scope);
    if (existing) {
      if (same(new Uint8Array(existing.options.applicationServerKey), serverKey)) return existing;
      throw new DOMException(
        'A subscription with a different applicationServerKey (or gcm_sender_id) already exists; ' +
          'to change the applicationServerKey, unsubscribe then resubscribe.',
        'InvalidStateError'
      );
    }
    const subscription = await makeSubscription(registration.scope, serverKey);
    subscriptions.set(registration.scope, subscription);
    return subscription;
  };

  PushManager.prototype.getSubscription = async function () {
    const registration = await registrationOf(this);
    return (registration && subscriptions.get(registration.scope)) || null;
  };
}

async function main() {
  const apiBase = (process.env.API_BASE || '').replace(/\/+$/, '');
  const siteId = process.env.SITE_ID || '';
  const payload = process.env.PUSH_PAYLOAD;
  const externalId = process.env.EXTERNAL_ID || '';
  const screenshot = process.env.SCREENSHOT || '';
  if (!apiBase || !siteId || payload == null || payload === '') {
    return fail('API_BASE, SITE_ID and PUSH_PAYLOAD must be set');
  }
  let origin;
  try {
    origin = new URL(apiBase).origin;
  } catch {
    return fail(`API_BASE is not a URL: ${apiBase}`);
  }
  // The pushId the notification must carry (absent when the payload is not our JSON).
  let expectedPushId = null;
  try {
    expectedPushId = JSON.parse(payload).pushId || null;
  } catch {
    log('PUSH_PAYLOAD is not JSON: expecting a generic notification');
  }

  step = 'launching Chromium';
  browser = await puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless=new',
      '--no-sandbox',
      // Only with these does registration.getNotifications() list what the worker showed.
      '--disable-features=NativeNotifications,SystemNotifications',
      '--no-first-run',
      '--window-size=1000,1100',
    ],
    defaultViewport: { width: 1000, height: 1100 },
    protocolTimeout: 30_000,
  });
  log('Chromium', await browser.version());

  // The service worker's console: errors count, the rest is logged.
  browser.on('targetcreated', async (target) => {
    if (target.type() !== 'service_worker') return;
    try {
      const worker = await target.worker();
      if (!worker) return;
      worker.on('console', (message) => {
        const text = `service worker ${message.type()}: ${message.text()}`;
        log(text);
        if (message.type() === 'error') consoleErrors.push(text);
      });
    } catch (err) {
      log('cannot follow the service worker console:', err.message);
    }
  });

  step = 'granting the notifications permission';
  const browserSession = await browser.target().createCDPSession();
  await browserSession.send('Browser.grantPermissions', { origin, permissions: ['notifications'] });

  const page = await browser.newPage();
  page.on('console', (message) => {
    const text = `page ${message.type()}: ${message.text()}`;
    log(text);
    if (message.type() === 'error') consoleErrors.push(text);
  });
  page.on('pageerror', (err) => {
    const text = `page exception: ${err.message}`;
    log(text);
    consoleErrors.push(text);
  });
  await page.evaluateOnNewDocument(installPushStandIn);

  // Service worker registrations, as the DevTools protocol sees them (for deliverPushMessage).
  const session = await page.createCDPSession();
  const registrations = new Map();
  session.on('ServiceWorker.workerRegistrationUpdated', ({ registrations: updated }) => {
    for (const r of updated) {
      if (r.isDeleted) registrations.delete(r.registrationId);
      else registrations.set(r.registrationId, r);
    }
  });
  // Worker versions and errors, for the log and for a failure's message.
  const versions = new Map();
  session.on('ServiceWorker.workerVersionUpdated', ({ versions: updated }) => {
    for (const v of updated) {
      versions.set(v.versionId, v);
      log(`service worker version ${v.versionId}: ${v.status}, ${v.runningStatus}`);
    }
  });
  session.on('ServiceWorker.workerErrorReported', ({ errorMessage: e }) => {
    const text = `service worker error: ${e.errorMessage} (${e.sourceURL}:${e.lineNumber})`;
    log(text);
    consoleErrors.push(text);
  });
  workerStatus = () =>
    [...versions.values()].map((v) => `version ${v.versionId} ${v.status}/${v.runningStatus}`).join(', ') || 'none';
  await session.send('ServiceWorker.enable');

  step = 'opening the demo page';
  const demoUrl = `${apiBase}/sdk/demo.html?siteId=${encodeURIComponent(siteId)}`;
  log('opening', demoUrl);
  const response = await page.goto(demoUrl, { waitUntil: 'load' });
  if (!response || !response.ok()) {
    return fail(`GET ${demoUrl} answered ${response ? response.status() : 'nothing'}`);
  }
  if (!(await page.evaluate(() => typeof window.PushService === 'object'))) {
    return fail('the demo page has no window.PushService (pushservice.js not loaded?)');
  }

  step = 'subscribing (PushService.subscribe through the demo page)';
  if (externalId) await page.type('#externalId', externalId);
  await page.click('#subscribe'); // a real click: the permission prompt wants a user gesture
  const result = await until('PushService.subscribe', () => page.evaluate(() => window.demoResult), {
    timeoutMs: 30_000,
  });
  if (!result.ok) {
    return fail(`PushService.subscribe failed: [${result.code}] ${result.message}`);
  }
  log('subscribed:', result.subscriberId, result.endpoint);
  if (!/^[0-9a-f]{24}$/.test(result.subscriberId)) {
    return fail(`the subscriber id is not 24 hex characters: ${result.subscriberId}`);
  }
  if (!result.endpoint.startsWith('https://fcm.googleapis.com/fcm/send/')) {
    return fail(`the endpoint is not the stand-in's: ${result.endpoint}`);
  }

  step = 'waiting for the service worker to be active';
  const scope = await until(
    'an active service worker',
    () =>
      page.evaluate(async () => {
        const scope = new URL('./', location.href).pathname;
        const registration = await navigator.serviceWorker.getRegistration(scope);
        return registration && registration.active && registration.active.state === 'activated'
          ? registration.scope
          : null;
      }),
    { timeoutMs: 15_000 }
  );
  const registration = await until('the worker registration over CDP', () =>
    [...registrations.values()].find((r) => r.scopeURL === scope)
  );
  log('service worker registration', registration.registrationId, 'scope', scope);

  // The browser answers deliverPushMessage at once and drops the message silently when it
  // cannot deliver it (seen once here, right after the worker activated): when no
  // notification shows within a few seconds, the message is delivered again.
  const deliveries = { count: 0 };
  async function deliverPush() {
    deliveries.count++;
    step = `delivering the push message to the service worker (attempt ${deliveries.count})`;
    await session.send('ServiceWorker.deliverPushMessage', {
      origin,
      registrationId: registration.registrationId,
      data: payload,
    });
  }
  const listNotifications = () =>
    page.evaluate(async (pushId) => {
      const registration = await navigator.serviceWorker.getRegistration(new URL('./', location.href).pathname);
      const shown = await registration.getNotifications();
      const mine = shown.filter((n) => !pushId || (n.data && n.data.pushId === pushId));
      if (!mine.length) return null;
      return mine.map((n) => ({
        title: n.title,
        body: n.body,
        tag: n.tag,
        data: n.data,
        icon: n.icon,
        image: n.image,
        badge: n.badge,
        dir: n.dir,
        requireInteraction: n.requireInteraction,
        silent: n.silent,
        renotify: n.renotify,
        vibrate: n.vibrate ? [...n.vibrate] : [],
        actions: (n.actions || []).map((a) => ({ action: a.action, title: a.title, icon: a.icon })),
      }));
    }, expectedPushId);

  let notifications = null;
  for (let attempt = 1; !notifications; attempt++) {
    await deliverPush();
    step = `waiting for the notification (registration.getNotifications(), push attempt ${attempt})`;
    try {
      notifications = await until('the notification', listNotifications, { timeoutMs: attempt < 3 ? 6_000 : 15_000 });
    } catch (err) {
      if (attempt >= 3) throw new Error(`${err.message} (push delivered ${attempt} times)`);
      log(`no notification 6 s after push attempt ${attempt} (service worker: ${workerStatus()}); delivering again`);
    }
  }
  log('notification shown:', JSON.stringify(notifications));

  // The worker reports `delivered` after showing; wait for the API's answer so that closing the
  // browser does not cut the request (the page hears about it from the worker).
  let reports = [];
  if (expectedPushId) {
    step = 'waiting for the delivered report to be answered';
    reports = await until(
      'the delivered report',
      () =>
        page.evaluate(
          (pushId) =>
            (window.demoReports || []).some((r) => r.pushId === pushId && r.event === 'delivered')
              ? window.demoReports
              : null,
          expectedPushId
        ),
      { timeoutMs: 15_000 }
    );
    const delivered = reports.find((r) => r.pushId === expectedPushId && r.event === 'delivered');
    if (!delivered.ok) {
      return fail(`the service worker's delivered report failed: ${delivered.error}`);
    }
    log('delivered report answered', delivered.status);
  }

  if (screenshot) {
    step = 'taking the screenshot';
    await page.evaluate(() => window.refresh && window.refresh());
    await sleep(300);
    await page.screenshot({ path: screenshot, fullPage: true });
    log('screenshot saved to', screenshot);
  }

  return finish({
    ok: true,
    subscriberId: result.subscriberId,
    endpoint: result.endpoint,
    notifications,
    reports,
    pushDeliveries: deliveries.count,
    consoleErrors,
  });
}

main().catch((err) => fail(`${err && err.message ? err.message : err}`));
