//! Seed data for pushservice: the original `seed/generateSite.js`, `generatePush.js` and
//! `generateSubscribers.js`.
//!
//! Generated subscribers are real: each has its own P-256 key pair and 16-byte auth secret, so
//! everything downstream (encryption, a decrypting push-service simulator) does real work. The
//! private keys are not stored anywhere; they are *derived* from a key seed and the
//! subscriber's id ([`keys::subscriber_keys`]), so a test or simulator that knows the seed can
//! decrypt what a subscriber receives without the database holding secrets the original
//! service never had.
//!
//! We use `aws-lc-rs` for the elliptic-curve work: it is the fastest P-256 available to Rust
//! (and the library the sender encrypts with), which matters when generating a million keys.
//!
//! # Layout
//!
//! - [`keys`] — VAPID key pairs for sites, derived key material for subscribers.
//! - [`credentials`] — test APNs `.p8` keys and FCM service-account files, for simulators.
//! - [`generate`] — building sites, pushes and subscriber batches.
//! - [`subscribers`] — the bounded-memory bulk insert pipeline with progress reporting.

pub mod credentials;
pub mod generate;
pub mod keys;
pub mod subscribers;

pub use credentials::{ApnsTestKey, apns_test_key, fcm_test_service_account};
pub use generate::{PushTemplate, device_token, new_push, new_site, subscriber_batch};
pub use keys::{SubscriberKeys, VapidKeys, generate_vapid_keys, subscriber_keys};
pub use subscribers::{SeedReport, SubscriberSeed, seed_subscribers};
