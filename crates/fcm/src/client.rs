//! The FCM client: the pooled HTTP/2 client (several connections, within the 100 streams
//! Google's front ends allow on each), the access-token cache and the request slots,
//! and [`FcmClient::send`], which turns one registration token and payload into a
//! [`DeliveryOutcome`].
//!
//! Requests take a slot keyed by the site's service account (its key material) before a
//! global one, so one site's slow or throttled traffic fills only its own share. The FCM and
//! token endpoints come from configuration, checked against the endpoint policy when the
//! client is built (and their addresses again at connection time).

use std::sync::Arc;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use http::uri::PathAndQuery;
use http::{Method, Request};
use pushservice_model::{PayloadFields, Urgency};
use pushservice_provider::{
    ClientError, DeliveryOutcome, Http2Pool, HttpConfig, Origin, PoolConfig, RequestSlots,
    build_client,
};

use crate::account::{GOOGLE_TOKEN_URI, ServiceAccount};
use crate::classify::classify;
use crate::message;
use crate::oauth::AccessTokens;

/// Google's FCM endpoint.
pub const FCM_URL: &str = "https://fcm.googleapis.com";

/// Longest registration token accepted (FCM's are about 160 characters).
const MAX_TOKEN_LEN: usize = 4096;

/// How the client talks to FCM and the token endpoint. `Default` suits production.
#[derive(Debug, Clone)]
pub struct FcmConfig {
    /// Timeouts, pool, extra roots, endpoint policy (for both FCM and the token endpoint).
    pub http: HttpConfig,
    /// Send here instead of [`FCM_URL`] (a simulator).
    pub base_url: Option<String>,
    /// The OAuth token endpoint (default Google's, [`GOOGLE_TOKEN_URI`];
    /// `SENDER_FCM_TOKEN_URL`). A service account whose `token_uri` is another URL is refused
    /// (`Misconfigured`), never fetched from.
    pub token_url: String,
    /// Requests in flight at once (default 512), when the client makes its own slots (see
    /// [`FcmClient::with_slots`]).
    pub concurrency: usize,
    /// Requests in flight per service account at most (default 1024).
    pub per_credential_concurrency: usize,
    /// HTTP/2 connections to FCM at most.
    pub pool: PoolConfig,
}

impl Default for FcmConfig {
    fn default() -> Self {
        FcmConfig {
            http: HttpConfig::default(),
            base_url: None,
            token_url: GOOGLE_TOKEN_URI.to_owned(),
            concurrency: 2048,
            per_credential_concurrency: 1024,
            pool: PoolConfig::default(),
        }
    }
}

/// One message to one device.
#[derive(Debug, Clone, Copy)]
pub struct FcmRequest<'a> {
    /// The registration token (a capability: only its length is ever logged).
    pub token: &'a str,
    /// The site's service account.
    pub account: &'a ServiceAccount,
    /// What to show.
    pub fields: &'a PayloadFields,
    /// Seconds FCM keeps the message for an offline device.
    pub ttl: u32,
    /// High urgency sends with `HIGH` priority.
    pub urgency: Urgency,
    /// Replaces an undelivered message with the same key.
    pub collapse_key: Option<&'a str>,
    /// Canceled when the delivery is no longer wanted (its push was canceled): the request
    /// is then not sent if it has not been yet (see `RequestSlots::acquire_unless`).
    pub withdrawn: Option<&'a pushservice_provider::CancellationToken>,
}

/// Sends messages to FCM. Build one per process and share it.
#[derive(Debug)]
pub struct FcmClient {
    http: Http2Pool,
    tokens: AccessTokens,
    base_url: String,
    origin: Origin,
    slots: Arc<RequestSlots>,
}

impl FcmClient {
    /// Builds the client from `config`; a base or token URL the endpoint policy refuses is an
    /// error.
    pub fn new(config: FcmConfig) -> Result<Self, ClientError> {
        let policy = config.http.endpoint_policy.addresses_only();
        let base_url = config.base_url.unwrap_or_else(|| FCM_URL.to_owned());
        let setting = "the FCM URL (SENDER_FCM_URL)";
        let parsed = policy
            .check_url(&base_url)
            .map_err(|refused| ClientError::Endpoint { setting, refused })?;
        let origin =
            Origin::new(&parsed).map_err(|refused| ClientError::Endpoint { setting, refused })?;
        let token_url = policy
            .check_url(config.token_url.trim())
            .map_err(|refused| ClientError::Endpoint {
                setting: "the FCM token URL (SENDER_FCM_TOKEN_URL)",
                refused,
            })?;
        let slots = RequestSlots::new(config.concurrency, config.per_credential_concurrency)
            .map_err(|_| ClientError::InvalidConfig("FCM concurrency must be at least 1"))?;
        let user_agent = concat!("pushservice-fcm/", env!("CARGO_PKG_VERSION"));
        // Token requests are a few an hour: reqwest's single connection is plenty.
        let oauth = build_client(&config.http, user_agent)?;
        Ok(FcmClient {
            tokens: AccessTokens::new(oauth, token_url, config.http.max_response_bytes),
            http: Http2Pool::new(&config.http, config.pool, user_agent)?,
            base_url: base_url.trim_end_matches('/').to_owned(),
            origin,
            slots: Arc::new(slots),
        })
    }

    /// Takes request slots from `slots` (shared with the Web Push and APNs clients, so one
    /// global bound covers all three) instead of the client's own; keys are
    /// `fcm <account fingerprint>`.
    pub fn with_slots(mut self, slots: Arc<RequestSlots>) -> Self {
        self.slots = slots;
        self
    }

    /// Delivers one message and says what became of it; never panics, never errors.
    pub async fn send(&self, request: &FcmRequest<'_>) -> DeliveryOutcome {
        let token = request.token;
        if token.is_empty()
            || token.len() > MAX_TOKEN_LEN
            || token.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return DeliveryOutcome::permanent(format!(
                "malformed FCM registration token ({} characters)",
                token.len()
            ));
        }
        let project = &request.account.project_id;
        if !project
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return DeliveryOutcome::permanent(format!(
                "FCM project id {project:?} is not a valid project id"
            ));
        }
        let authorization = match self.tokens.authorization(request.account).await {
            Ok(header) => header,
            Err(outcome) => return outcome,
        };
        let body = message::build(
            token,
            request.fields,
            request.ttl,
            request.urgency,
            request.collapse_key,
        )
        .to_json();
        let origin = self.base_url.as_str();
        // A slot of this service account, then a global one, held until the answer is read.
        let slot_key = format!("fcm {}", request.account.fingerprint());
        let _slot = match self
            .slots
            .acquire_unless(&slot_key, request.withdrawn)
            .await
        {
            Ok(slot) => slot,
            Err(e) => return DeliveryOutcome::from_slot_error(origin, e),
        };
        // The project id is letters, digits, '-' and '_' (checked above): a valid path.
        let Ok(path) = PathAndQuery::try_from(format!("/v1/projects/{project}/messages:send"))
        else {
            return DeliveryOutcome::permanent(format!(
                "FCM project id {project:?} is not a valid project id"
            ));
        };
        let mut http_request = Request::new(Bytes::from(body));
        *http_request.method_mut() = Method::POST;
        *http_request.uri_mut() = self.origin.uri(path);
        let headers = http_request.headers_mut();
        headers.insert(AUTHORIZATION, authorization);
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let outcome = match self
            .http
            .send(&self.origin, http_request, request.withdrawn)
            .await
        {
            Ok(answer) => {
                if answer.status == 401 && !crate::classify::is_third_party_error(&answer.body) {
                    self.tokens.invalidate(request.account).await;
                }
                classify(answer.status, answer.retry_after.as_deref(), &answer.body)
            }
            Err(err) => err.outcome(),
        };
        tracing::trace!(
            origin,
            token_len = token.len(),
            outcome = outcome.label(),
            "fcm sent"
        );
        outcome
    }
}
