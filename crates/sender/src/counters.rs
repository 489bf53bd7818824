//! Per-push delivery counters, aggregated in memory and flushed about once a second.
//!
//! Writing a counter per delivery would be one MongoDB write per message; instead the sender
//! adds up outcomes per push and flushes them once per interval: an `$inc` on this sender's
//! own counter document of the push, then the push's totals set to the sum over all senders
//! (see `pushservice_store::delivery_stats` for why not `$inc` on the push itself). Totals
//! of a push are recomputed for a few seconds after this sender last counted for it, so they
//! settle on the exact sum even when two senders' recomputations race. Senders write them
//! onto the push document only once its fan-out is over (until then the parser owns it and
//! writes the sum at each checkpoint); `pushctl status` shows live sums at any time.
//!
//! A failed flush puts its counts back for the next one. A crash loses at most one interval
//! of counts; their messages are redelivered and counted again, so counts are "at least",
//! like deliveries.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pushservice_daemon::{Counter, Registry};
use pushservice_model::ObjectId;
use pushservice_store::{DeliveryCounts, Store, StoreError};

/// How long after its last count a push's totals keep being recomputed.
const RESYNC_FOR: Duration = Duration::from_secs(5);

/// Final outcome of one delivery, as counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counted {
    /// The push service accepted it.
    Accepted,
    /// The subscription was gone; the subscriber is now unsubscribed.
    Unsubscribed,
    /// Failed for good (permanent error or retries exhausted).
    Failed,
}

/// Counters of every push this sender delivered for since the last flush, plus process totals
/// (which are the `pushservice_sender_deliveries_total` metric).
#[derive(Debug)]
pub struct PushCounters {
    sender_id: String,
    pending: Mutex<HashMap<ObjectId, DeliveryCounts>>,
    /// Pushes this sender counted for recently, and when.
    recent: Mutex<HashMap<ObjectId, Instant>>,
    accepted: Arc<Counter>,
    unsubscribed: Arc<Counter>,
    failed: Arc<Counter>,
}

/// Process-lifetime totals.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    /// Deliveries accepted.
    pub accepted: u64,
    /// Subscribers unsubscribed.
    pub unsubscribed: u64,
    /// Deliveries failed.
    pub failed: u64,
}

impl Totals {
    /// Every final outcome.
    pub fn all(&self) -> u64 {
        self.accepted + self.unsubscribed + self.failed
    }
}

impl PushCounters {
    /// Counters of sender instance `sender_id`, with totals registered in `registry`.
    pub fn new(sender_id: String, registry: &Registry) -> Self {
        let outcome = |label| {
            registry.counter(
                "pushservice_sender_deliveries_total",
                "Deliveries with a final outcome.",
                &[("outcome", label)],
            )
        };
        PushCounters {
            sender_id,
            pending: Mutex::default(),
            recent: Mutex::default(),
            accepted: outcome("accepted"),
            unsubscribed: outcome("unsubscribed"),
            failed: outcome("failed"),
        }
    }

    /// Counts one final outcome for `push_id`.
    pub fn add(&self, push_id: ObjectId, outcome: Counted) {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let counts = pending.entry(push_id).or_default();
        let total = match outcome {
            Counted::Accepted => {
                counts.accepted += 1;
                &self.accepted
            }
            Counted::Unsubscribed => {
                counts.unsubscribed += 1;
                &self.unsubscribed
            }
            Counted::Failed => {
                counts.failed += 1;
                &self.failed
            }
        };
        total.inc();
    }

    /// Totals since start.
    pub fn totals(&self) -> Totals {
        Totals {
            accepted: self.accepted.get(),
            unsubscribed: self.unsubscribed.get(),
            failed: self.failed.get(),
        }
    }

    /// Writes the counts gathered since the last flush, then refreshes the totals of the
    /// pushes counted for recently.
    pub async fn flush(&self, store: &Store) -> Result<(), StoreError> {
        let batch = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()));
        let mut unwritten: Vec<(ObjectId, DeliveryCounts)> = Vec::new();
        let mut first_error = None;
        for (push_id, counts) in batch {
            if first_error.is_some() {
                unwritten.push((push_id, counts));
                continue;
            }
            match store
                .add_sender_counts(push_id, &self.sender_id, counts)
                .await
            {
                Ok(()) => {
                    self.recent
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(push_id, Instant::now());
                }
                Err(e) => {
                    unwritten.push((push_id, counts));
                    first_error = Some(e);
                }
            }
        }
        if !unwritten.is_empty() {
            let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            for (push_id, counts) in unwritten {
                pending.entry(push_id).or_default().merge(counts);
            }
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        let recent: Vec<ObjectId> = {
            let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
            recent.retain(|_, at| at.elapsed() < RESYNC_FOR);
            recent.keys().copied().collect()
        };
        for push_id in recent {
            let totals = store.delivery_counts(push_id).await?;
            store.set_delivery_totals(push_id, totals).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregates_per_push_and_in_totals() {
        let counters = PushCounters::new("s1".into(), &Registry::default());
        let (a, b) = (ObjectId::new(), ObjectId::new());
        counters.add(a, Counted::Accepted);
        counters.add(a, Counted::Accepted);
        counters.add(b, Counted::Unsubscribed);
        counters.add(b, Counted::Failed);
        let pending = counters.pending.lock().expect("lock");
        assert_eq!(
            pending[&a],
            DeliveryCounts {
                accepted: 2,
                unsubscribed: 0,
                failed: 0
            }
        );
        assert_eq!(
            pending[&b],
            DeliveryCounts {
                accepted: 0,
                unsubscribed: 1,
                failed: 1
            }
        );
        drop(pending);
        assert_eq!(counters.totals().all(), 4);
    }
}
