//! The outcome recorder: applies the outcome topic to MongoDB.
//!
//! Deliveries are final once their outcome is on Kafka; this consumer turns outcomes into
//! what MongoDB keeps: gone subscribers set `subscribed: false`, and per-push counters. It
//! runs inside every sender with a consumer group of its own, so the outcome topic's
//! partitions spread over the senders like the deliveries do.
//!
//! It reads a batch (up to [`BATCH_RECORDS`] records or [`BATCH_LINGER`]), writes it, and
//! only then stores the batch's offsets for commit: a crash re-reads an applied batch, and
//! every write is idempotent. Unsubscribes are idempotent by nature; counts are written per
//! (push, partition) as absolute values under the condition that the stored document ends at
//! the offset read, so records already applied are skipped (see
//! `pushservice_store::delivery_stats`). A write that fails is retried with backoff until it
//! succeeds: a slow or stopped store delays counters and unsubscribes, never delivery, and
//! loses nothing (the outcome topic keeps them).
//!
//! After applying, the recorder refreshes the totals on the push documents it touched
//! recently (for a few seconds after its last change), so totals settle on the exact sum.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pushservice_config::KafkaSettings;
use pushservice_daemon::{Counter, Registry};
use pushservice_kafka::rdkafka::Message as _;
use pushservice_kafka::rdkafka::consumer::{Consumer as _, StreamConsumer};
use pushservice_kafka::{ConsumerTuning, LoggingContext, group_consumer};
use pushservice_model::{ObjectId, OutcomeRecord, OutcomeResult, parse_object_id};
use pushservice_store::{PartitionCounts, Store, StoreError};
use tokio_util::sync::CancellationToken;

/// Most records applied in one batch.
pub const BATCH_RECORDS: usize = 20_000;
/// Longest a batch gathers before it is applied.
pub const BATCH_LINGER: Duration = Duration::from_millis(500);
/// Unsubscribes per `update` command.
const UNSUBSCRIBE_CHUNK: usize = 500;
/// How long after its last change a push's totals keep being recomputed.
const RESYNC_FOR: Duration = Duration::from_secs(5);

/// What the recorder counts.
#[derive(Debug, Clone)]
pub struct RecorderMetrics {
    /// Outcome records applied.
    pub applied: Arc<Counter>,
    /// Outcome records skipped: already applied (a batch read again) or unreadable.
    pub skipped: Arc<Counter>,
    /// Store writes that failed and were retried.
    pub write_failures: Arc<Counter>,
}

impl RecorderMetrics {
    /// Registers the recorder's metrics.
    pub fn new(registry: &Registry) -> Self {
        RecorderMetrics {
            applied: registry.counter(
                "pushservice_recorder_outcomes_applied_total",
                "Outcome records applied to MongoDB.",
                &[],
            ),
            skipped: registry.counter(
                "pushservice_recorder_outcomes_skipped_total",
                "Outcome records not applied: applied before, or unreadable.",
                &[],
            ),
            write_failures: registry.counter(
                "pushservice_recorder_write_failures_total",
                "MongoDB writes of the recorder that failed and were retried.",
                &[],
            ),
        }
    }
}

/// One batch of outcome records, by partition, in offset order.
#[derive(Debug, Default)]
struct Batch {
    partitions: BTreeMap<i32, Vec<(i64, OutcomeRecord)>>,
    last_offsets: BTreeMap<i32, i64>,
    records: usize,
}

/// Runs the recorder until `stop` is cancelled; what it read by then is applied first.
pub async fn run(
    kafka: KafkaSettings,
    group: String,
    topic: String,
    store: Store,
    metrics: RecorderMetrics,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let consumer: StreamConsumer<LoggingContext> =
        group_consumer(&kafka, &group, &ConsumerTuning::default(), LoggingContext)?;
    consumer
        .subscribe(&[&topic])
        .map_err(|e| anyhow::anyhow!("subscribing to {topic:?}: {e}"))?;
    tracing::info!(group = %group, topic = %topic, "outcome recorder started");
    let mut recent: HashMap<ObjectId, Instant> = HashMap::new();
    let mut stopping = false;
    while !stopping {
        let mut batch = Batch::default();
        let deadline = tokio::time::Instant::now() + BATCH_LINGER;
        while batch.records < BATCH_RECORDS {
            tokio::select! {
                () = stop.cancelled() => {
                    stopping = true;
                    break;
                }
                () = tokio::time::sleep_until(deadline) => break,
                received = consumer.recv() => match received {
                    Ok(message) => {
                        let (partition, offset) = (message.partition(), message.offset());
                        batch.last_offsets.insert(partition, offset);
                        match OutcomeRecord::from_json(message.payload().unwrap_or_default()) {
                            Ok(record) => {
                                batch.partitions.entry(partition).or_default().push((offset, record));
                                batch.records += 1;
                            }
                            Err(e) => {
                                metrics.skipped.inc();
                                tracing::warn!(partition, offset, error = %e, "unreadable outcome record skipped");
                            }
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "outcome consumer error");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
            }
        }
        if batch.last_offsets.is_empty() {
            refresh_totals(&store, &mut recent).await;
            continue;
        }
        if !apply(&store, &batch, &metrics, &stop, stopping, &mut recent).await {
            // Stopped while the store was failing: not stored, read again after a restart.
            break;
        }
        for (partition, offset) in &batch.last_offsets {
            // Stores offset + 1 (librdkafka's legacy store call); auto-commit sends it.
            if let Err(e) = consumer.store_offset(&topic, *partition, *offset) {
                tracing::debug!(partition, offset, error = %e, "outcome offset not stored (revoked?)");
            }
        }
        refresh_totals(&store, &mut recent).await;
    }
    if let Err(e) =
        consumer.commit_consumer_state(pushservice_kafka::rdkafka::consumer::CommitMode::Sync)
    {
        tracing::debug!(error = %e, "final outcome commit");
    }
    tracing::info!("outcome recorder stopped");
    Ok(())
}

/// Applies `batch`, retrying failed writes with backoff. Returns false if it stopped before
/// every write succeeded (only when `stop` is cancelled and a write keeps failing).
async fn apply(
    store: &Store,
    batch: &Batch,
    metrics: &RecorderMetrics,
    stop: &CancellationToken,
    stopping: bool,
    recent: &mut HashMap<ObjectId, Instant>,
) -> bool {
    let gone: Vec<ObjectId> = {
        let mut seen = HashSet::new();
        batch
            .partitions
            .values()
            .flatten()
            .filter(|(_, r)| r.result == OutcomeResult::Gone)
            .filter_map(|(_, r)| parse_object_id("subscriber", &r.subscriber_id).ok())
            .filter(|id| seen.insert(*id))
            .collect()
    };
    for chunk in gone.chunks(UNSUBSCRIBE_CHUNK) {
        let written = retrying(
            metrics,
            stop,
            stopping,
            "unsubscribing gone subscribers",
            || store.unsubscribe(chunk),
        )
        .await;
        if written.is_none() {
            return false;
        }
    }
    for (partition, records) in &batch.partitions {
        let mut by_push: BTreeMap<ObjectId, Vec<&(i64, OutcomeRecord)>> = BTreeMap::new();
        for entry in records {
            match parse_object_id("push", &entry.1.push_id) {
                Ok(push_id) => by_push.entry(push_id).or_default().push(entry),
                Err(_) => metrics.skipped.inc(),
            }
        }
        for (push_id, records) in by_push {
            let applied = retrying(metrics, stop, stopping, "writing outcome counts", || {
                apply_counts(store, push_id, *partition, &records)
            })
            .await;
            let Some((applied, skipped)) = applied else {
                return false;
            };
            metrics.applied.add(applied);
            metrics.skipped.add(skipped);
            recent.insert(push_id, Instant::now());
        }
    }
    true
}

/// Applies the records of one push from one partition past the stored offset. Returns how
/// many were applied and how many were skipped as applied before.
async fn apply_counts(
    store: &Store,
    push_id: ObjectId,
    partition: i32,
    records: &[&(i64, OutcomeRecord)],
) -> Result<(u64, u64), StoreError> {
    loop {
        let stored = store.partition_counts(push_id, partition).await?;
        let expected = stored.as_ref().map(|s| s.last_offset);
        let mut next = stored.unwrap_or_else(|| PartitionCounts {
            last_offset: -1,
            ..PartitionCounts::default()
        });
        let (mut applied, mut skipped) = (0, 0);
        for (offset, record) in records {
            if *offset <= next.last_offset {
                skipped += 1;
                continue;
            }
            count(&mut next, record);
            next.last_offset = *offset;
            applied += 1;
        }
        if applied == 0 {
            return Ok((0, skipped));
        }
        if store
            .write_partition_counts(push_id, partition, expected, &next)
            .await?
        {
            return Ok((applied, skipped));
        }
        // Someone else (the partition's previous owner) wrote in between: read again.
    }
}

/// Adds one outcome to `counts`. A replayed dead letter already counted as failed once;
/// its outcome now replaces that failure.
fn count(counts: &mut PartitionCounts, record: &OutcomeRecord) {
    match record.result {
        OutcomeResult::Accepted => counts.counts.accepted += 1,
        OutcomeResult::Gone => counts.counts.unsubscribed += 1,
        OutcomeResult::Canceled => counts.counts.canceled += 1,
        OutcomeResult::Failed => {
            counts.counts.failed += 1;
            counts.add_reason(record.reason.as_deref().unwrap_or("unknown"), 1);
        }
    }
    if record.replayed {
        counts.counts.failed -= 1;
        counts.add_reason(record.replaced_failure.as_deref().unwrap_or("unknown"), -1);
    }
}

/// Runs `write` until it succeeds; `None` if it keeps failing (three times) once the
/// recorder is stopping.
async fn retrying<T, F, Fut>(
    metrics: &RecorderMetrics,
    stop: &CancellationToken,
    stopping: bool,
    what: &str,
    mut write: F,
) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    let mut backoff = Duration::from_millis(200);
    let mut failures = 0u32;
    loop {
        match write().await {
            Ok(value) => return Some(value),
            Err(e) => {
                metrics.write_failures.inc();
                failures += 1;
                if (stopping || stop.is_cancelled()) && failures >= 3 {
                    tracing::warn!(error = %e, "{what} failed while stopping; the batch is applied after a restart");
                    return None;
                }
                tracing::warn!(error = %e, retry_in = ?backoff, "{what} failed; retrying");
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = stop.cancelled(), if !stopping => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
}

/// Sets the totals of the pushes touched in the last [`RESYNC_FOR`] to the sum over their
/// counter documents (written only once a push's fan-out is over; until then the parser
/// carries them). Best effort: the next batch tries again.
async fn refresh_totals(store: &Store, recent: &mut HashMap<ObjectId, Instant>) {
    recent.retain(|_, at| at.elapsed() < RESYNC_FOR);
    for push_id in recent.keys() {
        let result = async {
            let summary = store.delivery_summary(*push_id).await?;
            store.set_delivery_totals(*push_id, &summary).await
        }
        .await;
        if let Err(e) = result {
            tracing::debug!(push_id = %push_id, error = %e, "refreshing push totals");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replayed_dead_letter_replaces_its_failure() {
        let mut counts = PartitionCounts::default();
        let failed = OutcomeRecord::new("p", "s", OutcomeResult::Failed, Some("500"), 9, false);
        count(&mut counts, &failed);
        let mut replayed = OutcomeRecord::new("p", "s", OutcomeResult::Accepted, None, 1, true);
        replayed.replaced_failure = Some("500".into());
        count(&mut counts, &replayed);
        assert_eq!(
            (counts.counts.accepted, counts.counts.failed),
            (1, 0),
            "one delivery, accepted in the end"
        );
        assert_eq!(
            counts.reasons[0].count, 0,
            "its failure's reason is taken back"
        );
    }
}
