//! The dead-letter topic: deliveries that failed for good, kept for inspection or replay.
//!
//! The record is the original delivery message, byte for byte, keyed like it, with the reason
//! and where it came from in headers. It is written before the message's offset may be
//! committed, so a failed delivery is never silently dropped.

use std::time::Duration;

use pushservice_kafka::rdkafka::message::{Header, OwnedHeaders};
use pushservice_kafka::rdkafka::producer::{FutureProducer, FutureRecord};

/// Writer of dead-letter records.
#[derive(Clone)]
pub struct DeadLetter {
    producer: FutureProducer,
    topic: String,
}

/// Where a dead letter came from and why.
#[derive(Debug, Clone, Copy)]
pub struct DeadLetterInfo<'a> {
    /// Key of the original message (subscriber id).
    pub key: &'a str,
    /// Partition of the original message.
    pub partition: i32,
    /// Offset of the original message.
    pub offset: i64,
    /// Attempts made.
    pub attempts: u32,
    /// Why it failed (no credentials, no full endpoint).
    pub reason: &'a str,
}

impl DeadLetter {
    /// A writer to `topic`.
    pub fn new(producer: FutureProducer, topic: String) -> Self {
        DeadLetter { producer, topic }
    }

    /// Writes one dead letter, retrying a few times; logs (does not fail) if it cannot.
    pub async fn write(&self, payload: &[u8], info: DeadLetterInfo<'_>) {
        let (partition, offset, attempts) = (
            info.partition.to_string(),
            info.offset.to_string(),
            info.attempts.to_string(),
        );
        for round in 1..=3 {
            let headers = OwnedHeaders::new()
                .insert(Header {
                    key: "x-reason",
                    value: Some(info.reason),
                })
                .insert(Header {
                    key: "x-source-partition",
                    value: Some(&partition),
                })
                .insert(Header {
                    key: "x-source-offset",
                    value: Some(&offset),
                })
                .insert(Header {
                    key: "x-attempts",
                    value: Some(&attempts),
                });
            let record = FutureRecord::to(&self.topic)
                .key(info.key)
                .payload(payload)
                .headers(headers);
            match self.producer.send(record, Duration::from_secs(10)).await {
                Ok(_) => return,
                Err((e, _)) => {
                    tracing::warn!(topic = %self.topic, round, error = %e, "dead-letter write failed");
                    tokio::time::sleep(Duration::from_millis(500 * round)).await;
                }
            }
        }
        tracing::error!(topic = %self.topic, subscriber_id = info.key, partition = info.partition,
            offset = info.offset, reason = info.reason,
            "delivery failed and could not be dead-lettered; it is counted as failed");
    }
}
