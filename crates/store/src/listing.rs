//! Listing a site's pushes, newest first, a page at a time.

use bson::oid::ObjectId;
use bson::{Document, doc};
use futures::TryStreamExt as _;
use pushservice_model::{Push, PushStatus};

use crate::error::StoreError;
use crate::store::{PUSHES, Store};

impl Store {
    /// Up to `limit` pushes of site `site_id`, newest first (`_id` descending: ObjectIds grow
    /// with creation time), only those with `status` if given, only those older than the
    /// push `before` if given (the cursor of the next page).
    pub async fn list_pushes(
        &self,
        site_id: ObjectId,
        status: Option<PushStatus>,
        limit: u32,
        before: Option<ObjectId>,
    ) -> Result<Vec<Push>, StoreError> {
        let mut filter = doc! { "siteId": site_id };
        if let Some(status) = status {
            filter.insert("status", status.as_str());
        }
        if let Some(before) = before {
            filter.insert("_id", doc! { "$lt": before });
        }
        let context = || format!("listing pushes of site {site_id}");
        let documents: Vec<Document> = self
            .pushes
            .find(filter)
            .sort(doc! { "_id": -1 })
            .limit(i64::from(limit))
            .await
            .map_err(StoreError::query(context()))?
            .try_collect()
            .await
            .map_err(StoreError::query(context()))?;
        documents
            .into_iter()
            .map(|d| {
                let id = d.get_object_id("_id").unwrap_or_default();
                bson::from_document(d).map_err(StoreError::decode(PUSHES, &id))
            })
            .collect()
    }
}
