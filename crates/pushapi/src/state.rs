//! What every handler shares.

use std::sync::Arc;

use pushservice_config::Topics;
use pushservice_control::PushTrigger;
use pushservice_daemon::{Health, Registry};
use pushservice_model::ObjectId;
use pushservice_provider::EndpointPolicy;
use pushservice_store::Store;

use crate::events::EventQueue;
use crate::metrics::ApiMetrics;
use crate::sites_cache::SiteCache;

/// Shared state of the API. Cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

/// The fields of [`AppState`].
pub struct Inner {
    /// MongoDB.
    pub store: Store,
    /// Sites, cached briefly.
    pub sites: SiteCache,
    /// Publishes realtime messages.
    pub realtime: pushservice_control::RealtimePublisher,
    /// Largest realtime message data.
    pub realtime_max_bytes: usize,
    /// Publishes raw-push triggers (and, through its producer, direct deliveries).
    pub trigger: PushTrigger,
    /// Topic names.
    pub topics: Topics,
    /// SHA-256 of the admin token.
    pub admin_hash: [u8; 32],
    /// Subscription endpoints accepted.
    pub endpoint_policy: EndpointPolicy,
    /// Tracking events waiting to be written.
    pub events: EventQueue,
    /// Counters.
    pub metrics: Arc<ApiMetrics>,
    /// The registry they are in.
    pub registry: Arc<Registry>,
    /// Readiness.
    pub health: Arc<Health>,
    /// This process, for its own event counter documents.
    pub instance: ObjectId,
    /// Cancelled when the API begins to stop: long-lived responses (push progress streams)
    /// end then, so the graceful shutdown does not wait for them forever.
    pub stopping: tokio_util::sync::CancellationToken,
    /// Whether `/metrics` is served on the API's own port: only when no `METRICS_ADDR` is
    /// set, so that an operator who gives the metrics their own (private) address does not
    /// also publish them to every client of the API.
    pub public_metrics: bool,
}

impl AppState {
    /// Wraps the shared parts.
    pub fn new(inner: Inner) -> Self {
        AppState(Arc::new(inner))
    }
}

impl std::ops::Deref for AppState {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        &self.0
    }
}
