//! Access tokens per service account: fetched from the token endpoint with a signed
//! assertion (RFC 7523 JWT bearer grant), reused until five minutes before they expire.
//!
//! Every delivery of an account asks [`AccessTokens::authorization`]; one of them fetches
//! while the others wait on the account's lock, so a push to a million devices makes one
//! token request an hour. A refused assertion (4xx: revoked key, wrong clock, deleted
//! account) is remembered for [`REFUSAL_MEMORY`], so a push does not hammer Google with
//! a request per device; an unreachable token endpoint is not remembered (retried).
//!
//! Two rules keep sites apart and the senders pointed where the operator chose:
//!
//! - Tokens are cached by [`ServiceAccount::cache_key`], a hash of the account's e-mail,
//!   private key and `token_uri`; the e-mail alone is public, so caching by it would let one
//!   site use another's token, or block it with a refusal, by copying its e-mail.
//! - The token endpoint is configuration (`SENDER_FCM_TOKEN_URL`, Google's by default). An
//!   account whose `token_uri` is anything else is refused as `Misconfigured` before any
//!   request: a key file must not make the senders POST signed assertions to a URL of its
//!   choosing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use pushservice_provider::endpoint::refusal_in;
use pushservice_provider::{DeliveryOutcome, parse_retry_after, read_answer, snippet};
use reqwest::header::{CONTENT_TYPE, HeaderValue};
use serde::Deserialize;

use crate::account::ServiceAccount;

/// How long a refused assertion fails deliveries without asking again.
pub const REFUSAL_MEMORY: Duration = Duration::from_secs(60);

/// Tokens are renewed this long before Google says they expire.
const RENEW_EARLY: Duration = Duration::from_secs(300);

/// Accounts whose tokens are kept at most; past it, idle accounts without a fresh token go.
const MAX_ACCOUNTS: usize = 4096;

/// What to fix when the token endpoint is refused or an account names another one.
pub const SETTING_TOKEN_URL: &str = "SENDER_FCM_TOKEN_URL: the token_uri of the site's service account must equal it (https://oauth2.googleapis.com/token unless a simulator is used; SENDER_ALLOW_PRIVATE_ENDPOINTS=true for one on loopback)";
/// What to fix when the token endpoint refuses the account.
pub const SETTING_ACCOUNT: &str =
    "the site's FCM service account key (pushctl site fcm <siteId> --service-account <file>)";

#[derive(Default)]
enum Slot {
    #[default]
    Empty,
    Token {
        header: HeaderValue,
        renew_at: Instant,
    },
    Refused {
        outcome: DeliveryOutcome,
        until: Instant,
    },
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

/// Access tokens by service account (by [`ServiceAccount::cache_key`]).
pub struct AccessTokens {
    http: reqwest::Client,
    /// The one token endpoint (`SENDER_FCM_TOKEN_URL`).
    token_url: url::Url,
    max_response_bytes: usize,
    accounts: Mutex<HashMap<[u8; 32], Arc<tokio::sync::Mutex<Slot>>>>,
}

impl std::fmt::Debug for AccessTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessTokens")
            .field("token_url", &self.token_url)
            .finish_non_exhaustive()
    }
}

impl AccessTokens {
    /// Tokens fetched over `http` from `token_url`, for accounts whose `token_uri` is that
    /// URL.
    pub fn new(http: reqwest::Client, token_url: url::Url, max_response_bytes: usize) -> Self {
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
        let key = account.cache_key();
        if let Some(slot) = accounts.get(key) {
            return Arc::clone(slot);
        }
        if accounts.len() >= MAX_ACCOUNTS {
            let now = Instant::now();
            // Keep slots in use (a clone is out) and those holding a fresh token.
            accounts.retain(|_, slot| {
                Arc::strong_count(slot) > 1
                    || slot.try_lock().map_or(
                        true,
                        |slot| matches!(&*slot, Slot::Token { renew_at, .. } if now < *renew_at),
                    )
            });
        }
        Arc::clone(accounts.entry(*key).or_default())
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
            Slot::Refused { outcome, until } if now < *until => {
                return Err(outcome.clone());
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
                if matches!(
                    outcome,
                    DeliveryOutcome::Permanent { .. } | DeliveryOutcome::Misconfigured { .. }
                ) {
                    *slot = Slot::Refused {
                        outcome: outcome.clone(),
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
        // Compared as parsed URLs, so `HTTPS://OAuth2.googleapis.com:443/token` is Google's.
        if url::Url::parse(&account.token_uri).ok().as_ref() != Some(&self.token_url) {
            return Err(DeliveryOutcome::Misconfigured {
                status: 0,
                reason: format!(
                    "the service account {} names token_uri {:?}, not SENDER_FCM_TOKEN_URL ({})",
                    account.client_email,
                    snippet(account.token_uri.as_bytes()),
                    self.token_url
                ),
                setting: SETTING_TOKEN_URL,
            });
        }
        let token_url = self.token_url.as_str();
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
            .map_err(|err| match refusal_in(&err) {
                // The endpoint policy refused the token endpoint's addresses: a setting.
                Some(refused) => DeliveryOutcome::Misconfigured {
                    status: 0,
                    reason: format!("{context}: {refused}"),
                    setting: SETTING_TOKEN_URL,
                },
                None => DeliveryOutcome::transient(pushservice_provider::http::describe_error(
                    &context, err,
                )),
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
            _ => Err(DeliveryOutcome::Misconfigured {
                status,
                reason: format!(
                    "{context}: the token endpoint refused the service account ({status} {}); check the key file stored on the site",
                    snippet(&answer.body)
                ),
                setting: SETTING_ACCOUNT,
            }),
        }
    }
}
