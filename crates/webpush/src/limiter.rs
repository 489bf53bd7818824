//! Bounded concurrency per push service origin.
//!
//! Each origin gets its own semaphore, so a slow or throttling push service fills its own
//! quota of in-flight requests and cannot starve deliveries to the others. Lookups borrow the
//! origin (`&str`), so the per-message cost is a read lock, a hash and an `Arc` clone.
//!
//! Endpoints come from browsers, so the set of origins is open-ended in principle; past
//! [`MAX_ORIGINS`] the map forgets semaphores nobody holds. A semaphore in use is never
//! dropped, so the bound holds for every origin at all times.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use tokio::sync::{AcquireError, OwnedSemaphorePermit, Semaphore};

/// More distinct origins than any real audience uses (a handful of browser vendors).
const MAX_ORIGINS: usize = 1024;

/// One semaphore of `permits` per origin.
#[derive(Debug)]
pub(crate) struct OriginLimiter {
    permits: usize,
    semaphores: RwLock<HashMap<Box<str>, Arc<Semaphore>>>,
}

impl OriginLimiter {
    pub(crate) fn new(permits: usize) -> Self {
        OriginLimiter {
            permits,
            semaphores: RwLock::new(HashMap::new()),
        }
    }

    /// Waits for a free slot for `origin`; the slot is freed when the permit drops.
    pub(crate) async fn acquire(&self, origin: &str) -> Result<OwnedSemaphorePermit, AcquireError> {
        self.semaphore(origin).acquire_owned().await
    }

    fn semaphore(&self, origin: &str) -> Arc<Semaphore> {
        // Poisoning only means a panic elsewhere mid-operation; a HashMap stays usable.
        if let Some(semaphore) = self
            .semaphores
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(origin)
        {
            return Arc::clone(semaphore);
        }
        let mut semaphores = self
            .semaphores
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if semaphores.len() >= MAX_ORIGINS && !semaphores.contains_key(origin) {
            // Only the map holds an idle semaphore; one with a clone out is in use.
            semaphores.retain(|_, semaphore| Arc::strong_count(semaphore) > 1);
        }
        Arc::clone(
            semaphores
                .entry(origin.into())
                .or_insert_with(|| Arc::new(Semaphore::new(self.permits))),
        )
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.semaphores
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bounds_each_origin_separately() {
        let limiter = OriginLimiter::new(2);
        let a1 = limiter.acquire("https://a").await.expect("permit");
        let _a2 = limiter.acquire("https://a").await.expect("permit");
        // A third permit for `a` must wait, while `b` is unaffected.
        let waiting = tokio::time::timeout(
            std::time::Duration::from_millis(20),
            limiter.acquire("https://a"),
        )
        .await;
        assert!(
            waiting.is_err(),
            "a third permit for the same origin was granted"
        );
        let _b = limiter.acquire("https://b").await.expect("other origin");
        drop(a1);
        let _a3 = limiter.acquire("https://a").await.expect("freed permit");
    }

    #[tokio::test]
    async fn forgets_idle_origins_but_never_busy_ones() {
        let limiter = OriginLimiter::new(1);
        let busy = limiter.acquire("https://busy").await.expect("permit");
        for i in 0..MAX_ORIGINS + 10 {
            drop(
                limiter
                    .acquire(&format!("https://o{i}"))
                    .await
                    .expect("permit"),
            );
        }
        assert!(
            limiter.tracked() <= MAX_ORIGINS,
            "map grew to {}",
            limiter.tracked()
        );
        let still_bounded = tokio::time::timeout(
            std::time::Duration::from_millis(20),
            limiter.acquire("https://busy"),
        )
        .await;
        assert!(
            still_bounded.is_err(),
            "the busy origin's semaphore was replaced"
        );
        drop(busy);
    }
}
