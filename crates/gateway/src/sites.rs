//! Sites' realtime settings and allowed origins, cached for seconds.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pushservice_model::ObjectId;
use pushservice_store::{RealtimeSettings, Store, StoreError};

/// What the gateway needs of a site.
#[derive(Debug, Clone, Default)]
pub struct SiteInfo {
    /// Token secrets and history limits.
    pub realtime: RealtimeSettings,
    /// Origins whose pages may connect (CORS for SSE, an origin check for WebSocket).
    pub allowed_origins: Vec<String>,
}

/// When an entry was loaded, and what (`None`: no such site).
type Cached = (Instant, Option<Arc<SiteInfo>>);

/// A cache of [`SiteInfo`] by site id; a missing site is cached too, so bad tokens do not
/// reach MongoDB each time.
pub struct SiteCache {
    store: Store,
    ttl: Duration,
    entries: Mutex<HashMap<ObjectId, Cached>>,
}

impl SiteCache {
    /// A cache keeping entries for `ttl`.
    pub fn new(store: Store, ttl: Duration) -> Self {
        SiteCache {
            store,
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The site's settings (`None`: no such site).
    pub async fn get(&self, site: ObjectId) -> Result<Option<Arc<SiteInfo>>, StoreError> {
        if let Some((at, info)) = self
            .entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&site)
            && at.elapsed() < self.ttl
        {
            return Ok(info.clone());
        }
        let info = self
            .store
            .realtime_site(site)
            .await?
            .map(|(realtime, allowed_origins)| {
                Arc::new(SiteInfo {
                    realtime,
                    allowed_origins,
                })
            });
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() > 100_000 {
            entries.clear();
        }
        entries.insert(site, (Instant::now(), info.clone()));
        Ok(info)
    }
}
