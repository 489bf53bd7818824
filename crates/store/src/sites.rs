//! The `sites` collection.

use bson::doc;
use bson::oid::ObjectId;
use pushservice_model::Site;

use crate::error::StoreError;
use crate::store::{SITES, Store};

impl Store {
    /// Inserts a new site.
    pub async fn insert_site(&self, site: &Site) -> Result<(), StoreError> {
        let document = bson::to_document(site).map_err(StoreError::encode("site"))?;
        self.sites
            .insert_one(document)
            .await
            .map_err(StoreError::query(format!("inserting site {}", site.id)))?;
        Ok(())
    }

    /// Loads a site by id; `None` when there is no such site.
    pub async fn site(&self, id: ObjectId) -> Result<Option<Site>, StoreError> {
        let found = self
            .sites
            .find_one(doc! { "_id": id })
            .await
            .map_err(StoreError::query(format!("loading site {id}")))?;
        found
            .map(|d| bson::from_document(d).map_err(StoreError::decode(SITES, &id)))
            .transpose()
    }
}
