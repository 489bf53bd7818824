//! Starting the pushservice binaries the way an operator would, with one environment per run.
//!
//! Every child gets the same base environment ([`Launcher::new`]; [`Launcher::with_env`] for
//! other modes): the benchmark database's `MONGODB_URL`, the Kafka settings, the run's topic
//! names, `PUSHSERVICE_ENV_FILE=/dev/null` (a developer's `.env` must not redirect a
//! benchmark) and `LOG_LEVEL`. Anything else in the benchmark's own environment
//! (`SENDER_CONCURRENCY`, `QUERY_BATCH_SIZE`, `PUSH_SINK_*` or `API_*` not set here ...) is
//! inherited, so daemon tuning passes straight through.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::Context as _;
use pushservice_config::KafkaArgs;

use crate::config::BenchConfig;

/// Builds commands for the binaries in the run's bin directory.
#[derive(Debug, Clone)]
pub struct Launcher {
    bin_dir: PathBuf,
    out_dir: PathBuf,
    env: Vec<(String, String)>,
}

/// Partitions of the per-run raw-push topic (the parser group waits to hold them all).
pub const RAW_PUSH_PARTITIONS: usize = 4;

/// Partitions of each retry topic of a run (the senders' group holds these too).
pub const RETRY_PARTITIONS: usize = 32;

/// The binaries a run needs.
pub const BINARIES: [&str; 5] = ["push-sink", "pushctl", "seed", "parser", "sender"];

impl Launcher {
    /// The launcher of `config`'s run; checks that every binary is there.
    pub fn new(config: &BenchConfig) -> anyhow::Result<Launcher> {
        let [raw, push, dlq, retry, outcomes] = config.topics();
        let [_, _, recorder_group] = config.groups();
        let mut env = kafka_env(&config.kafka_args);
        env.extend([
            ("MONGODB_URL".to_owned(), config.mongodb_url.clone()),
            ("TOPIC_RAW_PUSH".to_owned(), raw),
            ("TOPIC_PUSH".to_owned(), push),
            ("TOPIC_PUSH_DLQ".to_owned(), dlq),
            ("TOPIC_PUSH_RETRY".to_owned(), retry),
            (
                "TOPIC_PUSH_RETRY_PARTITIONS".to_owned(),
                RETRY_PARTITIONS.to_string(),
            ),
            ("TOPIC_PUSH_OUTCOMES".to_owned(), outcomes),
            ("SENDER_RECORDER_GROUP".to_owned(), recorder_group),
            (
                "TOPIC_PUSH_PARTITIONS".to_owned(),
                config.push_partitions.to_string(),
            ),
            (
                "TOPIC_RAW_PUSH_PARTITIONS".to_owned(),
                RAW_PUSH_PARTITIONS.to_string(),
            ),
            ("SEED_KEY_SEED".to_owned(), config.key_seed.clone()),
            ("LOG_LEVEL".to_owned(), config.log_level.clone()),
        ]);
        Launcher::with_env(&config.bin_dir, &config.out_dir, &BINARIES, env)
    }

    /// A launcher for `binaries` (checked to be in `bin_dir`) whose children get `env` on top
    /// of `PUSHSERVICE_ENV_FILE=/dev/null`; logs go to `out_dir`.
    pub fn with_env(
        bin_dir: &Path,
        out_dir: &Path,
        binaries: &[&str],
        env: Vec<(String, String)>,
    ) -> anyhow::Result<Launcher> {
        for bin in binaries {
            let path = bin_dir.join(bin);
            anyhow::ensure!(
                path.is_file(),
                "{} not found; build the release binaries (`cargo build --release`) or pass \
                 --bin-dir",
                path.display()
            );
        }
        let mut all = vec![("PUSHSERVICE_ENV_FILE".to_owned(), "/dev/null".to_owned())];
        all.extend(env);
        Ok(Launcher {
            bin_dir: bin_dir.to_path_buf(),
            out_dir: out_dir.to_path_buf(),
            env: all,
        })
    }

    /// A command for binary `bin` with the run's environment.
    pub fn command(&self, bin: &str) -> Command {
        let mut command = Command::new(self.bin_dir.join(bin));
        command.envs(self.env.iter().map(|(k, v)| (k, v)));
        command
    }

    /// The log file for `name` in the output directory.
    pub fn log(&self, name: &str) -> PathBuf {
        self.out_dir.join(format!("{name}.log"))
    }

    /// Runs `bin args` to completion and returns its stdout, trimmed; its stderr is appended
    /// to `<bin>.log`. A failure's error carries the end of that log.
    pub async fn output(&self, bin: &str, args: &[&str]) -> anyhow::Result<String> {
        let log = self.log(bin);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .with_context(|| format!("opening {}", log.display()))?;
        let mut command = self.command(bin);
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(file);
        let line = format!("{bin} {}", args.join(" "));
        let output = tokio::task::spawn_blocking(move || command.output())
            .await
            .context("waiting for a child")?
            .with_context(|| format!("starting {line}"))?;
        let stdout = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        if !output.status.success() {
            anyhow::bail!(
                "`{line}` failed ({}): {}{}",
                output.status,
                log_tail(&log, 10),
                if stdout.is_empty() {
                    String::new()
                } else {
                    format!("\nstdout: {stdout}")
                }
            );
        }
        Ok(stdout)
    }
}

/// The Kafka settings as the children read them (`KAFKA_*`), from the flags as given.
pub fn kafka_env(kafka: &KafkaArgs) -> Vec<(String, String)> {
    let mut env = vec![
        ("KAFKA_BROKERS", kafka.kafka_brokers.clone()),
        (
            "KAFKA_SECURITY_ENABLED",
            kafka.kafka_security_enabled.to_string(),
        ),
        ("KAFKA_SASL_MECHANISM", kafka.kafka_sasl_mechanism.clone()),
        ("KAFKA_TIMEOUT_MS", kafka.kafka_timeout_ms.to_string()),
    ];
    let optional = [
        ("KAFKA_USERNAME", &kafka.kafka_username),
        ("KAFKA_PASSWORD", &kafka.kafka_password),
        ("KAFKA_CA_LOCATION", &kafka.kafka_ca_location),
    ];
    env.extend(
        optional
            .into_iter()
            .filter_map(|(key, value)| value.clone().map(|v| (key, v))),
    );
    env.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

/// The last `lines` lines of a log file (empty when unreadable).
pub fn log_tail(path: &std::path::Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut tail: Vec<&str> = text.lines().rev().take(lines).collect();
    tail.reverse();
    tail.join("\n")
}
