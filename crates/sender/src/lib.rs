//! The sender daemon: delivers the per-subscriber messages of the `push` topic.
//!
//! Any number of senders share the push topic's 200 partitions, and the retry topics', in
//! one consumer group (`SenderGroup`). Each makes many delivery attempts concurrently
//! through the provider of each message's platform (Web Push, APNs, FCM; one HTTP/2 pool
//! each, with up to `SENDER_ORIGIN_CONNECTIONS` connections per push service) and acts on every answer by writing records to Kafka: an outcome (accepted,
//! gone, failed, canceled), a retry on a retry topic, a dead letter. Those records and the offset
//! commit of the message go into one transaction, so a delivery's outcome is final exactly
//! when its message is done, and nothing waits in memory or on MongoDB. An outcome recorder
//! in every sender applies the outcome topic to MongoDB (unsubscribes, counters) in
//! batches, idempotently.
//!
//! # Layout
//!
//! - [`config`] — flags and environment, validated into [`SenderConfig`].
//! - [`daemon`] — the consumer loop: pausing for backpressure and for retries not due,
//!   rebalances, shutdown.
//! - [`deliver`] — one attempt, from message to the records its outcome produces.
//! - [`breaker`] — per-site breakers: no mass unsubscribe from a misconfiguration.
//! - [`canceled`] — which pushes are canceled (their deliveries are dropped), refreshed from
//!   MongoDB in the background.
//! - [`retry`] — the time budget, backoff with jitter, `Retry-After`, retry tiers.
//! - [`records`] — outcome, retry and dead-letter records.
//! - [`tracker`] — per-partition release of finished messages in offset order.
//! - [`committer`] — the transactions that write records and commit offsets.
//! - [`recorder`] — the outcome topic applied to MongoDB.
//! - [`credentials`] — site credentials (VAPID, APNs key, FCM service account) from MongoDB,
//!   parsed once and cached.
//! - [`payloads`] — APNs and FCM notification payloads, read once per push.
//! - [`metrics`] — attempts, retries, dead letters, pending messages.

pub mod breaker;
pub mod canceled;
pub mod committer;
pub mod config;
pub mod credentials;
pub mod daemon;
pub mod deliver;
pub mod metrics;
pub mod payloads;
pub mod recorder;
pub mod records;
pub mod retry;
pub mod tracker;

pub use config::{SenderArgs, SenderConfig};
pub use daemon::run;
