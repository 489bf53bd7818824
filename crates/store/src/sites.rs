//! The `sites` collection.

use bson::doc;
use bson::oid::ObjectId;
use pushservice_model::{ApnsCredentials, FcmCredentials, Site};

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

    /// Sets (or, with `None`, removes) a site's APNs credentials; false when there is no such
    /// site.
    pub async fn set_site_apns(
        &self,
        id: ObjectId,
        apns: Option<&ApnsCredentials>,
    ) -> Result<bool, StoreError> {
        let value = apns
            .map(|a| bson::to_bson(a).map_err(StoreError::encode("APNs credentials")))
            .transpose()?;
        self.set_site_field(id, "apns", value).await
    }

    /// Sets (or, with `None`, removes) a site's FCM credentials; false when there is no such
    /// site.
    pub async fn set_site_fcm(
        &self,
        id: ObjectId,
        fcm: Option<&FcmCredentials>,
    ) -> Result<bool, StoreError> {
        let value = fcm
            .map(|f| bson::to_bson(f).map_err(StoreError::encode("FCM credentials")))
            .transpose()?;
        self.set_site_field(id, "fcm", value).await
    }

    async fn set_site_field(
        &self,
        id: ObjectId,
        field: &str,
        value: Option<bson::Bson>,
    ) -> Result<bool, StoreError> {
        let now = bson::DateTime::now();
        let update = match value {
            Some(value) => doc! { "$set": { field: value, "updatedAt": now } },
            None => doc! { "$unset": { field: "" }, "$set": { "updatedAt": now } },
        };
        let result = self
            .sites
            .update_one(doc! { "_id": id }, update)
            .await
            .map_err(StoreError::query(format!("updating {field} of site {id}")))?;
        Ok(result.matched_count > 0)
    }
}
