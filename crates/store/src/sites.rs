//! The `sites` collection.

use bson::doc;
use bson::oid::ObjectId;
use pushservice_model::{ApiKey, ApnsCredentials, FcmCredentials, Site};

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

/// What a site may change about itself (`None` leaves a field as it is).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SiteChanges {
    /// New VAPID subject.
    pub subject: Option<String>,
    /// New allowed origins (replacing the old list).
    pub allowed_origins: Option<Vec<String>>,
}

impl Store {
    /// Applies `changes` to site `id`; false when there is no such site.
    pub async fn update_site(
        &self,
        id: ObjectId,
        changes: &SiteChanges,
    ) -> Result<bool, StoreError> {
        let mut set = doc! { "updatedAt": bson::DateTime::now() };
        if let Some(subject) = &changes.subject {
            set.insert("subject", subject);
        }
        if let Some(origins) = &changes.allowed_origins {
            set.insert("allowedOrigins", origins.clone());
        }
        let result = self
            .sites
            .update_one(doc! { "_id": id }, doc! { "$set": set })
            .await
            .map_err(StoreError::query(format!("updating site {id}")))?;
        Ok(result.matched_count > 0)
    }

    /// Adds an API key record to site `id`; false when there is no such site.
    pub async fn add_api_key(&self, id: ObjectId, key: &ApiKey) -> Result<bool, StoreError> {
        let key = bson::to_bson(key).map_err(StoreError::encode("API key"))?;
        let result = self
            .sites
            .update_one(
                doc! { "_id": id },
                doc! { "$push": { "apiKeys": key }, "$set": { "updatedAt": bson::DateTime::now() } },
            )
            .await
            .map_err(StoreError::query(format!("adding an API key to site {id}")))?;
        Ok(result.matched_count > 0)
    }

    /// Removes API key `key_id` from site `id`; false when the site has no such key.
    ///
    /// Read, filter, write back (`$pull` with a condition is not supported alike by every
    /// MongoDB-protocol server), conditional on the list being unchanged so that a key added
    /// meanwhile is never lost; retried a few times when the list keeps changing.
    pub async fn remove_api_key(&self, id: ObjectId, key_id: &str) -> Result<bool, StoreError> {
        for _ in 0..5 {
            let Some(site) = self.site(id).await? else {
                return Ok(false);
            };
            if !site.api_keys.iter().any(|k| k.id == key_id) {
                return Ok(false);
            }
            let before = bson::to_bson(&site.api_keys).map_err(StoreError::encode("API keys"))?;
            let kept: Vec<&ApiKey> = site.api_keys.iter().filter(|k| k.id != key_id).collect();
            let after = bson::to_bson(&kept).map_err(StoreError::encode("API keys"))?;
            let result = self
                .sites
                .update_one(
                    doc! { "_id": id, "apiKeys": before },
                    doc! { "$set": { "apiKeys": after, "updatedAt": bson::DateTime::now() } },
                )
                .await
                .map_err(StoreError::query(format!(
                    "removing API key {key_id} of site {id}"
                )))?;
            if result.matched_count > 0 {
                return Ok(true);
            }
        }
        Err(StoreError::Query {
            context: format!(
                "removing API key {key_id} of site {id}: its keys kept changing; try again"
            ),
            source: mongodb::error::Error::custom("concurrent key changes"),
        })
    }
}
