//! Topic names and partition counts.

use crate::ConfigError;

/// Topic flags and environment keys.
#[derive(Debug, Clone, clap::Args)]
pub struct TopicArgs {
    /// Topic of triggered pushes (`pushctl send` → parser).
    #[arg(
        long = "topic-raw-push",
        env = "TOPIC_RAW_PUSH",
        default_value = "raw-push"
    )]
    pub topic_raw_push: String,

    /// Topic of per-subscriber deliveries (parser → senders).
    #[arg(long = "topic-push", env = "TOPIC_PUSH", default_value = "push")]
    pub topic_push: String,

    /// Partitions of the raw-push topic: how many parsers can work at once.
    #[arg(
        long = "topic-raw-push-partitions",
        env = "TOPIC_RAW_PUSH_PARTITIONS",
        default_value_t = 4
    )]
    pub topic_raw_push_partitions: i32,

    /// Partitions of the push topic: how many senders can share the deliveries.
    #[arg(
        long = "topic-push-partitions",
        env = "TOPIC_PUSH_PARTITIONS",
        default_value_t = 200
    )]
    pub topic_push_partitions: i32,

    /// Dead-letter topic: deliveries that failed for good, with the reason in headers.
    #[arg(
        long = "topic-push-dlq",
        env = "TOPIC_PUSH_DLQ",
        default_value = "push-dlq"
    )]
    pub topic_push_dlq: String,

    /// Partitions of the dead-letter topic.
    #[arg(
        long = "topic-push-dlq-partitions",
        env = "TOPIC_PUSH_DLQ_PARTITIONS",
        default_value_t = 4
    )]
    pub topic_push_dlq_partitions: i32,

    /// Retry topics' name prefix: a delivery waiting for a retry lives on
    /// `<prefix>-10s`, `<prefix>-1m` or `<prefix>-10m` (by how long it waits), not in a
    /// sender's memory.
    #[arg(
        long = "topic-push-retry",
        env = "TOPIC_PUSH_RETRY",
        default_value = "push-retry"
    )]
    pub topic_push_retry: String,

    /// Partitions of each retry topic.
    #[arg(
        long = "topic-push-retry-partitions",
        env = "TOPIC_PUSH_RETRY_PARTITIONS",
        default_value_t = 32
    )]
    pub topic_push_retry_partitions: i32,

    /// Outcome topic: every final delivery outcome, recorded before its message counts as
    /// done; MongoDB's counters and unsubscribes are applied from it.
    #[arg(
        long = "topic-push-outcomes",
        env = "TOPIC_PUSH_OUTCOMES",
        default_value = "push-outcomes"
    )]
    pub topic_push_outcomes: String,

    /// Partitions of the outcome topic: how many senders apply outcomes to MongoDB at once.
    #[arg(
        long = "topic-push-outcomes-partitions",
        env = "TOPIC_PUSH_OUTCOMES_PARTITIONS",
        default_value_t = 16
    )]
    pub topic_push_outcomes_partitions: i32,

    /// Realtime topic: messages for connected clients (keyed by site and channel, so a
    /// channel's messages keep their order); every gateway reads all of it.
    #[arg(
        long = "topic-realtime",
        env = "TOPIC_REALTIME",
        default_value = "realtime"
    )]
    pub topic_realtime: String,

    /// Partitions of the realtime topic: how many gateways record history at once.
    #[arg(
        long = "topic-realtime-partitions",
        env = "TOPIC_REALTIME_PARTITIONS",
        default_value_t = 16
    )]
    pub topic_realtime_partitions: i32,

    /// Replication factor of topics `pushctl topics create` makes (3 in production clusters).
    #[arg(
        long = "topic-replication-factor",
        env = "TOPIC_REPLICATION_FACTOR",
        default_value_t = 1
    )]
    pub topic_replication_factor: i32,
}

/// A topic to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    /// Topic name.
    pub name: String,
    /// Partition count.
    pub partitions: i32,
    /// Replication factor.
    pub replication: i32,
}

/// Validated topic settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    /// The raw-push topic.
    pub raw_push: TopicSpec,
    /// The push (delivery) topic.
    pub push: TopicSpec,
    /// The dead-letter topic of failed deliveries.
    pub dead_letter: TopicSpec,
    /// Retry topics' prefix and partition count (see [`Topics::retry_tiers`]).
    pub retry: TopicSpec,
    /// The outcome topic.
    pub outcomes: TopicSpec,
    /// The realtime topic (messages for connected clients).
    pub realtime: TopicSpec,
}

/// How long deliveries on each retry topic wait at most, with the topic's name suffix.
///
/// A delivery goes to the first tier whose wait covers its delay, so within one retry
/// partition the due times of consecutive messages differ by less than the tier's width: the
/// consumer waiting for the oldest one due holds back a later one by at most that much.
/// Longer delays (a `Retry-After` of an hour) go to the last tier and wait there.
pub const RETRY_TIERS: [(&str, std::time::Duration); 3] = [
    ("10s", std::time::Duration::from_secs(10)),
    ("1m", std::time::Duration::from_secs(60)),
    ("10m", std::time::Duration::from_secs(600)),
];

/// Members each sender has in its consumer group (`SENDER_GROUP`): one reads the push topic,
/// the other the retry tiers, so each topic set is spread over the senders on its own.
pub const SENDER_GROUP_MEMBERS_PER_SENDER: usize = 2;

impl Topics {
    /// Every topic, in creation order.
    pub fn all(&self) -> Vec<TopicSpec> {
        let mut all = vec![
            self.raw_push.clone(),
            self.push.clone(),
            self.dead_letter.clone(),
            self.outcomes.clone(),
            self.realtime.clone(),
        ];
        all.extend(self.retry_tiers().into_iter().map(|(spec, _)| spec));
        all
    }

    /// The retry topics, shortest wait first, with the longest wait of each
    /// ([`RETRY_TIERS`]).
    pub fn retry_tiers(&self) -> Vec<(TopicSpec, std::time::Duration)> {
        RETRY_TIERS
            .iter()
            .map(|(suffix, wait)| {
                let spec = TopicSpec {
                    name: format!("{}-{suffix}", self.retry.name),
                    ..self.retry.clone()
                };
                (spec, *wait)
            })
            .collect()
    }
}

impl TopicArgs {
    /// Checks the arguments.
    pub fn settings(&self) -> Result<Topics, ConfigError> {
        let replication = self.topic_replication_factor;
        if !(1..=16).contains(&replication) {
            return Err(ConfigError::new(
                "TOPIC_REPLICATION_FACTOR",
                "must be between 1 and 16",
            ));
        }
        Ok(Topics {
            raw_push: TopicSpec {
                name: topic_name("TOPIC_RAW_PUSH", &self.topic_raw_push)?,
                partitions: partitions(
                    "TOPIC_RAW_PUSH_PARTITIONS",
                    self.topic_raw_push_partitions,
                )?,
                replication,
            },
            push: TopicSpec {
                name: topic_name("TOPIC_PUSH", &self.topic_push)?,
                partitions: partitions("TOPIC_PUSH_PARTITIONS", self.topic_push_partitions)?,
                replication,
            },
            dead_letter: TopicSpec {
                name: topic_name("TOPIC_PUSH_DLQ", &self.topic_push_dlq)?,
                partitions: partitions(
                    "TOPIC_PUSH_DLQ_PARTITIONS",
                    self.topic_push_dlq_partitions,
                )?,
                replication,
            },
            retry: TopicSpec {
                // Room for the longest tier suffix within Kafka's 249 characters.
                name: topic_name("TOPIC_PUSH_RETRY", &self.topic_push_retry)
                    .and_then(|name| topic_name("TOPIC_PUSH_RETRY", &format!("{name}-10m")))
                    .map(|name| name.trim_end_matches("-10m").to_owned())?,
                partitions: partitions(
                    "TOPIC_PUSH_RETRY_PARTITIONS",
                    self.topic_push_retry_partitions,
                )?,
                replication,
            },
            outcomes: TopicSpec {
                name: topic_name("TOPIC_PUSH_OUTCOMES", &self.topic_push_outcomes)?,
                partitions: partitions(
                    "TOPIC_PUSH_OUTCOMES_PARTITIONS",
                    self.topic_push_outcomes_partitions,
                )?,
                replication,
            },
            realtime: TopicSpec {
                name: topic_name("TOPIC_REALTIME", &self.topic_realtime)?,
                partitions: partitions(
                    "TOPIC_REALTIME_PARTITIONS",
                    self.topic_realtime_partitions,
                )?,
                replication,
            },
        })
    }
}

/// Kafka's own rule: 1–249 characters of `[a-zA-Z0-9._-]`, not `.` or `..`.
fn topic_name(key: &'static str, name: &str) -> Result<String, ConfigError> {
    let name = name.trim();
    let legal = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if name.is_empty()
        || name.len() > 249
        || name == "."
        || name == ".."
        || !name.chars().all(legal)
    {
        return Err(ConfigError::new(
            key,
            format!("{name:?} is not a legal Kafka topic name (1-249 of a-z A-Z 0-9 . _ -)"),
        ));
    }
    Ok(name.to_owned())
}

fn partitions(key: &'static str, count: i32) -> Result<i32, ConfigError> {
    if !(1..=10_000).contains(&count) {
        return Err(ConfigError::new(
            key,
            format!("{count} is not between 1 and 10000"),
        ));
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_names_and_counts() {
        let mut args = TopicArgs {
            topic_raw_push: "raw-push".into(),
            topic_push: "push".into(),
            topic_raw_push_partitions: 4,
            topic_push_partitions: 200,
            topic_push_dlq: "push-dlq".into(),
            topic_push_dlq_partitions: 4,
            topic_push_retry: "push-retry".into(),
            topic_push_retry_partitions: 32,
            topic_push_outcomes: "push-outcomes".into(),
            topic_push_outcomes_partitions: 16,
            topic_realtime: "realtime".into(),
            topic_realtime_partitions: 16,
            topic_replication_factor: 1,
        };
        let topics = args.settings().expect("defaults valid");
        assert_eq!(topics.push.partitions, 200);
        let names: Vec<String> = topics.all().into_iter().map(|t| t.name).collect();
        assert_eq!(
            names,
            [
                "raw-push",
                "push",
                "push-dlq",
                "push-outcomes",
                "realtime",
                "push-retry-10s",
                "push-retry-1m",
                "push-retry-10m"
            ]
        );
        args.topic_push = "bad topic".into();
        assert_eq!(args.settings().expect_err("space").key, "TOPIC_PUSH");
        args.topic_push = "push".into();
        args.topic_raw_push_partitions = 0;
        assert_eq!(
            args.settings().expect_err("zero").key,
            "TOPIC_RAW_PUSH_PARTITIONS"
        );
    }
}
