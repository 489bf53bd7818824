//! `pushctl dlq replay [--push ID] [--reason TEXT] [--dry-run] [--again]`: dead letters back
//! onto the push topic, keyed by subscriber id, with a fresh retry budget (`attempt: 0`, no
//! `firstAttemptAt` or `dueAt`) and `replayed: true`, so the push's counts take the new
//! outcome in place of the failure.
//!
//! Each dead letter is replayed at most once, across runs, unless `--again`: before its
//! message is produced, a document `{_id: "<topic>:<partition>:<offset>", state: "producing"}`
//! is inserted into the MongoDB collection [`REPLAYS`] (the unique `_id` makes two runs, even
//! concurrent ones, agree on who replays it), and once the broker acknowledged the message
//! its state becomes `"replayed"`. A run that finds a marker skips the dead letter, except
//! one left `"producing"` for longer than a produce can take (a run that died between the
//! insert and the acknowledgement): it is claimed again and replayed, so a crash can cause a
//! duplicate notification but never a lost one. When the broker refuses a message, its marker
//! is removed again and the command fails (exit 5): running it again retries.
//!
//! Records whose value is not a delivery message are never replayed; each is named on stderr
//! and counted. The dead letters are read from the topic's beginning to its end when the
//! command started, in batches of [`BATCH`]: one insert and one produce round trip per batch.

use std::collections::HashSet;
use std::time::Duration;

use bson::{Document, doc};
use mongodb::Collection;
use mongodb::error::ErrorKind;
use pushservice_config::KafkaSettings;
use pushservice_kafka::rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use pushservice_kafka::{KafkaError, ProducerTuning, ScanFrom, check_reachable, producer};
use pushservice_model::DeliveryMessage;
use pushservice_store::{Store, StoreError};

use super::{DeadLetter, Scan, push_filter};
use crate::cli::DlqReplayArgs;
use crate::error::CommandError;

/// The collection recording replayed dead letters.
pub const REPLAYS: &str = "deadLetterReplays";

/// Dead letters claimed and produced together.
pub const BATCH: usize = 256;

/// MongoDB's duplicate-key error code.
const DUPLICATE_KEY: i32 = 11000;

/// What a run did, by dead letter.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplayCounts {
    /// Dead letters read.
    pub read: u64,
    /// Put back onto the push topic (with `--dry-run`: would be).
    pub replayed: u64,
    /// Matching, but already replayed by an earlier run (or being replayed by another).
    pub skipped: u64,
    /// Matching, but their value is not a delivery message: never replayed.
    pub unreadable: u64,
    /// Not of `--push` or not of `--reason`.
    pub not_matching: u64,
}

/// Which dead letters to replay.
struct Filter {
    push: Option<String>,
    /// Lowercase.
    reason: Option<String>,
}

impl Filter {
    fn matches(&self, letter: &DeadLetter) -> bool {
        let push = self
            .push
            .as_deref()
            .is_none_or(|p| letter.push_id() == Some(p));
        let reason = self.reason.as_deref().is_none_or(|wanted| {
            letter
                .reason()
                .is_some_and(|r| r.to_lowercase().contains(wanted))
        });
        push && reason
    }
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

/// Runs `pushctl dlq replay`.
pub async fn run(args: DlqReplayArgs) -> Result<(), CommandError> {
    let filter = Filter {
        push: push_filter(args.push_id.as_deref())?,
        reason: args.reason.as_deref().map(str::to_lowercase),
    };
    let kafka = args.kafka.kafka.settings()?;
    let topics = args.kafka.topics.settings()?;
    let mongo = args.mongo.settings()?;
    let store = Store::connect(&mongo).await?;
    let replayer = Replayer {
        replays: store.database().collection::<Document>(REPLAYS),
        producer: producer(&kafka, &ProducerTuning::command(kafka.timeout))?,
        push_topic: topics.push.name.clone(),
        // A produce gives up after the Kafka timeout; a marker left producing for twice
        // that (and at least a minute) was left by a run that is gone.
        stale_after: (kafka.timeout * 2).max(Duration::from_secs(60)),
        dry_run: args.dry_run,
        again: args.again,
        kafka,
    };
    let result = replayer.run(&filter, topics.dead_letter.name.clone()).await;
    store.close().await;
    let counts = result?;
    let verb = if args.dry_run {
        "would replay"
    } else {
        "replayed"
    };
    println!(
        "dead letters read from {}: {}",
        topics.dead_letter.name, counts.read
    );
    println!("{verb} onto {}: {}", topics.push.name, counts.replayed);
    println!("skipped, already replayed: {}", counts.skipped);
    println!("unreadable, never replayed: {}", counts.unreadable);
    println!("not matching: {}", counts.not_matching);
    Ok(())
}

/// What a run needs.
struct Replayer {
    replays: Collection<Document>,
    producer: FutureProducer,
    push_topic: String,
    stale_after: Duration,
    dry_run: bool,
    again: bool,
    kafka: KafkaSettings,
}

impl Replayer {
    async fn run(&self, filter: &Filter, dlq_topic: String) -> Result<ReplayCounts, CommandError> {
        if !self.dry_run {
            // A missing push topic fails here (exit 5), before anything is claimed.
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
            dlq_topic.clone(),
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
            let id = letter.id(&dlq_topic);
            let reason = letter.reason().map(str::to_owned);
            match letter.message {
                Ok(message) => batch.push(Pending {
                    id,
                    message: fresh(message, reason.as_deref()),
                    reason,
                }),
                Err(why) => {
                    counts.unreadable += 1;
                    eprintln!("unreadable dead letter {id}, not replayed: {why}");
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
    ) -> Result<(), CommandError> {
        if batch.is_empty() {
            return Ok(());
        }
        let pending = std::mem::take(batch);
        if self.dry_run {
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
            return Err(CommandError::Kafka(KafkaError::Unreachable {
                brokers: self.kafka.brokers.clone(),
                timeout: self.kafka.timeout,
                source,
            }));
        }
        Ok(())
    }

    /// Records the intent to replay each of `pending`; the ids this run may produce.
    async fn claim(&self, pending: &[Pending]) -> Result<HashSet<String>, CommandError> {
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
        // Markers of earlier runs: take over those `--again` asks for and those a run that
        // died left behind; leave the rest.
        let stale = bson::DateTime::from_millis(
            now.timestamp_millis() - i64::try_from(self.stale_after.as_millis()).unwrap_or(0),
        );
        for p in existing {
            let filter = if self.again {
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

    /// For `--dry-run`: the ids of `pending` an earlier run claimed (all of them would be
    /// skipped but stale ones, which are too rare to matter in an estimate); none with
    /// `--again`.
    async fn already_replayed(&self, pending: &[Pending]) -> Result<HashSet<String>, CommandError> {
        if self.again {
            return Ok(HashSet::new());
        }
        let ids: Vec<&str> = pending.iter().map(|p| p.id.as_str()).collect();
        let mut cursor = self
            .replays
            .find(doc! { "_id": { "$in": ids } })
            .projection(doc! { "_id": 1 })
            .await
            .map_err(query("reading replayed dead letters"))?;
        let mut done = HashSet::new();
        while cursor
            .advance()
            .await
            .map_err(query("reading replayed dead letters"))?
        {
            let document = cursor
                .deserialize_current()
                .map_err(query("reading replayed dead letters"))?;
            if let Ok(id) = document.get_str("_id") {
                done.insert(id.to_owned());
            }
        }
        Ok(done)
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

    #[test]
    fn a_replayed_message_has_a_fresh_budget_and_says_so() {
        let message = DeliveryMessage {
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
        };
        let json: serde_json::Value =
            serde_json::from_slice(&fresh(message, Some("gave up")).to_json()).expect("JSON");
        assert_eq!(json["attempt"], 0, "{json}");
        assert_eq!(json["replayed"], true, "{json}");
        assert_eq!(json["replacedFailure"], "gave up", "{json}");
        assert!(json.get("firstAttemptAt").is_none(), "{json}");
        assert!(json.get("dueAt").is_none(), "{json}");
        assert_eq!(json["ttl"], 60, "{json}");
    }

    #[test]
    fn reasons_match_case_insensitively_and_pushes_exactly() {
        let letter = |push: &str, reason: &str| {
            DeadLetter::from_record(pushservice_kafka::ReadMessage {
                partition: 0,
                offset: 0,
                key: None,
                payload: None,
                timestamp_ms: None,
                headers: vec![
                    ("x-push-id".into(), push.as_bytes().to_vec()),
                    ("x-reason".into(), reason.as_bytes().to_vec()),
                ],
            })
        };
        let filter = Filter {
            push: Some("a".into()),
            reason: Some("http 503".into()),
        };
        assert!(filter.matches(&letter("a", "retries spent: HTTP 503")));
        assert!(!filter.matches(&letter("b", "retries spent: HTTP 503")));
        assert!(!filter.matches(&letter("a", "HTTP 400")));
        assert!(!filter.matches(&letter("a", "")));
        let all = Filter {
            push: None,
            reason: None,
        };
        assert!(all.matches(&letter("", "")));
    }
}
