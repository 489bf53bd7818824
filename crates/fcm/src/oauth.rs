//! Access tokens per service account: fetched from the account's `token_uri` with a signed
//! assertion (RFC 7523 JWT bearer grant), reused until five minutes before they expire.
//!
//! Every delivery of an account asks [`AccessTokens::authorization`]; one of them fetches
//! while the others wait on the account's lock, so a push to a million devices makes one
//! token request an hour. A refused assertion (4xx: revoked key, wrong clock, deleted
//! account) is remembered for [`REFUSAL_MEMORY`], so a push does not hammer Google with
//! a request per device; an unreachable token endpoint is not remembered (retried).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use pushservice_provider::{DeliveryOutcome, parse_retry_after, read_answer, snippet};
use reqwest::header::{CONTENT_TYPE, HeaderValue};
use serde::Deserialize;

use crate::account::ServiceAccount;

/// How long a refused assertion fails deliveries without asking again.
pub const REFUSAL_MEMORY: Duration = Duration::from_secs(60);

/// Tokens are renewed this long before Google says they expire.
const RENEW_EARLY: Duration = Duration::from_secs(300);

#[derive(Default)]
enum Slot {
    #[default]
    Empty,
    Token {
        header: HeaderValue,
        renew_at: Instant,
    },
    Refused {
        reason: String,
        until: Instant,
    },
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

/// Access tokens by service account.
pub struct AccessTokens {
    http: reqwest::Client,
    token_url: Option<String>,
    max_response_bytes: usize,
    accounts: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Slot>>>>,
}

impl std::fmt::Debug for AccessTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessTokens")
            .field("token_url", &self.token_url)
            .finish_non_exhaustive()
    }
}

impl AccessTokens {
    /// Tokens fetched over `http`; `token_url`, when set, replaces every account's
    /// `token_uri` (a simulator).
    pub fn new(
        http: reqwest::Client,
        token_url: Option<String>,
        max_response_bytes: usize,
    ) -> Self {
        AccessTokens {
            http,
            token_url,
            max_response_bytes,
            accounts: Mutex::default(),
        }
    }

    fn slot(&self, account: &ServiceAccount) -> Arc<tokio::sync::Mutex<Slot>> {
        // Poisoning only means a panic mid-insert; the map stays usable.
        let mut accounts = self.accounts.lock().unwrap_or_else(|p| p.into_inner());
        // Looked up by `&str` first: every delivery comes here, a new account rarely.
        if let Some(slot) = accounts.get(account.client_email.as_str()) {
            return Arc::clone(slot);
        }
        Arc::clone(accounts.entry(account.client_email.clone()).or_default())
    }

    /// `Bearer <access token>` for `account`, or the outcome every delivery of it gets now.
    pub async fn authorization(
        &self,
        account: &ServiceAccount,
    ) -> Result<HeaderValue, DeliveryOutcome> {
        let slot = self.slot(account);
        let mut slot = slot.lock().await;
        let now = Instant::now();
        match &*slot {
            Slot::Token { header, renew_at } if now < *renew_at => return Ok(header.clone()),
            Slot::Refused { reason, until } if now < *until => {
                return Err(DeliveryOutcome::permanent(reason.clone()));
            }
            _ => {}
        }
        match self.fetch(account).await {
            Ok((header, lifetime)) => {
                *slot = Slot::Token {
                    header: header.clone(),
                    renew_at: now
                        + lifetime
                            .saturating_sub(RENEW_EARLY)
                            .max(Duration::from_secs(60)),
                };
                Ok(header)
            }
            Err(outcome) => {
                if let DeliveryOutcome::Permanent { reason, .. } = &outcome {
                    *slot = Slot::Refused {
                        reason: reason.clone(),
                        until: now + REFUSAL_MEMORY,
                    };
                }
                Err(outcome)
            }
        }
    }

    /// Drops `account`'s token (FCM answered 401), so the next delivery fetches a new one.
    pub async fn invalidate(&self, account: &ServiceAccount) {
        *self.slot(account).lock().await = Slot::Empty;
    }

    async fn fetch(
        &self,
        account: &ServiceAccount,
    ) -> Result<(HeaderValue, Duration), DeliveryOutcome> {
        let token_url = self.token_url.as_deref().unwrap_or(&account.token_uri);
        let iat = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let assertion = account
            .assertion(token_url, iat)
            .map_err(|e| DeliveryOutcome::permanent(e.to_string()))?;
        // The assertion is base64url and dots: nothing to percent-encode.
        let form = format!(
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion={assertion}"
        );
        let context = format!("fetching an FCM access token for {}", account.client_email);
        let response = self
            .http
            .post(token_url)
            .header(
                CONTENT_TYPE,
                HeaderValue::from_static("application/x-www-form-urlencoded"),
            )
            .body(form)
            .send()
            .await
            .map_err(|err| {
                DeliveryOutcome::transient(pushservice_provider::http::describe_error(
                    &context, err,
                ))
            })?;
        let answer = read_answer("oauth token endpoint", response, self.max_response_bytes).await;
        let status = answer.status;
        match status {
            200..=299 => {
                let token: TokenResponse = serde_json::from_slice(&answer.body).map_err(|e| {
                    DeliveryOutcome::Transient {
                        status: Some(status),
                        retry_after: None,
                        reason: format!("{context}: unreadable answer: {e}"),
                    }
                })?;
                let header = HeaderValue::from_str(&format!("Bearer {}", token.access_token))
                    .map_err(|_| DeliveryOutcome::Transient {
                        status: Some(status),
                        retry_after: None,
                        reason: format!("{context}: the access token is not a valid header"),
                    })?;
                Ok((
                    header,
                    Duration::from_secs(token.expires_in.unwrap_or(3600)),
                ))
            }
            429 | 500..=599 => Err(DeliveryOutcome::Transient {
                status: Some(status),
                retry_after: answer.retry_after.as_deref().and_then(parse_retry_after),
                reason: format!("{context}: {status} {}", snippet(&answer.body)),
            }),
            _ => Err(DeliveryOutcome::Permanent {
                status: Some(status),
                reason: format!(
                    "{context}: the token endpoint refused the service account ({status} {}); check the key file stored on the site",
                    snippet(&answer.body)
                ),
            }),
        }
    }
}
