//! The API's counters, in the daemons' registry (`/metrics`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use pushservice_daemon::{Counter, Registry};

/// Counters of the API. Route labels are route templates (`/v1/pushes/{pushId}`), never ids.
pub struct ApiMetrics {
    registry: Arc<Registry>,
    /// Request counters by (route, method, status), registered on first use; the key set
    /// is bounded by the routes, methods and statuses the API has.
    requests: Mutex<HashMap<(String, String, u16), Arc<Counter>>>,
    /// Events accepted into the queue.
    pub events_received: Arc<Counter>,
    /// Events that were new and counted.
    pub events_counted: Arc<Counter>,
    /// Events refused because the queue was full.
    pub events_dropped: Arc<Counter>,
    /// Event batches that failed to be written (retried).
    pub events_write_errors: Arc<Counter>,
    /// Requests refused by the per-client rate limit.
    pub rate_limited: Arc<Counter>,
    /// Subscribers registered (new documents).
    pub subscribers_created: Arc<Counter>,
}

impl ApiMetrics {
    /// Registers the counters.
    pub fn new(registry: Arc<Registry>) -> Self {
        ApiMetrics {
            events_received: registry.counter(
                "pushapi_events_received_total",
                "Tracking events accepted by POST /v1/events.",
                &[],
            ),
            events_counted: registry.counter(
                "pushapi_events_counted_total",
                "Tracking events that were new and raised a push's totals.",
                &[],
            ),
            events_dropped: registry.counter(
                "pushapi_events_dropped_total",
                "Tracking events refused with 503 because the write queue was full.",
                &[],
            ),
            events_write_errors: registry.counter(
                "pushapi_event_write_errors_total",
                "Event batches MongoDB failed to write (kept and retried).",
                &[],
            ),
            rate_limited: registry.counter(
                "pushapi_rate_limited_total",
                "Requests to public routes refused by the per-client rate limit.",
                &[],
            ),
            subscribers_created: registry.counter(
                "pushapi_subscribers_created_total",
                "Subscribers registered as new documents.",
                &[],
            ),
            registry,
            requests: Mutex::new(HashMap::new()),
        }
    }

    /// Counts a request by route template and status.
    pub fn request(&self, route: &str, method: &str, status: u16) {
        let key = (route.to_owned(), method.to_owned(), status);
        let mut requests = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        let counter = requests.entry(key).or_insert_with(|| {
            self.registry.counter(
                "pushapi_requests_total",
                "HTTP requests by route template, method and status.",
                &[
                    ("route", route),
                    ("method", method),
                    ("status", &status.to_string()),
                ],
            )
        });
        counter.inc();
    }
}
