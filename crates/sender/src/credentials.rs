//! Site credentials, loaded from MongoDB by site id and cached.
//!
//! Every delivery needs its site's VAPID key pair and subject. They are read once per site
//! and kept for `ttl` (so a rotated key is picked up within minutes); concurrent deliveries of
//! a site that is not cached yet share one load. A site that does not exist, or whose keys
//! are unusable, is cached as such too: each of its deliveries fails permanently without a
//! query. A MongoDB error is not cached; the delivery retries.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pushservice_model::ObjectId;
use pushservice_store::{Store, StoreError};
use pushservice_webpush::VapidKey;
use tokio::sync::OnceCell;

/// What a sender needs of a site to sign Web Push requests.
#[derive(Debug)]
pub struct SiteCredentials {
    /// VAPID key pair.
    pub vapid: VapidKey,
    /// VAPID `sub`.
    pub subject: String,
    /// The site id in hex, the VAPID cache key.
    pub site_key: String,
}

/// A site's credentials, or why it has none (a permanent condition).
pub type Lookup = Result<Arc<SiteCredentials>, String>;

struct Slot {
    loaded: Instant,
    cell: Arc<OnceCell<Lookup>>,
}

/// The cache.
pub struct CredentialCache {
    store: Store,
    ttl: Duration,
    slots: Mutex<HashMap<ObjectId, Slot>>,
}

impl CredentialCache {
    /// An empty cache over `store`.
    pub fn new(store: Store, ttl: Duration) -> Self {
        CredentialCache {
            store,
            ttl,
            slots: Mutex::default(),
        }
    }

    /// The credentials of `site_id`; `Err` only for MongoDB trouble.
    pub async fn get(&self, site_id: ObjectId) -> Result<Lookup, StoreError> {
        let cell = {
            let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            let fresh = slots
                .get(&site_id)
                .is_some_and(|s| s.loaded.elapsed() < self.ttl);
            if !fresh {
                slots.insert(
                    site_id,
                    Slot {
                        loaded: Instant::now(),
                        cell: Arc::default(),
                    },
                );
            }
            slots
                .get(&site_id)
                .map(|s| Arc::clone(&s.cell))
                .unwrap_or_default()
        };
        cell.get_or_try_init(|| self.load(site_id)).await.cloned()
    }

    async fn load(&self, site_id: ObjectId) -> Result<Lookup, StoreError> {
        let Some(site) = self.store.site(site_id).await? else {
            return Ok(Err(format!("site {site_id} does not exist")));
        };
        Ok(VapidKey::from_base64(&site.public_key, &site.private_key)
            .map(|vapid| {
                Arc::new(SiteCredentials {
                    vapid,
                    subject: site.subject,
                    site_key: site_id.to_hex(),
                })
            })
            .map_err(|e| format!("site {site_id} has unusable VAPID keys: {e}")))
    }
}
