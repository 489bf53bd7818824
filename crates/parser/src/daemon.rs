//! The parser's consumer loop.
//!
//! One raw-push message is one *job*: the supervised fan-out of its push
//! ([`crate::supervisor`]: retries with backoff, a bounded budget, panics caught). While a
//! partition's job runs the partition is *paused*, so its next push waits (pushes of one
//! partition stay in order and the offset can simply be stored when the job ends) while other
//! partitions' pushes run concurrently. The loop keeps polling the consumer throughout, so the
//! group sees a live member. When a job ends:
//! - with a verdict (done, canceled, skipped, or failed: given up after its retry budget and
//!   marked `failed` with the reason) → store its offset, resume the partition;
//! - cancelled (shutdown, partition revoked) → leave the offset: whoever owns the partition
//!   next gets the message again and resumes from the checkpoint. The partition is resumed
//!   all the same, see below.
//!
//! **Rebalances.** librdkafka keeps a partition's pause across a revoke and a later assign,
//! so a partition revoked while its job ran would come back paused with no job left to resume
//! it, and never be read again. So the rebalance callback resumes every newly assigned
//! partition that has no job here, and a job that ends resumes its partition whatever the
//! reason (a no-op when the partition is no longer ours). A partition assigned back while its
//! cancelled job still winds down stays paused until that job ends, so one parser never runs
//! two fan-outs of the same partition.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use pushservice_daemon::{Health, Probes, Registry, serve_telemetry};
use pushservice_kafka::rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer as _, ConsumerContext, Rebalance,
};
use pushservice_kafka::rdkafka::{ClientContext, Message as _, Offset, TopicPartitionList};
use pushservice_kafka::{ConsumerTuning, ProducerTuning, describe, group_consumer, producer};
use pushservice_model::RawPushMessage;
use pushservice_store::Store;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::config::ParserConfig;
use crate::fanout::{Fanout, Verdict};
use crate::metrics::ParserMetrics;
use crate::supervisor::{Supervised, Supervisor};

/// The cancellation token of the job running on each partition (at most one), shared with
/// the rebalance callback.
type Running = Arc<Mutex<HashMap<i32, CancellationToken>>>;

fn lock(running: &Running) -> std::sync::MutexGuard<'_, HashMap<i32, CancellationToken>> {
    // The map stays consistent whatever panicked while holding it: every change is one call.
    running.lock().unwrap_or_else(|p| p.into_inner())
}

/// Consumer context that cancels the jobs of revoked partitions, so a partition's push never
/// runs on two parsers at once for longer than one subscriber, and resumes newly assigned
/// partitions that have no job (see the module docs).
struct ParserContext {
    running: Running,
}

impl ClientContext for ParserContext {}

impl ConsumerContext for ParserContext {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(list) => tracing::info!(partitions = %describe(list), "assigned"),
            Rebalance::Revoke(list) => {
                tracing::info!(partitions = %describe(list), "revoked");
                let running = lock(&self.running);
                for element in list.elements() {
                    if let Some(token) = running.get(&element.partition()) {
                        token.cancel();
                    }
                }
            }
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance failed"),
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Assign(list) = rebalance else {
            return;
        };
        let mut idle = TopicPartitionList::new();
        {
            let running = lock(&self.running);
            for element in list.elements() {
                if !running.contains_key(&element.partition()) {
                    idle.add_partition(element.topic(), element.partition());
                }
            }
        }
        if idle.count() > 0 {
            // Clears a pause left from before a revoke; a no-op on a partition never paused.
            if let Err(e) = consumer.resume(&idle) {
                tracing::warn!(partitions = %describe(&idle), error = %e,
                    "could not resume assigned partitions");
            }
        }
    }
}

/// Which raw-push message a job works on.
#[derive(Debug, Clone)]
struct JobKey {
    partition: i32,
    offset: i64,
    push_id: String,
}

/// How a job ended.
#[derive(Debug)]
enum JobEnd {
    /// For good: the offset may be stored.
    Verdict(Verdict),
    /// Shutdown or revoke: the push resumes from its checkpoint wherever it runs next.
    Cancelled { produced: i64 },
}

/// Runs the parser until `shutdown` resolves, then stops fan-outs at their next subscriber,
/// checkpoints them, commits and returns.
pub async fn run(config: ParserConfig, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let registry = Arc::new(Registry::default());
    let health = Arc::new(Health::default());
    if let Some(addr) = config.metrics_addr {
        serve_telemetry(addr, Arc::clone(&registry), Arc::clone(&health))
            .await
            .map_err(|e| anyhow::anyhow!("METRICS_ADDR {addr}: {e}"))?;
    }
    let metrics = Arc::new(ParserMetrics::new(&registry));
    let store = Store::connect(&config.mongo).await?;
    store.ensure_indexes().await?;
    let producer = producer(&config.kafka, &ProducerTuning::pipeline())?;
    let running: Running = Arc::default();
    let tuning = ConsumerTuning {
        max_poll_interval: config.max_poll_interval,
        // Triggers are few and small: each is fetched the moment it is written, not after
        // the broker waited for a fuller fetch.
        fetch_min_bytes: 1,
        ..ConsumerTuning::default()
    };
    let consumer = Arc::new(group_consumer(
        &config.kafka,
        &config.group,
        &tuning,
        ParserContext {
            running: Arc::clone(&running),
        },
    )?);
    consumer
        .subscribe(&[&config.raw_push_topic])
        .map_err(|e| anyhow::anyhow!("subscribing to {:?}: {e}", config.raw_push_topic))?;
    let fanout = Fanout {
        store,
        producer: producer.clone(),
        topic: config.push_topic.clone(),
        checkpoint_every: config.checkpoint_every,
        metrics: Arc::clone(&metrics),
    };
    let supervisor = Supervisor {
        policy: config.retry.clone(),
        metrics: Arc::clone(&metrics),
    };
    let stop_probes = CancellationToken::new();
    let probes = {
        let consumer = Arc::clone(&consumer);
        Probes::new(&config.kafka)
            .store(fanout.store.clone())
            .group(&config.group, &[config.raw_push_topic.as_str()])
            .assigned(Arc::new(move || {
                consumer
                    .assignment()
                    .map(|list| list.count())
                    .map_err(|e| e.to_string())
            }))
            .spawn(Arc::clone(&health), &registry, stop_probes.clone())
    };
    health.set_ready(true);
    tracing::info!(group = %config.group, raw_push = %config.raw_push_topic, push = %config.push_topic,
        brokers = %config.kafka.brokers, "parser started");

    let mut jobs: JoinSet<JobEnd> = JoinSet::new();
    let mut keys: HashMap<tokio::task::Id, JobKey> = HashMap::new();
    let mut shutdown = std::pin::pin!(shutdown);
    let topic = config.raw_push_topic.as_str();
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            received = consumer.recv() => {
                let message = match received {
                    Ok(message) => message,
                    Err(e) => {
                        tracing::warn!(error = %e, "consumer error");
                        continue;
                    }
                };
                let (partition, offset) = (message.partition(), message.offset());
                let raw = match parse_raw_push(message.payload()) {
                    Ok(raw) => raw,
                    Err(reason) => {
                        tracing::error!(partition, offset, %reason,
                            "malformed raw-push message skipped; re-send the push with pushctl");
                        metrics.finished(&Verdict::Skipped(reason));
                        store_offset(&*consumer, topic, partition, offset);
                        continue;
                    }
                };
                if lock(&running).contains_key(&partition) {
                    // Not expected while the partition is paused. One job per partition keeps
                    // offsets in order: this message comes again when the running job ends.
                    tracing::warn!(partition, offset, "raw-push received while a job runs on its partition; deferred");
                    pause(&*consumer, topic, partition, offset);
                    continue;
                }
                pause(&*consumer, topic, partition, offset + 1);
                metrics.running.add(1);
                let token = CancellationToken::new();
                lock(&running).insert(partition, token.clone());
                let key = JobKey { partition, offset, push_id: raw.push_id.clone() };
                let span = tracing::info_span!("fanout", push_id = %raw.push_id, partition, offset);
                let job = run_job(fanout.clone(), supervisor.clone(), raw, token).instrument(span);
                let handle = jobs.spawn(job);
                keys.insert(handle.id(), key);
            }
            Some(joined) = jobs.join_next_with_id() => {
                let (key, end) = match joined {
                    Ok((id, end)) => (keys.remove(&id), Ok(end)),
                    Err(e) => (keys.remove(&e.id()), Err(e)),
                };
                let Some(key) = key else {
                    tracing::error!("a parser job ended that the loop did not start");
                    continue;
                };
                job_ended(&*consumer, topic, &running, &metrics, &key, end);
            }
        }
    }

    health.set_ready(false);
    stop_probes.cancel();
    let _ = probes.await;

    tracing::info!(
        running = jobs.len(),
        "stopping fan-outs at their next subscriber"
    );
    for token in lock(&running).values() {
        token.cancel();
    }
    while let Some(joined) = jobs.join_next_with_id().await {
        if let Ok((id, JobEnd::Verdict(_))) = joined
            && let Some(key) = keys.remove(&id)
        {
            store_offset(&*consumer, topic, key.partition, key.offset);
        }
    }
    if let Err(e) = consumer.commit_consumer_state(CommitMode::Sync) {
        // Nothing stored since the last commit is also reported as an error; harmless.
        tracing::debug!(error = %e, "final commit");
    }
    fanout.store.close().await;
    tracing::info!("parser stopped");
    Ok(())
}

/// Reads a raw-push record; the error says what is wrong with it.
fn parse_raw_push(payload: Option<&[u8]>) -> Result<RawPushMessage, String> {
    let payload = payload.ok_or_else(|| "empty message".to_owned())?;
    RawPushMessage::from_json(payload).map_err(|e| e.to_string())
}

/// One raw-push message's job: the supervised fan-out, and the failure recorded on the push
/// when it is given up.
async fn run_job(
    fanout: Fanout,
    supervisor: Supervisor,
    raw: RawPushMessage,
    token: CancellationToken,
) -> JobEnd {
    let attempt = |progress| {
        let (fanout, raw, token) = (fanout.clone(), raw.clone(), token.clone());
        async move { fanout.process(&raw, &token, &progress).await }
    };
    match supervisor.run(&token, attempt).await {
        Supervised::Finished(verdict) => JobEnd::Verdict(verdict),
        Supervised::Cancelled { produced } => JobEnd::Cancelled { produced },
        Supervised::GaveUp { reason } => {
            match fanout
                .record_failure(&raw, &reason, &supervisor.policy, &token)
                .await
            {
                Some(verdict) => JobEnd::Verdict(verdict),
                None => JobEnd::Cancelled { produced: 0 },
            }
        }
    }
}

/// Books the end of a job: logs and counts it, stores its offset when it ended for good, and
/// resumes its partition. A job that crashed (a panic outside the fan-out, which the
/// supervisor catches) has its offset stored all the same, so the parser moves on rather than
/// wedging the partition.
fn job_ended<C: ConsumerContext>(
    consumer: &impl pushservice_kafka::rdkafka::consumer::Consumer<C>,
    topic: &str,
    running: &Running,
    metrics: &ParserMetrics,
    key: &JobKey,
    end: Result<JobEnd, tokio::task::JoinError>,
) {
    let JobKey {
        partition,
        offset,
        ref push_id,
    } = *key;
    metrics.running.add(-1);
    lock(running).remove(&partition);
    match end {
        Ok(JobEnd::Verdict(verdict)) => {
            metrics.finished(&verdict);
            match &verdict {
                Verdict::Done(report) => tracing::info!(
                    push_id,
                    partition,
                    offset,
                    produced = report.produced,
                    skipped = report.skipped,
                    seconds = report.elapsed.as_secs_f64(),
                    rate = format!(
                        "{:.0}/s",
                        report.produced as f64 / report.elapsed.as_secs_f64().max(1e-3)
                    ),
                    "push fanned out"
                ),
                Verdict::Skipped(reason) => {
                    tracing::warn!(push_id, partition, offset, %reason, "raw-push skipped");
                }
                Verdict::Failed(reason) => {
                    tracing::error!(push_id, partition, offset, %reason, "push failed");
                }
                Verdict::Canceled(report) => tracing::info!(
                    push_id,
                    partition,
                    offset,
                    produced = report.produced,
                    skipped = report.skipped,
                    canceled = report.canceled,
                    seconds = report.elapsed.as_secs_f64(),
                    "push canceled during its fan-out"
                ),
            }
            store_offset(consumer, topic, partition, offset);
        }
        Ok(JobEnd::Cancelled { produced }) => {
            tracing::info!(
                push_id,
                partition,
                offset,
                produced,
                "fan-out stopped; it resumes from its checkpoint"
            );
        }
        Err(e) => {
            tracing::error!(push_id, partition, offset, error = %e,
                "parser job crashed; its push is left as it is: re-send it with `pushctl send --force`");
            store_offset(consumer, topic, partition, offset);
        }
    }
    resume(consumer, topic, partition);
}

fn store_offset<C: ConsumerContext>(
    consumer: &impl pushservice_kafka::rdkafka::consumer::Consumer<C>,
    topic: &str,
    partition: i32,
    offset: i64,
) {
    if let Err(e) = consumer.store_offset(topic, partition, offset) {
        // The partition moved to another parser meanwhile; it will redo this push from the
        // checkpoint, which finds it done.
        tracing::debug!(partition, offset, error = %e, "offset not stored");
    }
}

fn partition_list(topic: &str, partition: i32) -> TopicPartitionList {
    let mut list = TopicPartitionList::new();
    list.add_partition(topic, partition);
    list
}

/// Pauses `partition`; after `resume` it is read from offset `next`.
fn pause<C: ConsumerContext>(
    consumer: &impl pushservice_kafka::rdkafka::consumer::Consumer<C>,
    topic: &str,
    partition: i32,
    next: i64,
) {
    if let Err(e) = consumer.pause(&partition_list(topic, partition)) {
        tracing::warn!(partition, error = %e, "could not pause partition");
    }
    // librdkafka may have prefetched messages after ours already; rewinding makes them come
    // again after `resume`.
    if let Err(e) = consumer.seek(
        topic,
        partition,
        Offset::Offset(next),
        std::time::Duration::from_secs(1),
    ) {
        tracing::debug!(partition, error = %e, "seek after pause");
    }
}

fn resume<C: ConsumerContext>(
    consumer: &impl pushservice_kafka::rdkafka::consumer::Consumer<C>,
    topic: &str,
    partition: i32,
) {
    if let Err(e) = consumer.resume(&partition_list(topic, partition)) {
        tracing::debug!(partition, error = %e, "could not resume partition (revoked?)");
    }
}
