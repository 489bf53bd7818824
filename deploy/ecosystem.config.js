// pm2 process file for the pushservice fleet: one parser, SENDER_INSTANCES senders (default 2)
// in one consumer group, and the HTTP API. From the repository root, after
// `cargo build --release`:
//
//   pm2 start deploy/ecosystem.config.js            # all three apps
//   pm2 start deploy/ecosystem.config.js --only pushservice-parser,pushservice-sender
//   pm2 scale pushservice-sender 4                  # more senders, each with its own port
//   pm2 delete deploy/ecosystem.config.js           # SIGINT: drain, commit, exit 0
//
// Settings come from .env in the repository root (or the file PUSHSERVICE_ENV_FILE names),
// read by the daemons themselves; variables in pm2's environment win over it. This file only
// sets what differs per process: the telemetry address and the sender's instance name.
//
// Environment read here (when pm2 loads this file):
//   PUSHSERVICE_BIN_DIR       where the binaries are (default target/release; relative to the
//                             repository root)
//   SENDER_INSTANCES          senders to start (default 2)
//   METRICS_HOST              address the telemetry endpoints listen on (default 127.0.0.1)
//   PARSER_METRICS_PORT       parser's /metrics, /healthz, /readyz port (default 9100)
//   SENDER_METRICS_PORT       first sender's port (default 9201); sender N gets this + N - 1
//
// deploy/README.md is the operations guide; scripts/deploy-check runs this file for real.
"use strict";

const os = require("os");
const path = require("path");

const root = path.resolve(__dirname, "..");
const binDir = path.resolve(root, process.env.PUSHSERVICE_BIN_DIR || "target/release");
const metricsHost = process.env.METRICS_HOST || "127.0.0.1";

function count(name, fallback) {
  const text = process.env[name];
  if (text === undefined || text === "") return fallback;
  const value = Number(text);
  if (!Number.isInteger(value) || value < 1 || value > 65535) {
    throw new Error(`${name}=${JSON.stringify(text)}: expected a whole number from 1 to 65535`);
  }
  return value;
}

const senders = count("SENDER_INSTANCES", 2);
const parserPort = count("PARSER_METRICS_PORT", 9100);
const senderPort = count("SENDER_METRICS_PORT", 9201);

// What every daemon shares. pm2 stops an app with SIGINT (PM2_KILL_SIGNAL in the pm2
// daemon's environment changes that for all apps; pm2 has no per-app signal), then SIGKILL
// after kill_timeout. The daemons drain on SIGINT exactly as on SIGTERM, so each app gets
// longer than its own grace period.
const daemon = {
  cwd: root,
  interpreter: "none",
  exec_mode: "fork",
  autorestart: true,
  // A daemon that exits at start (a bad setting: exit code 2) is restarted with growing
  // delays instead of in a tight loop.
  exp_backoff_restart_delay: 1000,
};

module.exports = {
  apps: [
    {
      ...daemon,
      name: "pushservice-parser",
      script: path.join(binDir, "parser"),
      kill_timeout: 60000, // the parser checkpoints and commits
      env: { METRICS_ADDR: `${metricsHost}:${parserPort}` },
    },
    {
      ...daemon,
      name: "pushservice-sender",
      // Several instances of one app, so `pm2 scale` works. Each needs its own telemetry port
      // (two cannot bind one) and its own SENDER_INSTANCE_ID, stable across restarts (so a
      // restarted sender aborts the transaction it left open at once), but a daemon takes only
      // a whole METRICS_ADDR: pm2 raises SENDER_METRICS_PORT by one per instance
      // (increment_var) and numbers the instances in PM2_INSTANCE (instance_var), and a
      // one-line shell turns them into the daemon's settings, then exec()s it, so pm2's
      // signals reach the sender itself.
      script: "/bin/sh",
      args: [
        "-c",
        'METRICS_ADDR="$METRICS_HOST:$SENDER_METRICS_PORT" ' +
          'SENDER_INSTANCE_ID="$PUSHSERVICE_HOST-pm2-sender-$PM2_INSTANCE" ' +
          'exec "$PUSHSERVICE_BIN_DIR/sender"',
      ],
      instances: senders,
      increment_var: "SENDER_METRICS_PORT",
      instance_var: "PM2_INSTANCE",
      kill_timeout: 60000, // SENDER_SHUTDOWN_GRACE_SECS (30 s) for requests in flight, then commit
      env: {
        METRICS_HOST: metricsHost,
        SENDER_METRICS_PORT: senderPort,
        PUSHSERVICE_BIN_DIR: binDir,
        PUSHSERVICE_HOST: os.hostname(),
      },
    },
    {
      ...daemon,
      name: "pushservice-pushapi",
      script: path.join(binDir, "pushapi"),
      // /healthz, /readyz and /metrics are served on API_LISTEN (default 127.0.0.1:8080).
      kill_timeout: 30000, // requests in flight finish, queued tracking events are written
    },
    {
      ...daemon,
      name: "pushservice-gateway",
      script: path.join(binDir, "gateway"),
      // Realtime channels on GATEWAY_LISTEN (default 127.0.0.1:8090), /healthz there too.
      kill_timeout: 15000, // clients are told to reconnect within GATEWAY_SHUTDOWN_SPREAD_MS
    },
  ],
};
