//! Producers.
//!
//! Every producer is idempotent with `acks=all`: a message acknowledged by the broker is on
//! every in-sync replica and appears once per partition, in order, even when librdkafka
//! retries after a lost acknowledgement. What differs between a pipeline and a command is how
//! much is batched and how long a message may wait for the broker.

use std::time::Duration;

use pushservice_config::KafkaSettings;
use rdkafka::producer::{DefaultProducerContext, Producer as _};
use rdkafka::producer::{FutureProducer, ThreadedProducer};

use crate::client::{KafkaError, client_config};

/// How a producer batches and how long it keeps trying.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerTuning {
    /// How long librdkafka waits to fill a batch (`linger.ms`).
    pub linger: Duration,
    /// Upper bound of one batch in bytes (`batch.size`).
    pub batch_bytes: u32,
    /// Bound of the local send queue in messages; a full queue is the backpressure signal.
    pub queue_messages: u32,
    /// Bound of the local send queue in KiB.
    pub queue_kbytes: u32,
    /// How long one message may take to be acknowledged before it fails (`message.timeout.ms`).
    pub message_timeout: Duration,
    /// Compression codec: `lz4` is cheap on CPU and shrinks the repetitive JSON well.
    pub compression: &'static str,
}

impl ProducerTuning {
    /// For daemons that produce millions of messages: large lz4 batches, a bounded queue, and
    /// five minutes of patience so a broker restart delays the pipeline instead of failing it.
    pub fn pipeline() -> Self {
        ProducerTuning {
            linger: Duration::from_millis(10),
            batch_bytes: 1_000_000,
            queue_messages: 100_000,
            queue_kbytes: 64 * 1024,
            message_timeout: Duration::from_secs(300),
            compression: "lz4",
        }
    }

    /// For a one-shot command: small batches, and give up after `timeout`.
    pub fn command(timeout: Duration) -> Self {
        ProducerTuning {
            linger: Duration::from_millis(0),
            batch_bytes: 64 * 1024,
            queue_messages: 1_000,
            queue_kbytes: 16 * 1024,
            message_timeout: timeout,
            compression: "lz4",
        }
    }
}

/// The settings every producer shares: idempotent, `acks=all`, batched and compressed as
/// `tuning` says, messages failing after `message_timeout`.
fn producer_config(
    settings: &KafkaSettings,
    tuning: &ProducerTuning,
    message_timeout: Duration,
) -> rdkafka::ClientConfig {
    let mut config = client_config(settings);
    config
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("compression.type", tuning.compression)
        .set("linger.ms", tuning.linger.as_millis().to_string())
        .set("batch.size", tuning.batch_bytes.to_string())
        .set(
            "queue.buffering.max.messages",
            tuning.queue_messages.to_string(),
        )
        .set(
            "queue.buffering.max.kbytes",
            tuning.queue_kbytes.to_string(),
        )
        .set(
            "message.timeout.ms",
            message_timeout.as_millis().to_string(),
        );
    config
}

/// Builds an idempotent `acks=all` producer.
pub fn producer(
    settings: &KafkaSettings,
    tuning: &ProducerTuning,
) -> Result<FutureProducer, KafkaError> {
    producer_config(settings, tuning, tuning.message_timeout)
        .create()
        .map_err(|e| KafkaError::client("creating producer", e))
}

/// Builds a transactional producer with id `transactional_id` and initializes its
/// transactions (fencing an earlier producer with the same id, aborting what it left open).
/// Its transactions abort on their own after `transaction_timeout` if the process dies in
/// the middle of one; until then `read_committed` consumers of the partitions it wrote to
/// wait. Blocking: call it from `spawn_blocking` or a thread of its own.
pub fn transactional_producer(
    settings: &KafkaSettings,
    tuning: &ProducerTuning,
    transactional_id: &str,
    transaction_timeout: Duration,
) -> Result<ThreadedProducer<DefaultProducerContext>, KafkaError> {
    // A message may not outlive the transaction it belongs to.
    let message_timeout = tuning.message_timeout.min(transaction_timeout);
    let producer: ThreadedProducer<DefaultProducerContext> =
        producer_config(settings, tuning, message_timeout)
            .set("transactional.id", transactional_id)
            .set(
                "transaction.timeout.ms",
                transaction_timeout.as_millis().to_string(),
            )
            .create()
            .map_err(|e| KafkaError::client("creating transactional producer", e))?;
    producer
        .init_transactions(settings.timeout.max(Duration::from_secs(30)))
        .map_err(|e| KafkaError::client("initializing transactions", e))?;
    Ok(producer)
}
