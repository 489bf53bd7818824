//! APNs provider tokens: `authorization: bearer <JWT>`, an ES256 JWT with header
//! `{"alg":"ES256","kid":<key id>}` and claims `{"iss":<team id>,"iat":<unix seconds>}`.
//!
//! Apple wants a token reused for up to an hour (and refused more often than every 20
//! minutes), so the same header arrives many times. [`ProviderTokens`] remembers headers
//! whose signature and issuer verified; the clock checks (`iat` at most an hour old and not
//! more than five minutes ahead) run on every request, the ECDSA verification once per token.

use std::sync::Arc;

use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED, UnparsedPublicKey};
use serde::Deserialize;

use super::Reason;
use super::verify::Rejection;
use crate::config::ApnsKey;
use crate::jwt::VerifiedTokens;
use crate::stats::VerifyFailure;

/// How old a token may be (Apple: one hour).
const MAX_AGE_SECS: u64 = 60 * 60;
/// How far ahead of the sink's clock `iat` may be (clock skew).
const MAX_SKEW_SECS: u64 = 5 * 60;

#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
}

#[derive(Deserialize)]
struct Claims {
    iss: String,
    iat: u64,
}

/// A provider token whose signature and issuer verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Verified {
    /// The team (`iss`), equal to the signing key's team.
    pub(crate) team_id: String,
    /// Issued at, unix seconds.
    pub(crate) iat: u64,
}

/// The trusted keys and the tokens verified with them.
pub(crate) struct ProviderTokens {
    keys: Vec<ApnsKey>,
    verified: VerifiedTokens<Verified>,
}

fn invalid(detail: impl Into<String>) -> Rejection {
    Rejection::new(
        VerifyFailure::ApnsProviderToken,
        Reason::InvalidProviderToken,
        detail,
    )
}

impl ProviderTokens {
    pub(crate) fn new(keys: Vec<ApnsKey>) -> Self {
        ProviderTokens {
            keys,
            verified: VerifiedTokens::new(),
        }
    }

    /// Checks the `authorization` header value at `now` (unix seconds).
    pub(crate) fn check(
        &self,
        authorization: Option<&str>,
        now: u64,
    ) -> Result<Arc<Verified>, Rejection> {
        let authorization = authorization.ok_or_else(|| {
            Rejection::new(
                VerifyFailure::ApnsProviderToken,
                Reason::MissingProviderToken,
                "no authorization header: a provider token (bearer JWT) is required",
            )
        })?;
        let verified = self
            .verified
            .get_or_verify(authorization, || self.verify_signature(authorization))?;
        check_clock(&verified, now)?;
        Ok(verified)
    }

    /// Parses `bearer <jwt>` and verifies the ES256 signature with the key `kid` names and
    /// the issuer against that key's team.
    fn verify_signature(&self, authorization: &str) -> Result<Verified, Rejection> {
        let token = authorization
            .trim()
            .split_once(' ')
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .ok_or_else(|| invalid("authorization must be `bearer <JWT>`"))?;
        let jwt = crate::jwt::parse::<Header, Claims>(token).map_err(invalid)?;
        if jwt.header.alg != "ES256" {
            return Err(invalid(format!(
                "JWT alg is {:?}; APNs needs ES256",
                jwt.header.alg
            )));
        }
        if self.keys.is_empty() {
            return Err(invalid(
                "no APNs signing key is configured (--apns-key-files) to verify provider tokens",
            ));
        }
        let kid = jwt
            .header
            .kid
            .as_deref()
            .ok_or_else(|| invalid("JWT header has no kid (the key id)"))?;
        let key = self
            .keys
            .iter()
            .find(|key| key.key_id == kid)
            .ok_or_else(|| invalid(format!("JWT kid {kid:?} is not a configured APNs key")))?;
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &key.public_key)
            .verify(jwt.signing_input.as_bytes(), &jwt.signature)
            .map_err(|_| invalid(format!("JWT signature does not verify with key {kid}")))?;
        if jwt.claims.iss != key.team_id {
            return Err(invalid(format!(
                "JWT iss {:?} is not team {:?} of key {kid}",
                jwt.claims.iss, key.team_id
            )));
        }
        Ok(Verified {
            team_id: jwt.claims.iss,
            iat: jwt.claims.iat,
        })
    }
}

/// The checks of `iat` against the clock.
fn check_clock(verified: &Verified, now: u64) -> Result<(), Rejection> {
    if verified.iat > now + MAX_SKEW_SECS {
        return Err(invalid(format!(
            "JWT iat is {} s in the future",
            verified.iat - now
        )));
    }
    if now.saturating_sub(verified.iat) > MAX_AGE_SECS {
        return Err(Rejection::new(
            VerifyFailure::ApnsTokenExpired,
            Reason::ExpiredProviderToken,
            format!(
                "JWT iat is {} s old; at most {MAX_AGE_SECS} s allowed",
                now - verified.iat
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iat_must_be_within_the_hour_and_not_ahead() {
        let now = 1_700_000_000;
        let at = |iat| {
            check_clock(
                &Verified {
                    team_id: "T".to_owned(),
                    iat,
                },
                now,
            )
            .map_err(|r| r.reason)
        };
        assert_eq!(at(now), Ok(()));
        assert_eq!(at(now - 3600), Ok(()));
        assert_eq!(at(now - 3601), Err(Reason::ExpiredProviderToken));
        assert_eq!(at(now + 300), Ok(()));
        assert_eq!(at(now + 301), Err(Reason::InvalidProviderToken));
    }

    #[test]
    fn malformed_and_unknown_tokens_are_invalid() {
        let tokens = ProviderTokens::new(Vec::new());
        let reason = |h: Option<&str>| tokens.check(h, 0).map(|_| ()).map_err(|r| r.reason);
        assert_eq!(reason(None), Err(Reason::MissingProviderToken));
        assert_eq!(reason(Some("Basic abc")), Err(Reason::InvalidProviderToken));
        assert_eq!(
            reason(Some("bearer a.b")),
            Err(Reason::InvalidProviderToken)
        );
        let err = tokens
            .verify_signature(
                "bearer eyJhbGciOiJFUzI1NiIsImtpZCI6IksifQ.eyJpc3MiOiJUIiwiaWF0IjoxfQ.AA",
            )
            .expect_err("no keys");
        assert!(err.detail.contains("--apns-key-files"), "{}", err.detail);
    }
}
