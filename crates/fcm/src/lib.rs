//! The FCM provider of pushservice: notifications to Android apps through Firebase Cloud
//! Messaging's HTTP v1 API (`POST /v1/projects/<project>/messages:send`), authenticated with
//! a Google service account.
//!
//! Why it is shaped this way:
//!
//! - **OAuth2 done here, not by a Google SDK.** A service account signs an RS256 assertion
//!   and trades it at its `token_uri` for an access token valid an hour (RFC 7523). That is
//!   one signature and one form POST; [`AccessTokens`] does it once per account per ~55
//!   minutes, shared by every concurrent delivery, with aws-lc-rs (already the crypto of the
//!   Web Push and APNs providers) instead of another dependency tree.
//! - **Tokens cached by key material**: [`AccessTokens`] keys accounts by a hash of their
//!   e-mail, private key and `token_uri`, so sites never share or poison each other's
//!   tokens; the token endpoint is `SENDER_FCM_TOKEN_URL` (Google's by default), and an
//!   account naming another is refused, never fetched from.
//! - **No mass unsubscribe from a misconfiguration**: only `UNREGISTERED` means gone; answers
//!   that also mean "wrong project or credentials" are `SuspectToken` / `Misconfigured`
//!   outcomes naming the setting (see [`classify`](mod@classify)).
//! - **One HTTP/2 connection, many streams**, from [`pushservice_provider::build_client`],
//!   with a slot per service account before a global one
//!   ([`pushservice_provider::RequestSlots`]).
//! - **One message per device.** FCM's batch endpoint is gone; v1 sends one message per
//!   request, and HTTP/2 multiplexing is how it is made fast.
//!
//! # Layout
//!
//! - [`account`] — [`ServiceAccount`]: the parsed JSON key file, and its signed assertion.
//! - [`oauth`] — [`AccessTokens`]: access tokens per account, fetched and cached.
//! - [`message`] — the v1 `message` JSON from a delivery.
//! - [`classify`](mod@classify) — FCM status and error code → delivery outcome.
//! - [`client`] — [`FcmClient::send`]: access token → POST → classify.

pub mod account;
pub mod classify;
pub mod client;
pub mod message;
pub mod oauth;

pub use account::{AccountError, GOOGLE_TOKEN_URI, ServiceAccount, credentials_from_file};
pub use classify::classify;
pub use client::{FCM_URL, FcmClient, FcmConfig, FcmRequest};
pub use message::{FcmMessage, build as build_message};
pub use oauth::AccessTokens;
