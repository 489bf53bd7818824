//! The history recorder: one consumer group over all gateways stores every realtime message
//! in MongoDB (idempotently, by message id), records how far each partition is stored, and
//! only then lets its offsets commit. It also trims each channel's stored history to its
//! site's size limit and removes what is older than the retention.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use pushservice_config::KafkaSettings;
use pushservice_kafka::rdkafka::consumer::Consumer as _;
use pushservice_kafka::rdkafka::{Message as _, Offset, TopicPartitionList};
use pushservice_kafka::{ConsumerTuning, LoggingContext, group_consumer};
use pushservice_model::{DateTime, ObjectId};
use pushservice_store::{HistoryEntry, PendingFallback, Store};
use tokio_util::sync::CancellationToken;

use crate::frame;
use crate::metrics::GatewayMetrics;
use crate::sites::SiteCache;

/// What the recorder needs.
pub struct Recorder {
    /// Kafka.
    pub kafka: KafkaSettings,
    /// The realtime topic.
    pub topic: String,
    /// Its consumer group.
    pub group: String,
    /// MongoDB.
    pub store: Store,
    /// Site settings (history sizes).
    pub sites: Arc<SiteCache>,
    /// Counters.
    pub metrics: Arc<GatewayMetrics>,
    /// Largest message data.
    pub max_bytes: usize,
    /// Stored history older than this is removed.
    pub retention: Duration,
}

const BATCH: usize = 500;
const BATCH_WAIT: Duration = Duration::from_millis(50);
const TRIM_EVERY: Duration = Duration::from_secs(1);
const SWEEP_EVERY: Duration = Duration::from_secs(60);

impl Recorder {
    /// Records until `stop`.
    pub async fn run(self, stop: CancellationToken) -> anyhow::Result<()> {
        let consumer = group_consumer(
            &self.kafka,
            &self.group,
            &ConsumerTuning::default(),
            LoggingContext,
        )?;
        consumer
            .subscribe(&[&self.topic])
            .with_context(|| format!("subscribing to {:?}", self.topic))?;
        let mut to_trim: HashSet<(String, String)> = HashSet::new();
        let mut last_trim = Instant::now();
        let mut last_sweep = Instant::now();
        loop {
            let mut entries: Vec<HistoryEntry> = Vec::new();
            let mut fallbacks: Vec<PendingFallback> = Vec::new();
            let mut last: HashMap<i32, i64> = HashMap::new();
            let deadline = tokio::time::Instant::now() + BATCH_WAIT;
            while entries.len() < BATCH {
                let message = tokio::select! {
                    () = stop.cancelled() => return Ok(()),
                    () = tokio::time::sleep_until(deadline), if !last.is_empty() => break,
                    message = consumer.recv() => message,
                };
                let message = match message {
                    Ok(message) => message,
                    Err(e) => {
                        tracing::warn!(error = %e, "history recorder reading");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    }
                };
                last.insert(message.partition(), message.offset());
                let Ok(parsed) = frame::parse(
                    message.payload(),
                    message.partition(),
                    message.offset(),
                    message.timestamp().to_millis(),
                    self.max_bytes,
                ) else {
                    continue; // The live reader counts and logs bad records.
                };
                to_trim.insert((parsed.site.clone(), parsed.record.channel.clone()));
                if let Some(fallback) = &parsed.record.fallback {
                    let wait = fallback
                        .ack_timeout_ms
                        .unwrap_or(pushservice_realtime::record::DEFAULT_ACK_TIMEOUT_MS);
                    fallbacks.push(PendingFallback {
                        id: pushservice_realtime::message_id(
                            parsed.msg.partition,
                            parsed.msg.offset,
                        ),
                        site_id: parsed.site.clone(),
                        push_id: fallback.push_id.clone(),
                        due_at: DateTime::from_millis(
                            parsed.msg.ts_ms + i64::try_from(wait).unwrap_or(i64::MAX / 2),
                        ),
                        state: "pending".to_owned(),
                    });
                }
                entries.push(HistoryEntry {
                    id: pushservice_realtime::message_id(parsed.msg.partition, parsed.msg.offset),
                    site_id: parsed.site,
                    channel: parsed.record.channel,
                    partition: parsed.msg.partition,
                    offset: parsed.msg.offset,
                    ts: DateTime::from_millis(parsed.msg.ts_ms),
                    frame: parsed.msg.frame.as_str().to_owned(),
                });
            }
            // Stored, then progress recorded, then offsets: a crash in between stores again.
            self.until_done("storing history", &stop, || {
                self.store.store_history(&entries)
            })
            .await;
            for fallback in &fallbacks {
                self.until_done("recording a fallback", &stop, || {
                    self.store.add_fallback(fallback)
                })
                .await;
            }
            for (&partition, &offset) in &last {
                self.until_done("recording history progress", &stop, || {
                    self.store
                        .set_history_stored_through(&self.topic, partition, offset)
                })
                .await;
            }
            let mut offsets = TopicPartitionList::new();
            for (&partition, &offset) in &last {
                offsets
                    .add_partition_offset(&self.topic, partition, Offset::Offset(offset + 1))
                    .context("building offsets")?;
            }
            if let Err(e) = consumer.store_offsets(&offsets) {
                tracing::warn!(error = %e, "storing history offsets (a rebalance took the partition?)");
            }
            self.metrics.history_stored.add(entries.len() as u64);

            if last_trim.elapsed() >= TRIM_EVERY {
                last_trim = Instant::now();
                for (site, channel) in std::mem::take(&mut to_trim) {
                    self.trim(&site, &channel).await;
                }
            }
            if last_sweep.elapsed() >= SWEEP_EVERY {
                last_sweep = Instant::now();
                self.sweep().await;
            }
        }
    }

    /// Retries a store write until it succeeds or the recorder stops: a stalled MongoDB holds
    /// the recorder (and with it the commit of these offsets), never loses history.
    async fn until_done<F, Fut>(&self, what: &str, stop: &CancellationToken, mut write: F)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<(), pushservice_store::StoreError>>,
    {
        let mut wait = Duration::from_millis(100);
        loop {
            match write().await {
                Ok(()) => return,
                Err(e) => {
                    self.metrics.store_errors.inc();
                    tracing::warn!(error = %e, "{what}; retrying in {wait:?}");
                }
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
            wait = (wait * 2).min(Duration::from_secs(5));
        }
    }

    async fn trim(&self, site: &str, channel: &str) {
        let Ok(site_id) = ObjectId::parse_str(site) else {
            return;
        };
        let size = match self.sites.get(site_id).await {
            Ok(Some(info)) => info.realtime.history_size(),
            _ => return,
        };
        match self.store.trim_history_to(site, channel, size).await {
            Ok(removed) => self.metrics.history_trimmed.add(removed),
            Err(e) => tracing::warn!(error = %e, channel, "trimming history"),
        }
    }

    async fn sweep(&self) {
        let cutoff = DateTime::from_millis(
            DateTime::now().timestamp_millis()
                - i64::try_from(self.retention.as_millis()).unwrap_or(i64::MAX),
        );
        let old = match self.store.history_older_than(cutoff, 5_000).await {
            Ok(old) => old,
            Err(e) => {
                tracing::warn!(error = %e, "reading expired history");
                return;
            }
        };
        let mut newest: HashMap<(String, String), i64> = HashMap::new();
        for entry in old {
            let slot = newest.entry((entry.site_id, entry.channel)).or_insert(-1);
            *slot = (*slot).max(entry.offset);
        }
        for ((site, channel), offset) in newest {
            match self
                .store
                .remove_history_through(&site, &channel, offset)
                .await
            {
                Ok(removed) => self.metrics.history_trimmed.add(removed),
                Err(e) => tracing::warn!(error = %e, channel, "removing expired history"),
            }
        }
    }
}
