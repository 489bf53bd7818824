//! Dead letters (`TOPIC_PUSH_DLQ`): read, counted by push and reason, and replayed onto the
//! push topic at most once each. `pushctl dlq` and the console's routes in `pushapi` both call
//! this module.
//!
//! A dead letter is what a sender writes when a delivery failed for good (see the sender's
//! `records` module): the delivery message as last attempted (or the raw bytes when it could
//! not be parsed), keyed by subscriber id, with UTF-8 headers `x-reason`, `x-attempts`,
//! `x-push-id`, `x-site-id`, `x-source-topic`, `x-source-partition`, `x-source-offset`,
//! `x-first-attempt-at` and `x-failed-at` (milliseconds since the Unix epoch). [`DeadLetter`]
//! reads one leniently: a header that is missing or not a number is `None`, never an error,
//! so one odd record cannot stop a listing.
//!
//! The topic is read with [`pushservice_kafka::scan_topic`] on a blocking thread that hands
//! records over a bounded channel ([`Scan`]): memory stays flat however many dead letters
//! there are, and without `follow` the scan ends at the topic's end as it was when it
//! started, even while senders keep adding to it.
//!
//! # Replays
//!
//! [`Replayer`] puts dead letters back onto the push topic, keyed by subscriber id, with a
//! fresh retry budget ([`fresh`]: `attempt: 0`, no `firstAttemptAt` or `dueAt`) and
//! `replayed: true`, so the push's counts take the new outcome in place of the failure.
//!
//! Each dead letter is replayed at most once, across runs and front ends, unless `again`:
//! before its message is produced, a document `{_id: "<topic>:<partition>:<offset>", state:
//! "producing"}` is inserted into the MongoDB collection [`REPLAYS`] (the unique `_id` makes
//! two runs, even concurrent ones, agree on who replays it), and once the broker acknowledged
//! the message its state becomes `"replayed"`. A run that finds a marker skips the dead
//! letter, except one left `"producing"` for longer than a produce can take (a run that died
//! between the insert and the acknowledgement): it is claimed again and replayed, so a crash
//! can cause a duplicate notification but never a lost one. When the broker refuses a
//! message, its marker is removed again and the run fails: running it again retries.
//!
//! Records whose value is not a delivery message are never replayed; each is handed to the
//! caller's `on_unreadable` and counted. The dead letters are read from the topic's
//! beginning to its end when the run started, in batches of [`BATCH`]: one insert and one
//! produce round trip per batch.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use bson::{Document, doc};
use mongodb::Collection;
use mongodb::error::ErrorKind;
use pushservice_config::KafkaSettings;
use pushservice_kafka::rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use pushservice_kafka::{
    KafkaError, ProducerTuning, ReadMessage, ScanFrom, check_reachable, producer, scan_topic,
};
use pushservice_model::DeliveryMessage;
use pushservice_store::{Store, StoreError};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::error::ControlError;

/// Header names of a dead letter.
pub mod header {
    /// Why the delivery failed.
    pub const REASON: &str = "x-reason";
    /// Attempts made (decimal).
    pub const ATTEMPTS: &str = "x-attempts";
    /// Push id (hex).
    pub const PUSH_ID: &str = "x-push-id";
    /// Site id (hex; empty when unknown).
    pub const SITE_ID: &str = "x-site-id";
    /// Topic the delivery message was read from.
    pub const SOURCE_TOPIC: &str = "x-source-topic";
    /// Its partition (decimal).
    pub const SOURCE_PARTITION: &str = "x-source-partition";
    /// Its offset (decimal).
    pub const SOURCE_OFFSET: &str = "x-source-offset";
    /// First attempt, milliseconds since the Unix epoch.
    pub const FIRST_ATTEMPT_AT: &str = "x-first-attempt-at";
    /// When it was given up, milliseconds since the Unix epoch.
    pub const FAILED_AT: &str = "x-failed-at";
    /// Every header above, in the order `pushctl dlq tail` prints them.
    pub const ALL: [&str; 9] = [
        REASON,
        ATTEMPTS,
        PUSH_ID,
        SITE_ID,
        SOURCE_TOPIC,
        SOURCE_PARTITION,
        SOURCE_OFFSET,
        FIRST_ATTEMPT_AT,
        FAILED_AT,
    ];
}

/// The collection recording replayed dead letters.
pub const REPLAYS: &str = "deadLetterReplays";

/// Dead letters claimed and produced together (and looked up together when counting
/// replays).
pub const BATCH: usize = 256;

/// The key under which dead letters without a push id are counted.
pub const UNKNOWN_PUSH: &str = "(unknown)";

/// The key under which dead letters without a reason are counted.
pub const NO_REASON: &str = "(none)";

/// MongoDB's duplicate-key error code.
const DUPLICATE_KEY: i32 = 11000;

/// How many records may wait between the reading thread and the async side.
const SCAN_BUFFER: usize = 1024;

/// One dead letter as read from the topic.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// The record as read.
    pub record: ReadMessage,
    /// The delivery message, or why the value is not one (it is then never replayed).
    pub message: Result<DeliveryMessage, String>,
}

impl DeadLetter {
    /// Reads a record of the dead-letter topic.
    pub fn from_record(record: ReadMessage) -> Self {
        let message = match record.payload.as_deref() {
            Some(bytes) => DeliveryMessage::from_json(bytes).map_err(|e| e.to_string()),
            None => Err("the record has no value".to_owned()),
        };
        DeadLetter { record, message }
    }

    /// A header's value, `None` when missing, empty or not UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.record.header(name).filter(|value| !value.is_empty())
    }

    /// A numeric header, `None` when missing or not a number.
    pub fn number<T: std::str::FromStr>(&self, name: &str) -> Option<T> {
        self.header(name)?.trim().parse().ok()
    }

    /// The push it belongs to: `x-push-id`, else the message's.
    pub fn push_id(&self) -> Option<&str> {
        self.header(header::PUSH_ID).or_else(|| {
            self.message
                .as_ref()
                .ok()
                .map(|m| m.push_id.as_str())
                .filter(|id| !id.is_empty())
        })
    }

    /// The site it belongs to: `x-site-id`, else the message's.
    pub fn site_id(&self) -> Option<&str> {
        self.header(header::SITE_ID).or_else(|| {
            self.message
                .as_ref()
                .ok()
                .map(|m| m.site_id.as_str())
                .filter(|id| !id.is_empty())
        })
    }

    /// Why it failed (`x-reason`).
    pub fn reason(&self) -> Option<&str> {
        self.header(header::REASON)
    }

    /// When it failed: `x-failed-at`, else the record's timestamp (ms since the epoch).
    pub fn failed_at(&self) -> Option<u64> {
        self.number(header::FAILED_AT).or_else(|| {
            self.record
                .timestamp_ms
                .and_then(|ms| u64::try_from(ms).ok())
        })
    }

    /// `<topic>:<partition>:<offset>`: the dead letter's identity.
    pub fn id(&self, topic: &str) -> String {
        format!("{topic}:{}:{}", self.record.partition, self.record.offset)
    }
}

/// Milliseconds since the epoch as RFC 3339 (UTC), for people.
pub fn rfc3339(ms: u64) -> String {
    let ms = i64::try_from(ms).unwrap_or(i64::MAX);
    bson::DateTime::from_millis(ms)
        .try_to_rfc3339_string()
        .unwrap_or_else(|_| format!("{ms} ms"))
}

/// How a reason is matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReasonMatch {
    /// The reason contains this text, ignoring case (`pushctl dlq replay --reason`); give it
    /// in lowercase.
    Contains(String),
    /// The reason is exactly this, as [`DeadLetterStats::by_reason`] names it ([`NO_REASON`]
    /// for dead letters without one): what the console replays.
    Exact(String),
}

/// Which dead letters an operation takes; every part given must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Only this push's (hex id).
    pub push: Option<String>,
    /// Only this site's (hex id); dead letters without a site never match.
    pub site: Option<String>,
    /// Only those with this reason.
    pub reason: Option<ReasonMatch>,
}

impl Filter {
    /// Whether `letter` is taken.
    pub fn matches(&self, letter: &DeadLetter) -> bool {
        let push = self
            .push
            .as_deref()
            .is_none_or(|p| letter.push_id() == Some(p));
        let site = self
            .site
            .as_deref()
            .is_none_or(|s| letter.site_id() == Some(s));
        let reason = match &self.reason {
            None => true,
            Some(ReasonMatch::Contains(wanted)) => letter
                .reason()
                .is_some_and(|r| r.to_lowercase().contains(wanted.as_str())),
            Some(ReasonMatch::Exact(wanted)) => letter.reason().unwrap_or(NO_REASON) == wanted,
        };
        push && site && reason
    }
}

/// A topic being read on a blocking thread; records arrive through [`Scan::next`].
pub struct Scan {
    records_rx: mpsc::Receiver<ReadMessage>,
    task: JoinHandle<Result<Vec<i64>, KafkaError>>,
}

impl Scan {
    /// Starts reading `topic` from `from` (see [`scan_topic`]).
    pub fn start(kafka: KafkaSettings, topic: String, from: ScanFrom, follow: bool) -> Self {
        let (records_tx, records_rx) = mpsc::channel(SCAN_BUFFER);
        let task = tokio::task::spawn_blocking(move || {
            scan_topic(&kafka, &topic, from, follow, |record| {
                // The reader's owner stopped listening (done or failed): stop reading.
                match records_tx.blocking_send(record) {
                    Ok(()) => std::ops::ControlFlow::Continue(()),
                    Err(_) => std::ops::ControlFlow::Break(()),
                }
            })
        });
        Scan { records_rx, task }
    }

    /// The next record; `None` once the scan is over (then call [`Scan::finish`]).
    pub async fn next(&mut self) -> Option<ReadMessage> {
        self.records_rx.recv().await
    }

    /// Waits for the reader; by partition, where a later scan would go on from.
    pub async fn finish(self) -> Result<Vec<i64>, ControlError> {
        drop(self.records_rx);
        let positions = self
            .task
            .await
            .map_err(|e| anyhow::anyhow!("dead-letter reader task failed: {e}"))??;
        Ok(positions)
    }
}

/// Counts of dead letters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeadLetterStats {
    /// Dead letters counted.
    pub total: u64,
    /// Of those, values that are not a delivery message (never replayed).
    pub unreadable: u64,
    /// By push id ([`UNKNOWN_PUSH`] when none).
    pub by_push: BTreeMap<String, u64>,
    /// By reason ([`NO_REASON`] when none).
    pub by_reason: BTreeMap<String, u64>,
    /// Of those by reason, how many were replayed already (only counted by
    /// [`stats`] with a store; empty otherwise).
    pub replayed_by_reason: BTreeMap<String, u64>,
    /// Earliest failure, ms since the epoch.
    pub oldest_failed_at: Option<u64>,
    /// Latest failure, ms since the epoch.
    pub newest_failed_at: Option<u64>,
}

impl DeadLetterStats {
    /// Counts `letter`.
    pub fn add(&mut self, letter: &DeadLetter) {
        self.total += 1;
        if letter.message.is_err() {
            self.unreadable += 1;
        }
        let push = letter.push_id().unwrap_or(UNKNOWN_PUSH);
        *self.by_push.entry(push.to_owned()).or_default() += 1;
        let reason = letter.reason().unwrap_or(NO_REASON);
        *self.by_reason.entry(reason.to_owned()).or_default() += 1;
        if let Some(at) = letter.failed_at() {
            self.oldest_failed_at = Some(self.oldest_failed_at.map_or(at, |t| t.min(at)));
            self.newest_failed_at = Some(self.newest_failed_at.map_or(at, |t| t.max(at)));
        }
    }

    /// Dead letters replayed already, over every reason.
    pub fn replayed(&self) -> u64 {
        self.replayed_by_reason.values().sum()
    }
}

/// Counts the dead letters of `topic` that `filter` takes, from the topic's beginning to its
/// end when the call started. With `replays`, also how many of each reason were replayed
/// already (one MongoDB lookup per [`BATCH`] dead letters).
pub async fn stats(
    kafka: &KafkaSettings,
    topic: &str,
    filter: &Filter,
    replays: Option<&Store>,
) -> Result<DeadLetterStats, ControlError> {
    let markers = replays.map(|store| store.database().collection::<Document>(REPLAYS));
    let mut scan = Scan::start(kafka.clone(), topic.to_owned(), ScanFrom::Beginning, false);
    let mut stats = DeadLetterStats::default();
    // (dead letter id, reason) waiting for a lookup of their markers.
    let mut batch: Vec<(String, String)> = Vec::new();
    let mut failure = None;
    while let Some(record) = scan.next().await {
        let letter = DeadLetter::from_record(record);
        if !filter.matches(&letter) {
            continue;
        }
        stats.add(&letter);
        let Some(markers) = &markers else {
            continue;
        };
        let reason = letter.reason().unwrap_or(NO_REASON).to_owned();
        batch.push((letter.id(topic), reason));
        if batch.len() >= BATCH
            && let Err(e) = count_replayed(markers, &mut batch, &mut stats).await
        {
            failure = Some(e);
            break;
        }
    }
    // Stops the reader if we broke off.
    let scanned = scan.finish().await;
    if let Some(e) = failure {
        return Err(e);
    }
    scanned?;
    if let Some(markers) = &markers {
        count_replayed(markers, &mut batch, &mut stats).await?;
    }
    Ok(stats)
}

/// Adds to `stats` those of `batch` (emptied) whose marker says replayed.
async fn count_replayed(
    markers: &Collection<Document>,
    batch: &mut Vec<(String, String)>,
    stats: &mut DeadLetterStats,
) -> Result<(), ControlError> {
    if batch.is_empty() {
        return Ok(());
    }
    let pending = std::mem::take(batch);
    let ids: Vec<&str> = pending.iter().map(|(id, _)| id.as_str()).collect();
    let done = marked(markers, &ids, Some("replayed")).await?;
    for (id, reason) in &pending {
        if done.contains(id) {
            *stats.replayed_by_reason.entry(reason.clone()).or_default() += 1;
        }
    }
    Ok(())
}

/// Those of `ids` with a marker (in `state`, when given).
async fn marked(
    markers: &Collection<Document>,
    ids: &[&str],
    state: Option<&str>,
) -> Result<HashSet<String>, ControlError> {
    let mut filter = doc! { "_id": { "$in": ids } };
    if let Some(state) = state {
        filter.insert("state", state);
    }
    let mut cursor = markers
        .find(filter)
        .projection(doc! { "_id": 1 })
        .await
        .map_err(query("reading replayed dead letters"))?;
    let mut found = HashSet::new();
    while cursor
        .advance()
        .await
        .map_err(query("reading replayed dead letters"))?
    {
        let document = cursor
            .deserialize_current()
            .map_err(query("reading replayed dead letters"))?;
        if let Ok(id) = document.get_str("_id") {
            found.insert(id.to_owned());
        }
    }
    Ok(found)
}

/// The message as it goes back: a fresh budget, marked replayed with the reason its failure
/// was counted under (its new outcome takes that failure back).
pub fn fresh(mut message: DeliveryMessage, reason: Option<&str>) -> DeliveryMessage {
    message.attempt = 0;
    message.first_attempt_at = None;
    message.due_at = None;
    message.replayed = true;
    message.replaced_failure = reason.map(str::to_owned);
    message
}

/// What a replay did, by dead letter.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplayCounts {
    /// Dead letters read.
    pub read: u64,
    /// Put back onto the push topic (with `dry_run`: would be).
    pub replayed: u64,
    /// Matching, but already replayed by an earlier run (or being replayed by another).
    pub skipped: u64,
    /// Matching, but their value is not a delivery message: never replayed.
    pub unreadable: u64,
    /// Not taken by the filter.
    pub not_matching: u64,
}

/// How a replay runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplayOptions {
    /// Count what would be replayed; write nothing to Kafka or MongoDB.
    pub dry_run: bool,
    /// Replay dead letters even if an earlier run already replayed them.
    pub again: bool,
}

/// A dead letter about to be replayed.
struct Pending {
    /// `<topic>:<partition>:<offset>`.
    id: String,
    /// The message with a fresh budget.
    message: DeliveryMessage,
    /// Its reason, kept on the marker for the record.
    reason: Option<String>,
}

/// Replays dead letters (see the module docs).
pub struct Replayer {
    replays: Collection<Document>,
    producer: FutureProducer,
    push_topic: String,
    /// How long a marker may stay `producing` before it counts as left by a run that died.
    stale_after: Duration,
    options: ReplayOptions,
    kafka: KafkaSettings,
}

impl Replayer {
    /// A replayer onto `push_topic` with a producer of its own, recording replays in
    /// `store`.
    pub fn new(
        store: &Store,
        kafka: KafkaSettings,
        push_topic: String,
        options: ReplayOptions,
    ) -> Result<Self, ControlError> {
        let producer = producer(&kafka, &ProducerTuning::command(kafka.timeout))?;
        Ok(Replayer::with_producer(
            store, producer, kafka, push_topic, options,
        ))
    }

    /// A replayer that produces with `producer` (a long-lived process's, not one per run).
    pub fn with_producer(
        store: &Store,
        producer: FutureProducer,
        kafka: KafkaSettings,
        push_topic: String,
        options: ReplayOptions,
    ) -> Self {
        Replayer {
            replays: store.database().collection::<Document>(REPLAYS),
            producer,
            push_topic,
            // A produce gives up after the Kafka timeout; a marker left producing for twice
            // that (and at least a minute) was left by a run that is gone.
            stale_after: (kafka.timeout * 2).max(Duration::from_secs(60)),
            options,
            kafka,
        }
    }

    /// Replays the dead letters of `dlq_topic` that `filter` takes, from the topic's
    /// beginning to its end when the call started; each unreadable one is named to
    /// `on_unreadable(id, why)`.
    pub async fn run(
        &self,
        filter: &Filter,
        dlq_topic: &str,
        mut on_unreadable: impl FnMut(&str, &str),
    ) -> Result<ReplayCounts, ControlError> {
        if !self.options.dry_run {
            // A missing push topic fails here, before anything is claimed.
            let (producer, kafka, topic) = (
                self.producer.clone(),
                self.kafka.clone(),
                self.push_topic.clone(),
            );
            tokio::task::spawn_blocking(move || {
                check_reachable(producer.client(), &kafka, Some(&topic))
            })
            .await
            .map_err(|e| anyhow::anyhow!("broker check task failed: {e}"))??;
        }
        let mut counts = ReplayCounts::default();
        let mut scan = Scan::start(
            self.kafka.clone(),
            dlq_topic.to_owned(),
            ScanFrom::Beginning,
            false,
        );
        let mut batch: Vec<Pending> = Vec::with_capacity(BATCH);
        let mut failure = None;
        while let Some(record) = scan.next().await {
            counts.read += 1;
            let letter = DeadLetter::from_record(record);
            if !filter.matches(&letter) {
                counts.not_matching += 1;
                continue;
            }
            let id = letter.id(dlq_topic);
            let reason = letter.reason().map(str::to_owned);
            match letter.message {
                Ok(message) => batch.push(Pending {
                    id,
                    message: fresh(message, reason.as_deref()),
                    reason,
                }),
                Err(why) => {
                    counts.unreadable += 1;
                    on_unreadable(&id, &why);
                }
            }
            if batch.len() >= BATCH
                && let Err(e) = self.replay_batch(&mut batch, &mut counts).await
            {
                failure = Some(e);
                break;
            }
        }
        // Stops the reader if we broke off.
        let scanned = scan.finish().await;
        if let Some(e) = failure {
            return Err(e);
        }
        scanned?;
        self.replay_batch(&mut batch, &mut counts).await?;
        Ok(counts)
    }

    /// Claims, produces and records the batch (emptied).
    async fn replay_batch(
        &self,
        batch: &mut Vec<Pending>,
        counts: &mut ReplayCounts,
    ) -> Result<(), ControlError> {
        if batch.is_empty() {
            return Ok(());
        }
        let pending = std::mem::take(batch);
        if self.options.dry_run {
            let done = self.already_replayed(&pending).await?;
            let skipped = pending.iter().filter(|p| done.contains(&p.id)).count() as u64;
            counts.skipped += skipped;
            counts.replayed += pending.len() as u64 - skipped;
            return Ok(());
        }
        let claimed = self.claim(&pending).await?;
        counts.skipped += (pending.len() - claimed.len()) as u64;
        let claimed: Vec<&Pending> = pending.iter().filter(|p| claimed.contains(&p.id)).collect();

        let payloads: Vec<Vec<u8>> = claimed.iter().map(|p| p.message.to_json()).collect();
        let sends = claimed.iter().zip(&payloads).map(|(p, payload)| {
            let record = FutureRecord::to(&self.push_topic)
                .key(&p.message.subscriber_id)
                .payload(payload);
            let send = self.producer.send(record, self.kafka.timeout);
            async move { send.await.map_err(|(error, _)| error) }
        });
        let results = futures::future::join_all(sends).await;
        let mut acked = Vec::new();
        let mut refused = Vec::new();
        let mut first_error = None;
        for (p, result) in claimed.iter().zip(results) {
            match result {
                Ok(_) => acked.push(p.id.clone()),
                Err(error) => {
                    refused.push(p.id.clone());
                    first_error.get_or_insert(error);
                }
            }
        }
        counts.replayed += acked.len() as u64;
        if !acked.is_empty() {
            let now = bson::DateTime::now();
            self.replays
                .update_many(
                    doc! { "_id": { "$in": &acked } },
                    doc! { "$set": { "state": "replayed", "replayedAt": now } },
                )
                .await
                .map_err(query("recording replayed dead letters"))?;
        }
        if let Some(source) = first_error {
            // Not produced: forget the claims so the next run replays them.
            if let Err(e) = self
                .replays
                .delete_many(doc! { "_id": { "$in": &refused }, "state": "producing" })
                .await
            {
                tracing::warn!(error = %e, "could not release claims of dead letters not replayed");
            }
            return Err(ControlError::Kafka(KafkaError::Unreachable {
                brokers: self.kafka.brokers.clone(),
                timeout: self.kafka.timeout,
                source,
            }));
        }
        Ok(())
    }

    /// Records the intent to replay each of `pending`; the ids this run may produce.
    async fn claim(&self, pending: &[Pending]) -> Result<HashSet<String>, ControlError> {
        let now = bson::DateTime::now();
        let markers = pending.iter().map(|p| {
            doc! {
                "_id": &p.id,
                "state": "producing",
                "pushId": &p.message.push_id,
                "subscriberId": &p.message.subscriber_id,
                "reason": p.reason.as_deref(),
                "claimedAt": now,
                "replays": 1,
            }
        });
        let mut claimed: HashSet<String> = pending.iter().map(|p| p.id.clone()).collect();
        let mut existing = Vec::new();
        if let Err(error) = self.replays.insert_many(markers).ordered(false).await {
            let duplicates = match &*error.kind {
                ErrorKind::InsertMany(failure) if failure.write_concern_error.is_none() => {
                    let errors = failure.write_errors.as_deref().unwrap_or_default();
                    errors
                        .iter()
                        .all(|e| e.code == DUPLICATE_KEY)
                        .then(|| errors.iter().map(|e| e.index).collect::<Vec<_>>())
                }
                _ => None,
            };
            let Some(duplicates) = duplicates else {
                return Err(query("recording dead letters to replay")(error).into());
            };
            for index in duplicates {
                if let Some(p) = pending.get(index) {
                    claimed.remove(&p.id);
                    existing.push(p);
                }
            }
        }
        // Markers of earlier runs: take over those `again` asks for and those a run that
        // died left behind; leave the rest.
        let stale = bson::DateTime::from_millis(
            now.timestamp_millis() - i64::try_from(self.stale_after.as_millis()).unwrap_or(0),
        );
        for p in existing {
            let filter = if self.options.again {
                doc! { "_id": &p.id }
            } else {
                doc! { "_id": &p.id, "state": "producing", "claimedAt": { "$lt": stale } }
            };
            let update = doc! {
                "$set": { "state": "producing", "claimedAt": now },
                "$inc": { "replays": 1 },
            };
            let taken = self
                .replays
                .update_one(filter, update)
                .await
                .map_err(query("claiming a dead letter replayed before"))?;
            if taken.matched_count > 0 {
                claimed.insert(p.id.clone());
            }
        }
        Ok(claimed)
    }

    /// For `dry_run`: the ids of `pending` an earlier run claimed (all of them would be
    /// skipped but stale ones, which are too rare to matter in an estimate); none with
    /// `again`.
    async fn already_replayed(&self, pending: &[Pending]) -> Result<HashSet<String>, ControlError> {
        if self.options.again {
            return Ok(HashSet::new());
        }
        let ids: Vec<&str> = pending.iter().map(|p| p.id.as_str()).collect();
        marked(&self.replays, &ids, None).await
    }
}

/// A MongoDB failure while `context`.
fn query(context: &'static str) -> impl Fn(mongodb::error::Error) -> StoreError {
    move |source| StoreError::Query {
        context: context.to_owned(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use pushservice_model::{DELIVERY_VERSION, Target, Urgency};
    use serde_json::value::RawValue;

    use super::*;

    fn record(headers: &[(&str, &str)], payload: &[u8]) -> ReadMessage {
        ReadMessage {
            partition: 2,
            offset: 17,
            key: Some(b"sub".to_vec()),
            payload: Some(payload.to_vec()),
            timestamp_ms: Some(1_000),
            headers: headers
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.as_bytes().to_vec()))
                .collect(),
        }
    }

    #[test]
    fn headers_are_read_leniently_and_a_bad_value_is_unreadable_not_an_error() {
        let letter = DeadLetter::from_record(record(
            &[
                (header::REASON, "HTTP 400"),
                (header::ATTEMPTS, "x"),
                (header::SITE_ID, ""),
                (header::FAILED_AT, "1700000000000"),
            ],
            b"not json",
        ));
        assert_eq!(letter.reason(), Some("HTTP 400"));
        assert_eq!(letter.number::<u32>(header::ATTEMPTS), None);
        assert_eq!(letter.header(header::SITE_ID), None);
        assert_eq!(letter.site_id(), None);
        assert_eq!(letter.failed_at(), Some(1_700_000_000_000));
        assert_eq!(letter.push_id(), None);
        assert!(letter.message.is_err());
        assert_eq!(letter.id("push-dlq"), "push-dlq:2:17");

        let without = DeadLetter::from_record(record(&[], b"{}"));
        assert_eq!(without.failed_at(), Some(1_000), "record timestamp");
    }

    #[test]
    fn times_print_as_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
    }

    fn message() -> DeliveryMessage {
        DeliveryMessage {
            v: DELIVERY_VERSION,
            push_id: "p".into(),
            site_id: "s".into(),
            subscriber_id: "sub".into(),
            target: Target::Ios { token: "ab".into() },
            ttl: 60,
            urgency: Urgency::High,
            topic: None,
            attempt: 7,
            first_attempt_at: Some(1),
            due_at: Some(2),
            replayed: false,
            replaced_failure: None,
            payload: RawValue::from_string("{}".into()).expect("JSON"),
        }
    }

    #[test]
    fn a_replayed_message_has_a_fresh_budget_and_says_so() {
        let json: serde_json::Value =
            serde_json::from_slice(&fresh(message(), Some("gave up")).to_json()).expect("JSON");
        assert_eq!(json["attempt"], 0, "{json}");
        assert_eq!(json["replayed"], true, "{json}");
        assert_eq!(json["replacedFailure"], "gave up", "{json}");
        assert!(json.get("firstAttemptAt").is_none(), "{json}");
        assert!(json.get("dueAt").is_none(), "{json}");
        assert_eq!(json["ttl"], 60, "{json}");
    }

    fn letter(push: &str, reason: &str) -> DeadLetter {
        DeadLetter::from_record(ReadMessage {
            partition: 0,
            offset: 0,
            key: None,
            payload: None,
            timestamp_ms: None,
            headers: vec![
                (header::PUSH_ID.into(), push.as_bytes().to_vec()),
                (header::REASON.into(), reason.as_bytes().to_vec()),
            ],
        })
    }

    #[test]
    fn reasons_match_by_text_or_exactly_and_pushes_exactly() {
        let filter = Filter {
            push: Some("a".into()),
            reason: Some(ReasonMatch::Contains("http 503".into())),
            ..Filter::default()
        };
        assert!(filter.matches(&letter("a", "retries spent: HTTP 503")));
        assert!(!filter.matches(&letter("b", "retries spent: HTTP 503")));
        assert!(!filter.matches(&letter("a", "HTTP 400")));
        assert!(!filter.matches(&letter("a", "")));
        assert!(Filter::default().matches(&letter("", "")));

        let exact = Filter {
            reason: Some(ReasonMatch::Exact("HTTP 400".into())),
            ..Filter::default()
        };
        assert!(exact.matches(&letter("a", "HTTP 400")));
        assert!(!exact.matches(&letter("a", "HTTP 400: more")));
        let none = Filter {
            reason: Some(ReasonMatch::Exact(NO_REASON.into())),
            ..Filter::default()
        };
        assert!(none.matches(&letter("a", "")));
    }

    #[test]
    fn sites_match_by_header_or_message_and_unknown_sites_never() {
        let of_site = Filter {
            site: Some("s".into()),
            ..Filter::default()
        };
        let with_message = DeadLetter::from_record(ReadMessage {
            payload: Some(message().to_json()),
            ..record(&[], b"")
        });
        assert_eq!(with_message.site_id(), Some("s"));
        assert!(of_site.matches(&with_message));
        assert!(!of_site.matches(&letter("a", "x")), "no site: admin only");
        let header_wins = DeadLetter::from_record(record(&[(header::SITE_ID, "t")], b""));
        assert!(!of_site.matches(&header_wins));
    }

    #[test]
    fn counts_by_push_and_reason_with_the_time_span() {
        let at = |push: &str, reason: &str, failed_at: &str| {
            DeadLetter::from_record(ReadMessage {
                partition: 0,
                offset: 0,
                key: None,
                payload: Some(b"raw".to_vec()),
                timestamp_ms: None,
                headers: vec![
                    (header::PUSH_ID.to_owned(), push.as_bytes().to_vec()),
                    (header::REASON.to_owned(), reason.as_bytes().to_vec()),
                    (header::FAILED_AT.to_owned(), failed_at.as_bytes().to_vec()),
                ],
            })
        };
        let mut stats = DeadLetterStats::default();
        stats.add(&at("a", "HTTP 400", "3000"));
        stats.add(&at("a", "HTTP 400", "1000"));
        stats.add(&at("b", "", "2000"));
        stats.add(&at("", "HTTP 413", ""));
        assert_eq!((stats.total, stats.unreadable), (4, 4));
        assert_eq!(
            stats.by_push,
            BTreeMap::from([
                ("(unknown)".to_owned(), 1),
                ("a".to_owned(), 2),
                ("b".to_owned(), 1)
            ])
        );
        assert_eq!(stats.by_reason.get("(none)"), Some(&1));
        assert_eq!(stats.by_reason.get("HTTP 400"), Some(&2));
        assert_eq!(
            (stats.oldest_failed_at, stats.newest_failed_at),
            (Some(1000), Some(3000))
        );
        assert_eq!(stats.replayed(), 0);
    }
}
