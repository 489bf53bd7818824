//! Delivery counters, one document per (push, sender instance).
//!
//! Senders count outcomes in memory and flush them every second. Each sender instance adds
//! its counts with `$inc` to a document only it writes (`pushDeliveryStats`, `_id`
//! `"<push id>:<sender id>"`), then sets the push document's `totalAccepted`,
//! `totalUnsubscribed` and `totalFailed` to the sum over all senders.
//!
//! Why not `$inc` on the push document directly: MongoDB applies `$inc` atomically, but
//! MongoDB-protocol servers such as FerretDB 1.x apply updates as read-modify-write, and two
//! senders incrementing the same document at once lose increments (measured: 228 of 600
//! survived). With one writer per document nothing is lost on any server; the totals on the
//! push are a sum that any sender may recompute, and senders recompute it for a few seconds
//! after their last change, so the totals settle on the exact sum once deliveries stop.
//!
//! The same read-modify-write decides *when* senders may write the push document at all.
//! While a push is `processing` its parser writes it (checkpoints, then `done`); a sender
//! writing totals then would write back the whole document it read, and could undo the
//! parser's `done` (seen in CI: every delivery counted, the push stuck in `processing`). So
//! senders set totals only once the push has left `processing`; the parser's checkpoints and
//! its `done` carry the sum as of that moment, and [`Store::push_with_live_totals`] gives
//! live totals at any time (`pushctl status` and `watch` use it).

use bson::oid::ObjectId;
use bson::{DateTime, doc};
use futures::TryStreamExt as _;
use pushservice_model::{Push, PushStatus};

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
}

impl DeliveryCounts {
    /// Adds `other` to these counts.
    pub fn merge(&mut self, other: DeliveryCounts) {
        self.accepted += other.accepted;
        self.unsubscribed += other.unsubscribed;
        self.failed += other.failed;
    }

    /// These counts as the push document's total fields, for a `$set`.
    pub(crate) fn push_totals(&self) -> bson::Document {
        doc! {
            "totalAccepted": self.accepted,
            "totalUnsubscribed": self.unsubscribed,
            "totalFailed": self.failed,
        }
    }
}

impl Store {
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
                    },
                    "$set": { "pushId": push_id, "sender": sender_id, "updatedAt": DateTime::now() },
                },
            )
            .upsert(true)
            .await
            .map_err(StoreError::query(format!("adding delivery counts of push {push_id}")))?;
        Ok(())
    }

    /// The delivery counts of push `push_id`, summed over every sender.
    pub async fn delivery_counts(&self, push_id: ObjectId) -> Result<DeliveryCounts, StoreError> {
        let context = format!("summing delivery counts of push {push_id}");
        let documents: Vec<bson::Document> = self
            .delivery_stats
            .find(doc! { "pushId": push_id })
            .await
            .map_err(StoreError::query(context.clone()))?
            .try_collect()
            .await
            .map_err(StoreError::query(context))?;
        let number = |d: &bson::Document, key: &str| match d.get(key) {
            Some(bson::Bson::Int32(n)) => i64::from(*n),
            Some(bson::Bson::Int64(n)) => *n,
            Some(bson::Bson::Double(n)) => *n as i64,
            _ => 0,
        };
        let mut total = DeliveryCounts::default();
        for d in &documents {
            total.merge(DeliveryCounts {
                accepted: number(d, "accepted"),
                unsubscribed: number(d, "unsubscribed"),
                failed: number(d, "failed"),
            });
        }
        Ok(total)
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
        let live = self.delivery_counts(push_id).await?;
        push.total_accepted = push.total_accepted.max(live.accepted);
        push.total_unsubscribed = push.total_unsubscribed.max(live.unsubscribed);
        push.total_failed = push.total_failed.max(live.failed);
        Ok(Some(push))
    }

    /// Sets the push document's delivery totals, if the push is past its fan-out (`done`,
    /// `failed` or `canceled`): while it is `pending` or `processing` the parser owns the
    /// document (see the module documentation). Returns whether the totals were written.
    pub async fn set_delivery_totals(
        &self,
        push_id: ObjectId,
        counts: DeliveryCounts,
    ) -> Result<bool, StoreError> {
        let owned_by_parser = [
            PushStatus::Pending.as_str(),
            PushStatus::Processing.as_str(),
        ];
        let result = self
            .pushes
            .update_one(
                doc! { "_id": push_id, "status": { "$nin": owned_by_parser.as_slice() } },
                doc! { "$set": counts.push_totals() },
            )
            .await
            .map_err(StoreError::query(format!(
                "setting delivery totals of push {push_id}"
            )))?;
        Ok(result.matched_count == 1)
    }
}
