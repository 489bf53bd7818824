//! A short-lived cache of sites: every authenticated or site-bound request needs its site
//! (keys, origins), and one MongoDB read per request would make MongoDB the API's limit.
//! A change made through this instance is seen at once; other instances see it within the
//! cache lifetime (`API_SITE_CACHE_MS`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pushservice_model::{ObjectId, Site};
use pushservice_store::{Store, StoreError};

/// Most sites kept; the cache is emptied when it grows past this (cheap and enough: a
/// site's entry lives seconds).
const MAX_ENTRIES: usize = 10_000;

/// A cached lookup: when it was made, and the site (`None`: no such site).
type Entry = (Instant, Option<Arc<Site>>);

/// Cached sites, absent ones included (so unknown ids do not reach MongoDB each time).
#[derive(Debug)]
pub struct SiteCache {
    store: Store,
    lifetime: Duration,
    entries: Mutex<HashMap<ObjectId, Entry>>,
}

impl SiteCache {
    /// An empty cache over `store`.
    pub fn new(store: Store, lifetime: Duration) -> Self {
        SiteCache {
            store,
            lifetime,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// Site `id`, `None` when it does not exist.
    pub async fn get(&self, id: ObjectId) -> Result<Option<Arc<Site>>, StoreError> {
        if let Some((at, site)) = self.lock().get(&id)
            && at.elapsed() < self.lifetime
        {
            return Ok(site.clone());
        }
        let site = self.store.site(id).await?.map(Arc::new);
        let mut entries = self.lock();
        if entries.len() >= MAX_ENTRIES {
            entries.clear();
        }
        entries.insert(id, (Instant::now(), site.clone()));
        Ok(site)
    }

    /// Forgets site `id` (after changing it).
    pub fn forget(&self, id: ObjectId) {
        self.lock().remove(&id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ObjectId, Entry>> {
        // A panic while holding this lock leaves a map that is still consistent.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }
}
