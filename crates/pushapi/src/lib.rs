//! `pushapi`: the HTTP API of pushservice.
//!
//! Sites are created with the admin token and get VAPID keys and API keys; browsers subscribe
//! through public routes bound to their site (CORS for its `allowedOrigins`, a per-client
//! rate limit, strict validation); a site's backend creates, sends, follows and cancels
//! pushes and makes direct sends with its key; service workers report deliveries, clicks and
//! closes. Stateless: MongoDB and Kafka hold everything, so any number of instances can run
//! behind a load balancer. The routes are the contract, documented in `openapi.json` (served
//! at `/openapi.json`); what `pushctl` also does is implemented once, in `pushservice-control`.
//!
//! Built on `axum` (routing, extractors, SSE) and `tower-http` (CORS with a per-site origin
//! check, body limits, timeouts, tracing); the rate limit is `governor`'s keyed GCRA; body
//! errors name the field through `serde_path_to_error`.
//!
//! # Layout
//!
//! - [`config`] — settings (`API_*`).
//! - [`routes`] — the router and one module per group of routes.
//! - [`auth`] — admin token and site keys; [`sites_cache`] — sites cached for seconds.
//! - [`body`] — the JSON extractor; [`error`] — error answers; [`views`] — what is answered.
//! - [`events`] — the batched writer of tracking events; [`ratelimit`] — per-client limit.

pub mod auth;
pub mod body;
pub mod config;
pub mod error;
pub mod events;
pub mod metrics;
pub mod ratelimit;
pub mod routes;
pub mod sites_cache;
pub mod state;
pub mod views;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use pushservice_control::PushTrigger;
use pushservice_daemon::{Health, Probes, Registry, serve_telemetry};
use pushservice_model::ObjectId;
use pushservice_store::Store;
use tokio_util::sync::CancellationToken;

pub use config::{ApiArgs, ApiConfig};

use crate::metrics::ApiMetrics;
use crate::sites_cache::SiteCache;
use crate::state::{AppState, Inner};

/// Runs the API until `shutdown` resolves: then stops accepting requests, finishes those in
/// flight, writes the queued events and returns.
pub async fn run(
    config: ApiConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("API_LISTEN: cannot listen on {}", config.listen))?;
    serve(config, listener, shutdown).await
}

/// [`run`] on a listener already bound (tests bind port 0).
pub async fn serve(
    config: ApiConfig,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let store = Store::connect(&config.mongo).await?;
    let trigger = PushTrigger::new(&config.kafka, config.topics.raw_push.name.clone())?;
    trigger.check_reachable().await?;

    let registry = Arc::new(Registry::default());
    let health = Arc::new(Health::default());
    if let Some(addr) = config.metrics_addr {
        serve_telemetry(addr, Arc::clone(&registry), Arc::clone(&health))
            .await
            .with_context(|| format!("METRICS_ADDR: cannot listen on {addr}"))?;
    }
    let metrics = Arc::new(ApiMetrics::new(Arc::clone(&registry)));
    let instance = ObjectId::new();
    let (events, writer) = events::queue(
        config.events_queue,
        store.clone(),
        instance,
        config.events_flush,
    );
    let stop_writer = CancellationToken::new();
    let writer = tokio::spawn(writer.run(Arc::clone(&metrics), stop_writer.clone()));

    let limiter = ratelimit::PublicLimiter::new(
        config.public_rate_per_sec,
        config.public_burst,
        config.trust_forwarded_for,
    );
    limiter.spawn_cleanup();
    // The API produces to Kafka and reads MongoDB; it consumes nothing.
    let stop_probes = CancellationToken::new();
    let probes = Probes::new(&config.kafka).store(store.clone()).spawn(
        Arc::clone(&health),
        &registry,
        stop_probes.clone(),
    );
    let stopping = CancellationToken::new();
    let state = AppState::new(Inner {
        sites: SiteCache::new(store.clone(), config.site_cache),
        store: store.clone(),
        trigger,
        realtime: pushservice_control::RealtimePublisher::new(
            &config.kafka,
            config.topics.realtime.name.clone(),
        )?,
        realtime_max_bytes: config.realtime_max_bytes,
        topics: config.topics.clone(),
        admin_hash: auth::token_hash(&config.admin_token),
        endpoint_policy: config.endpoint_policy.clone(),
        events,
        metrics: Arc::clone(&metrics),
        registry,
        health: Arc::clone(&health),
        instance,
        stopping: stopping.clone(),
        public_metrics: config.metrics_addr.is_none(),
    });
    let app = routes::router(
        state,
        limiter,
        config.body_limit_bytes,
        config.request_timeout,
    );
    // Unready as soon as the shutdown begins, so a load balancer stops sending new requests
    // while the ones in flight finish; progress streams end (their clients reconnect to
    // another instance).
    let draining = Arc::clone(&health);
    let shutdown = async move {
        shutdown.await;
        draining.set_ready(false);
        stopping.cancel();
    };
    let bound = listener.local_addr()?;
    tracing::info!(addr = %bound, "pushapi listening");
    health.set_ready(true);
    let served = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await;
    health.set_ready(false);
    stop_probes.cancel();
    let _ = probes.await;
    stop_writer.cancel();
    if let Err(e) = writer.await {
        tracing::error!(error = %e, "event writer task failed");
    }
    store.close().await;
    served.context("serving the API")?;
    tracing::info!("pushapi stopped");
    Ok(())
}
