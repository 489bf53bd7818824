//! Verification mode for FCM: the trusted service accounts, the access tokens the token
//! endpoint issued to them, and the checks of a send request against both.
//!
//! An access token is opaque to the sender, as Google's are; the sink remembers each one it
//! issued (in verification mode only) with its account, project and expiry, so a send request
//! is authenticated by a lookup. Senders fetch one token an hour per account, so the map stays
//! small; expired tokens are dropped whenever it grows past [`PRUNE_ABOVE`].

use std::collections::HashMap;
use std::sync::Mutex;

use hyper::header::AUTHORIZATION;
use hyper::http::request::Parts;

use super::message;
use crate::config::{FcmAccount, Verify};
use crate::received::{MobileKind, MobileReceived};
use crate::stats::VerifyFailure;

/// A failed check and what to tell the client.
pub(crate) type Rejection = (VerifyFailure, String);

/// Issued tokens kept before expired ones are pruned.
const PRUNE_ABOVE: usize = 1024;

/// Who an access token was issued to, and until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Issued {
    /// The service account's e-mail address.
    pub(crate) client_email: String,
    /// The account's project.
    pub(crate) project_id: String,
    /// Expiry, unix seconds.
    pub(crate) expires_at: u64,
}

/// Checks FCM send and token requests for one sink.
pub(crate) struct Verifier {
    /// Accounts that may get tokens.
    pub(crate) accounts: Vec<FcmAccount>,
    /// `http` or `https`: the scheme clients used to reach this sink (for the assertion's
    /// `aud`).
    pub(crate) scheme: &'static str,
    /// Access tokens issued and not yet pruned.
    issued: Mutex<HashMap<String, Issued>>,
}

impl Verifier {
    pub(crate) fn new(verify: &Verify, scheme: &'static str) -> Self {
        Verifier {
            accounts: verify.fcm_accounts.clone(),
            scheme,
            issued: Mutex::new(HashMap::new()),
        }
    }

    /// Remembers `access_token` as issued to `account` until `expires_at`.
    pub(crate) fn issue(&self, access_token: &str, account: &FcmAccount, expires_at: u64) {
        let mut issued = self.issued.lock().unwrap_or_else(|p| p.into_inner());
        if issued.len() >= PRUNE_ABOVE {
            let now = crate::stats::unix_ms() / 1000;
            issued.retain(|_, token| token.expires_at > now);
        }
        issued.insert(
            access_token.to_owned(),
            Issued {
                client_email: account.client_email.clone(),
                project_id: account.project_id.clone(),
                expires_at,
            },
        );
    }

    /// Checks `authorization` (`Bearer <access token>`) for a send to `project` at `now`.
    pub(crate) fn authorize(
        &self,
        authorization: Option<&str>,
        project: &str,
        now: u64,
    ) -> Result<Issued, Rejection> {
        let unauthenticated = |why: &str| {
            (
                VerifyFailure::FcmAuth,
                format!(
                    "Request had invalid authentication credentials: {why}. Expected OAuth 2 \
                     access token from this sink's /token endpoint."
                ),
            )
        };
        let authorization = authorization.ok_or_else(|| unauthenticated("no Authorization"))?;
        let token = authorization
            .trim()
            .split_once(' ')
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .ok_or_else(|| unauthenticated("Authorization is not `Bearer <token>`"))?;
        let issued = self
            .issued
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(token)
            .cloned()
            .ok_or_else(|| unauthenticated("the bearer token was not issued here"))?;
        if issued.expires_at <= now {
            return Err(unauthenticated("the access token has expired"));
        }
        if issued.project_id != project {
            return Err((
                VerifyFailure::FcmSenderMismatch,
                format!(
                    "Permission denied: {} belongs to project {:?}, not {project:?}.",
                    issued.client_email, issued.project_id
                ),
            ));
        }
        Ok(issued)
    }

    /// Checks one send request to `project` for device `token`.
    pub(crate) fn verify(
        &self,
        parts: &Parts,
        project: &str,
        body: &[u8],
        token: &str,
        attempt: u32,
    ) -> Result<MobileReceived, Rejection> {
        let authorization = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let now = crate::stats::unix_ms() / 1000;
        let issued = self.authorize(authorization, project, now)?;
        let message = message::validate(body).map_err(|why| (VerifyFailure::FcmMessage, why))?;
        Ok(MobileReceived {
            kind: MobileKind::Fcm,
            token: token.to_owned(),
            body: message,
            apns_topic: None,
            apns_push_type: None,
            apns_priority: None,
            apns_expiration: None,
            apns_collapse_id: None,
            issuer: issued.client_email,
            project_id: Some(project.to_owned()),
            attempt,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verifier() -> Verifier {
        let verify = Verify {
            key_seed: Vec::new(),
            expected_subject: None,
            apns_keys: Vec::new(),
            fcm_accounts: Vec::new(),
        };
        Verifier::new(&verify, "http")
    }

    fn account(project: &str) -> FcmAccount {
        FcmAccount {
            client_email: format!("sender@{project}.iam.gserviceaccount.com"),
            project_id: project.to_owned(),
            public_key: Vec::new(),
        }
    }

    #[test]
    fn only_issued_unexpired_tokens_of_the_project_authorize() {
        let verifier = verifier();
        verifier.issue("tok", &account("p1"), 1000);
        let failure = |auth: Option<&str>, project: &str, now: u64| {
            verifier
                .authorize(auth, project, now)
                .map(|issued| issued.client_email)
                .map_err(|(failure, _)| failure)
        };
        assert_eq!(
            failure(Some("Bearer tok"), "p1", 999),
            Ok("sender@p1.iam.gserviceaccount.com".to_owned())
        );
        assert!(failure(Some("bearer tok"), "p1", 999).is_ok());
        assert_eq!(failure(None, "p1", 999), Err(VerifyFailure::FcmAuth));
        assert_eq!(
            failure(Some("Bearer other"), "p1", 999),
            Err(VerifyFailure::FcmAuth)
        );
        assert_eq!(
            failure(Some("Bearer tok"), "p1", 1000),
            Err(VerifyFailure::FcmAuth)
        );
        assert_eq!(
            failure(Some("Bearer tok"), "p2", 999),
            Err(VerifyFailure::FcmSenderMismatch)
        );
    }
}
