//! The sender daemon: delivers the per-subscriber messages of the `push` topic.
//!
//! Any number of senders share the topic's 200 partitions in one consumer group
//! (`SenderGroup`). Each delivers many messages concurrently through the provider of each
//! message's platform (Web Push, APNs, FCM; one pooled HTTP/2 client each), acts on every
//! outcome (count, unsubscribe gone subscriptions, retry what is transient, dead-letter what
//! failed for good) and commits an offset only when every message before it in its partition
//! has a final outcome: at least once, end to end.
//!
//! # Layout
//!
//! - [`config`] — flags and environment, validated into [`SenderConfig`].
//! - [`daemon`] — the consumer loop, rebalances and shutdown.
//! - [`deliver`] — one delivery from message to final outcome, with retries.
//! - [`tracker`] — per-partition committable offsets.
//! - [`metrics`] — attempts, retries, dead letters, pending messages.
//! - [`retry`] — exponential backoff with full jitter, `Retry-After` as a floor.
//! - [`credentials`] — site credentials (VAPID, APNs key, FCM service account) from MongoDB,
//!   parsed once and cached.
//! - [`counters`] — per-push counters flushed with `$inc`.
//! - [`unsubscribe`] — batched `subscribed: false` writes.
//! - [`deadletter`] — the dead-letter topic.

pub mod config;
pub mod counters;
pub mod credentials;
pub mod daemon;
pub mod deadletter;
pub mod deliver;
pub mod metrics;
pub mod retry;
pub mod tracker;
pub mod unsubscribe;

pub use config::{SenderArgs, SenderConfig};
pub use daemon::run;
