//! Reading a topic without joining a consumer group: for `pushctl tail` and for tests.

use std::time::{Duration, Instant};

use pushservice_config::KafkaSettings;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};

use crate::client::{KafkaError, client_config};

/// Where reading starts in every partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadFrom {
    /// The oldest message still retained.
    Beginning,
    /// Only messages produced from now on.
    End,
}

/// One message read from a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadMessage {
    /// Partition it was read from.
    pub partition: i32,
    /// Its offset in that partition.
    pub offset: i64,
    /// Its key, if any.
    pub key: Option<Vec<u8>>,
    /// Its value, if any.
    pub payload: Option<Vec<u8>>,
    /// Producer or broker timestamp, milliseconds since the epoch.
    pub timestamp_ms: Option<i64>,
}

/// Reads up to `max` messages of every partition of `topic`, stopping early once nothing
/// arrived for `idle`. Blocking: call it from `spawn_blocking` in async code.
pub fn read_topic(
    settings: &KafkaSettings,
    topic: &str,
    from: ReadFrom,
    max: usize,
    idle: Duration,
) -> Result<Vec<ReadMessage>, KafkaError> {
    let consumer: BaseConsumer = client_config(settings)
        // Never used to commit: offsets are assigned explicitly and nothing is stored.
        .set("group.id", "pushservice-reader")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()
        .map_err(|e| KafkaError::client("creating reader", e))?;
    let partitions = crate::admin::partition_count(consumer.client(), settings, topic)?;
    let offset = match from {
        ReadFrom::Beginning => Offset::Beginning,
        ReadFrom::End => Offset::End,
    };
    let mut assignment = TopicPartitionList::new();
    for partition in 0..partitions {
        assignment
            .add_partition_offset(topic, partition, offset)
            .map_err(|e| KafkaError::client("building assignment", e))?;
    }
    consumer
        .assign(&assignment)
        .map_err(|e| KafkaError::client(format!("assigning {topic:?}"), e))?;

    let mut messages = Vec::new();
    let mut last_seen = Instant::now();
    while messages.len() < max && last_seen.elapsed() < idle {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => {
                last_seen = Instant::now();
                messages.push(ReadMessage {
                    partition: message.partition(),
                    offset: message.offset(),
                    key: message.key().map(<[u8]>::to_vec),
                    payload: message.payload().map(<[u8]>::to_vec),
                    timestamp_ms: message.timestamp().to_millis(),
                });
            }
            Some(Err(e)) => return Err(KafkaError::client(format!("reading {topic:?}"), e)),
            None => {}
        }
    }
    Ok(messages)
}
