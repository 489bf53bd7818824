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

use bson::oid::ObjectId;
use bson::{DateTime, doc};
use futures::TryStreamExt as _;

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

    /// Sets the push document's delivery totals.
    pub async fn set_delivery_totals(
        &self,
        push_id: ObjectId,
        counts: DeliveryCounts,
    ) -> Result<(), StoreError> {
        self.pushes
            .update_one(
                doc! { "_id": push_id },
                doc! { "$set": {
                    "totalAccepted": counts.accepted,
                    "totalUnsubscribed": counts.unsubscribed,
                    "totalFailed": counts.failed,
                } },
            )
            .await
            .map_err(StoreError::query(format!(
                "setting delivery totals of push {push_id}"
            )))?;
        Ok(())
    }
}
