//! The Web Push provider of pushservice: RFC 8291 message encryption, RFC 8292 VAPID, and
//! RFC 8030 delivery over pooled HTTP/2, mapping every response to a
//! [`DeliveryOutcome`](pushservice_provider::DeliveryOutcome).
//!
//! # Why not the `web-push` crate
//!
//! Measured on this project's hardware, `web-push` costs about 450 µs of CPU per message: it
//! encrypts with OpenSSL through the `ece` crate, signs a new VAPID JWT for every message,
//! and does not use HTTP/2. The unavoidable work per message is one P-256 key generation and
//! one ECDH agreement (55–90 µs); everything else should be noise next to it. So this crate:
//!
//! - encrypts with `aws-lc-rs` into one exactly sized buffer ([`ece`]), ~60 µs per message;
//! - signs a VAPID JWT once per (site, push service origin) and reuses the header until it
//!   nears expiry ([`VapidCache`]), so signing disappears from the per-message cost;
//! - sends through one shared [`pushservice_provider::Http2Pool`]: HTTP/2 negotiated by ALPN
//!   over rustls (on aws-lc-rs, no OpenSSL at run time), several connections per push
//!   service opened as the streams of the open ones fill up (Google allows 100 a
//!   connection), size-capped response reads, and per push service a request template: the
//!   endpoint's prefix is checked and parsed once, a delivery only adds its path;
//! - connects only where the [`pushservice_provider::EndpointPolicy`] allows (public `https`
//!   endpoints by default, checked again on the resolved addresses).
//!
//! Correctness is pinned by tests: RFC 8291 Appendix A reproduced byte for byte (with its
//! intermediate keys), bodies decrypted by the independent OpenSSL-based `ece` crate, and JWTs
//! verified with RustCrypto's `p256`.
//!
//! # Layout
//!
//! - [`ece`] — `aes128gcm` encryption of one message for one subscription.
//! - [`vapid`] — a site's [`VapidKey`], JWT signing, and the [`VapidCache`] of signed headers.
//! - [`endpoint`] — the [`origin`] of a push endpoint (VAPID audience, concurrency key, and
//!   the only part of an endpoint that is logged) and `Topic` validation. Which endpoints may
//!   be reached at all is [`pushservice_provider::EndpointPolicy`].
//! - [`classify`](mod@classify) — push service status → delivery outcome.
//! - [`keys`] — decoding of base64(url) subscription keys (`p256dh`, `auth`).
//! - [`client`] — [`WebPushClient::send`]: endpoint policy → origin → VAPID → encrypt →
//!   request slot (per origin, then global: [`pushservice_provider::RequestSlots`]) → POST →
//!   classify.
//!
//! # Using it
//!
//! ```no_run
//! # async fn demo(p256dh: &str, auth: &str) -> Result<(), Box<dyn std::error::Error>> {
//! use pushservice_webpush::{WebPushClient, WebPushConfig, WebPushRequest, VapidKey};
//!
//! let client = WebPushClient::new(WebPushConfig::default())?; // once per process
//! let site_key = VapidKey::from_base64("BPub…", "priv…")?; // once per site, cached
//! let outcome = client
//!     .send(&WebPushRequest {
//!         endpoint: "https://fcm.googleapis.com/fcm/send/abc",
//!         p256dh: &pushservice_webpush::decode_p256dh(p256dh)?,
//!         auth: &pushservice_webpush::decode_auth(auth)?,
//!         payload: br#"{"title":"Hi"}"#,
//!         ttl: 86_400,
//!         urgency: pushservice_model::Urgency::Normal,
//!         topic: None,
//!         vapid_key: &site_key,
//!         subject: "mailto:ops@example.com",
//!         site_key: "5f1c…site id",
//!         withdrawn: None,
//!     })
//!     .await;
//! println!("{}", outcome.label());
//! # Ok(()) }
//! ```

pub mod classify;
pub mod client;
pub mod ece;
pub mod endpoint;
pub mod keys;
pub mod vapid;

pub use classify::classify;
pub use client::{ClientError, WebPushClient, WebPushConfig, WebPushRequest};
pub use ece::{EncryptError, MAX_PLAINTEXT, RECORD_SIZE, encrypt, encrypt_with};
pub use endpoint::{EndpointError, is_valid_topic, origin, origin_of};
pub use keys::{KeyDecodeError, decode_auth, decode_p256dh};
pub use vapid::{VapidCache, VapidError, VapidKey};
