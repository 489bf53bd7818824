//! The APNs client: the pooled HTTP/2 client, the provider-token cache and the request
//! slots, and [`ApnsClient::send`], which turns one device token and payload into a
//! [`DeliveryOutcome`].
//!
//! APNs allows one stream on a new connection until a request on it succeeds, then many
//! (1,000 today): the pool ([`Http2Pool`]) waits for that first answer instead of opening
//! more connections, then spreads requests over the widened connection and, when its
//! streams fill up, over new ones.
//!
//! Requests take a slot keyed by (signing key, APNs host) before a global one, so one site's
//! slow or throttled traffic fills only its own share. The APNs host comes from
//! configuration, checked against the endpoint policy when the client is built (and its
//! addresses again at connection time).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, HeaderName, HeaderValue};
use http::uri::PathAndQuery;
use http::{Method, Request};
use pushservice_provider::{
    ClientError, DeliveryOutcome, EndpointPolicy, Http2Pool, HttpConfig, Origin, PoolConfig,
    RequestSlots,
};

use crate::classify::{classify, reason};
use crate::payload::ApnsPayload;
use crate::token::{ApnsKey, Refusal, TOKEN_REFRESH, TokenCache};

/// Apple's production endpoint.
pub const PRODUCTION_URL: &str = "https://api.push.apple.com";
/// Apple's development endpoint, for apps built with a development provisioning profile.
pub const SANDBOX_URL: &str = "https://api.sandbox.push.apple.com";

/// Longest device token accepted (Apple's are 64 hex digits today; room for growth).
const MAX_TOKEN_LEN: usize = 200;

/// How the client talks to APNs. `Default` suits production.
#[derive(Debug, Clone)]
pub struct ApnsConfig {
    /// Timeouts, pool, extra roots, endpoint policy.
    pub http: HttpConfig,
    /// Send here instead of Apple's production and sandbox endpoints (a simulator).
    pub base_url: Option<String>,
    /// How long a signed provider token is reused.
    pub token_refresh: Duration,
    /// Requests in flight at once (default 512), when the client makes its own slots (see
    /// [`ApnsClient::with_slots`]).
    pub concurrency: usize,
    /// Requests in flight per (signing key, APNs host) at most (default 1024).
    pub per_credential_concurrency: usize,
    /// HTTP/2 connections per APNs host at most.
    pub pool: PoolConfig,
}

impl Default for ApnsConfig {
    fn default() -> Self {
        ApnsConfig {
            http: HttpConfig::default(),
            base_url: None,
            token_refresh: TOKEN_REFRESH,
            concurrency: 2048,
            per_credential_concurrency: 1024,
            pool: PoolConfig::default(),
        }
    }
}

/// One notification to one device.
#[derive(Debug, Clone, Copy)]
pub struct ApnsRequest<'a> {
    /// The device token, hex (a capability: only its length is ever logged).
    pub token: &'a str,
    /// The site's signing key.
    pub key: &'a ApnsKey,
    /// The app's bundle id (`apns-topic`).
    pub topic: &'a str,
    /// Use Apple's development environment.
    pub sandbox: bool,
    /// Body and per-push headers.
    pub payload: &'a ApnsPayload,
    /// `apns-expiration`: unix seconds until which APNs retries an offline device (0: once).
    pub expiration: u64,
    /// `apns-collapse-id`: replaces an undelivered notification with the same id; dropped
    /// when over 64 bytes.
    pub collapse_id: Option<&'a str>,
    /// Canceled when the delivery is no longer wanted (its push was canceled): the request
    /// is then not sent if it has not been yet (see `RequestSlots::acquire_unless`).
    pub withdrawn: Option<&'a pushservice_provider::CancellationToken>,
}

/// Sends notifications to APNs. Build one per process and share it.
#[derive(Debug)]
pub struct ApnsClient {
    http: Http2Pool,
    tokens: TokenCache,
    /// Where requests go: the configured URL's origin, or Apple's production and sandbox.
    base: Option<(String, Origin)>,
    production: (String, Origin),
    sandbox: (String, Origin),
    slots: Arc<RequestSlots>,
}

/// `url`'s origin for requests, with its text.
fn origin(
    url: &str,
    setting: &'static str,
    policy: &pushservice_provider::EndpointPolicy,
) -> Result<(String, Origin), ClientError> {
    let parsed = policy
        .check_url(url)
        .map_err(|refused| ClientError::Endpoint { setting, refused })?;
    let origin =
        Origin::new(&parsed).map_err(|refused| ClientError::Endpoint { setting, refused })?;
    Ok((url.trim_end_matches('/').to_owned(), origin))
}

impl ApnsClient {
    /// Builds the client from `config`; a `base_url` the endpoint policy refuses is an error.
    pub fn new(config: ApnsConfig) -> Result<Self, ClientError> {
        let policy = config.http.endpoint_policy.addresses_only();
        let base = match config.base_url {
            Some(url) => Some(origin(&url, "the APNs URL (SENDER_APNS_URL)", &policy)?),
            None => None,
        };
        let apple = EndpointPolicy::default();
        let production = origin(PRODUCTION_URL, "Apple's production URL", &apple)?;
        let sandbox = origin(SANDBOX_URL, "Apple's sandbox URL", &apple)?;
        let slots = RequestSlots::new(config.concurrency, config.per_credential_concurrency)
            .map_err(|_| ClientError::InvalidConfig("APNs concurrency must be at least 1"))?;
        let http = Http2Pool::new(
            &config.http,
            config.pool,
            concat!("pushservice-apns/", env!("CARGO_PKG_VERSION")),
        )?;
        Ok(ApnsClient {
            http,
            tokens: TokenCache::new(config.token_refresh),
            base,
            production,
            sandbox,
            slots: Arc::new(slots),
        })
    }

    /// Takes request slots from `slots` (shared with the Web Push and FCM clients, so one
    /// global bound covers all three) instead of the client's own; keys are
    /// `apns <host> <key fingerprint>`.
    pub fn with_slots(mut self, slots: Arc<RequestSlots>) -> Self {
        self.slots = slots;
        self
    }

    /// Delivers one notification and says what became of it; never panics, never errors.
    pub async fn send(&self, request: &ApnsRequest<'_>) -> DeliveryOutcome {
        let token = request.token;
        if token.is_empty()
            || token.len() > MAX_TOKEN_LEN
            || !token.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return DeliveryOutcome::permanent(format!(
                "malformed APNs device token ({} characters; expected hex digits)",
                token.len()
            ));
        }
        let (base, target) = match (&self.base, request.sandbox) {
            (Some(base), _) => base,
            (None, false) => &self.production,
            (None, true) => &self.sandbox,
        };
        let base = base.as_str();
        let authorization = match self.tokens.authorization(request.key) {
            Ok(header) => header,
            Err(e) => {
                return DeliveryOutcome::permanent(e.to_string());
            }
        };
        let used = authorization.clone();
        let Ok(topic) = HeaderValue::from_str(request.topic) else {
            return DeliveryOutcome::permanent("the site's APNs topic is not a valid header value");
        };
        let payload = request.payload;
        // Hex digits only (checked above): always a valid path.
        let Ok(path) = PathAndQuery::try_from(format!("/3/device/{token}")) else {
            return DeliveryOutcome::permanent("malformed APNs device token");
        };
        let mut http_request = Request::new(Bytes::clone(&payload.body));
        *http_request.method_mut() = Method::POST;
        *http_request.uri_mut() = target.uri(path);
        let headers = http_request.headers_mut();
        headers.insert(AUTHORIZATION, authorization);
        headers.insert(HeaderName::from_static("apns-topic"), topic);
        headers.insert(
            HeaderName::from_static("apns-push-type"),
            HeaderValue::from_static(payload.push_type),
        );
        headers.insert(
            HeaderName::from_static("apns-priority"),
            HeaderValue::from(u16::from(payload.priority)),
        );
        headers.insert(
            HeaderName::from_static("apns-expiration"),
            HeaderValue::from(request.expiration),
        );
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(id) = request.collapse_id.filter(|id| id.len() <= 64)
            && let Ok(id) = HeaderValue::from_str(id)
        {
            headers.insert(HeaderName::from_static("apns-collapse-id"), id);
        }
        let origin = base;
        // A slot of this (key, host), then a global one, held until the answer is read.
        let slot_key = format!("apns {base} {}", request.key.fingerprint());
        let _slot = match self
            .slots
            .acquire_unless(&slot_key, request.withdrawn)
            .await
        {
            Ok(slot) => slot,
            Err(e) => return DeliveryOutcome::from_slot_error(origin, e),
        };
        let outcome = match self
            .http
            .send(target, http_request, request.withdrawn)
            .await
        {
            Ok(answer) => {
                let outcome = classify(answer.status, answer.retry_after.as_deref(), &answer.body);
                match reason(&answer.body) {
                    Some("ExpiredProviderToken") => {
                        self.tokens.expired(request.key, &used);
                        outcome
                    }
                    // Refused once: sign a new token and retry; refused again: the key is
                    // wrong (the outcome already says so, naming the setting).
                    Some("InvalidProviderToken") => match self.tokens.refused(request.key, &used) {
                        Refusal::Resigning => DeliveryOutcome::Transient {
                            status: Some(answer.status),
                            retry_after: None,
                            reason: format!(
                                "{} InvalidProviderToken: re-signing the provider token",
                                answer.status
                            ),
                        },
                        Refusal::KeyRefused => outcome,
                    },
                    _ => outcome,
                }
            }
            Err(err) => err.outcome(),
        };
        tracing::trace!(
            origin,
            token_len = token.len(),
            outcome = outcome.label(),
            "apns sent"
        );
        outcome
    }
}
