//! The realtime protocol's shared parts (see `docs/realtime.md`): what the gateway, `pushapi`,
//! `pushctl` and the load tool must agree on.
//!
//! # Layout
//!
//! - [`channel`] — channel names, the user's own channel, and what a token's grants allow.
//! - [`record`] — the `realtime` topic's record: key and JSON value.
//! - [`token`] — connection tokens: HS256 JWTs signed with a site's realtime secret.

pub mod channel;
pub mod record;
pub mod token;

pub use channel::{ChannelError, Grants, user_channel, validate_channel};
pub use record::{Fallback, RealtimeRecord, message_id, partition_of, record_key};
pub use token::{Claims, TokenError, mint, new_secret, unverified_site, verify};
