//! The `subscribers` collection.

use bson::doc;
use bson::oid::ObjectId;
use pushservice_model::Subscriber;

use crate::error::StoreError;
use crate::store::Store;

impl Store {
    /// Inserts subscribers in one unordered bulk write; returns how many were inserted.
    ///
    /// Unordered, so the server may apply the batch in parallel and one duplicate does not stop
    /// the rest.
    pub async fn insert_subscribers(&self, subscribers: &[Subscriber]) -> Result<u64, StoreError> {
        if subscribers.is_empty() {
            return Ok(0);
        }
        let documents = subscribers
            .iter()
            .map(bson::to_document)
            .collect::<Result<Vec<_>, _>>()
            .map_err(StoreError::encode("subscriber"))?;
        let result = self
            .subscribers
            .insert_many(documents)
            .ordered(false)
            .await
            .map_err(StoreError::query(format!(
                "inserting {} subscribers",
                subscribers.len()
            )))?;
        Ok(result.inserted_ids.len() as u64)
    }

    /// Counts a site's subscribers, only the subscribed ones when `subscribed_only`.
    pub async fn count_subscribers(
        &self,
        site_id: ObjectId,
        subscribed_only: bool,
    ) -> Result<u64, StoreError> {
        let filter = if subscribed_only {
            doc! { "siteId": site_id, "subscribed": true }
        } else {
            doc! { "siteId": site_id }
        };
        self.subscribers
            .count_documents(filter)
            .await
            .map_err(StoreError::query(format!(
                "counting subscribers of site {site_id}"
            )))
    }

    /// Batch size configured for streaming and bulk writes (`QUERY_BATCH_SIZE`).
    pub fn batch_size(&self) -> u32 {
        self.batch_size
    }
}

impl Store {
    /// Marks subscribers `subscribed: false` (their push service said the subscription is
    /// gone); returns how many changed. One write for the whole batch.
    pub async fn unsubscribe(&self, ids: &[ObjectId]) -> Result<u64, StoreError> {
        if ids.is_empty() {
            return Ok(0);
        }
        let result = self
            .subscribers
            .update_many(
                doc! { "_id": { "$in": ids }, "subscribed": true },
                doc! { "$set": { "subscribed": false, "updatedAt": bson::DateTime::now() } },
            )
            .await
            .map_err(StoreError::query(format!(
                "unsubscribing {} subscribers",
                ids.len()
            )))?;
        Ok(result.modified_count)
    }
}
