//! Delivery counters, one document per (push, outcome-topic partition).
//!
//! Final delivery outcomes are records on the outcome topic; the outcome recorder that owns
//! a partition of it applies them in batches to a document only that partition writes
//! (`pushDeliveryStats`, `_id` `"<push id>:outcomes-<partition>"`): absolute counts, the
//! reasons deliveries failed, and the offset of the last record applied. Each write is
//! conditional on the offset it read ([`Store::write_partition_counts`]), so a batch that is
//! applied again (the recorder crashed before committing, or its partition moved while it
//! wrote) is not counted twice: the recorder re-reads and applies only the records past the
//! stored offset. The push document's `totalAccepted`, `totalUnsubscribed` and
//! `totalFailed` are the sum over its documents.
//!
//! Why not `$inc` on the push document directly: MongoDB applies `$inc` atomically, but
//! MongoDB-protocol servers such as FerretDB 1.x apply updates as read-modify-write, and two
//! writers incrementing the same document at once lose increments (measured: 228 of 600
//! survived). With one writer per document, and absolute values written under a condition,
//! nothing is lost or doubled on any server; the totals on the push are a sum that any
//! recorder may recompute, and recorders recompute it for a few seconds after their last
//! change, so the totals settle on the exact sum once deliveries stop.
//!
//! The same read-modify-write decides *when* senders may write the push document at all.
//! While a push is `processing` its parser writes it (checkpoints, then `done`); a sender
//! writing totals then would write back the whole document it read, and could undo the
//! parser's `done` (seen in CI: every delivery counted, the push stuck in `processing`). So
//! senders set totals only once the push has left `processing`; the parser's checkpoints and
//! its `done` carry the sum as of that moment, and [`Store::push_with_live_totals`] gives
//! live totals at any time (`pushctl status` and `watch` use it).
//!
//! A canceled push adds one more document, written by the parser that stopped its fan-out
//! (`_id` `"<push id>:parser"`, [`Store::write_parser_canceled`]): the subscribers it never
//! fanned out, as `canceled`, so that accepted + unsubscribed + failed + canceled is the
//! audience. Its parser writes the push's totals once more when it stops
//! ([`Store::settle_canceled_push`]); from then on the recorders do, as for a `done` push.

use bson::oid::ObjectId;
use bson::{DateTime, doc};
use futures::TryStreamExt as _;
use pushservice_model::{Push, PushStatus, ReasonCount};

use crate::error::StoreError;
use crate::store::Store;

/// Collection of per-sender delivery counters.
pub const DELIVERY_STATS: &str = "pushDeliveryStats";

/// Final delivery outcomes of a push.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeliveryCounts {
    /// Accepted by the push service.
    pub accepted: i64,
    /// Subscription gone; subscriber unsubscribed.
    pub unsubscribed: i64,
    /// Failed for good.
    pub failed: i64,
    /// Dropped by a sender because the push was canceled.
    pub canceled: i64,
}

impl DeliveryCounts {
    /// Adds `other` to these counts.
    pub fn merge(&mut self, other: DeliveryCounts) {
        self.accepted += other.accepted;
        self.unsubscribed += other.unsubscribed;
        self.failed += other.failed;
        self.canceled += other.canceled;
    }

    /// These counts as the push document's total fields, for a `$set`.
    pub(crate) fn push_totals(&self) -> bson::Document {
        doc! {
            "totalAccepted": self.accepted,
            "totalUnsubscribed": self.unsubscribed,
            "totalFailed": self.failed,
            "totalCanceled": self.canceled,
        }
    }
}

/// What a push's counter documents say, summed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliverySummary {
    /// Outcomes counted.
    pub counts: DeliveryCounts,
    /// Failures by reason, most frequent first.
    pub failures: Vec<ReasonCount>,
}

/// Most distinct failure reasons kept per document; the rest are counted under
/// [`OTHER_REASONS`].
pub const MAX_REASONS: usize = 20;

/// The reason failures beyond [`MAX_REASONS`] distinct ones are counted under.
pub const OTHER_REASONS: &str = "(other reasons)";

/// What one outcome-topic partition has applied to one push.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartitionCounts {
    /// Offset of the last outcome record applied.
    pub last_offset: i64,
    /// Outcomes counted.
    pub counts: DeliveryCounts,
    /// Failures by reason, at most [`MAX_REASONS`] entries plus [`OTHER_REASONS`].
    pub reasons: Vec<ReasonCount>,
}

impl PartitionCounts {
    /// Counts one failure for `reason` (or takes one back when `delta` is negative).
    pub fn add_reason(&mut self, reason: &str, delta: i64) {
        if let Some(entry) = self.reasons.iter_mut().find(|r| r.reason == reason) {
            entry.count += delta;
            return;
        }
        let reason = if self.reasons.len() >= MAX_REASONS {
            OTHER_REASONS
        } else {
            reason
        };
        match self.reasons.iter_mut().find(|r| r.reason == reason) {
            Some(entry) => entry.count += delta,
            None => self.reasons.push(ReasonCount {
                reason: reason.to_owned(),
                count: delta,
            }),
        }
    }
}

fn number(d: &bson::Document, key: &str) -> i64 {
    match d.get(key) {
        Some(bson::Bson::Int32(n)) => i64::from(*n),
        Some(bson::Bson::Int64(n)) => *n,
        Some(bson::Bson::Double(n)) => *n as i64,
        _ => 0,
    }
}

fn counts_of(d: &bson::Document) -> DeliveryCounts {
    DeliveryCounts {
        accepted: number(d, "accepted"),
        unsubscribed: number(d, "unsubscribed"),
        failed: number(d, "failed"),
        canceled: number(d, "canceled"),
    }
}

fn reasons_of(d: &bson::Document) -> Vec<ReasonCount> {
    let Ok(list) = d.get_array("reasons") else {
        return Vec::new();
    };
    list.iter()
        .filter_map(|entry| {
            let entry = entry.as_document()?;
            Some(ReasonCount {
                reason: entry.get_str("reason").ok()?.to_owned(),
                count: number(entry, "count"),
            })
        })
        .collect()
}

fn partition_doc_id(push_id: ObjectId, partition: i32) -> String {
    format!("{}:outcomes-{partition}", push_id.to_hex())
}

impl Store {
    /// What outcome-topic partition `partition` has applied to push `push_id` so far.
    pub async fn partition_counts(
        &self,
        push_id: ObjectId,
        partition: i32,
    ) -> Result<Option<PartitionCounts>, StoreError> {
        let found = self
            .delivery_stats
            .find_one(doc! { "_id": partition_doc_id(push_id, partition) })
            .await
            .map_err(StoreError::query(format!(
                "reading outcome counts of push {push_id}, partition {partition}"
            )))?;
        Ok(found.map(|d| PartitionCounts {
            last_offset: number(&d, "lastOffset"),
            counts: counts_of(&d),
            reasons: reasons_of(&d),
        }))
    }

    /// Writes `new` as what partition `partition` has applied to push `push_id`, if the
    /// stored document still ends at `expected` (`None`: there is no document yet). Returns
    /// false when it does not (someone applied records in between: read again and apply only
    /// what is past the stored offset).
    pub async fn write_partition_counts(
        &self,
        push_id: ObjectId,
        partition: i32,
        expected: Option<i64>,
        new: &PartitionCounts,
    ) -> Result<bool, StoreError> {
        let id = partition_doc_id(push_id, partition);
        let reasons: Vec<bson::Document> = new
            .reasons
            .iter()
            .map(|r| doc! { "reason": &r.reason, "count": r.count })
            .collect();
        let fields = doc! {
            "pushId": push_id,
            "partition": partition,
            "lastOffset": new.last_offset,
            "accepted": new.counts.accepted,
            "unsubscribed": new.counts.unsubscribed,
            "failed": new.counts.failed,
            "canceled": new.counts.canceled,
            "reasons": reasons,
            "updatedAt": DateTime::now(),
        };
        let context = format!("writing outcome counts of push {push_id}, partition {partition}");
        match expected {
            Some(last) => {
                let result = self
                    .delivery_stats
                    .update_one(
                        doc! { "_id": &id, "lastOffset": last },
                        doc! { "$set": fields },
                    )
                    .await
                    .map_err(StoreError::query(context))?;
                Ok(result.matched_count == 1)
            }
            None => {
                let mut document = fields;
                document.insert("_id", id);
                match self.delivery_stats.insert_one(document).await {
                    Ok(_) => Ok(true),
                    Err(e) if is_duplicate_key(&e) => Ok(false),
                    Err(e) => Err(StoreError::query(context)(e)),
                }
            }
        }
    }

    /// Everything the counter documents of push `push_id` say, in one read: the outcome
    /// counts and the failure reasons (most frequent first), summed over every document.
    pub async fn delivery_summary(&self, push_id: ObjectId) -> Result<DeliverySummary, StoreError> {
        let context = format!("summing delivery counts of push {push_id}");
        let documents: Vec<bson::Document> = self
            .delivery_stats
            .find(doc! { "pushId": push_id })
            .await
            .map_err(StoreError::query(context.clone()))?
            .try_collect()
            .await
            .map_err(StoreError::query(context))?;
        let mut summary = DeliverySummary::default();
        for d in &documents {
            summary.counts.merge(counts_of(d));
            for r in reasons_of(d) {
                match summary.failures.iter_mut().find(|t| t.reason == r.reason) {
                    Some(t) => t.count += r.count,
                    None => summary.failures.push(r),
                }
            }
        }
        summary.failures.retain(|r| r.count > 0);
        summary
            .failures
            .sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.reason.cmp(&b.reason)));
        Ok(summary)
    }

    /// Why deliveries of push `push_id` failed, most frequent first.
    pub async fn delivery_failures(
        &self,
        push_id: ObjectId,
    ) -> Result<Vec<ReasonCount>, StoreError> {
        Ok(self.delivery_summary(push_id).await?.failures)
    }

    /// Adds `counts` to sender `sender_id`'s counters of push `push_id` (only that sender
    /// writes this document).
    pub async fn add_sender_counts(
        &self,
        push_id: ObjectId,
        sender_id: &str,
        counts: DeliveryCounts,
    ) -> Result<(), StoreError> {
        self.delivery_stats
            .update_one(
                doc! { "_id": format!("{}:{sender_id}", push_id.to_hex()) },
                doc! {
                    "$inc": {
                        "accepted": counts.accepted,
                        "unsubscribed": counts.unsubscribed,
                        "failed": counts.failed,
                        "canceled": counts.canceled,
                    },
                    "$set": { "pushId": push_id, "sender": sender_id, "updatedAt": DateTime::now() },
                },
            )
            .upsert(true)
            .await
            .map_err(StoreError::query(format!("adding delivery counts of push {push_id}")))?;
        Ok(())
    }

    /// Records that the fan-out of canceled push `push_id` stopped after subscriber `after`
    /// (`None`: before the first) with `canceled` subscribers never fanned out, as the
    /// parser's counter document: absolute, so writing it again is harmless. With `replace`
    /// false an existing document is kept (a parser that only estimates the figure, from an
    /// older checkpoint, never overwrites the one that counted it). Returns whether it wrote.
    pub async fn write_parser_canceled(
        &self,
        push_id: ObjectId,
        canceled: i64,
        after: Option<ObjectId>,
        replace: bool,
    ) -> Result<bool, StoreError> {
        let id = format!("{}:parser", push_id.to_hex());
        let context = format!("writing the canceled count of push {push_id}");
        let fields = doc! {
            "pushId": push_id,
            "canceled": canceled,
            "after": after.map_or(bson::Bson::Null, bson::Bson::ObjectId),
            "updatedAt": DateTime::now(),
        };
        if replace {
            self.delivery_stats
                .update_one(doc! { "_id": &id }, doc! { "$set": fields })
                .upsert(true)
                .await
                .map_err(StoreError::query(context))?;
            return Ok(true);
        }
        let mut document = fields;
        document.insert("_id", id);
        match self.delivery_stats.insert_one(document).await {
            Ok(_) => Ok(true),
            Err(e) if is_duplicate_key(&e) => Ok(false),
            Err(e) => Err(StoreError::query(context)(e)),
        }
    }

    /// The parser's canceled count of push `push_id` (see [`Store::write_parser_canceled`]),
    /// if one was written.
    pub async fn parser_canceled(&self, push_id: ObjectId) -> Result<Option<i64>, StoreError> {
        let found = self
            .delivery_stats
            .find_one(doc! { "_id": format!("{}:parser", push_id.to_hex()) })
            .await
            .map_err(StoreError::query(format!(
                "reading the canceled count of push {push_id}"
            )))?;
        Ok(found.map(|d| number(&d, "canceled")))
    }

    /// The delivery counts of push `push_id`, summed over every sender.
    pub async fn delivery_counts(&self, push_id: ObjectId) -> Result<DeliveryCounts, StoreError> {
        Ok(self.delivery_summary(push_id).await?.counts)
    }

    /// Push `push_id` with live delivery totals: the larger of the push document's totals and
    /// the senders' current sum, per outcome (the document's totals move at the parser's
    /// checkpoints while the push is `processing`, and lag by up to a flush interval after).
    /// `None` when there is no such push.
    pub async fn push_with_live_totals(
        &self,
        push_id: ObjectId,
    ) -> Result<Option<Push>, StoreError> {
        let Some(mut push) = self.push(push_id).await? else {
            return Ok(None);
        };
        self.add_live_totals(&mut push).await?;
        Ok(Some(push))
    }

    /// [`Store::push_with_live_totals`] for a push already loaded.
    pub async fn add_live_totals(&self, push: &mut Push) -> Result<(), StoreError> {
        let live = self.delivery_summary(push.id).await?;
        push.total_accepted = push.total_accepted.max(live.counts.accepted);
        push.total_unsubscribed = push.total_unsubscribed.max(live.counts.unsubscribed);
        push.total_failed = push.total_failed.max(live.counts.failed);
        push.total_canceled = push.total_canceled.max(live.counts.canceled);
        push.delivery_failures = live.failures;
        Ok(())
    }

    /// Sets the push document's delivery totals and failure reasons to `summary`, if the
    /// push is past its fan-out (`done`, `failed` or `canceled`): while it is `pending` or
    /// `processing` the parser owns the document (see the module documentation). Returns
    /// whether the totals were written.
    pub async fn set_delivery_totals(
        &self,
        push_id: ObjectId,
        summary: &DeliverySummary,
    ) -> Result<bool, StoreError> {
        let owned_by_parser = [
            PushStatus::Pending.as_str(),
            PushStatus::Processing.as_str(),
        ];
        // The failure reasons travel with the totals, so the push itself says why.
        let failures: Vec<bson::Document> = summary
            .failures
            .iter()
            .map(|r| doc! { "reason": &r.reason, "count": r.count })
            .collect();
        let mut totals = summary.counts.push_totals();
        totals.insert("deliveryFailures", failures);
        let result = self
            .pushes
            .update_one(
                doc! { "_id": push_id, "status": { "$nin": owned_by_parser.as_slice() } },
                doc! { "$set": totals },
            )
            .await
            .map_err(StoreError::query(format!(
                "setting delivery totals of push {push_id}"
            )))?;
        Ok(result.matched_count == 1)
    }
}

/// MongoDB's duplicate key error (code 11000), as servers report it on insert.
fn is_duplicate_key(error: &mongodb::error::Error) -> bool {
    match error.kind.as_ref() {
        mongodb::error::ErrorKind::Write(mongodb::error::WriteFailure::WriteError(e)) => {
            e.code == 11000
        }
        mongodb::error::ErrorKind::InsertMany(e) => e
            .write_errors
            .as_ref()
            .is_some_and(|errors| errors.iter().any(|e| e.code == 11000)),
        mongodb::error::ErrorKind::Command(e) => e.code == 11000,
        _ => false,
    }
}
