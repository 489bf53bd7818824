//! Site credentials, loaded from MongoDB by site id and cached.
//!
//! Every delivery needs its site's credentials for the target's platform: the VAPID key pair
//! and subject (Web Push), the `.p8` signing key and bundle id (APNs), or the service account
//! (FCM). They are read and parsed once per site and kept for `ttl` (so a rotated key is
//! picked up within minutes); concurrent deliveries of a site that is not cached yet share one
//! load. A site that does not exist, or whose credentials for a platform are missing or
//! unusable, is cached as such too: each of those deliveries fails permanently without a
//! query, with a reason that says what to fix. A MongoDB error is not cached; the delivery
//! retries.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pushservice_apns::ApnsKey;
use pushservice_fcm::ServiceAccount;
use pushservice_model::{ObjectId, Site};
use pushservice_store::{Store, StoreError};
use pushservice_webpush::VapidKey;
use tokio::sync::OnceCell;

/// What a sender needs of a site to send to each platform; a platform's `Err` says why the
/// site cannot use it (a permanent condition until the site document changes).
#[derive(Debug)]
pub struct SiteCredentials {
    /// Web Push: VAPID key pair.
    pub vapid: Result<VapidKey, String>,
    /// VAPID `sub`.
    pub subject: String,
    /// The site id in hex, the VAPID cache key.
    pub site_key: String,
    /// APNs: signing key, bundle id, environment.
    pub apns: Result<Apns, String>,
    /// FCM: the service account.
    pub fcm: Result<ServiceAccount, String>,
}

/// A site's APNs credentials, parsed.
#[derive(Debug)]
pub struct Apns {
    /// The team's signing key.
    pub key: ApnsKey,
    /// The app's bundle id (`apns-topic`).
    pub topic: String,
    /// Send to Apple's development environment.
    pub sandbox: bool,
}

impl SiteCredentials {
    /// Parses what `site` stores.
    pub fn of(site: Site) -> Self {
        let site_id = site.id;
        let vapid = VapidKey::from_base64(&site.public_key, &site.private_key)
            .map_err(|e| format!("site {site_id} has unusable VAPID keys: {e}"));
        let apns = match site.apns {
            None => Err(format!(
                "site {site_id} has no APNs credentials (sites.apns: teamId, keyId, privateKey, topic)"
            )),
            Some(apns) if apns.topic.trim().is_empty() => Err(format!(
                "site {site_id} has no APNs topic (sites.apns.topic: the app's bundle id)"
            )),
            Some(apns) => ApnsKey::from_p8(&apns.team_id, &apns.key_id, &apns.private_key)
                .map(|key| Apns {
                    key,
                    topic: apns.topic,
                    sandbox: apns.sandbox,
                })
                .map_err(|e| format!("site {site_id}: {e}")),
        };
        let fcm = match site.fcm {
            None => Err(format!(
                "site {site_id} has no FCM credentials (sites.fcm.serviceAccount: the service-account JSON)"
            )),
            Some(fcm) => ServiceAccount::from_json(&fcm.service_account)
                .map_err(|e| format!("site {site_id}: {e}")),
        };
        SiteCredentials {
            vapid,
            subject: site.subject,
            site_key: site_id.to_hex(),
            apns,
            fcm,
        }
    }
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
        Ok(Ok(Arc::new(SiteCredentials::of(site))))
    }
}
