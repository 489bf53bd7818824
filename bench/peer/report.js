#!/usr/bin/env node
// JSON chores of scripts/bench-peer, kept in Node (already required for the peer) so the
// script needs no jq:
//
//   node report.js check PEER.json STATS.json N   exit 1 unless the peer and the sink agree
//                                                 that all N deliveries were accepted, with
//                                                 no verification failure
//   node report.js table OUT.json RUN.json...     print the comparison table and write the
//                                                 combined report to OUT.json
//
// A RUN.json is {"sink_mode", "peer": <peer line>, "sink": <sink stats>, "sink_cpu_s"}.

'use strict';

const fs = require('fs');
const os = require('os');

const readJson = (path) => JSON.parse(fs.readFileSync(path, 'utf8'));

function check(peerPath, statsPath, expected) {
  const peer = readJson(peerPath);
  const stats = readJson(statsPath);
  const n = Number(expected);
  const verifyFailures = Object.values(stats.verify_failed || {}).reduce((a, b) => a + b, 0);
  const problems = [];
  if (peer.messages !== n) problems.push(`peer sent ${peer.messages} messages, expected ${n}`);
  if (peer.accepted !== n) problems.push(`peer saw ${peer.accepted} accepted (${peer.failed} failed), expected ${n}`);
  if (stats.requests !== n) problems.push(`sink received ${stats.requests} requests, expected ${n}`);
  if (stats.accepted !== n) problems.push(`sink accepted ${stats.accepted}, expected ${n}`);
  if (stats.distinct_accepted !== n) problems.push(`sink saw ${stats.distinct_accepted} distinct subscribers, expected ${n}`);
  if (verifyFailures !== 0) problems.push(`sink verification failures: ${JSON.stringify(stats.verify_failed)}`);
  if (problems.length > 0) {
    process.stderr.write(`bench-peer: ${peer.peer} run FAILED:\n  ${problems.join('\n  ')}\n`);
    process.stderr.write(`  sink stats: ${JSON.stringify(stats)}\n`);
    process.exit(1);
  }
}

const fixed = (value, digits) => (value === null || value === undefined ? '-' : value.toFixed(digits));

// A run's name in the table: the peer, and the web-push variant when it is not the default.
const label = (peer) => (peer.variant === 'vapid_once' ? `${peer.peer} (VAPID once)` : peer.peer);

function table(outPath, runPaths) {
  const runs = runPaths.map(readJson);
  const rows = [];
  const modes = [...new Set(runs.map((r) => r.sink_mode))];
  const comparisons = [];
  for (const mode of modes) {
    const inMode = runs.filter((r) => r.sink_mode === mode);
    const ours = inMode.find((r) => r.peer.peer === 'pushservice');
    for (const run of inMode) {
      const p = run.peer;
      rows.push([
        mode,
        label(p),
        p.protocol,
        String(p.connections ?? '-'),
        fixed(p.cpu_us_per_msg, 1),
        fixed(p.cpu_user_s, 2) + ' / ' + fixed(p.cpu_sys_s, 2),
        fixed(p.msgs_per_s, 0),
        fixed(p.wall_s, 2),
        fixed((run.sink_cpu_s * 1e6) / p.messages, 1),
      ]);
      if (ours && run !== ours) {
        comparisons.push({
          sink_mode: mode,
          peer: label(p),
          cpu_ratio_over_pushservice: p.cpu_us_per_msg / ours.peer.cpu_us_per_msg,
          pushservice_throughput_ratio: ours.peer.msgs_per_s / p.msgs_per_s,
        });
      }
    }
  }
  const headers = ['sink mode', 'peer', 'protocol', 'conns', 'CPU µs/msg', 'user / sys s', 'msgs/s', 'wall s', 'sink CPU µs/msg'];
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells) => cells.map((c, i) => (i < 3 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
  const first = runs[0].peer;
  console.log('');
  console.log(`${first.messages} Web Push deliveries per run, concurrency ${first.concurrency}, ` +
    `${os.cpus().length} cores (${os.cpus()[0].model.trim()}), sink on the same machine (TLS)`);
  console.log(line(headers));
  console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  rows.forEach((r) => console.log(line(r)));
  console.log('');
  for (const c of comparisons) {
    console.log(`sink ${c.sink_mode}: ${c.peer} uses ${c.cpu_ratio_over_pushservice.toFixed(2)}x ` +
      `pushservice's CPU per message; pushservice sends ${c.pushservice_throughput_ratio.toFixed(2)}x ` +
      'its msgs/s');
  }
  const report = {
    generated_at: new Date().toISOString(),
    machine: { cores: os.cpus().length, cpu: os.cpus()[0].model.trim(), kernel: os.release(), node: process.version },
    runs,
    comparisons,
  };
  fs.writeFileSync(outPath, `${JSON.stringify(report, null, 2)}\n`);
  console.log(`report written to ${outPath}`);
}

const [command, ...rest] = process.argv.slice(2);
if (command === 'check' && rest.length === 3) {
  check(...rest);
} else if (command === 'table' && rest.length >= 2) {
  table(rest[0], rest.slice(1));
} else {
  process.stderr.write('usage: report.js check PEER.json STATS.json N | report.js table OUT.json RUN.json...\n');
  process.exit(2);
}
