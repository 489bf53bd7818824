//! Parser settings.

use std::time::Duration;

use crate::supervisor::RetryPolicy;
use pushservice_config::{
    ConfigError, KafkaArgs, KafkaSettings, LogArgs, MongoArgs, MongoSettings, TopicArgs,
};

/// The parser daemon: consumes triggered pushes from the raw-push topic and fans each out to
/// one delivery message per subscriber on the push topic.
#[derive(Debug, clap::Parser)]
#[command(name = "parser", version)]
pub struct ParserArgs {
    /// Logging.
    #[command(flatten)]
    pub log: LogArgs,
    /// MongoDB.
    #[command(flatten)]
    pub mongo: MongoArgs,
    /// Kafka.
    #[command(flatten)]
    pub kafka: KafkaArgs,
    /// Topics.
    #[command(flatten)]
    pub topics: TopicArgs,
    /// Metrics and health endpoint.
    #[command(flatten)]
    pub telemetry: pushservice_daemon::TelemetryArgs,
    /// Consumer group the parsers share (the original service's name).
    #[arg(
        long = "parser-group",
        env = "PARSER_GROUP",
        default_value = "ParserGroup"
    )]
    pub parser_group: String,
    /// Write the fan-out checkpoint on the push every this many subscribers.
    #[arg(
        long = "parser-checkpoint-every",
        env = "PARSER_CHECKPOINT_EVERY",
        default_value_t = 5_000
    )]
    pub checkpoint_every: u32,
    /// Wait this long before retrying a fan-out that failed (MongoDB or Kafka trouble, a
    /// panic), in milliseconds; each further retry waits twice as long.
    #[arg(
        long = "parser-retry-delay-ms",
        env = "PARSER_RETRY_DELAY_MS",
        default_value_t = 5_000
    )]
    pub retry_delay_ms: u64,
    /// Longest wait between two tries of a failing fan-out, in milliseconds.
    #[arg(
        long = "parser-retry-max-delay-ms",
        env = "PARSER_RETRY_MAX_DELAY_MS",
        default_value_t = 60_000
    )]
    pub retry_max_delay_ms: u64,
    /// A fan-out that keeps failing is given up (its push marked `failed` with the reason)
    /// after at least this many tries in a row...
    #[arg(
        long = "parser-retry-attempts",
        env = "PARSER_RETRY_ATTEMPTS",
        default_value_t = 8
    )]
    pub retry_attempts: u32,
    /// ...and at least this many seconds after its first failure. A failure after progress
    /// (a checkpoint written) starts the count again.
    #[arg(
        long = "parser-retry-for-secs",
        env = "PARSER_RETRY_FOR_SECS",
        default_value_t = 300
    )]
    pub retry_for_secs: u64,
    /// Longest fan-out of one push before the group considers this parser stuck, in seconds.
    /// Raise it for audiences of tens of millions.
    #[arg(
        long = "parser-max-poll-interval-secs",
        env = "PARSER_MAX_POLL_INTERVAL_SECS",
        default_value_t = 3_600
    )]
    pub max_poll_interval_secs: u64,
}

/// Validated parser settings.
#[derive(Debug, Clone)]
pub struct ParserConfig {
    /// MongoDB.
    pub mongo: MongoSettings,
    /// Kafka.
    pub kafka: KafkaSettings,
    /// Topic of triggered pushes.
    pub raw_push_topic: String,
    /// Topic of delivery messages.
    pub push_topic: String,
    /// Consumer group.
    pub group: String,
    /// Subscribers between checkpoints.
    pub checkpoint_every: u32,
    /// How a failing fan-out is retried, and when it is given up.
    pub retry: RetryPolicy,
    /// `max.poll.interval.ms` of the consumer.
    pub max_poll_interval: Duration,
    /// Where to serve `/metrics`, `/healthz`, `/readyz`.
    pub metrics_addr: Option<std::net::SocketAddr>,
}

impl ParserArgs {
    /// Checks the arguments.
    pub fn settings(&self) -> Result<ParserConfig, ConfigError> {
        let topics = self.topics.settings()?;
        if self.parser_group.trim().is_empty() {
            return Err(ConfigError {
                key: "PARSER_GROUP",
                problem: "is empty".into(),
            });
        }
        if !(100..=1_000_000).contains(&self.checkpoint_every) {
            return Err(ConfigError {
                key: "PARSER_CHECKPOINT_EVERY",
                problem: format!("{} is not between 100 and 1000000", self.checkpoint_every),
            });
        }
        if self.max_poll_interval_secs < 60 {
            return Err(ConfigError {
                key: "PARSER_MAX_POLL_INTERVAL_SECS",
                problem: "must be at least 60".into(),
            });
        }
        let retry = self.retry_policy()?;
        Ok(ParserConfig {
            mongo: self.mongo.settings()?,
            kafka: self.kafka.settings()?,
            raw_push_topic: topics.raw_push.name,
            push_topic: topics.push.name,
            group: self.parser_group.trim().to_owned(),
            checkpoint_every: self.checkpoint_every,
            retry,
            max_poll_interval: Duration::from_secs(self.max_poll_interval_secs),
            metrics_addr: self.telemetry.addr(),
        })
    }
}

impl ParserArgs {
    fn retry_policy(&self) -> Result<RetryPolicy, ConfigError> {
        if !(10..=3_600_000).contains(&self.retry_delay_ms) {
            return Err(ConfigError {
                key: "PARSER_RETRY_DELAY_MS",
                problem: format!("{} is not between 10 and 3600000", self.retry_delay_ms),
            });
        }
        if !(self.retry_delay_ms..=3_600_000).contains(&self.retry_max_delay_ms) {
            return Err(ConfigError {
                key: "PARSER_RETRY_MAX_DELAY_MS",
                problem: format!(
                    "{} is not between PARSER_RETRY_DELAY_MS ({}) and 3600000",
                    self.retry_max_delay_ms, self.retry_delay_ms
                ),
            });
        }
        if !(1..=1_000).contains(&self.retry_attempts) {
            return Err(ConfigError {
                key: "PARSER_RETRY_ATTEMPTS",
                problem: format!("{} is not between 1 and 1000", self.retry_attempts),
            });
        }
        if self.retry_for_secs > 7 * 24 * 3600 {
            return Err(ConfigError {
                key: "PARSER_RETRY_FOR_SECS",
                problem: format!("{} is more than a week", self.retry_for_secs),
            });
        }
        Ok(RetryPolicy {
            first_delay: Duration::from_millis(self.retry_delay_ms),
            max_delay: Duration::from_millis(self.retry_max_delay_ms),
            attempts: self.retry_attempts,
            patience: Duration::from_secs(self.retry_for_secs),
        })
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;

    fn args(extra: &[&str]) -> ParserArgs {
        let mut argv = vec!["parser"];
        argv.extend_from_slice(extra);
        ParserArgs::try_parse_from(argv).expect("flags parse")
    }

    #[test]
    fn the_default_retry_settings_are_the_default_policy() {
        let config = args(&[]).settings().expect("valid");
        assert_eq!(config.retry, RetryPolicy::default());
    }

    #[test]
    fn retry_settings_are_checked_and_the_key_named() {
        let cases: [(&[&str], &str); 4] = [
            (&["--parser-retry-delay-ms", "0"], "PARSER_RETRY_DELAY_MS"),
            (
                &[
                    "--parser-retry-delay-ms",
                    "9000",
                    "--parser-retry-max-delay-ms",
                    "8000",
                ],
                "PARSER_RETRY_MAX_DELAY_MS",
            ),
            (&["--parser-retry-attempts", "0"], "PARSER_RETRY_ATTEMPTS"),
            (
                &["--parser-retry-for-secs", "99999999"],
                "PARSER_RETRY_FOR_SECS",
            ),
        ];
        for (flags, key) in cases {
            let error = args(flags).settings().expect_err("rejected");
            assert_eq!(error.key, key, "{flags:?}: {error:?}");
        }
        let policy = args(&[
            "--parser-retry-delay-ms",
            "200",
            "--parser-retry-max-delay-ms",
            "1000",
            "--parser-retry-attempts",
            "3",
            "--parser-retry-for-secs",
            "0",
        ])
        .settings()
        .expect("valid")
        .retry;
        assert_eq!(
            policy,
            RetryPolicy {
                first_delay: Duration::from_millis(200),
                max_delay: Duration::from_secs(1),
                attempts: 3,
                patience: Duration::ZERO,
            }
        );
    }
}
