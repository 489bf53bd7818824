//! The parser's consumer loop.
//!
//! One raw-push message is one fan-out task. While a partition's push is being fanned out
//! the partition is *paused*, so its next push waits (pushes of one partition stay in order
//! and the offset can simply be stored when the task ends) while other partitions' pushes run
//! concurrently. The loop keeps polling the consumer throughout, so the group sees a live
//! member. When a task ends:
//! - for good ([`Verdict`]) → store its offset, resume the partition;
//! - on a MongoDB/Kafka error → retry the same push after `retry_delay`, partition still
//!   paused (the push resumes from its checkpoint);
//! - cancelled (shutdown, partition revoked) → leave the offset: whoever owns the partition
//!   next gets the message again and resumes from the checkpoint.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use pushservice_daemon::{Health, Registry, serve_telemetry};
use pushservice_kafka::rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer as _, ConsumerContext, Rebalance,
};
use pushservice_kafka::rdkafka::{ClientContext, Message as _, Offset, TopicPartitionList};
use pushservice_kafka::{ConsumerTuning, ProducerTuning, describe, group_consumer, producer};
use pushservice_model::RawPushMessage;
use pushservice_store::Store;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::ParserConfig;
use crate::fanout::{Fanout, FanoutError, Verdict};
use crate::metrics::ParserMetrics;

/// Cancellation tokens of running fan-outs by partition, shared with the rebalance callback.
type Running = Arc<Mutex<HashMap<i32, CancellationToken>>>;

/// Consumer context that cancels the fan-outs of revoked partitions, so a partition's push
/// never runs on two parsers at once for longer than one subscriber.
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
                let running = self.running.lock().unwrap_or_else(|p| p.into_inner());
                for element in list.elements() {
                    if let Some(token) = running.get(&element.partition()) {
                        token.cancel();
                    }
                }
            }
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance failed"),
        }
    }
}

/// What a finished task reports back to the loop.
struct TaskEnd {
    partition: i32,
    offset: i64,
    message: RawPushMessage,
    result: Result<Verdict, FanoutError>,
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
        ..ConsumerTuning::default()
    };
    let consumer = group_consumer(
        &config.kafka,
        &config.group,
        &tuning,
        ParserContext {
            running: Arc::clone(&running),
        },
    )?;
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
    health.set_ready(true);
    tracing::info!(group = %config.group, raw_push = %config.raw_push_topic, push = %config.push_topic,
        brokers = %config.kafka.brokers, "parser started");

    let mut tasks: JoinSet<TaskEnd> = JoinSet::new();
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
                let parsed = message
                    .payload()
                    .ok_or_else(|| "empty message".to_owned())
                    .and_then(|p| RawPushMessage::from_json(p).map_err(|e| e.to_string()));
                let raw = match parsed {
                    Ok(raw) => raw,
                    Err(reason) => {
                        tracing::error!(partition, offset, %reason,
                            "malformed raw-push message skipped; re-send the push with pushctl");
                        store_offset(&consumer, topic, partition, offset);
                        continue;
                    }
                };
                pause(&consumer, topic, partition, offset);
                metrics.running.add(1);
                let token = CancellationToken::new();
                running.lock().unwrap_or_else(|p| p.into_inner()).insert(partition, token.clone());
                spawn(&mut tasks, fanout.clone(), partition, offset, raw, token, None);
            }
            Some(joined) = tasks.join_next() => {
                let end = match joined {
                    Ok(end) => end,
                    Err(e) => {
                        // A panicking fan-out is a bug; its partition stays paused until restart.
                        tracing::error!(error = %e, "fan-out task panicked");
                        continue;
                    }
                };
                let TaskEnd { partition, offset, message, result } = end;
                let push_id = message.push_id.clone();
                match result {
                    Ok(verdict) => {
                        metrics.running.add(-1);
                        metrics.finished(&verdict);
                        match &verdict {
                            Verdict::Done(report) => tracing::info!(push_id, produced = report.produced,
                                skipped = report.skipped, seconds = report.elapsed.as_secs_f64(),
                                rate = format!("{:.0}/s", report.produced as f64 / report.elapsed.as_secs_f64().max(1e-3)),
                                "push fanned out"),
                            Verdict::Skipped(reason) => tracing::warn!(push_id, partition, offset, %reason, "raw-push skipped"),
                            Verdict::Failed(reason) => tracing::error!(push_id, %reason, "push failed"),
                        }
                        running.lock().unwrap_or_else(|p| p.into_inner()).remove(&partition);
                        store_offset(&consumer, topic, partition, offset);
                        resume(&consumer, topic, partition);
                    }
                    Err(FanoutError::Cancelled { produced }) => {
                        metrics.running.add(-1);
                        tracing::info!(push_id, produced, "fan-out stopped; it resumes from its checkpoint");
                        running.lock().unwrap_or_else(|p| p.into_inner()).remove(&partition);
                    }
                    Err(e) => {
                        tracing::warn!(push_id, error = %e, retry_in = ?config.retry_delay,
                            "fan-out interrupted; retrying from the checkpoint");
                        let token = running.lock().unwrap_or_else(|p| p.into_inner())
                            .get(&partition).cloned().unwrap_or_default();
                        spawn(&mut tasks, fanout.clone(), partition, offset, message, token, Some(config.retry_delay));
                    }
                }
            }
        }
    }

    health.set_ready(false);

    tracing::info!(
        running = tasks.len(),
        "stopping fan-outs at their next subscriber"
    );
    for token in running.lock().unwrap_or_else(|p| p.into_inner()).values() {
        token.cancel();
    }
    while let Some(joined) = tasks.join_next().await {
        if let Ok(TaskEnd {
            partition,
            offset,
            result: Ok(_),
            ..
        }) = joined
        {
            store_offset(&consumer, topic, partition, offset);
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

fn spawn(
    tasks: &mut JoinSet<TaskEnd>,
    fanout: Fanout,
    partition: i32,
    offset: i64,
    message: RawPushMessage,
    token: CancellationToken,
    delay: Option<std::time::Duration>,
) {
    tasks.spawn(async move {
        if let Some(delay) = delay {
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = token.cancelled() => {
                    return TaskEnd { partition, offset, message, result: Err(FanoutError::Cancelled { produced: 0 }) };
                }
            }
        }
        let result = fanout.process(&message, &token).await;
        TaskEnd { partition, offset, message, result }
    });
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

fn pause<C: ConsumerContext>(
    consumer: &impl pushservice_kafka::rdkafka::consumer::Consumer<C>,
    topic: &str,
    partition: i32,
    offset: i64,
) {
    if let Err(e) = consumer.pause(&partition_list(topic, partition)) {
        tracing::warn!(partition, error = %e, "could not pause partition");
    }
    // librdkafka may have prefetched the next message of this partition already; rewinding
    // to the one after ours makes it come again after `resume`.
    if let Err(e) = consumer.seek(
        topic,
        partition,
        Offset::Offset(offset + 1),
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
