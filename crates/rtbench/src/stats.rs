//! What the connection tasks report, shared by all of them and read by the run.
//!
//! Counters are atomics (20,000 tasks update them at once); the rare events (a refused
//! connection, a server-side close) go to a map behind a mutex, keyed by reason, so the report
//! can say why connections failed without a line per connection.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::Notify;

use crate::histogram::Histogram;
use crate::scan::Delivery;

/// Counters of the whole run.
#[derive(Default)]
pub struct Shared {
    /// Connections subscribed to their channel (SSE `welcome`, WebSocket `subscribed`).
    pub ready: AtomicUsize,
    /// Connections that never got there.
    pub failed: AtomicUsize,
    /// Connections the server ended after they were ready (reconnect, error, close, EOF).
    pub dropped: AtomicUsize,
    /// Messages received.
    pub delivered: AtomicU64,
    /// Messages whose offset was not above the previous one on the same connection: a
    /// duplicate or a reordering, which the protocol rules out.
    pub out_of_order: AtomicU64,
    /// Messages without a readable publish time (not counted in the latency).
    pub untimed: AtomicU64,
    /// Receive time of the latest message, µs since the epoch.
    pub last_delivery_us: AtomicU64,
    /// Publish-to-receive latency, µs.
    pub latency: Histogram,
    /// Woken whenever a connection becomes ready or fails, and on each delivery batch.
    pub progress: Notify,
    /// Why connections failed or were dropped, with counts.
    reasons: Mutex<BTreeMap<String, u64>>,
}

/// Now, µs since the epoch.
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

impl Shared {
    /// A connection is subscribed.
    pub fn connection_ready(&self) {
        self.ready.fetch_add(1, Ordering::Relaxed);
        self.progress.notify_waiters();
    }

    /// A connection failed before being ready, for `reason`.
    pub fn connection_failed(&self, reason: String) {
        self.count_reason(format!("failed: {reason}"));
        self.failed.fetch_add(1, Ordering::Relaxed);
        self.progress.notify_waiters();
    }

    /// A ready connection was ended by the server, for `reason`.
    pub fn connection_dropped(&self, reason: String) {
        self.count_reason(format!("dropped: {reason}"));
        self.dropped.fetch_add(1, Ordering::Relaxed);
    }

    fn count_reason(&self, reason: String) {
        *self
            .reasons
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(reason)
            .or_default() += 1;
    }

    /// Reasons and counts so far.
    pub fn reasons(&self) -> BTreeMap<String, u64> {
        self.reasons
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Records a delivered message; `last_offset` is the connection's previous position.
    pub fn delivered(&self, delivery: Delivery, last_offset: &mut Option<u64>) {
        let now = now_us();
        match delivery.sent_us {
            Some(sent) => self.latency.record(now.saturating_sub(sent)),
            None => {
                self.untimed.fetch_add(1, Ordering::Relaxed);
            }
        }
        if let Some(offset) = delivery.offset {
            if last_offset.is_some_and(|last| offset <= last) {
                self.out_of_order.fetch_add(1, Ordering::Relaxed);
            }
            *last_offset = Some(offset);
        }
        self.delivered.fetch_add(1, Ordering::Relaxed);
        self.last_delivery_us.fetch_max(now, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_or_lower_offset_counts_as_out_of_order() {
        let shared = Shared::default();
        let mut last = None;
        for offset in [4, 9, 9, 7, 12] {
            let delivery = Delivery {
                offset: Some(offset),
                sent_us: Some(now_us()),
            };
            shared.delivered(delivery, &mut last);
        }
        assert_eq!(shared.delivered.load(Ordering::Relaxed), 5);
        assert_eq!(shared.out_of_order.load(Ordering::Relaxed), 2);
        assert_eq!(shared.latency.percentiles().count, 5);
        assert_eq!(last, Some(12));
    }
}
