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
}

impl Topics {
    /// Every topic, in creation order.
    pub fn all(&self) -> [TopicSpec; 3] {
        [
            self.raw_push.clone(),
            self.push.clone(),
            self.dead_letter.clone(),
        ]
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
            topic_replication_factor: 1,
        };
        let topics = args.settings().expect("defaults valid");
        assert_eq!(topics.push.partitions, 200);
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
