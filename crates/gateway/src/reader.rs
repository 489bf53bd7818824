//! The live reader: every gateway reads every partition of the realtime topic, from where the
//! topic ended when it started, without a consumer group (each gateway needs all of it), and
//! hands each message to the hub.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use pushservice_config::KafkaSettings;
use pushservice_kafka::rdkafka::consumer::{BaseConsumer, Consumer as _, StreamConsumer};
use pushservice_kafka::rdkafka::{Message as _, Offset, TopicPartitionList};
use pushservice_kafka::{client_config, partition_count};
use pushservice_model::ObjectId;
use tokio_util::sync::CancellationToken;

use crate::frame;
use crate::hub::{Hub, channel_key};
use crate::metrics::GatewayMetrics;
use crate::sites::SiteCache;

/// The next offset of every partition of `topic` (its high watermarks).
pub async fn end_offsets(kafka: &KafkaSettings, topic: &str) -> anyhow::Result<Vec<i64>> {
    let kafka = kafka.clone();
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = client_config(&kafka)
            .set("group.id", "pushservice-gateway-live")
            .create()
            .context("creating a Kafka client")?;
        let partitions = partition_count(consumer.client(), &kafka, &topic)?;
        // A partition without a leader yet (a topic just created, an election under way)
        // answers an error for a moment: wait for it rather than refuse to start.
        let deadline = std::time::Instant::now() + kafka.timeout.max(Duration::from_secs(10));
        (0..partitions)
            .map(|p| loop {
                match consumer.fetch_watermarks(&topic, p, kafka.timeout) {
                    Ok((_, high)) => return Ok(high),
                    Err(e) if std::time::Instant::now() < deadline => {
                        tracing::debug!(error = %e, partition = p, "end of partition not known yet");
                        std::thread::sleep(Duration::from_millis(200));
                    }
                    Err(e) => {
                        return Err(e).with_context(|| {
                            format!("reading the end of {topic:?} partition {p}")
                        });
                    }
                }
            })
            .collect()
    })
    .await
    .context("watermark task")?
}

/// What the live reader needs.
pub struct LiveReader {
    /// Kafka.
    pub kafka: KafkaSettings,
    /// The realtime topic.
    pub topic: String,
    /// Next offset of each partition to start from.
    pub start: Vec<i64>,
    /// Where messages go.
    pub hub: Arc<Hub>,
    /// Site settings (history sizes).
    pub sites: Arc<SiteCache>,
    /// Counters.
    pub metrics: Arc<GatewayMetrics>,
    /// Largest message data.
    pub max_bytes: usize,
    /// Delivery figures.
    pub acks: Arc<crate::acks::AckBook>,
}

impl LiveReader {
    /// Reads the topic from `start` until `stop`, dispatching every valid message.
    pub async fn run(self, stop: CancellationToken) -> anyhow::Result<()> {
        let LiveReader {
            kafka,
            topic,
            start,
            hub,
            sites,
            metrics,
            max_bytes,
            acks,
        } = self;
        let consumer: StreamConsumer = client_config(&kafka)
            .set("group.id", "pushservice-gateway-live")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("fetch.wait.max.ms", "10")
            .set("fetch.min.bytes", "1")
            .create()
            .context("creating the realtime reader")?;
        let mut assignment = TopicPartitionList::new();
        for (partition, next) in start.iter().enumerate() {
            assignment
                .add_partition_offset(&topic, i32::try_from(partition)?, Offset::Offset(*next))
                .context("building the reader's assignment")?;
        }
        consumer
            .assign(&assignment)
            .with_context(|| format!("assigning {topic:?}"))?;
        loop {
            let message = tokio::select! {
                () = stop.cancelled() => return Ok(()),
                message = consumer.recv() => message,
            };
            let message = match message {
                Ok(message) => message,
                Err(e) => {
                    tracing::warn!(error = %e, "reading the realtime topic");
                    metrics.read_errors.inc();
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
            metrics.messages_read.inc();
            let parsed = match frame::parse(
                message.payload(),
                message.partition(),
                message.offset(),
                message.timestamp().to_millis(),
                max_bytes,
            ) {
                Ok(parsed) => parsed,
                Err(problem) => {
                    metrics.bad_records.inc();
                    tracing::warn!(
                        partition = message.partition(),
                        offset = message.offset(),
                        "skipping a realtime record: {problem}"
                    );
                    continue;
                }
            };
            let history_size = match ObjectId::parse_str(&parsed.site) {
                Ok(site) => match sites.get(site).await {
                    Ok(Some(info)) => info.realtime.history_size() as usize,
                    Ok(None) => {
                        metrics.bad_records.inc();
                        tracing::warn!(site = %parsed.site, "skipping a realtime record of an unknown site");
                        continue;
                    }
                    // MongoDB is away: deliver anyway, with the default history.
                    Err(_) => pushservice_store::realtime::DEFAULT_HISTORY_SIZE as usize,
                },
                Err(_) => continue,
            };
            let key = channel_key(&parsed.site, &parsed.msg.channel);
            if parsed.msg.ack {
                acks.track(
                    &parsed.site,
                    pushservice_realtime::message_id(parsed.msg.partition, parsed.msg.offset),
                );
            }
            let queued = hub.dispatch(&key, parsed.msg, history_size);
            acks.published(&parsed.site, queued as u64);
            metrics.deliveries.add(queued as u64);
        }
    }
}
