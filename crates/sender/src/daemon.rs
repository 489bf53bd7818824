//! The sender's consumer loop.
//!
//! Each message becomes a task that makes one delivery attempt; what the outcome produces (an
//! outcome record, a retry, a dead letter) goes through the [`OffsetTracker`], which releases
//! finished messages in offset order to the [`Committer`]; it writes them and commits their
//! offsets in one Kafka transaction. MongoDB is not on this path at all: the outcome recorder
//! ([`crate::recorder`]) applies outcomes to it from the outcome topic.
//!
//! - **Two members of the group per sender** ([`Consumers`]): one reads the push topic, the
//!   other the retry tiers, so the group's assignor spreads each topic set over the senders
//!   on its own. With one member reading both, `cooperative-sticky` balanced the *number* of
//!   partitions per member over all topics: of two senders, one took 148 push partitions and
//!   the other 52 push partitions and the 96 retry ones, which carry nothing without
//!   failures, so one sender did three quarters of a push. Both members share the offset
//!   tracker and the committer, which commits each member's offsets with that member's group
//!   metadata in the same transaction. The group id and committed offsets are unchanged, so
//!   senders of either shape can run together during an upgrade.
//! - **Retries wait on Kafka, not in memory.** A message from a retry topic that is not due
//!   yet is held (one per partition) and its partition paused until it is due, so the
//!   messages behind it stay on the broker.
//! - **Backpressure keeps the member alive.** When `max_pending` messages are taken and not
//!   committed, every assigned partition is paused and the loop keeps polling, so rebalances
//!   are served at once and the member never exceeds `max.poll.interval.ms`; partitions
//!   resume when the count falls below three quarters of the bound.
//! - **Canceled pushes are dropped, not held.** A retry of a canceled push is not held
//!   until it is due (its partition would stay paused): it is recorded `canceled` at once,
//!   and a held retry whose push is canceled meanwhile stops waiting ([`crate::canceled`]).
//! - **Rebalances hand over what is final.** Before partitions are revoked, deliveries of
//!   theirs under way get up to `SENDER_HANDOVER_GRACE_MS` to finish (retries held until due stop at
//!   once), then the committer commits everything released; what is still in progress stops,
//!   and the new owner delivers it again from the committed offset. Duplicates to push
//!   services are deliveries still on the wire after the grace, and those finished since the
//!   last commit when a sender dies without handing over.
//!
//! Shutdown: stop fetching, let requests in flight finish within the grace period, commit
//! what is final, stop the recorder (it applies what it read first).

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use pushservice_apns::ApnsClient;
use pushservice_daemon::{Health, Probes, Registry, serve_telemetry};
use pushservice_fcm::FcmClient;
use pushservice_kafka::rdkafka::consumer::{
    BaseConsumer, Consumer as _, ConsumerContext, Rebalance, StreamConsumer,
};
use pushservice_kafka::rdkafka::error::KafkaResult;
use pushservice_kafka::rdkafka::message::BorrowedMessage;
use pushservice_kafka::rdkafka::{ClientContext, Message as _, Offset, TopicPartitionList};
use pushservice_kafka::{ConsumerTuning, ProducerTuning, describe, group_consumer};
use pushservice_model::DeliveryMessage;
use pushservice_provider::RequestSlots;
use pushservice_store::Store;
use pushservice_webpush::WebPushClient;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::breaker::Breakers;
use crate::canceled::CanceledPushes;
use crate::committer::{Committer, CommitterMetrics, CommitterParts, Shared, SharedTracker};
use crate::config::SenderConfig;
use crate::credentials::CredentialCache;
use crate::deliver::Deliverer;
use crate::metrics::SenderMetrics;
use crate::payloads::PreparedPayloads;
use crate::recorder::RecorderMetrics;
use crate::records::{RecordTopics, Source};
use crate::retry::now_millis;
use crate::tracker::TopicPartition;

/// How long a rebalance waits for the committer to hand over revoked partitions.
const HANDOVER_TIMEOUT: Duration = Duration::from_secs(20);

/// Keeps the tracker and the pause state in step with the group's assignment (one per
/// member; both share the tracker, the committer and the pause state).
#[derive(Clone)]
struct SenderContext {
    tracker: SharedTracker,
    committer: Arc<OnceLock<Committer>>,
    topic_names: Vec<Arc<str>>,
    /// Every partition is paused while the sender is full; new ones must be too.
    full: Arc<AtomicBool>,
    /// How long a rebalance waits for deliveries of revoked partitions that are under way
    /// (`SENDER_HANDOVER_GRACE_MS`, default 5 s). The group waits for this member meanwhile,
    /// so it is short: deliveries answered within it (push services answer in 50–150 ms; a
    /// full window of 8,192 messages takes about a second) are committed here; the rest are
    /// stopped and the new owner delivers them again.
    handover_grace: Duration,
}

impl SenderContext {
    fn partitions(&self, list: &TopicPartitionList) -> Vec<TopicPartition> {
        list.elements()
            .iter()
            .filter_map(|e| {
                let topic = self
                    .topic_names
                    .iter()
                    .position(|name| &**name == e.topic())?;
                Some(TopicPartition {
                    topic,
                    partition: e.partition(),
                })
            })
            .collect()
    }

    /// Begins the handover of `revoked` and waits (blocking: the consume loop is stopped in
    /// the rebalance callback anyway, and deliveries run on the runtime's workers) until
    /// their deliveries under way are finished, or `SENDER_HANDOVER_GRACE_MS` has passed.
    fn settle(&self, revoked: &[TopicPartition]) {
        let lock = || self.tracker.lock().unwrap_or_else(|p| p.into_inner());
        {
            let mut tracker = lock();
            for tp in revoked {
                tracker.hand_over(*tp);
            }
        }
        let started = Instant::now();
        while !revoked.iter().all(|tp| lock().settled(*tp)) {
            if started.elapsed() >= self.handover_grace {
                tracing::info!(grace = ?self.handover_grace,
                    "deliveries of revoked partitions still under way; the new owner delivers them again");
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        tracing::debug!(
            elapsed_ms = started.elapsed().as_millis() as u64,
            "revoked partitions settled"
        );
    }
}

impl ClientContext for SenderContext {}

impl ConsumerContext for SenderContext {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(list) => {
                tracing::info!(partitions = %describe(list), "revoked");
                let revoked = self.partitions(list);
                // Deliveries under way finish first, so what they did is committed here
                // instead of done again by the new owner; held retries stop at once.
                self.settle(&revoked);
                // Hand over exactly what is final; the rest is redelivered to the new owner.
                if let Some(committer) = self.committer.get()
                    && !committer.flush(HANDOVER_TIMEOUT)
                {
                    tracing::warn!("revoked partitions handed over before their last commit");
                }
                let mut tracker = self.tracker.lock().unwrap_or_else(|p| p.into_inner());
                for tp in revoked {
                    tracker.revoke(tp);
                }
            }
            Rebalance::Assign(list) => {
                tracing::info!(partitions = %describe(list), "assigned");
                let mut tracker = self.tracker.lock().unwrap_or_else(|p| p.into_inner());
                for tp in self.partitions(list) {
                    tracker.assign(tp);
                }
            }
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance failed"),
        }
    }

    /// Newly assigned partitions are paused while the sender is full, and resumed
    /// otherwise: librdkafka keeps a partition's pause across a revoke and a later
    /// assignment, so one paused when it left (full, or holding a retry) would come back
    /// paused for good.
    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(list) = rebalance
            && list.count() > 0
        {
            let result = if self.full.load(Ordering::Relaxed) {
                consumer.pause(list)
            } else {
                consumer.resume(list)
            };
            if let Err(e) = result {
                tracing::debug!(error = %e, "pausing or resuming newly assigned partitions");
            }
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
    // One set of request slots for every provider: a per-push-service bound taken before the
    // sender's global one, so a slow push service holds only its own slots.
    let slots = Arc::new(RequestSlots::new(
        config.concurrency,
        config.web_push.per_origin_concurrency,
    )?);
    let web = WebPushClient::new(config.web_push.clone())?.with_slots(Arc::clone(&slots));
    let apns = ApnsClient::new(config.apns.clone())?.with_slots(Arc::clone(&slots));
    let fcm = FcmClient::new(config.fcm.clone())?.with_slots(slots);
    let metrics = SenderMetrics::new(&registry);
    let pending_gauge = Arc::clone(&metrics.pending);

    // Topic 0 is the push topic, then the retry tiers, shortest wait first.
    let mut topic_names: Vec<Arc<str>> = vec![Arc::from(config.topics.push.name.as_str())];
    let tiers = config.topics.retry_tiers();
    topic_names.extend(tiers.iter().map(|(spec, _)| Arc::from(spec.name.as_str())));
    let records = RecordTopics {
        outcomes: Arc::from(config.topics.outcomes.name.as_str()),
        dead_letter: Arc::from(config.topics.dead_letter.name.as_str()),
        retry: topic_names[1..].to_vec(),
    };
    let canceled = Arc::new(CanceledPushes::new(store.clone()));
    let breakers = Arc::new(Breakers::default());
    let deliverer = Arc::new(Deliverer {
        web,
        apns,
        fcm,
        credentials: CredentialCache::new(store.clone(), config.site_cache),
        payloads: PreparedPayloads::default(),
        breakers: Arc::clone(&breakers),
        canceled: Arc::clone(&canceled),
        records,
        retry: config.retry,
        retry_tiers: tiers.iter().map(|(_, wait)| *wait).collect(),
        metrics,
    });

    let tracker: SharedTracker = Arc::default();
    let committer_slot: Arc<OnceLock<Committer>> = Arc::default();
    let full = Arc::new(AtomicBool::new(false));
    let consumers = {
        let context = SenderContext {
            tracker: Arc::clone(&tracker),
            committer: Arc::clone(&committer_slot),
            topic_names: topic_names.clone(),
            full: Arc::clone(&full),
            handover_grace: config.handover_grace,
        };
        // Each member names its sender and role, so a group description tells who holds what.
        let member = |context, role: &str| {
            group_consumer(
                &config.kafka,
                &config.group,
                &ConsumerTuning {
                    transactional: true,
                    client_id: Some(format!("sender-{}-{role}", config.instance_id)),
                    ..ConsumerTuning::default()
                },
                context,
            )
            .map(Arc::new)
        };
        Consumers {
            push: member(context.clone(), "push")?,
            retry: member(context, "retry")?,
        }
    };
    let transactional_id = format!("{}-{}", config.group, config.instance_id);
    let producer = {
        let (kafka, id, timeout) = (
            config.kafka.clone(),
            transactional_id.clone(),
            config.transaction_timeout,
        );
        tokio::task::spawn_blocking(move || {
            pushservice_kafka::transactional_producer(
                &kafka,
                &ProducerTuning::pipeline(),
                &id,
                timeout,
            )
        })
        .await??
    };
    // The same transactional id again: a new producer fences the old one and aborts what it
    // left open, so nothing is committed twice.
    let renew: crate::committer::RenewProducer = {
        let (kafka, id, timeout) = (
            config.kafka.clone(),
            transactional_id.clone(),
            config.transaction_timeout,
        );
        Box::new(move || {
            pushservice_kafka::transactional_producer(
                &kafka,
                &ProducerTuning::pipeline(),
                &id,
                timeout,
            )
            .map_err(|e| e.to_string())
        })
    };
    let shared = Arc::new(Shared::default());
    let (committer, committer_thread) = Committer::start(CommitterParts {
        producer,
        renew,
        consumers: vec![
            (Arc::clone(&consumers.push), vec![0]),
            (Arc::clone(&consumers.retry), (1..topic_names.len()).collect()),
        ],
        topic_names: topic_names.clone(),
        tracker: Arc::clone(&tracker),
        interval: config.commit_interval,
        shared: Arc::clone(&shared),
        metrics: CommitterMetrics {
            committed: registry.counter(
                "pushservice_sender_transactions_total",
                "Kafka transactions committed (outcomes, retries, dead letters and offsets).",
                &[("result", "committed")],
            ),
            aborted: registry.counter(
                "pushservice_sender_transactions_total",
                "Kafka transactions committed (outcomes, retries, dead letters and offsets).",
                &[("result", "aborted")],
            ),
            dropped: registry.counter(
                "pushservice_sender_uncommitted_handovers_total",
                "Finished deliveries whose partition moved before they were committed (delivered again by the new owner).",
                &[],
            ),
            renewed: registry.counter(
                "pushservice_sender_producers_renewed_total",
                "Transactional producers replaced after being fenced (for example when a transaction outlived a broker restart).",
                &[],
            ),
        },
    })?;
    let _ = committer_slot.set(committer.clone());

    let names: Vec<&str> = topic_names.iter().map(|n| &**n).collect();
    consumers.subscribe(&names)?;

    let stop = CancellationToken::new();
    let cancel_poller = tokio::spawn(canceled.run(config.cancel_poll, stop.clone()));
    // Stopped after the last delivery, so its evidence is shared too.
    let stop_evidence = CancellationToken::new();
    let evidence_sync = tokio::spawn(crate::breaker::sync_with_fleet(
        Arc::clone(&breakers),
        store.clone(),
        config.instance_id.clone(),
        stop_evidence.clone(),
    ));
    let recorder = tokio::spawn(crate::recorder::run(
        config.kafka.clone(),
        config.recorder_group.clone(),
        config.topics.outcomes.name.clone(),
        store.clone(),
        RecorderMetrics::new(&registry),
        stop.clone(),
    ));
    let probes = {
        let consumers = consumers.clone();
        Probes::new(&config.kafka)
            .store(store.clone())
            .group(&config.group, &names)
            .group(
                &config.recorder_group,
                &[config.topics.outcomes.name.as_str()],
            )
            .assigned(Arc::new(move || consumers.assigned()))
            .spawn(Arc::clone(&health), &registry, stop.clone())
    };
    health.set_ready(true);
    tracing::info!(group = %config.group, topics = ?names, brokers = %config.kafka.brokers,
        concurrency = config.concurrency, max_pending = config.max_pending,
        transactional_id = %transactional_id, "sender started");

    let tasks = TaskTracker::new();
    // Partitions paused because a held retry is not due yet, and how many are held there.
    let mut held: HashMap<TopicPartition, usize> = HashMap::new();
    let (due_tx, mut due_rx) = mpsc::unbounded_channel::<TopicPartition>();
    let mut paused_full = false;
    let resume_below = config.max_pending * 3 / 4;
    let mut shutdown = std::pin::pin!(shutdown);
    let mut failure = None;
    loop {
        let taken = tracker.lock().unwrap_or_else(|p| p.into_inner()).taken()
            + shared.in_committer.load(Ordering::Relaxed);
        pending_gauge.set(i64::try_from(taken).unwrap_or(i64::MAX));
        if !paused_full && taken >= config.max_pending {
            paused_full = true;
            full.store(true, Ordering::Relaxed);
            consumers.set_paused(&tracker, |_| true, true);
            tracing::debug!(taken, "full: partitions paused");
        } else if paused_full && taken <= resume_below {
            paused_full = false;
            full.store(false, Ordering::Relaxed);
            consumers.set_paused(&tracker, |tp| !held.contains_key(&tp), false);
            tracing::debug!(taken, "partitions resumed");
        }
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            () = shared.failed.cancelled() => {
                failure = Some(anyhow::anyhow!("the transactional producer failed; restart the sender"));
                break;
            }
            Some(tp) = due_rx.recv() => {
                if let Some(count) = held.get_mut(&tp) {
                    *count -= 1;
                    if *count == 0 {
                        held.remove(&tp);
                        if !paused_full {
                            consumers.set_paused(&tracker, |p| p == tp, false);
                        }
                    }
                }
            }
            () = tokio::time::sleep(Duration::from_millis(20)), if paused_full => {}
            received = consumers.recv() => {
                let message = match received {
                    Ok(message) => message,
                    Err(e) => {
                        tracing::warn!(error = %e, "consumer error");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let Some(topic) = topic_names.iter().position(|n| &**n == message.topic()) else {
                    continue;
                };
                let tp = TopicPartition { topic, partition: message.partition() };
                let source = Source {
                    topic: Arc::clone(&topic_names[topic]),
                    partition: message.partition(),
                    offset: message.offset(),
                    // Topic 0 is the push topic, whose records the parser stamps with the
                    // push's send time.
                    push_sent_at_ms: (topic == 0)
                        .then(|| message.timestamp().to_millis())
                        .flatten()
                        .and_then(|ms| u64::try_from(ms).ok()),
                };
                let raw = message.payload().map(<[u8]>::to_vec).unwrap_or_default();
                drop(message);
                let parsed = DeliveryMessage::from_json(&raw).map_err(|e| e.to_string());
                let due = parsed
                    .as_ref()
                    .ok()
                    .and_then(|m| m.due_at)
                    .filter(|due| *due > now_millis() + 5);
                let (ticket, stops) = {
                    let mut tracker = tracker.lock().unwrap_or_else(|p| p.into_inner());
                    tracker.begin(tp, source.offset)
                };
                if due.is_some() {
                    let count = held.entry(tp).or_default();
                    if *count == 0 {
                        consumers.set_paused(&tracker, |p| p == tp, true);
                    }
                    *count += 1;
                }
                let (deliverer, tracker, committer, shared, stop, due_tx) = (
                    Arc::clone(&deliverer),
                    Arc::clone(&tracker),
                    committer.clone(),
                    Arc::clone(&shared),
                    stop.clone(),
                    due_tx.clone(),
                );
                tasks.spawn(async move {
                    if let Some(due) = due {
                        // A retry of a canceled push is dropped at once (in `process`), not
                        // held until it is due: it would keep its partition paused.
                        let push = match &parsed {
                            Ok(message) => Some(deliverer.canceled.check(&message.push_id).await),
                            Err(_) => None,
                        };
                        let interrupted = match push {
                            Some(push) if push.canceled => false,
                            push => {
                                // A token that never fires when the push is unknown.
                                let token = push.map(|p| p.token).unwrap_or_default();
                                let wait = Duration::from_millis(due.saturating_sub(now_millis()));
                                tokio::select! {
                                    () = tokio::time::sleep(wait) => false,
                                    () = token.cancelled() => false,
                                    () = stops.handover.cancelled() => true,
                                    () = stop.cancelled() => true,
                                }
                            }
                        };
                        let _ = due_tx.send(tp);
                        if interrupted {
                            // Not final: delivered again from the committed offset.
                            tracker.lock().unwrap_or_else(|p| p.into_inner()).abandon(ticket);
                            shared.progress.notify_waiters();
                            return;
                        }
                    }
                    if let Some(produced) = deliverer.process(&raw, parsed, &source, &stops.revoked).await {
                        let mut tracker = tracker.lock().unwrap_or_else(|p| p.into_inner());
                        if let Some(release) = tracker.finish(ticket, produced) {
                            shared.in_committer.fetch_add(release.produced.len(), Ordering::Relaxed);
                            committer.release(release);
                        }
                    }
                    shared.progress.notify_waiters();
                });
            }
        }
    }

    health.set_ready(false);
    tracing::info!(grace = ?config.shutdown_grace, "stopping: finishing requests in flight");
    // Held retries stop now (not final: redelivered); requests on the wire get the grace.
    stop.cancel();
    tasks.close();
    if tokio::time::timeout(config.shutdown_grace, tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!("grace period over with requests still in flight; they will be redelivered");
    }
    committer.stop();
    let _ = tokio::task::spawn_blocking(move || committer_thread.join()).await;
    let _ = cancel_poller.await;
    let _ = probes.await;
    stop_evidence.cancel();
    let _ = evidence_sync.await;
    match tokio::time::timeout(Duration::from_secs(30), recorder).await {
        Ok(Ok(Err(e))) => tracing::warn!(error = %e, "outcome recorder failed"),
        Ok(Err(e)) => tracing::warn!(error = %e, "outcome recorder panicked"),
        Err(_) => {
            tracing::warn!("outcome recorder did not stop in time; it resumes after a restart")
        }
        Ok(Ok(Ok(()))) => {}
    }
    // Unsubscribing leaves the group now instead of after the session timeout.
    consumers.push.unsubscribe();
    consumers.retry.unsubscribe();
    tracing::info!("sender stopped");
    store.close().await;
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// The sender's two members of its consumer group: one reads the push topic (topic 0), the
/// other the retry tiers.
#[derive(Clone)]
struct Consumers {
    push: Arc<StreamConsumer<SenderContext>>,
    retry: Arc<StreamConsumer<SenderContext>>,
}

impl Consumers {
    fn subscribe(&self, names: &[&str]) -> anyhow::Result<()> {
        let (push, retry) = names.split_at(1);
        for (consumer, topics) in [(&self.push, push), (&self.retry, retry)] {
            consumer
                .subscribe(topics)
                .map_err(|e| anyhow::anyhow!("subscribing to {topics:?}: {e}"))?;
        }
        Ok(())
    }

    /// The next message of either member, whichever has one first (no member starves the
    /// other: `select!` polls them in random order).
    async fn recv(&self) -> KafkaResult<BorrowedMessage<'_>> {
        tokio::select! {
            message = self.push.recv() => message,
            message = self.retry.recv() => message,
        }
    }

    /// Partitions assigned to this sender, over both members.
    fn assigned(&self) -> Result<usize, String> {
        let mut count = 0;
        for consumer in [&self.push, &self.retry] {
            count += consumer
                .assignment()
                .map(|list| list.count())
                .map_err(|e| e.to_string())?;
        }
        Ok(count)
    }

    /// Pauses (or resumes) every assigned partition `select` picks, on both members.
    fn set_paused(
        &self,
        tracker: &SharedTracker,
        select: impl Fn(TopicPartition) -> bool,
        pause: bool,
    ) {
        for consumer in [&self.push, &self.retry] {
            set_paused(consumer, tracker, &select, pause);
        }
    }
}

/// Pauses (or resumes) every assigned partition `select` picks.
///
/// A pause drops what librdkafka had fetched for the partition beyond what the loop took,
/// and where fetching goes on after the resume is librdkafka's business; measured here, it
/// sometimes went on past the dropped messages, so they were never taken and were skipped
/// by the next commit. So a resumed partition is first sought to one past the last offset
/// the loop took from it ([`crate::tracker::OffsetTracker::next_offset`]).
fn set_paused(
    consumer: &StreamConsumer<SenderContext>,
    tracker: &SharedTracker,
    select: &impl Fn(TopicPartition) -> bool,
    pause: bool,
) {
    let Ok(assignment) = consumer.assignment() else {
        return;
    };
    let context = consumer.context();
    let mut list = TopicPartitionList::new();
    let mut positions = TopicPartitionList::new();
    let tracker = tracker.lock().unwrap_or_else(|p| p.into_inner());
    for element in assignment.elements() {
        let Some(topic) = context
            .topic_names
            .iter()
            .position(|name| &**name == element.topic())
        else {
            continue;
        };
        let tp = TopicPartition {
            topic,
            partition: element.partition(),
        };
        if select(tp) {
            list.add_partition(element.topic(), element.partition());
            if !pause
                && let Some(next) = tracker.next_offset(tp)
                && let Err(e) = positions.add_partition_offset(
                    element.topic(),
                    element.partition(),
                    Offset::Offset(next),
                )
            {
                tracing::debug!(error = %e, "position of a resumed partition");
            }
        }
    }
    drop(tracker);
    if list.count() == 0 {
        return;
    }
    if positions.count() > 0
        && let Err(e) = consumer.seek_partitions(positions, Duration::ZERO)
    {
        tracing::warn!(error = %e, "seeking resumed partitions to where they stopped");
    }
    let result = if pause {
        consumer.pause(&list)
    } else {
        consumer.resume(&list)
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, pause, "pausing or resuming partitions");
    }
}
