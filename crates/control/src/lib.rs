//! What `pushctl` and the HTTP API (`pushapi`) do alike, implemented once: both front ends
//! call these functions and translate [`ControlError`] into an exit code or an HTTP status.
//!
//! # Layout
//!
//! - [`send`] — [`PushTrigger`]: move a push to `processing` and publish its `raw-push`.
//! - [`sites`] — new sites (fresh VAPID keys), their subject and allowed origins, APNs and
//!   FCM credentials checked as the senders will use them.
//! - [`api_keys`] — site API keys: generated, shown once, stored as SHA-256, verified in
//!   constant time.
//! - [`realtime`] — [`RealtimePublisher`] (messages on the realtime topic), connection tokens,
//!   realtime secrets.
//! - [`dlq`] — dead letters: read, counted by push and reason, replayed at most once each.
//! - [`stats`] — the fleet at a glance: pushes in progress, consumer lag, recent outcomes by
//!   platform and reason, dead letters (`pushctl stats`).
//! - [`config_check`] — topics, partition counts and every site's credentials checked,
//!   every problem reported with the setting or field to fix (`pushctl config check`).
//! - [`error`] — [`ControlError`].

pub mod api_keys;
pub mod config_check;
pub mod dlq;
pub mod error;
pub mod realtime;
pub mod send;
pub mod sites;
pub mod stats;

pub use api_keys::{ApiKeyError, NewApiKey, PresentedKey};
pub use error::ControlError;
pub use realtime::{PublishedMessage, RealtimePublisher};
pub use send::{Published, PushTrigger};
