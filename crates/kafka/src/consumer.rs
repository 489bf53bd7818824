//! Consumer-group members.
//!
//! At-least-once by construction: `enable.auto.offset.store` is off, so librdkafka's periodic
//! auto-commit only ever commits offsets the application stored with `store_offset` after a
//! message's outcome became final. A crash loses at most the work since the last commit, which
//! is then redone; nothing is skipped.

use std::time::Duration;

use pushservice_config::KafkaSettings;
use rdkafka::consumer::{ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::{ClientContext, TopicPartitionList};

use crate::client::{KafkaError, client_config};

/// How a consumer fetches and commits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerTuning {
    /// How often stored offsets are committed.
    pub commit_interval: Duration,
    /// Longest gap between polls before the member is considered stuck.
    pub max_poll_interval: Duration,
    /// Bound of the prefetched messages waiting in the consumer's queue, KiB (librdkafka's
    /// `queued.max.messages.kbytes`; one queue for all partitions of a group member).
    pub queued_max_kbytes: u32,
    /// Largest fetch response, bytes. librdkafka keeps a whole response in memory until its
    /// last message is consumed and may overshoot the queue bound by one response, so this
    /// bounds memory as much as `queued_max_kbytes` does.
    pub fetch_max_bytes: u32,
    /// Largest share of one partition in a fetch response, bytes.
    pub partition_fetch_max_bytes: u32,
    /// A fetch returns once this many bytes are there (`fetch.min.bytes`) or after
    /// [`ConsumerTuning::fetch_wait_max`]. librdkafka's default of 1 byte answers each fetch as
    /// soon as anything arrived, so a member reading a topic that is being written a little
    /// at a time (a sender while the parser fans out) asks again and again for a few
    /// messages over all its partitions, and the broker spends its CPU on fetches.
    pub fetch_min_bytes: u32,
    /// Longest time the broker holds a fetch waiting for `fetch_min_bytes` (`fetch.wait.max.ms`).
    pub fetch_wait_max: Duration,
    /// Offsets are committed by a transactional producer together with what processing the
    /// messages produced (`send_offsets_to_transaction`), never by the consumer itself.
    pub transactional: bool,
    /// The member's `client.id`, which group descriptions show next to its partitions
    /// (`kafka-consumer-groups.sh --describe`); `pushservice` when unset.
    pub client_id: Option<String>,
}

impl Default for ConsumerTuning {
    fn default() -> Self {
        ConsumerTuning {
            commit_interval: Duration::from_secs(1),
            max_poll_interval: Duration::from_secs(300),
            // Measured on a sender draining a 300,000-message backlog (1 KiB messages): peak
            // RSS 180 MB with a 16 MiB queue and librdkafka's default fetches (50 MiB, 1 MiB
            // per partition), 87 MB with these, at the same CPU per message and rate. 8 MiB is
            // still ~0.4 s of work at 20,000 messages/s.
            queued_max_kbytes: 8 * 1024,
            fetch_max_bytes: 4 * 1024 * 1024,
            partition_fetch_max_bytes: 256 * 1024,
            fetch_min_bytes: 64 * 1024,
            fetch_wait_max: Duration::from_millis(100),
            transactional: false,
            client_id: None,
        }
    }
}

/// Logs partition assignments and revocations, the events an operator needs when instances
/// join or leave.
#[derive(Debug, Default, Clone)]
pub struct LoggingContext;

impl ClientContext for LoggingContext {}

impl ConsumerContext for LoggingContext {
    fn pre_rebalance(
        &self,
        _consumer: &rdkafka::consumer::BaseConsumer<Self>,
        rebalance: &Rebalance<'_>,
    ) {
        match rebalance {
            Rebalance::Assign(list) => tracing::info!(partitions = %describe(list), "assigned"),
            Rebalance::Revoke(list) => tracing::info!(partitions = %describe(list), "revoked"),
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance failed"),
        }
    }
}

/// A short description of a partition list for logs: `topic/0,topic/3` or a summary.
pub fn describe(list: &TopicPartitionList) -> String {
    let mut parts: Vec<String> = list
        .elements()
        .iter()
        .map(|e| format!("{}/{}", e.topic(), e.partition()))
        .collect();
    parts.sort();
    if parts.len() > 8 {
        format!(
            "{} partitions ({} .. {})",
            parts.len(),
            parts[0],
            parts[parts.len() - 1]
        )
    } else {
        parts.join(",")
    }
}

/// Builds a member of consumer group `group_id` with manual offset storing. Subscribing to
/// topics is left to the caller. `context` receives rebalance events ([`LoggingContext`]
/// when logging them is all that is needed).
pub fn group_consumer<C: ConsumerContext + 'static>(
    settings: &KafkaSettings,
    group_id: &str,
    tuning: &ConsumerTuning,
    context: C,
) -> Result<StreamConsumer<C>, KafkaError> {
    let mut config = client_config(settings);
    if let Some(client_id) = &tuning.client_id {
        config.set("client.id", client_id);
    }
    config
        .set("group.id", group_id)
        .set(
            "enable.auto.commit",
            if tuning.transactional {
                "false"
            } else {
                "true"
            },
        )
        .set("enable.auto.offset.store", "false")
        // Only what committed transactions wrote (librdkafka's default, stated because
        // the retry and outcome topics depend on it).
        .set("isolation.level", "read_committed")
        .set(
            "auto.commit.interval.ms",
            tuning.commit_interval.as_millis().to_string(),
        )
        .set("auto.offset.reset", "earliest")
        .set("partition.assignment.strategy", "cooperative-sticky")
        .set(
            "session.timeout.ms",
            settings.session_timeout.as_millis().to_string(),
        )
        .set(
            "max.poll.interval.ms",
            tuning.max_poll_interval.as_millis().to_string(),
        )
        .set(
            "queued.max.messages.kbytes",
            tuning.queued_max_kbytes.to_string(),
        )
        .set("fetch.max.bytes", tuning.fetch_max_bytes.to_string())
        .set("fetch.min.bytes", tuning.fetch_min_bytes.to_string())
        .set(
            "fetch.wait.max.ms",
            tuning.fetch_wait_max.as_millis().to_string(),
        )
        .set(
            "max.partition.fetch.bytes",
            tuning.partition_fetch_max_bytes.to_string(),
        )
        .create_with_context(context)
        .map_err(|e| KafkaError::client(format!("creating consumer in group {group_id:?}"), e))
}
