//! MongoDB store of pushservice.
//!
//! Uses the official `mongodb` driver against the original Node.js service's collections
//! `sites`, `pushes` and `subscribers`, so a database that service wrote works unchanged.
//! Documents are read as raw BSON and decoded by us, so a document that does not fit the model
//! is reported with its collection and `_id` instead of a bare driver error.
//!
//! # Layout
//!
//! - [`store`] — connecting (bounded timeouts, a ping that names the address tried) and indexes.
//! - [`sites`], [`pushes`], [`subscribers`] — the operations on each collection.
//! - [`events`] — service-worker events (delivered, click, close), counted once each.
//! - [`listing`] — a site's pushes, newest first, by pages.
//! - [`realtime`] — realtime settings of sites, channel history, its epoch and progress.
//! - [`registration`] — registering subscribers from the API, idempotently.
//! - [`audience`] — streaming a site's subscribed audience for the parser.
//! - [`breaker_evidence`] — each sender's recent breaker evidence, shared with the fleet.
//! - [`delivery_stats`] — per-partition outcome counters (applied idempotently) and the push's totals.
//! - [`error`] — [`StoreError`].

pub mod audience;
pub mod breaker_evidence;
pub mod delivery_stats;
pub mod error;
pub mod events;
pub mod listing;
pub mod pushes;
pub mod realtime;
pub mod registration;
pub mod sites;
pub mod store;
pub mod subscribers;

pub use audience::{AudienceMember, AudienceRow};
pub use breaker_evidence::{BreakerEvidence, SENDER_BREAKER_EVIDENCE};
pub use delivery_stats::{DELIVERY_STATS, DeliveryCounts, DeliverySummary, PartitionCounts};
pub use error::StoreError;
pub use events::{Event, EventCounts, EventType, PUSH_EVENT_STATS, PUSH_EVENTS};
pub use pushes::Transition;
pub use realtime::{
    AckCounts, ChannelPresence, HistoryEntry, PendingFallback, PeriodCounts, PresenceCount,
    PresenceSnapshot, RealtimeSettings,
};
pub use registration::{Registered, Registration, SUBSCRIBER_CLAIMS, Target};
pub use sites::SiteChanges;
pub use store::{PUSHES, SITES, SUBSCRIBERS, Store};
