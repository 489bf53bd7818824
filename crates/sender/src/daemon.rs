//! The sender's consumer loop.
//!
//! `recv → spawn`: each message becomes a task, bounded by `max_pending` messages not final
//! and `concurrency` requests in flight. When a task's outcome is final it reports to the
//! [`OffsetTracker`], and the partition's committable offset (everything before it final) is
//! stored; librdkafka commits stored offsets every second. On a rebalance the revoked
//! partitions' stored offsets are committed synchronously before they move, their deliveries
//! in progress stop, and the new owner redelivers from the committed offset: never a loss;
//! duplicates are the messages after the oldest one not yet final (a delivery waiting for a
//! retry holds the commit point back) plus requests that were already on the wire.
//!
//! Shutdown: stop fetching, let requests in flight finish within the grace period (deliveries
//! waiting for a retry give up at once: they are not final and will be redelivered), flush
//! counters and unsubscribes, commit.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pushservice_apns::ApnsClient;
use pushservice_daemon::{Health, Registry, serve_telemetry};
use pushservice_fcm::FcmClient;
use pushservice_kafka::rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer as _, ConsumerContext, Rebalance, StreamConsumer,
};
use pushservice_kafka::rdkafka::{ClientContext, Message as _};
use pushservice_kafka::{ConsumerTuning, ProducerTuning, describe, group_consumer, producer};
use pushservice_store::Store;
use pushservice_webpush::WebPushClient;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::config::SenderConfig;
use crate::counters::PushCounters;
use crate::credentials::CredentialCache;
use crate::deadletter::DeadLetter;
use crate::deliver::{Deliverer, Source};
use crate::metrics::SenderMetrics;
use crate::tracker::OffsetTracker;
use crate::unsubscribe::Unsubscriber;

type Tracker = Arc<Mutex<OffsetTracker>>;

/// Keeps the offset tracker in step with the group's assignment.
struct SenderContext {
    tracker: Tracker,
}

impl ClientContext for SenderContext {}

impl ConsumerContext for SenderContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(list) => {
                tracing::info!(partitions = %describe(list), "revoked");
                // Hand over exactly what is final; the rest is redelivered to the new owner.
                if let Err(e) = consumer.commit_consumer_state(CommitMode::Sync) {
                    tracing::debug!(error = %e, "commit before revoke");
                }
                let mut tracker = self.tracker.lock().unwrap_or_else(|p| p.into_inner());
                for element in list.elements() {
                    tracker.revoke(element.partition());
                }
            }
            Rebalance::Assign(list) => {
                tracing::info!(partitions = %describe(list), "assigned");
                let mut tracker = self.tracker.lock().unwrap_or_else(|p| p.into_inner());
                for element in list.elements() {
                    tracker.assign(element.partition());
                }
            }
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance failed"),
        }
    }
}

/// Runs the sender until `shutdown` resolves.
pub async fn run(config: SenderConfig, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let registry = Arc::new(Registry::default());
    let health = Arc::new(Health::default());
    if let Some(addr) = config.metrics_addr {
        serve_telemetry(addr, Arc::clone(&registry), Arc::clone(&health))
            .await
            .map_err(|e| anyhow::anyhow!("METRICS_ADDR {addr}: {e}"))?;
    }
    let store = Store::connect(&config.mongo).await?;
    store.ensure_indexes().await?;
    let web = WebPushClient::new(config.web_push.clone())?;
    let apns = ApnsClient::new(config.apns.clone())?;
    let fcm = FcmClient::new(config.fcm.clone())?;
    let (unsubscriber, unsubscribe_task) =
        Unsubscriber::start(store.clone(), 500, Duration::from_millis(100));
    // Names this instance's counter documents; unique per process start.
    let sender_id = pushservice_model::ObjectId::new().to_hex();
    let counters = Arc::new(PushCounters::new(sender_id.clone(), &registry));
    let metrics = SenderMetrics::new(&registry);
    let pending_gauge = Arc::clone(&metrics.pending);
    let dead_letter = DeadLetter::new(
        producer(&config.kafka, &ProducerTuning::pipeline())?,
        config.dead_letter_topic.clone(),
    );
    let stop = CancellationToken::new();
    let deliverer = Arc::new(Deliverer {
        web,
        apns,
        fcm,
        credentials: CredentialCache::new(store.clone(), config.site_cache),
        counters: Arc::clone(&counters),
        unsubscriber,
        dead_letter,
        retry: config.retry,
        active: Arc::new(Semaphore::new(config.concurrency)),
        stop: stop.clone(),
        metrics,
    });

    let tracker: Tracker = Arc::default();
    let consumer: Arc<StreamConsumer<SenderContext>> = Arc::new(group_consumer(
        &config.kafka,
        &config.group,
        &ConsumerTuning::default(),
        SenderContext {
            tracker: Arc::clone(&tracker),
        },
    )?);
    consumer
        .subscribe(&[&config.push_topic])
        .map_err(|e| anyhow::anyhow!("subscribing to {:?}: {e}", config.push_topic))?;
    health.set_ready(true);
    tracing::info!(group = %config.group, topic = %config.push_topic, brokers = %config.kafka.brokers,
        concurrency = config.concurrency, sender_id = %sender_id, max_pending = config.max_pending, "sender started");

    let flusher = tokio::spawn(flush_counters(
        store.clone(),
        Arc::clone(&counters),
        config.counter_flush,
        stop.clone(),
    ));
    let pending = Arc::new(Semaphore::new(config.max_pending));
    let topic: Arc<str> = Arc::from(config.push_topic.as_str());
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            () = &mut shutdown => break,
            permit = Arc::clone(&pending).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let received = tokio::select! {
            () = &mut shutdown => break,
            received = consumer.recv() => received,
        };
        let message = match received {
            Ok(message) => message,
            Err(e) => {
                tracing::warn!(error = %e, "consumer error");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let source = Source {
            partition: message.partition(),
            offset: message.offset(),
        };
        let payload = message.payload().map(<[u8]>::to_vec).unwrap_or_default();
        drop(message);
        let (ticket, revoked) = tracker
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .begin(source.partition, source.offset);
        pending_gauge.add(1);
        let pending_gauge = Arc::clone(&pending_gauge);
        let (deliverer, tracker, consumer, topic) = (
            Arc::clone(&deliverer),
            Arc::clone(&tracker),
            Arc::clone(&consumer),
            Arc::clone(&topic),
        );
        tokio::spawn(async move {
            let _permit = permit;
            let finished = deliverer.process(&payload, source, &revoked).await;
            pending_gauge.add(-1);
            if !finished {
                return;
            }
            let committable = tracker
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .complete(ticket);
            if let Some(offset) = committable
                && let Err(e) = consumer.store_offset(&topic, source.partition, offset)
            {
                tracing::debug!(partition = source.partition, offset, error = %e,
                    "offset not stored (revoked?)");
            }
        });
    }

    health.set_ready(false);
    let in_flight = config.max_pending - pending.available_permits();
    tracing::info!(in_flight, grace = ?config.shutdown_grace, "stopping: finishing requests in flight");
    // Deliveries waiting for a retry stop now; requests on the wire get the grace period.
    stop.cancel();
    let drained = tokio::time::timeout(
        config.shutdown_grace,
        pending.acquire_many(u32::try_from(config.max_pending).unwrap_or(u32::MAX)),
    )
    .await;
    if drained.is_err() {
        tracing::warn!("grace period over with requests still in flight; they will be redelivered");
    }
    let _ = flusher.await;
    if let Err(e) = counters.flush(&store).await {
        tracing::error!(error = %e, "final counter flush failed; those counts are lost");
    }
    drop(deliverer);
    let _ = tokio::time::timeout(Duration::from_secs(10), unsubscribe_task).await;
    if let Err(e) = consumer.commit_consumer_state(CommitMode::Sync) {
        tracing::debug!(error = %e, "final commit");
    }
    let totals = counters.totals();
    tracing::info!(
        accepted = totals.accepted,
        unsubscribed = totals.unsubscribed,
        failed = totals.failed,
        "sender stopped"
    );
    store.close().await;
    Ok(())
}

/// Flushes per-push counters every `interval`, and logs throughput every ten seconds.
async fn flush_counters(
    store: Store,
    counters: Arc<PushCounters>,
    interval: Duration,
    stop: CancellationToken,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut last_log, mut last_total) = (Instant::now(), 0);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = stop.cancelled() => return,
        }
        if let Err(e) = counters.flush(&store).await {
            tracing::warn!(error = %e, "counter flush failed; retrying with the next one");
        }
        if last_log.elapsed() >= Duration::from_secs(10) {
            let totals = counters.totals();
            let done = totals.all();
            if done != last_total {
                tracing::info!(
                    accepted = totals.accepted,
                    unsubscribed = totals.unsubscribed,
                    failed = totals.failed,
                    rate = format!(
                        "{:.0}/s",
                        (done - last_total) as f64 / last_log.elapsed().as_secs_f64()
                    ),
                    "deliveries"
                );
            }
            (last_log, last_total) = (Instant::now(), done);
        }
    }
}
