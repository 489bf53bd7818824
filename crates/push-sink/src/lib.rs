//! A push-service simulator: it stands in for the Web Push services (FCM, Mozilla, Apple web
//! push endpoints), Apple's APNs provider API, FCM HTTP v1 and the Google OAuth2 token
//! endpoint in tests, benchmarks and load tests, so senders can be exercised at full speed
//! without spamming real services.
//!
//! It answers like a push service: 201 (Web Push) or 200 (APNs, FCM) for accepted messages,
//! and, for planned subscribers or device tokens, gone, throttled (with `Retry-After`),
//! failed, or a reset, once or always, in each service's own wording ([`planned_fate`] tells
//! a test in advance who gets what). It counts everything ([`Stats`], also at
//! `GET /__sink/stats`), in total and per kind. In verification mode it checks VAPID and the
//! RFC 8030 headers and decrypts every Web Push payload with the subscriber's seeded keys,
//! checks APNs provider tokens, headers and payloads against trusted keys ([`ApnsKey`]), and
//! FCM access tokens (issued by its own token endpoint to trusted service accounts,
//! [`FcmAccount`]) and messages, keeping what each subscriber received ([`Sink::received`],
//! [`Sink::received_mobile`]); counting mode skips all that and stays cheap enough for tens of
//! thousands of requests a second on two cores.
//!
//! Endpoints, under [`Sink::base_url`]: Web Push `/wp/<24-hex id>` (any prefix), APNs
//! `/3/device/<hex token>`, FCM `/v1/projects/<project>/messages:send`, OAuth2 `/token` (the
//! `token_uri` of test service accounts). Admin: `GET /__sink/stats`, `POST /__sink/reset`,
//! `POST`/`GET`/`DELETE /__sink/outage` (an [`Outage`]: every push request answered 503, or
//! another status, with `Retry-After`, until it is over or ended).
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
//!   latency (fixed, uniform or long-tailed, per kind), stream limits per kind, GOAWAY.
//! - [`credentials`] — trusted APNs keys and Google service accounts, from `.p8` and
//!   service-account JSON files.
//! - [`sink`] — [`Sink`]: start, query, shut down.
//! - `server` — accept loop and HTTP/1.1 + HTTP/2 connections (hyper-util auto), GOAWAY
//!   after a number of requests.
//! - `streams` — per-kind HTTP/2 stream limits that change while a connection lives (APNs'
//!   one-stream start), spoken at the frame level under hyper.
//! - `tls` — self-signed certificate and ALPN for [`Protocol::Tls`].
//! - `service` — dispatch to admin endpoints and push-service kinds; shared state.
//! - [`fate`] — planned per-subscriber fates and the per-subscriber attempt table.
//! - [`outage`] — a push service that is down for a while, started and ended at run time.
//! - [`stats`] — lock-free counters and their [`Stats`] snapshot.
//! - [`received`] — deliveries kept in verification mode (Web Push decrypted; APNs, FCM).
//! - `body` — reading request bodies under a size limit.
//! - `jwt` — splitting and decoding JWTs for APNs and OAuth.
//! - [`webpush`] — the Web Push kind: request handling, VAPID checks, RFC 8291 decryption.
//! - [`apns`] — the APNs kind: request handling, provider-token (ES256 JWT) checks, header
//!   and payload checks.
//! - [`fcm`] — the FCM HTTP v1 kind: request handling, access-token and message checks; and
//!   [`fcm::oauth`], the OAuth2 token endpoint issuing those access tokens.
//!
//! A new kind is a new module beside [`webpush`] with its own `matches` and `handle`, plus
//! one line in the dispatcher.

pub mod apns;
mod body;
pub mod config;
pub mod credentials;
pub mod fate;
pub mod fcm;
mod jwt;
pub mod outage;
pub mod received;
mod server;
mod service;
pub mod sink;
pub mod stats;
mod streams;
mod tls;
pub mod webpush;

pub use config::{
    ApnsKey, Behaviour, FcmAccount, KindLatency, Latency, Protocol, SinkConfig, StreamRule,
    Streams, Verify,
};
pub use fate::{Fate, planned_fate};
pub use outage::{Outage, OutageStatus, PushKind};
pub use received::{MobileKind, MobileReceived, Received};
pub use sink::{Sink, SinkError};
pub use stats::{KindStats, Stats, VerifyFailure};
