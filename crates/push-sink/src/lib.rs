//! A push-service simulator: it stands in for the Web Push services (FCM, Mozilla, Apple web
//! push endpoints) in tests, benchmarks and load tests, so senders can be exercised at full
//! speed without spamming real services.
//!
//! It answers like a push service: 201 for accepted messages, and, for planned subscribers,
//! 410/404 (gone), 429 with `Retry-After`, 500, or a reset, once or always
//! ([`planned_fate`] tells a test in advance who gets what). It counts everything
//! ([`Stats`], also at `GET /__sink/stats`). In verification mode it checks VAPID and the
//! RFC 8030 headers and decrypts every payload with the subscriber's seeded keys, keeping what
//! each subscriber received ([`Sink::received`]); counting mode skips all that and stays cheap
//! enough for tens of thousands of requests a second on two cores.
//!
//! ```no_run
//! # async fn example() -> Result<(), pushservice_push_sink::SinkError> {
//! use pushservice_push_sink::{Sink, SinkConfig};
//! let sink = Sink::start(SinkConfig::default()).await?;
//! let endpoint = format!("{}/wp/{}", sink.base_url(), "65a1b2c3d4e5f60718293a4b");
//! // ... deliver to `endpoint` ...
//! println!("{} accepted", sink.stats().accepted);
//! sink.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! # Layout
//!
//! - [`config`] — [`SinkConfig`] and its parts: protocol, misbehaviour bands, verification,
//!   latency.
//! - [`sink`] — [`Sink`]: start, query, shut down.
//! - `server` — accept loop and HTTP/1.1 + HTTP/2 connections (hyper-util auto).
//! - `tls` — self-signed certificate and ALPN for [`Protocol::Tls`].
//! - `service` — dispatch to admin endpoints and push-service kinds; shared state.
//! - [`fate`] — planned per-subscriber fates and the per-subscriber attempt table.
//! - [`stats`] — lock-free counters and their [`Stats`] snapshot.
//! - [`received`] — decrypted deliveries kept in verification mode.
//! - [`webpush`] — the Web Push kind: request handling, VAPID checks, RFC 8291 decryption.
//!
//! A new kind (APNs, FCM) is a new module beside [`webpush`] with its own `matches` and
//! `handle`, plus one line in the dispatcher.

pub mod config;
pub mod fate;
pub mod received;
mod server;
mod service;
pub mod sink;
pub mod stats;
mod tls;
pub mod webpush;

pub use config::{Behaviour, Latency, Protocol, SinkConfig, Verify};
pub use fate::{Fate, planned_fate};
pub use received::Received;
pub use sink::{Sink, SinkError};
pub use stats::{Stats, VerifyFailure};
