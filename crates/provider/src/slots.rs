//! Request slots shared fairly between push services: a global bound on requests in flight,
//! and a bound per key (Web Push: the push service origin; APNs: credential and host; FCM:
//! credential).
//!
//! The per-key slot is taken **before** the global one. A push service that answers in 10 s
//! therefore fills only its own key's slots, and the tasks waiting for it wait on its
//! semaphore without holding a global slot; deliveries to every other key keep the rest of
//! the global bound. (Taken the other way round, waiters for the slow key would sit on
//! global slots and starve everyone.) Both semaphores are FIFO, so waiting is fair within a
//! key and across keys.
//!
//! Keys come from subscribers' endpoints and sites' credentials, so their set is open-ended:
//! past [`MAX_KEYS`] the map forgets semaphores nobody holds or waits on. A semaphore in use
//! is never dropped (the map's `Arc` is then not the only one), so the bound of a busy key
//! always holds.
//!
//! Waiting is bounded too, for push services that answer slowly: a delivery that has not
//! got its key's slot within [`MAX_KEY_WAIT`], for a key whose requests have lately taken
//! [`SLOW_KEY`] or more, gets [`SlotError::Busy`]. (A fast push service whose slots are all
//! taken because the sender is busy encrypting a burst keeps its deliveries waiting.) A sender holds every delivery it waits for in
//! memory (and counts it against its bound of messages taken), so an unbounded wait for one
//! slow push service would fill the sender with that service's deliveries and stall
//! everyone else's; a busy answer lets the sender put the delivery back on a retry topic
//! without counting an attempt. The bound is a time, not a queue length, so a burst to a
//! fast push service (a sender takes thousands of messages at once) just queues briefly.
//!
//! One [`RequestSlots`] can be shared by the Web Push, APNs and FCM clients (`with_slots`),
//! which makes the global bound the sender's whole concurrency; keys of different providers
//! never collide because each provider prefixes its own.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
// Tokio's clock, so tests with a paused clock see the time requests take.
use tokio::time::Instant;

/// More distinct keys than any real audience uses (a handful of push services, one key per
/// site credential).
pub const MAX_KEYS: usize = 4096;

/// Longest a delivery waits for its key's slot before it is [`SlotError::Busy`]: a push
/// service that keeps its slots this long answers slowly, and its deliveries are better off
/// on a retry topic than in the sender's memory.
pub const MAX_KEY_WAIT: Duration = Duration::from_secs(2);

/// A key whose requests take this long on average (moving average of the last few) is slow.
pub const SLOW_KEY: Duration = Duration::from_secs(1);

/// Why slots could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("request slots: {0} must be at least 1")]
pub struct InvalidSlots(&'static str);

/// Why no slot was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SlotError {
    /// Every slot of the key stayed taken for [`MAX_KEY_WAIT`].
    #[error("every request slot of this push service stayed taken (it answers slowly)")]
    Busy,
    /// The caller withdrew the delivery (its push was canceled) while it waited: nothing
    /// was sent.
    #[error("withdrawn before a request slot was free (its push was canceled)")]
    Withdrawn,
    /// The semaphores were closed (never happens; kept so callers need not panic).
    #[error("request slots closed")]
    Closed,
}

/// A global bound plus one bound per key; `Send + Sync`, shared behind an `Arc`.
#[derive(Debug)]
pub struct RequestSlots {
    global: Arc<Semaphore>,
    per_key: usize,
    keys: RwLock<HashMap<Box<str>, Arc<KeySlots>>>,
}

/// One key's slots and how long its requests have lately held them.
#[derive(Debug)]
struct KeySlots {
    semaphore: Arc<Semaphore>,
    /// Moving average of how long a slot was held, milliseconds (weight 1/8 per request).
    held_ms: AtomicU64,
}

/// One request's slot: its key's permit and a global one, both freed on drop.
#[derive(Debug)]
pub struct RequestSlot {
    // Dropped in declaration order: the global permit first, so a waiter of another key can
    // start as soon as possible.
    _global: OwnedSemaphorePermit,
    _key: OwnedSemaphorePermit,
    slots: Arc<KeySlots>,
    since: Instant,
}

impl Drop for RequestSlot {
    fn drop(&mut self) {
        let sample = u64::try_from(self.since.elapsed().as_millis()).unwrap_or(u64::MAX);
        // A lost update between two drops only skews an average.
        let old = self.slots.held_ms.load(Ordering::Relaxed);
        let new = old.saturating_mul(7).saturating_add(sample) / 8;
        self.slots.held_ms.store(new, Ordering::Relaxed);
    }
}

impl RequestSlots {
    /// At most `global` requests in flight, and at most `per_key` of them for one key.
    pub fn new(global: usize, per_key: usize) -> Result<Self, InvalidSlots> {
        if global == 0 {
            return Err(InvalidSlots("the global concurrency"));
        }
        if per_key == 0 {
            return Err(InvalidSlots("the per-key concurrency"));
        }
        Ok(RequestSlots {
            global: Arc::new(Semaphore::new(global.min(Semaphore::MAX_PERMITS))),
            per_key: per_key.min(Semaphore::MAX_PERMITS),
            keys: RwLock::new(HashMap::new()),
        })
    }

    /// Waits for a slot of `key` (first) and a global one (second); [`SlotError::Busy`] when
    /// the key's slot does not come within [`MAX_KEY_WAIT`].
    /// [`RequestSlots::acquire`], given up as soon as `withdrawn` is canceled (while waiting,
    /// or by the time a slot is free): a delivery whose push was canceled never goes out, and
    /// one that already went out is never abandoned, so what reached the push service is
    /// exactly what counts as sent.
    pub async fn acquire_unless(
        &self,
        key: &str,
        withdrawn: Option<&CancellationToken>,
    ) -> Result<RequestSlot, SlotError> {
        let Some(withdrawn) = withdrawn else {
            return self.acquire(key).await;
        };
        let slot = tokio::select! {
            biased;
            () = withdrawn.cancelled() => return Err(SlotError::Withdrawn),
            slot = self.acquire(key) => slot?,
        };
        if withdrawn.is_cancelled() {
            return Err(SlotError::Withdrawn);
        }
        Ok(slot)
    }

    /// A slot of `key`, then a global one.
    pub async fn acquire(&self, key: &str) -> Result<RequestSlot, SlotError> {
        let slots = self.key_slots(key);
        let semaphore = Arc::clone(&slots.semaphore);
        let key_permit = match tokio::time::timeout(MAX_KEY_WAIT, semaphore.acquire_owned()).await {
            Ok(Ok(permit)) => permit,
            Ok(Err(_)) => return Err(SlotError::Closed),
            Err(_) if slots.held_ms.load(Ordering::Relaxed) >= SLOW_KEY.as_millis() as u64 => {
                return Err(SlotError::Busy);
            }
            // Busy, not slow: keep waiting.
            Err(_) => Arc::clone(&slots.semaphore)
                .acquire_owned()
                .await
                .map_err(|_| SlotError::Closed)?,
        };
        let global = Arc::clone(&self.global)
            .acquire_owned()
            .await
            .map_err(|_| SlotError::Closed)?;
        let since = Instant::now();
        // The caller times the push service's answer from here (see `timed`).
        let _ = SLOT_TAKEN.try_with(|taken| taken.set(since));
        Ok(RequestSlot {
            _global: global,
            _key: key_permit,
            slots,
            since,
        })
    }

    /// Global slots free right now (for tests and metrics).
    pub fn available(&self) -> usize {
        self.global.available_permits()
    }

    fn key_slots(&self, key: &str) -> Arc<KeySlots> {
        // Poisoning only means a panic elsewhere mid-operation; a HashMap stays usable.
        if let Some(semaphore) = self
            .keys
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
        {
            return Arc::clone(semaphore);
        }
        let mut keys = self.keys.write().unwrap_or_else(PoisonError::into_inner);
        if keys.len() >= MAX_KEYS && !keys.contains_key(key) {
            // Only the map holds an idle semaphore; one with a clone out is held or awaited.
            keys.retain(|_, slots| Arc::strong_count(slots) > 1);
        }
        Arc::clone(keys.entry(key.into()).or_insert_with(|| {
            Arc::new(KeySlots {
                semaphore: Arc::new(Semaphore::new(self.per_key)),
                held_ms: AtomicU64::new(0),
            })
        }))
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.keys
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

tokio::task_local! {
    /// When the delivery running in this task got its request slot.
    static SLOT_TAKEN: std::sync::OnceLock<Instant>;
}

/// Runs `attempt` and tells when it got a request slot: the time after it is the push
/// service's answer (plus the request's encryption, a few tens of microseconds), without the
/// wait for a slot. `None` when no slot was taken (nothing was sent).
///
/// A task-local instead of a field on every provider's outcome: the providers take their
/// slots deep inside their clients, and the sender's metrics are the only ones who ask.
pub async fn timed<F: std::future::Future>(attempt: F) -> (F::Output, Option<Instant>) {
    let taken = std::sync::OnceLock::new();
    SLOT_TAKEN
        .scope(taken, async {
            let output = attempt.await;
            let at = SLOT_TAKEN.with(|taken| taken.get().copied());
            (output, at)
        })
        .await
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    async fn blocked(slots: &RequestSlots, key: &str) -> bool {
        tokio::time::timeout(Duration::from_millis(20), slots.acquire(key))
            .await
            .is_err()
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_key_whose_slots_stay_taken_answers_busy() {
        let slots = RequestSlots::new(8, 1).expect("valid");
        // Requests of "slow" have taken 5 s each.
        for _ in 0..40 {
            let slot = slots.acquire("slow").await.expect("slot");
            tokio::time::sleep(Duration::from_secs(5)).await;
            drop(slot);
        }
        let _held = slots.acquire("slow").await.expect("slot");
        assert_eq!(
            slots.acquire("slow").await.err(),
            Some(SlotError::Busy),
            "after MAX_KEY_WAIT"
        );
        let _other = slots
            .acquire("fast")
            .await
            .expect("another key is not held up");
        // A fast key whose slots are all taken keeps its deliveries waiting.
        let busy = slots.acquire("fast-busy").await.expect("slot");
        let waiter = slots.acquire("fast-busy");
        let release = async {
            tokio::time::sleep(MAX_KEY_WAIT * 2).await;
            drop(busy);
        };
        let (waited, ()) = tokio::join!(waiter, release);
        assert!(waited.is_ok(), "a fast key is not deferred: {waited:?}");
    }

    #[tokio::test]
    async fn a_withdrawn_delivery_gives_up_its_wait_and_never_takes_a_slot() {
        let slots = RequestSlots::new(2, 1).expect("valid");
        let withdrawn = CancellationToken::new();
        let held = slots
            .acquire_unless("a", Some(&withdrawn))
            .await
            .expect("free slot");
        let waiting = slots.acquire_unless("a", Some(&withdrawn));
        let cancel = async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            withdrawn.cancel();
        };
        let (waited, ()) = tokio::join!(waiting, cancel);
        assert!(matches!(waited, Err(SlotError::Withdrawn)), "{waited:?}");
        // Already withdrawn: refused even when a slot is free, and the slot stays free.
        let free_key = slots.acquire_unless("b", Some(&withdrawn)).await;
        assert!(
            matches!(free_key, Err(SlotError::Withdrawn)),
            "{free_key:?}"
        );
        assert_eq!(slots.available(), 1);
        drop(held);
        slots
            .acquire_unless("a", None)
            .await
            .expect("no token: a plain acquire");
    }

    #[tokio::test]
    async fn bounds_each_key_and_the_total() {
        let slots = RequestSlots::new(3, 2).expect("valid");
        let a1 = slots.acquire("a").await.expect("slot");
        let _a2 = slots.acquire("a").await.expect("slot");
        assert!(blocked(&slots, "a").await, "a third slot for one key");
        let _b1 = slots.acquire("b").await.expect("another key");
        assert_eq!(slots.available(), 0);
        assert!(blocked(&slots, "c").await, "the global bound holds");
        drop(a1);
        let _c1 = slots.acquire("c").await.expect("freed slot");
    }

    #[tokio::test]
    async fn a_slow_key_holds_only_its_own_slots() {
        let slots = Arc::new(RequestSlots::new(4, 2).expect("valid"));
        // Two requests to a slow push service are in flight, and ten more wait for it.
        let held: Vec<RequestSlot> = vec![
            slots.acquire("slow").await.expect("slot"),
            slots.acquire("slow").await.expect("slot"),
        ];
        let waiting: Vec<_> = (0..10)
            .map(|_| {
                let slots = Arc::clone(&slots);
                tokio::spawn(async move { slots.acquire("slow").await.map(drop) })
            })
            .collect();
        tokio::task::yield_now().await;
        // The waiters hold no global slot: the other two are free for everyone else.
        assert_eq!(slots.available(), 2);
        let _f1 = slots.acquire("fast").await.expect("not starved");
        let _f2 = slots.acquire("fast").await.expect("not starved");
        drop(held);
        drop(_f1);
        drop(_f2);
        for task in waiting {
            task.await.expect("joined").expect("slot");
        }
    }

    #[tokio::test]
    async fn forgets_idle_keys_but_never_busy_ones() {
        let slots = RequestSlots::new(10, 1).expect("valid");
        let busy = slots.acquire("busy").await.expect("slot");
        for i in 0..MAX_KEYS + 10 {
            drop(slots.acquire(&format!("k{i}")).await.expect("slot"));
        }
        assert!(
            slots.tracked() <= MAX_KEYS,
            "map grew to {}",
            slots.tracked()
        );
        assert!(
            blocked(&slots, "busy").await,
            "the busy key's bound was replaced"
        );
        drop(busy);
    }

    #[test]
    fn zero_is_refused() {
        assert!(RequestSlots::new(0, 1).is_err());
        assert!(RequestSlots::new(1, 0).is_err());
    }

    #[tokio::test]
    async fn timed_tells_when_the_slot_was_taken() {
        let slots = RequestSlots::new(4, 2).expect("slots");
        let before = Instant::now();
        let (slot, taken) = timed(slots.acquire("origin")).await;
        assert!(slot.is_ok());
        assert!(taken.is_some_and(|at| at >= before), "{taken:?}");
        let ((), taken) = timed(async {}).await;
        assert_eq!(taken, None, "no slot, nothing sent");
    }
}
