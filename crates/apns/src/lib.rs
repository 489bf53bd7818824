//! The APNs provider of pushservice: notifications to iOS apps through Apple's provider API
//! (HTTP/2, `POST /3/device/<token>`), authenticated with a team's `.p8` signing key.
//!
//! Why it is shaped this way:
//!
//! - **Token-based authentication only.** One ES256 JWT per signing key serves every app of
//!   the team and never expires with a certificate; Apple asks providers to reuse a token for
//!   20–60 minutes, so [`TokenCache`] signs once per key every 50 minutes and APNs'
//!   `ExpiredProviderToken` answer drops the token at once. Tokens are cached by a hash of
//!   the key material, so sites never share or poison each other's tokens. (Certificate-based
//!   authentication is not supported; a site stores a `.p8` key.)
//! - **Answers that may mean "the site is misconfigured"** (`BadDeviceToken`,
//!   `DeviceTokenNotForTopic`, `TopicDisallowed`, a key refused after re-signing) are
//!   `SuspectToken` / `Misconfigured` outcomes naming the setting to check, never an
//!   unsubscribe by themselves; see [`classify`](mod@classify).
//! - **Fair sharing**: requests take a slot per (key, host) before a global one
//!   ([`pushservice_provider::RequestSlots`]).
//! - **One HTTP/2 connection, many streams**: the shared client from
//!   [`pushservice_provider::build_client`], like the Web Push provider.
//! - **The payload is built per push, not per device**: [`payload::build`] turns the
//!   delivery's payload into Apple's `aps` JSON; the sender caches nothing more because the
//!   bytes are small and a push has one payload.
//!
//! # Layout
//!
//! - [`token`] — [`ApnsKey`] (a parsed `.p8` key) and the [`TokenCache`] of signed JWTs.
//! - [`payload`] — the `aps` dictionary and request headers from a delivery.
//! - [`classify`](mod@classify) — APNs status and `reason` → delivery outcome.
//! - [`site`] — a site's APNs credentials from the user's `.p8` file, checked.
//! - [`client`] — [`ApnsClient::send`]: token → JWT → POST → classify.

pub mod classify;
pub mod client;
pub mod payload;
pub mod site;
pub mod token;

pub use classify::classify;
pub use client::{ApnsClient, ApnsConfig, ApnsRequest, PRODUCTION_URL, SANDBOX_URL};
pub use payload::{ApnsPayload, build as build_payload};
pub use pushservice_provider::key_id_from_file_name;
pub use site::{CredentialError, CredentialFileError, credentials, credentials_from_file};
pub use token::{ApnsKey, KeyError, Refusal, TokenCache};
