//! The Web Push client: the pooled HTTP/2 client, the VAPID cache and the request slots, and
//! [`WebPushClient::send`], which turns one subscription and payload into a
//! [`DeliveryOutcome`].
//!
//! One [`Http2Pool`] is shared by every task: several HTTP/2 connections per push service,
//! opened as the streams of the existing ones fill up, within each server's stream limit
//! (ALPN on TLS picks h2; endpoints that only speak HTTP/1.1 get keep-alive HTTP/1.1). TLS is
//! rustls on aws-lc-rs, verifying against the platform's roots plus any configured extra
//! roots.
//!
//! Endpoints come from browsers, so each is checked against the [`EndpointPolicy`] before
//! anything else (and its host's addresses again when the connection is made): a refused one
//! is a permanent failure and no connection is attempted. The verdict depends only on the
//! endpoint's `scheme://authority` part, so it is kept per such prefix with the origin and
//! its request template: a delivery to a known push service parses no URL, only checks its
//! path.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, HeaderName, HeaderValue};
use http::uri::PathAndQuery;
use http::{Method, Request};
use pushservice_model::Urgency;
pub use pushservice_provider::ClientError;
use pushservice_provider::{
    DeliveryOutcome, EndpointPolicy, Http2Pool, HttpConfig, Origin, PoolConfig, RequestSlots,
    path_of,
};

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
    /// Requests in flight per push service origin at most (default 1024), when the client
    /// makes its own [`RequestSlots`]. What a push service takes at once is otherwise its
    /// connections × the streams it allows on each (see `pool`).
    pub per_origin_concurrency: usize,
    /// HTTP/2 connections per push service origin at most.
    pub pool: PoolConfig,
    /// Lifetime of VAPID JWTs (default 12 h, at most 24 h).
    pub vapid_validity: Duration,
}

impl Default for WebPushConfig {
    fn default() -> Self {
        WebPushConfig {
            http: HttpConfig::default(),
            concurrency: 2048,
            per_origin_concurrency: 1024,
            pool: PoolConfig::default(),
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
    http: Http2Pool,
    vapid: VapidCache,
    /// Request slots keyed by origin; shared with the other providers via `with_slots`.
    slots: Arc<RequestSlots>,
    policy: EndpointPolicy,
    /// Endpoint prefixes (`scheme://authority` as written) the policy allowed, with their
    /// origin; bounded by [`MAX_PREFIXES`].
    prefixes: RwLock<HashMap<Box<str>, Arc<KnownOrigin>>>,
}

/// More distinct push service prefixes than any audience has (a handful of services).
const MAX_PREFIXES: usize = 4096;

/// A push service origin the endpoint policy allowed.
#[derive(Debug)]
struct KnownOrigin {
    /// Where requests go.
    origin: Origin,
    /// `scheme://host[:port]`: the VAPID audience, the slot key, what logs show.
    name: String,
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
            http: Http2Pool::new(
                &config.http,
                config.pool,
                concat!("pushservice-webpush/", env!("CARGO_PKG_VERSION")),
            )?,
            vapid: VapidCache::new(config.vapid_validity),
            slots: Arc::new(slots),
            policy: config.http.endpoint_policy,
            prefixes: RwLock::new(HashMap::new()),
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
        // 1-2. The endpoint policy (https, an allowed host, no private address literal) and
        //      the origin: the VAPID audience, the concurrency key, and all we ever log.
        let (known, path) = match self.resolve(request.endpoint) {
            Ok(found) => found,
            Err((what, outcome)) => return self.finish(what, started, outcome),
        };
        let origin = known.name.as_str();
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
        let mut http_request = Request::new(Bytes::from(body));
        *http_request.method_mut() = Method::POST;
        *http_request.uri_mut() = known.origin.uri(path);
        let headers = http_request.headers_mut();
        headers.insert(
            HeaderName::from_static("ttl"),
            HeaderValue::from(request.ttl),
        );
        headers.insert(
            HeaderName::from_static("urgency"),
            HeaderValue::from_static(request.urgency.as_str()),
        );
        headers.insert(CONTENT_ENCODING, HeaderValue::from_static("aes128gcm"));
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        headers.insert(AUTHORIZATION, authorization);
        match request.topic {
            Some(topic) if is_valid_topic(topic) => {
                if let Ok(topic) = HeaderValue::from_str(topic) {
                    headers.insert(HeaderName::from_static("topic"), topic);
                }
            }
            Some(topic) => tracing::debug!(
                origin,
                topic_len = topic.len(),
                "dropping invalid Topic (RFC 8030: at most 32 base64url characters)"
            ),
            None => {}
        }
        // 7. Read the (capped) response and classify it; a refused address is permanent.
        //    Withdrawn while it waits for a stream, it is not sent; once sent, it finishes.
        let outcome = match self
            .http
            .send(&known.origin, http_request, request.withdrawn)
            .await
        {
            Ok(answer) => classify(answer.status, answer.retry_after.as_deref(), &answer.body),
            Err(err) => err.outcome(),
        };
        self.finish(origin, started, outcome)
    }

    /// The origin of `endpoint` (checked against the policy) and its path; the error names
    /// what to log instead of an origin, and the permanent outcome.
    #[allow(clippy::type_complexity)]
    fn resolve(
        &self,
        endpoint: &str,
    ) -> Result<(Arc<KnownOrigin>, PathAndQuery), (&'static str, DeliveryOutcome)> {
        if let Some((prefix, path)) = split_endpoint(endpoint) {
            let known = self
                .prefixes
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .get(prefix)
                .cloned();
            if let Some(known) = known {
                return match path_of(path) {
                    Ok(path) => Ok((known, path)),
                    Err(e) => Err((
                        "(invalid endpoint)",
                        DeliveryOutcome::permanent(format!("push endpoint path is not valid: {e}")),
                    )),
                };
            }
        }
        let url = self.policy.check_url(endpoint).map_err(|refused| {
            (
                "(refused endpoint)",
                DeliveryOutcome::permanent(refused.to_string()),
            )
        })?;
        let name = endpoint::origin_of(&url).map_err(|e| {
            (
                "(invalid endpoint)",
                DeliveryOutcome::permanent(e.to_string()),
            )
        })?;
        let origin = Origin::new(&url).map_err(|refused| {
            (
                "(refused endpoint)",
                DeliveryOutcome::permanent(refused.to_string()),
            )
        })?;
        let mut target = url.path().to_owned();
        if let Some(query) = url.query() {
            target.push('?');
            target.push_str(query);
        }
        let path = path_of(&target).map_err(|e| {
            (
                "(invalid endpoint)",
                DeliveryOutcome::permanent(format!("push endpoint path is not valid: {e}")),
            )
        })?;
        let known = Arc::new(KnownOrigin { origin, name });
        if let Some((prefix, _)) = split_endpoint(endpoint) {
            let mut prefixes = self
                .prefixes
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            if prefixes.len() >= MAX_PREFIXES {
                prefixes.clear();
            }
            prefixes.insert(prefix.into(), Arc::clone(&known));
        }
        Ok((known, path))
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

/// `(scheme://authority, path)` of an endpoint written plainly (lowercase `https://` or
/// `http://`, a path, no user information, no fragment, no backslash); `None` for anything
/// else, which then goes through the URL parser. The policy's verdict on an endpoint depends
/// on its scheme and authority alone, so it can be remembered per prefix.
fn split_endpoint(endpoint: &str) -> Option<(&str, &str)> {
    let rest = endpoint
        .strip_prefix("https://")
        .or_else(|| endpoint.strip_prefix("http://"))?;
    let authority_len = rest.find(['/', '?', '#', '\\'])?;
    let authority = &rest[..authority_len];
    if authority.is_empty() || authority.contains('@') {
        return None;
    }
    let split = endpoint.len() - rest.len() + authority_len;
    let (prefix, path) = endpoint.split_at(split);
    if !path.starts_with('/') || path.contains(['#', '\\']) {
        return None;
    }
    Some((prefix, path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_endpoints_split_at_their_path_and_odd_ones_go_to_the_parser() {
        assert_eq!(
            split_endpoint("https://fcm.googleapis.com/fcm/send/abc"),
            Some(("https://fcm.googleapis.com", "/fcm/send/abc"))
        );
        assert_eq!(
            split_endpoint("http://127.0.0.1:9090/wp/x?y=1"),
            Some(("http://127.0.0.1:9090", "/wp/x?y=1"))
        );
        for odd in [
            "HTTPS://Host/x",
            "https://u@host/x",
            "https://host?x",
            "https://host/x#frag",
            "https://host\\x",
            "https://host",
            "https:///x",
            "ftp://host/x",
        ] {
            assert_eq!(split_endpoint(odd), None, "{odd}");
        }
    }
}
