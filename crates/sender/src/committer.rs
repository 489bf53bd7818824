//! Writes what finished deliveries produced and commits their offsets, in one transaction.
//!
//! A delivery's outcome is final once it is on Kafka, not once MongoDB has heard of it. So
//! the records a delivery produces (its outcome, or a retry, or a dead letter with its
//! failed outcome) and the offset commit of its message go into one Kafka transaction:
//! after a crash either both exist or neither does, and the message is delivered again.
//! Outcomes are therefore counted exactly once per message, a retry is never scheduled twice,
//! and a dead letter that could not be written never lets its message's offset commit.
//! Duplicates to the push services are bounded by what was delivered since the last
//! committed transaction (one commit interval plus requests on the wire).
//!
//! The committer runs on a thread of its own because librdkafka's transaction calls block.
//! It gathers [`Release`]s for up to one commit interval, then: begin, produce every record,
//! send the offsets with the group metadata of the consumer that read them (so a member that
//! lost its partitions in a rebalance cannot commit them: the broker fences it), commit. A
//! transaction that fails is aborted and tried again with the same content (partitions this
//! member no longer owns left out: their messages are redelivered to the new owner). A fatal error (this producer
//! was fenced, typically because its transaction outlived `SENDER_TRANSACTION_TIMEOUT_MS`
//! while the broker restarted), or an abort that does not finish, renews the producer under
//! the same transactional id, which aborts whatever the old one left open, and the same
//! content is committed with the new one; only when no new producer can be made does the
//! sender stop (its deliveries since the last commit are then redelivered).
//!
//! Messages handed to the committer still count against the sender's bound of messages not
//! final ([`Shared::in_committer`]), so when Kafka is down the sender stops taking messages
//! instead of piling them up in memory.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use pushservice_daemon::Counter;
use pushservice_kafka::rdkafka::consumer::{Consumer, ConsumerContext, StreamConsumer};
use pushservice_kafka::rdkafka::error::{KafkaError, RDKafkaErrorCode};
use pushservice_kafka::rdkafka::message::{Header, OwnedHeaders};
use pushservice_kafka::rdkafka::producer::{
    BaseRecord, DefaultProducerContext, Producer, ThreadedProducer,
};
use pushservice_kafka::rdkafka::{Offset, TopicPartitionList};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::records::OutRecord;
use crate::tracker::{OffsetTracker, Release, TopicPartition};

/// What a finished delivery produced: the records to write with its offset.
pub type Produced = Vec<OutRecord>;

/// The tracker shared by the consume loop, the deliveries and the committer.
pub type SharedTracker = Arc<Mutex<OffsetTracker<Produced>>>;

/// Records in one transaction before it is committed early.
const MAX_RECORDS_PER_TRANSACTION: usize = 20_000;
/// How long one transaction call may block.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Calls of `abort_transaction` (each up to [`CALL_TIMEOUT`]) before the producer is renewed.
const ABORT_ATTEMPTS: u32 = 2;
/// Calls of `commit_transaction` (each up to [`CALL_TIMEOUT`]) before the transaction is
/// aborted.
const COMMIT_ATTEMPTS: u32 = 2;

/// State the committer shares with the consume loop.
#[derive(Debug, Default)]
pub struct Shared {
    /// Messages released to the committer and not committed yet.
    pub in_committer: AtomicUsize,
    /// Woken whenever messages stop counting as not final.
    pub progress: Notify,
    /// Cancelled when the committer cannot go on (fenced, or Kafka refused for good).
    pub failed: CancellationToken,
}

/// Metrics of the committer.
#[derive(Debug, Clone)]
pub struct CommitterMetrics {
    /// Transactions committed.
    pub committed: Arc<Counter>,
    /// Transactions aborted (and retried).
    pub aborted: Arc<Counter>,
    /// Finished messages whose records were dropped because their partition moved before
    /// they were committed; the new owner delivers them again.
    pub dropped: Arc<Counter>,
    /// Transactional producers replaced after failing for good (fenced).
    pub renewed: Arc<Counter>,
}

enum Command {
    Release(Release<Produced>),
    Flush(SyncSender<()>),
    Stop,
}

/// Handle to the committer thread; cheap to clone.
#[derive(Clone)]
pub struct Committer {
    commands: SyncSender<Command>,
}

/// What the committer thread needs.
pub struct CommitterParts<C: ConsumerContext + 'static> {
    /// The transactional producer (transactions initialized).
    pub producer: ThreadedProducer<DefaultProducerContext>,
    /// Makes a new transactional producer with the same transactional id (transactions
    /// initialized), to replace one that failed for good. Blocks.
    pub renew: RenewProducer,
    /// The consumers whose offsets are committed, each with the topics it reads (by
    /// [`TopicPartition::topic`]): a topic's offsets go with its consumer's group metadata.
    pub consumers: Vec<(Arc<StreamConsumer<C>>, Vec<usize>)>,
    /// Names of the consumed topics, by [`TopicPartition::topic`].
    pub topic_names: Vec<Arc<str>>,
    /// Which partitions this member still owns.
    pub tracker: SharedTracker,
    /// How long releases gather before a commit.
    pub interval: Duration,
    /// Shared state.
    pub shared: Arc<Shared>,
    /// Metrics.
    pub metrics: CommitterMetrics,
}

impl Committer {
    /// Starts the committer thread.
    pub fn start<C: ConsumerContext + 'static>(
        parts: CommitterParts<C>,
    ) -> std::io::Result<(Committer, JoinHandle<()>)> {
        // Bounded only as a guard: the sender's bound of messages not final limits releases.
        let (commands, commands_rx) = std::sync::mpsc::sync_channel(1 << 20);
        let thread = std::thread::Builder::new()
            .name("committer".into())
            .spawn(move || run(parts, commands_rx))?;
        Ok((Committer { commands }, thread))
    }

    /// Hands released messages to the next transaction.
    pub fn release(&self, release: Release<Produced>) {
        let _ = self.commands.send(Command::Release(release));
    }

    /// Commits everything released so far and waits (up to `timeout`) until it is done.
    /// Blocking: called from the rebalance callback so revoked partitions hand over exactly
    /// what is final.
    /// Once the committer has stopped (it committed what it had on its way out) there is
    /// nothing left to flush.
    pub fn flush(&self, timeout: Duration) -> bool {
        let (done_tx, done_rx) = std::sync::mpsc::sync_channel(1);
        if self.commands.send(Command::Flush(done_tx)).is_err() {
            return true;
        }
        match done_rx.recv_timeout(timeout) {
            Ok(()) | Err(RecvTimeoutError::Disconnected) => true,
            Err(RecvTimeoutError::Timeout) => false,
        }
    }

    /// Commits what is left and stops the thread.
    pub fn stop(&self) {
        let _ = self.commands.send(Command::Stop);
    }
}

/// Releases gathered for the next transaction.
#[derive(Default)]
struct Batch {
    offsets: HashMap<TopicPartition, i64>,
    records: Vec<(TopicPartition, OutRecord)>,
    messages: HashMap<TopicPartition, usize>,
}

impl Batch {
    fn add(&mut self, release: Release<Produced>) {
        let source = release.source;
        let next = self.offsets.entry(source).or_insert(release.next_offset);
        *next = (*next).max(release.next_offset);
        *self.messages.entry(source).or_default() += release.produced.len();
        for produced in release.produced {
            self.records
                .extend(produced.into_iter().map(|record| (source, record)));
        }
    }

    fn is_empty(&self) -> bool {
        self.offsets.is_empty()
    }

    fn message_count(&self) -> usize {
        self.messages.values().sum()
    }

    /// Leaves out the partitions `keep` refuses; returns how many messages were left out.
    fn retain(&mut self, keep: impl Fn(TopicPartition) -> bool) -> usize {
        self.offsets.retain(|tp, _| keep(*tp));
        self.records.retain(|(tp, _)| keep(*tp));
        let mut dropped = 0;
        self.messages.retain(|tp, n| {
            let kept = keep(*tp);
            if !kept {
                dropped += *n;
            }
            kept
        });
        dropped
    }
}

/// See [`CommitterParts::renew`].
pub type RenewProducer =
    Box<dyn Fn() -> Result<ThreadedProducer<DefaultProducerContext>, String> + Send>;

/// Tries to make a new producer a few times (the broker may still be loading its transaction
/// coordinator after a restart); true once `parts.producer` is the new one.
fn renew_producer<C: ConsumerContext + 'static>(parts: &mut CommitterParts<C>) -> bool {
    let mut backoff = Duration::from_secs(1);
    for attempt in 1..=6 {
        match (parts.renew)() {
            Ok(producer) => {
                parts.producer = producer;
                parts.metrics.renewed.inc();
                tracing::warn!(
                    attempt,
                    "transactional producer renewed; committing the same deliveries again"
                );
                return true;
            }
            Err(e) => {
                tracing::warn!(error = %e, attempt, retry_in = ?backoff, "could not renew the transactional producer");
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
    false
}

fn run<C: ConsumerContext + 'static>(mut parts: CommitterParts<C>, commands: Receiver<Command>) {
    let mut batch = Batch::default();
    let mut deadline: Option<Instant> = None;
    loop {
        let wait = deadline.map_or(Duration::from_secs(1), |d| {
            d.saturating_duration_since(Instant::now())
        });
        let command = commands.recv_timeout(wait);
        let mut reply = None;
        let mut stop = false;
        match command {
            Ok(Command::Release(release)) => {
                batch.add(release);
                deadline.get_or_insert_with(|| Instant::now() + parts.interval);
                if batch.records.len() < MAX_RECORDS_PER_TRANSACTION
                    && deadline.is_some_and(|d| Instant::now() < d)
                {
                    continue;
                }
            }
            Ok(Command::Flush(done)) => reply = Some(done),
            Ok(Command::Stop) | Err(RecvTimeoutError::Disconnected) => stop = true,
            Err(RecvTimeoutError::Timeout) => {}
        }
        // Take whatever else is already waiting into this transaction too.
        while batch.records.len() < MAX_RECORDS_PER_TRANSACTION {
            match commands.try_recv() {
                Ok(Command::Release(release)) => batch.add(release),
                Ok(Command::Flush(done)) => {
                    if let Some(earlier) = reply.replace(done) {
                        let _ = earlier.send(());
                    }
                }
                Ok(Command::Stop) => stop = true,
                Err(_) => break,
            }
        }
        if !batch.is_empty() && !commit(&mut parts, &mut batch, stop) {
            parts.shared.failed.cancel();
            // Nothing more can be committed; what is left is redelivered after a restart.
            parts.shared.in_committer.store(0, Ordering::Relaxed);
            parts.shared.progress.notify_waiters();
            return;
        }
        deadline = None;
        if let Some(done) = reply {
            let _ = done.send(());
        }
        if stop {
            return;
        }
    }
}

/// Commits `batch` in one transaction, trying again until it succeeds, the producer is
/// fenced, or (when `stopping`) a few rounds failed. Returns false when the sender must
/// stop.
fn commit<C: ConsumerContext + 'static>(
    parts: &mut CommitterParts<C>,
    batch: &mut Batch,
    stopping: bool,
) -> bool {
    let mut backoff = Duration::from_millis(100);
    for round in 1u32.. {
        let dropped = {
            let tracker = parts.tracker.lock().unwrap_or_else(|p| p.into_inner());
            batch.retain(|tp| tracker.owns(tp))
        };
        if dropped > 0 {
            parts.metrics.dropped.add(dropped as u64);
            parts
                .shared
                .in_committer
                .fetch_sub(dropped, Ordering::Relaxed);
            parts.shared.progress.notify_waiters();
            tracing::info!(
                messages = dropped,
                "partitions moved before their deliveries were committed; the new owner delivers them again"
            );
        }
        if batch.is_empty() {
            *batch = Batch::default();
            return true;
        }
        let started = Instant::now();
        match transaction(parts, batch) {
            Ok(()) => {
                parts.metrics.committed.inc();
                let messages = batch.message_count();
                tracing::debug!(
                    messages,
                    records = batch.records.len(),
                    partitions = batch.offsets.len(),
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "transaction committed"
                );
                parts
                    .shared
                    .in_committer
                    .fetch_sub(messages, Ordering::Relaxed);
                parts.shared.progress.notify_waiters();
                *batch = Batch::default();
                return true;
            }
            Err(e) => {
                let fatal = matches!(&e, KafkaError::Transaction(t) if t.is_fatal());
                if fatal || !abort(parts) {
                    tracing::warn!(error = %e, fatal,
                        "transactional producer fenced, failed for good or unable to abort; renewing it");
                    if !renew_producer(parts) {
                        tracing::error!(error = %e,
                            "no new transactional producer; the sender stops and its deliveries since the last commit are redelivered");
                        return false;
                    }
                    continue;
                }
                if stopping && round >= 3 {
                    tracing::warn!(error = %e, messages = batch.message_count(),
                        "stopping with a transaction that could not be committed; its deliveries are redelivered");
                    return true;
                }
                tracing::warn!(error = %e, round, retry_in = ?backoff, records = batch.records.len(),
                    "transaction failed; trying again with the same records");
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
    true
}

/// Aborts the open transaction after a failure; false when it could not be aborted and the
/// producer must be renewed.
///
/// An abort that times out is resumed by calling it again (librdkafka refuses any other
/// transaction call meanwhile: "Conflicting abort_transaction API call is already in
/// progress"). One that still does not finish is given up on: after a broker restart
/// librdkafka's transaction state can stay wedged for minutes, and a new producer under the
/// same transactional id fences this one and makes the coordinator abort what it left open.
fn abort<C: ConsumerContext + 'static>(parts: &CommitterParts<C>) -> bool {
    parts.metrics.aborted.inc();
    match resuming("abort", ABORT_ATTEMPTS, || {
        parts.producer.abort_transaction(CALL_TIMEOUT)
    }) {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(error = %e, "could not abort the failed transaction");
            false
        }
    }
}

/// Calls a transaction call up to `attempts` times while it fails in a way librdkafka says
/// to resume by calling it again (a timeout: the call goes on in the background).
fn resuming(
    what: &str,
    attempts: u32,
    mut call: impl FnMut() -> Result<(), KafkaError>,
) -> Result<(), KafkaError> {
    let mut attempt = 1;
    loop {
        match call() {
            Err(KafkaError::Transaction(e)) if e.is_retriable() && attempt < attempts => {
                tracing::warn!(error = %e, attempt, "{what} did not finish; resuming it");
                attempt += 1;
            }
            result => return result,
        }
    }
}

fn transaction<C: ConsumerContext + 'static>(
    parts: &CommitterParts<C>,
    batch: &Batch,
) -> Result<(), KafkaError> {
    let producer = &parts.producer;
    producer.begin_transaction()?;
    for (_, record) in &batch.records {
        let mut headers = OwnedHeaders::new_with_capacity(record.headers.len());
        for (key, value) in &record.headers {
            headers = headers.insert(Header {
                key,
                value: Some(value.as_str()),
            });
        }
        let mut pending = BaseRecord::to(&record.topic)
            .key(record.key.as_str())
            .payload(record.payload.as_slice())
            .headers(headers);
        loop {
            match producer.send(pending) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    // The local queue drains as batches are acknowledged.
                    std::thread::sleep(Duration::from_millis(5));
                    pending = back;
                }
                Err((e, _)) => return Err(e),
            }
        }
    }
    for (consumer, topics) in &parts.consumers {
        let mut offsets = TopicPartitionList::new();
        for (tp, next) in &batch.offsets {
            let Some(topic) = parts.topic_names.get(tp.topic) else {
                continue;
            };
            if topics.contains(&tp.topic) {
                offsets.add_partition_offset(topic, tp.partition, Offset::Offset(*next))?;
            }
        }
        if offsets.count() == 0 {
            continue;
        }
        // Absent only before the consumer joined its group; an abortable state error retries.
        let metadata = consumer
            .group_metadata()
            .ok_or(KafkaError::Global(RDKafkaErrorCode::State))?;
        producer.send_offsets_to_transaction(&offsets, &metadata, CALL_TIMEOUT)?;
    }
    // A commit that timed out may well have committed: resumed, not aborted.
    resuming("commit", COMMIT_ATTEMPTS, || {
        producer.commit_transaction(CALL_TIMEOUT)
    })
}
