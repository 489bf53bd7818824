//! The Web Push client: one pooled HTTP/2 client, the VAPID cache and the request slots, and
//! [`WebPushClient::send`], which turns one subscription and payload into a
//! [`DeliveryOutcome`].
//!
//! One `reqwest::Client` is shared by every task: its pool keeps one HTTP/2 connection per push
//! service (ALPN on TLS picks h2; endpoints that only speak HTTP/1.1 get keep-alive HTTP/1.1),
//! and all requests to that service are streams on it. TLS is rustls on aws-lc-rs, verifying
//! against the platform's roots plus any configured extra roots.
//!
//! Endpoints come from browsers, so each is checked against the [`EndpointPolicy`] before
//! anything else (and its host's addresses again when the connection is made): a refused one
//! is a permanent failure and no connection is attempted.

use std::sync::Arc;
use std::time::{Duration, Instant};

use pushservice_model::Urgency;
pub use pushservice_provider::ClientError;
use pushservice_provider::{
    DeliveryOutcome, EndpointPolicy, HttpConfig, RequestSlots, build_client, outcome_from_error,
    read_answer,
};
use reqwest::header::{AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, HeaderName, HeaderValue};

use crate::classify::classify;
use crate::ece;
use crate::endpoint::{self, is_valid_topic};
use crate::vapid::{VapidCache, VapidKey};

/// How the client talks to push services. `Default` suits production.
#[derive(Debug, Clone)]
pub struct WebPushConfig {
    /// Timeouts, response cap, pool, extra roots, h2c, endpoint policy: what every provider's
    /// client shares.
    pub http: HttpConfig,
    /// Requests in flight at once, all origins together (default 512), when the client makes
    /// its own [`RequestSlots`] (see [`WebPushClient::with_slots`]).
    pub concurrency: usize,
    /// Requests in flight per push service origin (default 256). HTTP/2 servers also cap
    /// streams per connection (often 100); requests beyond that wait inside the client.
    pub per_origin_concurrency: usize,
    /// Lifetime of VAPID JWTs (default 12 h, at most 24 h).
    pub vapid_validity: Duration,
}

impl Default for WebPushConfig {
    fn default() -> Self {
        WebPushConfig {
            http: HttpConfig::default(),
            concurrency: 512,
            per_origin_concurrency: 256,
            vapid_validity: Duration::from_secs(12 * 3600),
        }
    }
}

/// One delivery: where, to whom (the subscription's keys), what, and as which site.
#[derive(Clone, Copy)]
pub struct WebPushRequest<'a> {
    /// The subscription's push endpoint (a capability: never logged whole).
    pub endpoint: &'a str,
    /// The subscription's `p256dh` key (see [`crate::decode_p256dh`]).
    pub p256dh: &'a [u8; 65],
    /// The subscription's `auth` secret (see [`crate::decode_auth`]).
    pub auth: &'a [u8; 16],
    /// Plaintext for the service worker, at most [`ece::MAX_PLAINTEXT`] bytes.
    pub payload: &'a [u8],
    /// Seconds the push service may hold the message for an offline browser.
    pub ttl: u32,
    /// RFC 8030 `Urgency`.
    pub urgency: Urgency,
    /// RFC 8030 `Topic`; an invalid one is dropped (logged at debug), not fatal.
    pub topic: Option<&'a str>,
    /// The site's VAPID key pair.
    pub vapid_key: &'a VapidKey,
    /// The site's VAPID contact, `mailto:` or `https://`.
    pub subject: &'a str,
    /// Cache key for the site's signed VAPID headers: the site id.
    pub site_key: &'a str,
    /// Canceled when the delivery is no longer wanted (its push was canceled): the request
    /// is then not sent if it has not been yet (see `RequestSlots::acquire_unless`).
    pub withdrawn: Option<&'a pushservice_provider::CancellationToken>,
}

impl std::fmt::Debug for WebPushRequest<'_> {
    // The endpoint is a capability and the keys are secrets: show the origin and sizes only.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebPushRequest")
            .field(
                "origin",
                &endpoint::origin(self.endpoint)
                    .unwrap_or_else(|_| "(invalid endpoint)".to_owned()),
            )
            .field("payload_len", &self.payload.len())
            .field("ttl", &self.ttl)
            .field("urgency", &self.urgency)
            .field("topic", &self.topic)
            .field("vapid_key", &self.vapid_key)
            .field("subject", &self.subject)
            .field("site_key", &self.site_key)
            .finish_non_exhaustive()
    }
}

/// Sends Web Push messages. Build one per process and share it (`Send + Sync`; methods take
/// `&self`).
#[derive(Debug)]
pub struct WebPushClient {
    http: reqwest::Client,
    vapid: VapidCache,
    /// Request slots keyed by origin; shared with the other providers via `with_slots`.
    slots: Arc<RequestSlots>,
    policy: EndpointPolicy,
    max_response_bytes: usize,
}

impl WebPushClient {
    /// Builds the client from `config`, loading the platform's TLS roots plus the extra ones.
    pub fn new(config: WebPushConfig) -> Result<Self, ClientError> {
        if config.per_origin_concurrency == 0 {
            return Err(ClientError::InvalidConfig(
                "per_origin_concurrency must be at least 1",
            ));
        }
        if config.concurrency == 0 {
            return Err(ClientError::InvalidConfig("concurrency must be at least 1"));
        }
        let slots = RequestSlots::new(config.concurrency, config.per_origin_concurrency)
            .map_err(|_| ClientError::InvalidConfig("concurrency must be at least 1"))?;
        Ok(WebPushClient {
            http: build_client(
                &config.http,
                concat!("pushservice-webpush/", env!("CARGO_PKG_VERSION")),
            )?,
            vapid: VapidCache::new(config.vapid_validity),
            slots: Arc::new(slots),
            policy: config.http.endpoint_policy,
            max_response_bytes: config.http.max_response_bytes,
        })
    }

    /// Takes request slots from `slots` (shared with the APNs and FCM clients, so one global
    /// bound covers all three) instead of the client's own; the per-key bound is then the
    /// one `slots` was made with, keyed by push service origin.
    pub fn with_slots(mut self, slots: Arc<RequestSlots>) -> Self {
        self.slots = slots;
        self
    }

    /// The client's VAPID header cache (shared with any other use of the same sites' keys).
    pub fn vapid_cache(&self) -> &VapidCache {
        &self.vapid
    }

    /// Delivers one message and says what became of it. Never panics and never returns an
    /// error: every failure is an outcome the sender acts on.
    pub async fn send(&self, request: &WebPushRequest<'_>) -> DeliveryOutcome {
        let started = Instant::now();
        // 1. The endpoint policy: https, an allowed host, no private address literal.
        let url = match self.policy.check_url(request.endpoint) {
            Ok(url) => url,
            Err(refused) => {
                return self.finish(
                    "(refused endpoint)",
                    started,
                    DeliveryOutcome::permanent(refused.to_string()),
                );
            }
        };
        // 2. Origin: the VAPID audience, the concurrency key, and all we ever log.
        let origin = match endpoint::origin_of(&url) {
            Ok(origin) => origin,
            Err(err) => {
                return self.finish(
                    "(invalid endpoint)",
                    started,
                    DeliveryOutcome::permanent(err.to_string()),
                );
            }
        };
        let origin = origin.as_str();
        // 3. The site's signed VAPID header for this origin (cached, rarely signed).
        let authorization = match self.vapid.authorization(
            request.site_key,
            request.vapid_key,
            request.subject,
            origin,
        ) {
            Ok(header) => header,
            Err(err) => {
                return self.finish(origin, started, DeliveryOutcome::permanent(err.to_string()));
            }
        };
        // 4. A slot of this origin, then a global one, held until the response is read.
        //    Taken before encrypting: a delivery deferred because its push service is slow
        //    must not have cost the ~60 µs of crypto (it comes back and pays it once).
        let _slot = match self.slots.acquire_unless(origin, request.withdrawn).await {
            Ok(slot) => slot,
            Err(e) => return DeliveryOutcome::from_slot_error(origin, e),
        };
        // 5. Encrypt for this subscriber: the ~60 µs of crypto a message costs.
        let body = match ece::encrypt(request.p256dh, request.auth, request.payload) {
            Ok(body) => body,
            Err(err) => {
                return self.finish(origin, started, DeliveryOutcome::permanent(err.to_string()));
            }
        };
        // 6. POST it.
        let mut http_request = self
            .http
            .post(url)
            .header(HeaderName::from_static("ttl"), request.ttl)
            .header(
                HeaderName::from_static("urgency"),
                HeaderValue::from_static(request.urgency.as_str()),
            )
            .header(CONTENT_ENCODING, HeaderValue::from_static("aes128gcm"))
            .header(
                CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            )
            .header(AUTHORIZATION, authorization)
            .body(body);
        match request.topic {
            Some(topic) if is_valid_topic(topic) => {
                http_request = http_request.header(HeaderName::from_static("topic"), topic)
            }
            Some(topic) => tracing::debug!(
                origin,
                topic_len = topic.len(),
                "dropping invalid Topic (RFC 8030: at most 32 base64url characters)"
            ),
            None => {}
        }
        // 7. Read the (capped) response and classify it; a refused address is permanent.
        let outcome = match http_request.send().await {
            Ok(response) => self.read_response(origin, response).await,
            Err(err) => outcome_from_error(origin, err),
        };
        self.finish(origin, started, outcome)
    }

    async fn read_response(&self, origin: &str, response: reqwest::Response) -> DeliveryOutcome {
        let answer = read_answer(origin, response, self.max_response_bytes).await;
        classify(answer.status, answer.retry_after.as_deref(), &answer.body)
    }

    fn finish(&self, origin: &str, started: Instant, outcome: DeliveryOutcome) -> DeliveryOutcome {
        let elapsed_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        match &outcome {
            DeliveryOutcome::Accepted => {
                tracing::trace!(origin, elapsed_us, outcome = "accepted", "web push sent");
            }
            DeliveryOutcome::SubscriptionGone { status } => {
                tracing::debug!(
                    origin,
                    elapsed_us,
                    status,
                    outcome = "gone",
                    "web push sent"
                );
            }
            DeliveryOutcome::Permanent { status, reason } => {
                tracing::debug!(origin, elapsed_us, ?status, %reason, outcome = "permanent", "web push failed");
            }
            DeliveryOutcome::Deferred { reason } => {
                tracing::debug!(origin, elapsed_us, %reason, outcome = "deferred", "web push not sent");
            }
            DeliveryOutcome::Withdrawn => {
                tracing::trace!(
                    origin,
                    elapsed_us,
                    outcome = "withdrawn",
                    "web push not sent"
                );
            }
            DeliveryOutcome::SuspectToken { status, reason, .. }
            | DeliveryOutcome::Misconfigured { status, reason, .. } => {
                tracing::debug!(origin, elapsed_us, status, %reason, outcome = outcome.label(), "web push failed");
            }
            DeliveryOutcome::Transient {
                status,
                retry_after,
                reason,
            } => {
                tracing::debug!(origin, elapsed_us, ?status, ?retry_after, %reason, outcome = "transient", "web push failed");
            }
        }
        outcome
    }
}
