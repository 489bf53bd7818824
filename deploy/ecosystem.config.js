// pm2 process file: `pm2 start deploy/ecosystem.config.js` from the repository root after
// `cargo build --release`. Settings come from .env in the working directory.
const senders = Number(process.env.SENDER_INSTANCES || 2);

module.exports = {
  apps: [
    {
      name: "pushservice-parser",
      script: "target/release/parser",
      interpreter: "none",
      autorestart: true,
      kill_timeout: 60000, // SIGTERM first: the parser checkpoints and commits
    },
    {
      name: "pushservice-sender",
      script: "target/release/sender",
      interpreter: "none",
      instances: senders, // one consumer group: the instances share the partitions
      exec_mode: "fork",
      autorestart: true,
      kill_timeout: 60000, // SIGTERM first: in-flight requests finish, offsets commit
    },
    {
      name: "pushservice-pushapi",
      script: "target/release/pushapi",
      interpreter: "none",
      autorestart: true,
      kill_timeout: 30000, // SIGTERM first: requests in flight finish, events are written
    },
  ],
};
