//! The FCM client: one pooled HTTP/2 client, the access-token cache and the request slots,
//! and [`FcmClient::send`], which turns one registration token and payload into a
//! [`DeliveryOutcome`].
//!
//! Requests take a slot keyed by the site's service account (its key material) before a
//! global one, so one site's slow or throttled traffic fills only its own share. The FCM and
//! token endpoints come from configuration, checked against the endpoint policy when the
//! client is built (and their addresses again at connection time).

use std::sync::Arc;

use pushservice_model::{PayloadFields, Urgency};
use pushservice_provider::{
    ClientError, DeliveryOutcome, HttpConfig, RequestSlots, build_client, outcome_from_error,
    read_answer,
};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};

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
    /// Requests in flight per service account (default 256).
    pub per_credential_concurrency: usize,
}

impl Default for FcmConfig {
    fn default() -> Self {
        FcmConfig {
            http: HttpConfig::default(),
            base_url: None,
            token_url: GOOGLE_TOKEN_URI.to_owned(),
            concurrency: 512,
            per_credential_concurrency: 256,
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
    http: reqwest::Client,
    tokens: AccessTokens,
    base_url: String,
    slots: Arc<RequestSlots>,
    max_response_bytes: usize,
}

impl FcmClient {
    /// Builds the client from `config`; a base or token URL the endpoint policy refuses is an
    /// error.
    pub fn new(config: FcmConfig) -> Result<Self, ClientError> {
        let policy = config.http.endpoint_policy.addresses_only();
        let base_url = config.base_url.unwrap_or_else(|| FCM_URL.to_owned());
        policy
            .check_url(&base_url)
            .map_err(|refused| ClientError::Endpoint {
                setting: "the FCM URL (SENDER_FCM_URL)",
                refused,
            })?;
        let token_url = policy
            .check_url(config.token_url.trim())
            .map_err(|refused| ClientError::Endpoint {
                setting: "the FCM token URL (SENDER_FCM_TOKEN_URL)",
                refused,
            })?;
        let slots = RequestSlots::new(config.concurrency, config.per_credential_concurrency)
            .map_err(|_| ClientError::InvalidConfig("FCM concurrency must be at least 1"))?;
        let http = build_client(
            &config.http,
            concat!("pushservice-fcm/", env!("CARGO_PKG_VERSION")),
        )?;
        Ok(FcmClient {
            tokens: AccessTokens::new(http.clone(), token_url, config.http.max_response_bytes),
            http,
            base_url: base_url.trim_end_matches('/').to_owned(),
            slots: Arc::new(slots),
            max_response_bytes: config.http.max_response_bytes,
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
        let outcome = match self
            .http
            .post(format!("{origin}/v1/projects/{project}/messages:send"))
            .header(AUTHORIZATION, authorization)
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .body(body)
            .send()
            .await
        {
            Ok(response) => {
                let answer = read_answer(origin, response, self.max_response_bytes).await;
                if answer.status == 401 && !crate::classify::is_third_party_error(&answer.body) {
                    self.tokens.invalidate(request.account).await;
                }
                classify(answer.status, answer.retry_after.as_deref(), &answer.body)
            }
            Err(err) => outcome_from_error(origin, err),
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
