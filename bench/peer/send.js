#!/usr/bin/env node
// The web-push side of the side-by-side peer run (scripts/bench-peer): the npm `web-push`
// library, which the original Node.js service used, sending the same deliveries as
// pushservice's `peer_rust` example to the same push-service simulator, measured the same way.
//
//   node send.js --send subscriptions.jsonl [--concurrency 256] [--vapid-once]
//
// The input file is written by `peer_rust --generate`: a header line (VAPID key pair,
// subject, payload, TTL, urgency) and one PushSubscription per line. Every delivery is
// `webpush.sendNotification(subscription, payload, {vapidDetails, TTL, urgency, agent})`, the
// call the original service made, so per message it does what that service did: a fresh
// ECDH key and salt (http_ece on Node's OpenSSL), a newly signed VAPID JWT (web-push 3.6 has
// no header cache), and an HTTP/1.1 request over Node's https module (web-push cannot speak
// HTTP/2). Connections are reused through a keep-alive https.Agent with one socket per
// request in flight, the most favourable set-up for it.
//
// --vapid-once is NOT what the original service did: it signs the VAPID header once with
// web-push's own getVapidHeaders() and passes it as a header (vapidDetails: null), as
// pushservice's VapidCache does. It separates the library's per-message signing from the rest
// of Node's cost; the report labels it "web-push (VAPID once)".
//
// CPU is process.cpuUsage() (getrusage: user + system of every thread of the process) read
// just before and after the send phase; reading the file is outside it, as in the Rust peer.
// The sink's self-signed certificate is trusted through NODE_EXTRA_CA_CERTS.

'use strict';

const fs = require('fs');
const https = require('https');
const webpush = require('web-push');

function parseArgs(argv) {
  const args = { send: null, concurrency: 256, vapidOnce: false };
  for (let i = 0; i < argv.length; i += 1) {
    const flag = argv[i];
    if (flag === '--vapid-once') {
      args.vapidOnce = true;
      continue;
    }
    const value = argv[i + 1];
    if (value === undefined) {
      throw new Error(`${flag} needs a value`);
    }
    i += 1;
    if (flag === '--send') {
      args.send = value;
    } else if (flag === '--concurrency') {
      args.concurrency = Number.parseInt(value, 10);
      if (!(args.concurrency > 0)) {
        throw new Error(`--concurrency: ${value} is not a positive number`);
      }
    } else {
      throw new Error(`unknown flag ${flag}`);
    }
  }
  if (!args.send) {
    throw new Error('usage: node send.js --send subscriptions.jsonl [--concurrency C]');
  }
  return args;
}

function readInput(path) {
  const lines = fs.readFileSync(path, 'utf8').split('\n').filter((line) => line.trim() !== '');
  const header = JSON.parse(lines[0]);
  const subscriptions = lines.slice(1).map((line) => JSON.parse(line));
  if (subscriptions.length !== header.count) {
    throw new Error(`${path} holds ${subscriptions.length} subscriptions, its header says ${header.count}`);
  }
  return { header, subscriptions };
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const { header, subscriptions } = readInput(args.send);

  // One socket per request in flight, kept open between requests: without keepAlive every
  // message would pay a TLS handshake, which would be unfair to web-push.
  const agent = new https.Agent({ keepAlive: true, maxSockets: args.concurrency });
  const vapidDetails = {
    subject: header.vapid.subject,
    publicKey: header.vapid.publicKey,
    privateKey: header.vapid.privateKey,
  };
  const options = { vapidDetails, TTL: header.ttl, urgency: header.urgency, agent };
  if (args.vapidOnce) {
    // Every endpoint in the file has the same origin, so one header serves them all (its
    // JWT is valid for web-push's default 12 hours).
    const endpoint = new URL(subscriptions[0].endpoint);
    const vapidHeaders = webpush.getVapidHeaders(
      `${endpoint.protocol}//${endpoint.host}`,
      vapidDetails.subject,
      vapidDetails.publicKey,
      vapidDetails.privateKey,
      'aes128gcm',
    );
    options.vapidDetails = null;
    options.headers = { Authorization: vapidHeaders.Authorization };
  }
  // The same bytes as the Rust peer; a Buffer, so web-push does not re-encode it per message.
  const payload = Buffer.from(header.payload, 'utf8');

  let next = 0;
  let accepted = 0;
  let failed = 0;
  let firstFailure = null;
  // C of these run at once: at most C requests in flight, as in the Rust peer.
  async function worker() {
    while (next < subscriptions.length) {
      const subscription = subscriptions[next];
      next += 1;
      try {
        const response = await webpush.sendNotification(subscription, payload, options);
        if (response.statusCode === 201) {
          accepted += 1;
        } else {
          failed += 1;
          firstFailure = firstFailure || `status ${response.statusCode}`;
        }
      } catch (err) {
        failed += 1;
        firstFailure = firstFailure || `${err.statusCode || ''} ${err.message} ${err.body || ''}`.trim();
      }
    }
  }

  const cpuBefore = process.cpuUsage();
  const started = process.hrtime.bigint();
  await Promise.all(Array.from({ length: args.concurrency }, worker));
  const wall = Number(process.hrtime.bigint() - started) / 1e9;
  const cpu = process.cpuUsage(cpuBefore);

  // Sockets the agent holds after the run: the connections HTTP/1.1 needed for C in flight.
  const count = (pool) => Object.values(pool).reduce((sum, list) => sum + list.length, 0);
  const connections = count(agent.freeSockets) + count(agent.sockets);
  agent.destroy();

  const messages = subscriptions.length;
  const cpuSeconds = (cpu.user + cpu.system) / 1e6;
  if (firstFailure) {
    process.stderr.write(`send.js: first failure: ${firstFailure}\n`);
  }
  process.stdout.write(`${JSON.stringify({
    peer: 'web-push',
    variant: args.vapidOnce ? 'vapid_once' : 'vapid_per_message',
    protocol: 'http/1.1',
    messages,
    accepted,
    failed,
    concurrency: args.concurrency,
    connections,
    wall_s: wall,
    cpu_s: cpuSeconds,
    cpu_user_s: cpu.user / 1e6,
    cpu_sys_s: cpu.system / 1e6,
    cpu_us_per_msg: (cpuSeconds * 1e6) / Math.max(messages, 1),
    msgs_per_s: messages / wall,
    node: process.version,
    web_push: require('web-push/package.json').version,
  })}\n`);
}

main().catch((err) => {
  process.stderr.write(`send.js: ${err.stack || err}\n`);
  process.exit(1);
});
