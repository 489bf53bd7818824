//! Parser settings.

use std::time::Duration;

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
    /// Wait this long before retrying a push after MongoDB or Kafka failed, in milliseconds.
    #[arg(
        long = "parser-retry-delay-ms",
        env = "PARSER_RETRY_DELAY_MS",
        default_value_t = 5_000
    )]
    pub retry_delay_ms: u64,
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
    /// Delay before retrying a push after an infrastructure error.
    pub retry_delay: Duration,
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
        Ok(ParserConfig {
            mongo: self.mongo.settings()?,
            kafka: self.kafka.settings()?,
            raw_push_topic: topics.raw_push.name,
            push_topic: topics.push.name,
            group: self.parser_group.trim().to_owned(),
            checkpoint_every: self.checkpoint_every,
            retry_delay: Duration::from_millis(self.retry_delay_ms.max(10)),
            max_poll_interval: Duration::from_secs(self.max_poll_interval_secs),
            metrics_addr: self.telemetry.addr(),
        })
    }
}
