//! The FCM client: one pooled HTTP/2 client, the access-token cache, and
//! [`FcmClient::send`], which turns one registration token and payload into a
//! [`DeliveryOutcome`].

use pushservice_model::{PayloadFields, Urgency};
use pushservice_provider::{
    ClientError, DeliveryOutcome, HttpConfig, build_client, read_answer, transient_from_error,
};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};

use crate::account::ServiceAccount;
use crate::classify::classify;
use crate::message;
use crate::oauth::AccessTokens;

/// Google's FCM endpoint.
pub const FCM_URL: &str = "https://fcm.googleapis.com";

/// Longest registration token accepted (FCM's are about 160 characters).
const MAX_TOKEN_LEN: usize = 4096;

/// How the client talks to FCM and the token endpoint. `Default` suits production.
#[derive(Debug, Clone, Default)]
pub struct FcmConfig {
    /// Timeouts, pool, extra roots (used for both FCM and the token endpoint).
    pub http: HttpConfig,
    /// Send here instead of [`FCM_URL`] (a simulator).
    pub base_url: Option<String>,
    /// Fetch access tokens here instead of each service account's `token_uri`.
    pub token_url: Option<String>,
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
}

/// Sends messages to FCM. Build one per process and share it.
#[derive(Debug)]
pub struct FcmClient {
    http: reqwest::Client,
    tokens: AccessTokens,
    base_url: String,
    max_response_bytes: usize,
}

impl FcmClient {
    /// Builds the client from `config`.
    pub fn new(config: FcmConfig) -> Result<Self, ClientError> {
        let http = build_client(
            &config.http,
            concat!("pushservice-fcm/", env!("CARGO_PKG_VERSION")),
        )?;
        Ok(FcmClient {
            tokens: AccessTokens::new(
                http.clone(),
                config.token_url,
                config.http.max_response_bytes,
            ),
            http,
            base_url: config
                .base_url
                .unwrap_or_else(|| FCM_URL.to_owned())
                .trim_end_matches('/')
                .to_owned(),
            max_response_bytes: config.http.max_response_bytes,
        })
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
                if answer.status == 401 {
                    self.tokens.invalidate(request.account).await;
                }
                classify(answer.status, answer.retry_after.as_deref(), &answer.body)
            }
            Err(err) => transient_from_error(origin, err),
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
