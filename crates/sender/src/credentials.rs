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
//!
//! The cache is bounded: past [`MAX_SITES`] sites, adding one first drops the expired
//! entries, then the least recently used eighth, so memory does not grow with the number of
//! sites a long-running sender has ever seen.

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

/// Sites whose credentials are kept at most by default.
pub const MAX_SITES: usize = 10_000;

struct Slot {
    loaded: Instant,
    /// Last asked for: eviction drops the least recently used first.
    used: Instant,
    cell: Arc<OnceCell<Lookup>>,
}

/// The cache.
pub struct CredentialCache {
    store: Store,
    ttl: Duration,
    max_sites: usize,
    slots: Mutex<HashMap<ObjectId, Slot>>,
}

impl CredentialCache {
    /// An empty cache over `store`, of at most [`MAX_SITES`] sites.
    pub fn new(store: Store, ttl: Duration) -> Self {
        CredentialCache::with_capacity(store, ttl, MAX_SITES)
    }

    /// An empty cache over `store`, of at most `max_sites` sites (at least 8).
    pub fn with_capacity(store: Store, ttl: Duration, max_sites: usize) -> Self {
        CredentialCache {
            store,
            ttl,
            max_sites: max_sites.max(8),
            slots: Mutex::default(),
        }
    }

    /// The credentials of `site_id`; `Err` only for MongoDB trouble.
    pub async fn get(&self, site_id: ObjectId) -> Result<Lookup, StoreError> {
        let cell = {
            let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            match slots.get_mut(&site_id) {
                Some(slot) if now.duration_since(slot.loaded) < self.ttl => {
                    slot.used = now;
                    Arc::clone(&slot.cell)
                }
                stale => {
                    if stale.is_none() && slots.len() >= self.max_sites {
                        make_room(&mut slots, now, self.ttl, self.max_sites);
                    }
                    let cell = Arc::default();
                    slots.insert(
                        site_id,
                        Slot {
                            loaded: now,
                            used: now,
                            cell: Arc::clone(&cell),
                        },
                    );
                    cell
                }
            }
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

/// Drops expired slots, then, if still at least `max`, the least recently used eighth, so the
/// next `max / 8` new sites find room without a scan. A load in progress in a dropped slot
/// still completes for whoever awaits it; it is just not kept.
fn make_room(slots: &mut HashMap<ObjectId, Slot>, now: Instant, ttl: Duration, max: usize) {
    slots.retain(|_, slot| now.duration_since(slot.loaded) < ttl);
    if slots.len() < max {
        return;
    }
    let mut used: Vec<Instant> = slots.values().map(|slot| slot.used).collect();
    let drop = (max / 8).max(1).min(used.len());
    let (_, threshold, _) = used.select_nth_unstable(drop - 1);
    let threshold = *threshold;
    slots.retain(|_, slot| slot.used > threshold);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(loaded: Instant, used: Instant) -> Slot {
        Slot {
            loaded,
            used,
            cell: Arc::default(),
        }
    }

    #[test]
    fn room_is_made_from_expired_then_least_recently_used_sites() {
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let ttl = Duration::from_secs(300);
        let mut slots = HashMap::new();
        let hot = ObjectId::new();
        slots.insert(hot, slot(at(0), at(100)));
        let mut cold = Vec::new();
        for i in 0..15 {
            let id = ObjectId::new();
            slots.insert(id, slot(at(0), at(i)));
            cold.push(id);
        }
        make_room(&mut slots, at(200), ttl, 16);
        assert_eq!(slots.len(), 14, "the least recently used eighth (2) went");
        assert!(slots.contains_key(&hot));
        assert!(!slots.contains_key(&cold[0]) && !slots.contains_key(&cold[1]));

        // Expired sites go first, however recently used.
        let later = at(200) + ttl;
        slots.insert(ObjectId::new(), slot(later, later));
        make_room(&mut slots, later, ttl, 16);
        assert_eq!(slots.len(), 1, "only the fresh site is left");
    }
}
