//! Plumbing shared by the pushservice daemons (parser, sender).
//!
//! Daemons take their shutdown trigger as a future (`run(config, shutdown)`), so tests stop
//! them the same way SIGTERM does in production. They count what they do in a [`Registry`]
//! that an operator scrapes at `METRICS_ADDR` (`/metrics`, Prometheus text format), next to
//! `/healthz` (the process runs) and `/readyz` (it is connected and consuming).
//!
//! The metrics are `prometheus-client` families behind a small registry: counters and gauges
//! are relaxed atomics, histograms take one uncontended lock per observation, and the process
//! itself (CPU, memory, file descriptors) is read from `/proc` at each scrape.
//!
//! # Layout
//!
//! - [`main_entry`] — [`daemon_main`], the `main` every daemon shares.
//! - [`signal`] — [`shutdown_signal`]: SIGINT or SIGTERM.
//! - [`metrics`] — [`Registry`], [`Counter`], [`Gauge`], [`Histogram`], process metrics.
//! - [`probes`] — [`Probes`]: Kafka and MongoDB round trips for `/readyz`, consumer lag.
//! - [`http`] — the `/metrics`, `/healthz`, `/readyz` endpoint and [`TelemetryArgs`].

pub mod http;
pub mod main_entry;
pub mod metrics;
pub mod probes;
pub mod signal;

pub use http::{Health, TelemetryArgs, serve_telemetry};
pub use main_entry::daemon_main;
pub use metrics::{
    Counter, Gauge, GaugeFamily, Histogram, LATENCY_BUCKETS, Registry, WAIT_BUCKETS,
};
pub use probes::Probes;
pub use signal::shutdown_signal;
