//! Deliveries the sink accepted in verification mode, decrypted, kept per subscriber so a test
//! can assert exactly what each subscriber would have seen.
//!
//! Only verification mode keeps them: counting mode must stay allocation-free per request and
//! run for millions of requests without growing.

use std::collections::HashMap;
use std::sync::Mutex;

use pushservice_model::Urgency;
use serde::Serialize;

/// One accepted, verified and decrypted delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Received {
    /// The subscriber id from the endpoint URL.
    pub subscriber_id: String,
    /// The decrypted payload, padding removed.
    pub plaintext: Vec<u8>,
    /// The `TTL` header, seconds.
    pub ttl: u32,
    /// The `Urgency` header, when sent.
    pub urgency: Option<Urgency>,
    /// The `Topic` header, when sent.
    pub topic: Option<String>,
    /// The VAPID `sub` claim.
    pub vapid_sub: String,
    /// The VAPID `aud` claim.
    pub vapid_aud: String,
    /// Which request for this subscriber it was (1 for the first, counting every request
    /// since start or the last reset, whatever its answer).
    pub attempt: u32,
}

/// Accepted deliveries by subscriber id.
pub(crate) struct ReceivedLog {
    by_subscriber: Mutex<HashMap<String, Vec<Received>>>,
}

impl ReceivedLog {
    pub(crate) fn new() -> Self {
        ReceivedLog {
            by_subscriber: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn record(&self, received: Received) {
        self.by_subscriber
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(received.subscriber_id.clone())
            .or_default()
            .push(received);
    }

    /// What `subscriber_id` received, oldest first.
    pub(crate) fn of(&self, subscriber_id: &str) -> Vec<Received> {
        self.by_subscriber
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(subscriber_id)
            .cloned()
            .unwrap_or_default()
    }

    pub(crate) fn clear(&self) {
        self.by_subscriber
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }
}
