//! Per-push delivery counters, aggregated in memory and flushed with `$inc`.
//!
//! Writing a counter per delivery would be one MongoDB write per message; instead the sender
//! adds up outcomes per push and flushes them about once a second, one `$inc` per push. A
//! failed flush puts its counts back to be retried with the next one. A crash loses at most
//! one interval of counts (their messages are redelivered and counted again, so counts are
//! "at least", like deliveries).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use pushservice_daemon::{Counter, Registry};
use pushservice_model::ObjectId;
use pushservice_store::{Store, StoreError};

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

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Counts {
    accepted: i64,
    unsubscribed: i64,
    failed: i64,
}

/// Counters of every push this sender delivered for since the last flush, plus process totals
/// (which are the `pushservice_sender_deliveries_total` metric).
#[derive(Debug)]
pub struct PushCounters {
    pending: Mutex<HashMap<ObjectId, Counts>>,
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
    /// Counters whose totals are registered in `registry`.
    pub fn new(registry: &Registry) -> Self {
        let outcome = |label| {
            registry.counter(
                "pushservice_sender_deliveries_total",
                "Deliveries with a final outcome.",
                &[("outcome", label)],
            )
        };
        PushCounters {
            pending: Mutex::default(),
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

    /// Writes the counts gathered since the last flush to their push documents.
    pub async fn flush(&self, store: &Store) -> Result<(), StoreError> {
        let batch = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()));
        let mut unwritten: Vec<(ObjectId, Counts)> = Vec::new();
        let mut first_error = None;
        for (push_id, counts) in batch {
            if first_error.is_some() {
                unwritten.push((push_id, counts));
                continue;
            }
            if let Err(e) = store
                .add_delivery_counts(push_id, counts.accepted, counts.unsubscribed, counts.failed)
                .await
            {
                unwritten.push((push_id, counts));
                first_error = Some(e);
            }
        }
        if !unwritten.is_empty() {
            let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            for (push_id, counts) in unwritten {
                let merged = pending.entry(push_id).or_default();
                merged.accepted += counts.accepted;
                merged.unsubscribed += counts.unsubscribed;
                merged.failed += counts.failed;
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregates_per_push_and_in_totals() {
        let counters = PushCounters::new(&Registry::default());
        let (a, b) = (ObjectId::new(), ObjectId::new());
        counters.add(a, Counted::Accepted);
        counters.add(a, Counted::Accepted);
        counters.add(b, Counted::Unsubscribed);
        counters.add(b, Counted::Failed);
        let pending = counters.pending.lock().expect("lock");
        assert_eq!(
            pending[&a],
            Counts {
                accepted: 2,
                unsubscribed: 0,
                failed: 0
            }
        );
        assert_eq!(
            pending[&b],
            Counts {
                accepted: 0,
                unsubscribed: 1,
                failed: 1
            }
        );
        drop(pending);
        assert_eq!(counters.totals().all(), 4);
    }
}
