//! Domain model of pushservice.
//!
//! The MongoDB documents are those of the original Node.js service (mongoose models), read as
//! they are and written so that service reads ours: field names are camelCase, ids are
//! ObjectIds, timestamps are BSON dates, and a subscriber's `pushEndPoint` is a *JSON string*
//! holding the browser's `PushSubscription`. Fields we add are optional so old documents load.
//!
//! # Layout
//!
//! - [`site`] — a website or app that owns subscribers, its VAPID keys and optional APNs/FCM
//!   credentials.
//! - [`push`] — one stored notification and its life cycle (`pending` → `processing` → `done`).
//! - [`subscriber`] — one browser or device subscription, and parsing of `pushEndPoint`.
//! - [`delivery`] — the per-subscriber delivery message on the `push` topic.
//! - [`outcome`] — the outcome record of a finished delivery on the outcome topic.
//! - [`message`] — the messages that travel through Kafka between `pushctl`, parser and sender.
//! - [`id`] — parsing of ids given by people (command line, Kafka keys) with clear errors.
//! - [`lenient`] — serde helpers that accept the number types mongoose happens to store.

pub mod delivery;
pub mod id;
pub mod lenient;
pub mod message;
pub mod outcome;
pub mod push;
pub mod site;
pub mod subscriber;

pub use bson::DateTime;
pub use bson::oid::ObjectId;
pub use delivery::{
    DELIVERY_VERSION, DeliveryEnvelope, DeliveryMessage, NotificationPayload, PayloadFields,
    Target, TargetRef, Urgency,
};
pub use id::{InvalidId, parse_object_id};
pub use message::RawPushMessage;
pub use outcome::{OUTCOME_VERSION, OutcomeRecord, OutcomeResult};
pub use push::{
    Audience, FanoutProgress, Notification, NotificationAction, Priority, Push, PushStatus,
    ReasonCount,
};
pub use site::{ApiKey, ApnsCredentials, FcmCredentials, Site};
pub use subscriber::{Platform, PushSubscription, Subscriber, SubscriptionError};
