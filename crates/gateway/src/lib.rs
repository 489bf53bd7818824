//! `gateway`: realtime channels for connected clients, over Server-Sent Events and WebSocket.
//!
//! Every gateway reads every message of the `realtime` topic (no consumer group: each needs all
//! of it) and hands it to the connections it holds in that channel. Every message has a
//! position in its channel, its Kafka offset (a channel's messages share a partition), so a
//! client that reconnects, to this gateway or another, names the last position it saw and gets
//! what it missed: from this gateway's in-memory history when it reaches back that far,
//! otherwise from the history the recorders keep in MongoDB (one consumer group over all
//! gateways). The wire protocol is `docs/realtime.md`.
//!
//! Built on `axum` routes served by `hyper` (its WebSocket support is `tokio-tungstenite`, with
//! small buffers so a connection costs kilobytes), except SSE responses, which are written
//! straight on the socket after `httparse` reads the request (see [`front`] for why), and the
//! workspace's Kafka and store crates; tokens are `jsonwebtoken` HS256 through
//! `pushservice-realtime`.
//!
//! # Layout
//!
//! - [`config`] — settings (`GATEWAY_*`).
//! - [`hub`] — channels, their subscribers and in-memory history, dispatch, session caps.
//! - [`reader`] — the live reader of the realtime topic; [`recorder`] — the durable history.
//! - [`frame`] — a record into the frame clients receive.
//! - [`session`] — a connection's channels, joining with recovery, the seam's de-duplication.
//! - [`front`] — the accept loop: SSE straight on the socket, the rest through hyper.
//! - [`sse`], [`ws`] — the two transports; [`http`] — routes, CORS, acks.
//! - [`acks`] — per-message and per-site delivery and ack figures.
//! - [`fallback`] — push notifications for users who did not ack in time.
//! - [`presence`] — who is connected, written for `pushapi` to sum over gateways.
//! - [`auth`] — tokens; [`sites`] — sites' settings, cached; [`metrics`] — counters.

pub mod acks;
pub mod auth;
pub mod config;
pub mod fallback;
pub mod frame;
pub mod front;
pub mod http;
pub mod hub;
pub mod metrics;
pub mod presence;
pub mod reader;
pub mod recorder;
pub mod session;
pub mod sites;
pub mod sse;
pub mod ws;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use pushservice_daemon::{Health, Probes, Registry, serve_telemetry};
use pushservice_store::Store;
use tokio_util::sync::CancellationToken;

pub use config::{GatewayArgs, GatewayConfig};

use crate::hub::Hub;
use crate::metrics::GatewayMetrics;
use crate::recorder::Recorder;
use crate::session::Shared;
use crate::sites::SiteCache;

/// Runs the gateway until `shutdown` resolves: then every client is told to reconnect (after
/// a random delay up to `GATEWAY_SHUTDOWN_SPREAD_MS`) and the gateway stops.
pub async fn run(
    config: GatewayConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("GATEWAY_LISTEN: cannot listen on {}", config.listen))?;
    serve(config, listener, shutdown).await
}

/// [`run`] on a listener already bound (tests bind port 0).
pub async fn serve(
    config: GatewayConfig,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let store = Store::connect(&config.mongo).await?;
    store.ensure_realtime_indexes().await?;
    let topic = config.topics.realtime.name.clone();
    let start = reader::end_offsets(&config.kafka, &topic).await?;
    let epoch = current_epoch(&store, &topic, &start).await?;

    let registry = Arc::new(Registry::default());
    let health = Arc::new(Health::default());
    if let Some(addr) = config.metrics_addr {
        serve_telemetry(addr, Arc::clone(&registry), Arc::clone(&health))
            .await
            .with_context(|| format!("METRICS_ADDR: cannot listen on {addr}"))?;
    }
    let metrics = Arc::new(GatewayMetrics::new(&registry));
    let sites = Arc::new(SiteCache::new(store.clone(), config.site_cache));
    let hub = Arc::new(Hub::new(&start, config.history_memory_bytes));

    let stop = CancellationToken::new();
    // The gateway reads every partition without a group; its recorder's group has a lag.
    let probes = Probes::new(&config.kafka)
        .store(store.clone())
        .group(&config.history_group, &[topic.as_str()])
        .spawn(Arc::clone(&health), &registry, stop.clone());
    let acks = Arc::new(acks::AckBook::default());
    let reader = tokio::spawn(
        reader::LiveReader {
            kafka: config.kafka.clone(),
            topic: topic.clone(),
            start,
            hub: Arc::clone(&hub),
            sites: Arc::clone(&sites),
            metrics: Arc::clone(&metrics),
            max_bytes: config.max_message_bytes,
            acks: Arc::clone(&acks),
        }
        .run(stop.clone()),
    );
    let recorder = tokio::spawn(
        Recorder {
            kafka: config.kafka.clone(),
            topic: topic.clone(),
            group: config.history_group.clone(),
            store: store.clone(),
            sites: Arc::clone(&sites),
            metrics: Arc::clone(&metrics),
            max_bytes: config.max_message_bytes,
            retention: config.history_retention,
        }
        .run(stop.clone()),
    );

    let gateway_id = format!("{:012x}", fastrand::u64(..) >> 16);
    let figures = {
        let (acks, store, gateway, stop) = (
            Arc::clone(&acks),
            store.clone(),
            gateway_id.clone(),
            stop.clone(),
        );
        tokio::spawn(async move {
            acks.run(store, gateway, Duration::from_secs(1), stop).await;
        })
    };
    let presence = tokio::spawn(presence::run(
        store.clone(),
        Arc::clone(&hub),
        gateway_id,
        config.presence_interval,
        stop.clone(),
    ));

    let trigger =
        pushservice_control::PushTrigger::new(&config.kafka, config.topics.raw_push.name.clone())?;
    let fallbacks = tokio::spawn(fallback::run(
        store.clone(),
        trigger,
        Duration::from_millis(500),
        stop.clone(),
    ));

    let closing = CancellationToken::new();
    let spread = config.shutdown_spread;
    let shared = Arc::new(Shared::new(
        config,
        hub,
        sites,
        store.clone(),
        metrics,
        acks,
        epoch.clone(),
        closing.clone(),
    ));
    let app = http::router(Arc::clone(&shared));
    let bound = listener.local_addr()?;
    tracing::info!(addr = %bound, topic, epoch, "gateway listening");
    health.set_ready(true);

    let draining = Arc::clone(&health);
    let signal = closing.clone();
    front::serve(
        listener,
        app,
        Arc::clone(&shared),
        async move {
            shutdown.await;
            draining.set_ready(false);
            tracing::info!("gateway stopping: telling clients to reconnect");
            signal.cancel();
        },
        spread + Duration::from_secs(5),
    )
    .await;
    // SSE streams and WebSockets end by themselves after their reconnect frame.
    shared.tracker.close();
    let _ = tokio::time::timeout(spread + Duration::from_secs(5), shared.tracker.wait()).await;
    health.set_ready(false);
    stop.cancel();
    let _ = probes.await;
    if let Err(e) = fallbacks.await {
        tracing::error!(error = %e, "fallback task panicked");
    }
    if let Err(e) = figures.await {
        tracing::error!(error = %e, "figures task panicked");
    }
    if let Err(e) = presence.await {
        tracing::error!(error = %e, "presence task panicked");
    }
    for (name, task) in [("reader", reader), ("recorder", recorder)] {
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = format!("{e:#}"), "realtime {name} failed"),
            Err(e) => tracing::error!(error = %e, "realtime {name} task panicked"),
        }
    }
    store.close().await;
    tracing::info!("gateway stopped");
    Ok(())
}

/// The epoch of the topic's positions. When a partition's end lies before what the history
/// has stored, the topic was recreated and its offsets began again: a new epoch starts, so
/// clients holding old positions are told `recovered: false` instead of missing messages.
async fn current_epoch(store: &Store, topic: &str, start: &[i64]) -> anyhow::Result<String> {
    let candidate = format!("{:08x}", fastrand::u32(..));
    let epoch = store.realtime_epoch(topic, &candidate).await?;
    let stored = store.history_stored_through(topic, start.len()).await?;
    let restarted = stored
        .iter()
        .zip(start)
        .any(|(&stored, &next)| stored >= next);
    if restarted {
        let fresh = format!("{:08x}", fastrand::u32(..));
        tracing::warn!(
            topic,
            old = epoch,
            new = fresh,
            "the realtime topic's offsets went back (recreated?): starting a new epoch"
        );
        store.new_realtime_epoch(topic, &fresh).await?;
        return Ok(fresh);
    }
    Ok(epoch)
}
