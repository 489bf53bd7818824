//! VAPID (RFC 8292) checking: the `Authorization: vapid t=<jwt>, k=<key>` header, the ES256
//! signature, and the `aud`, `exp` and `sub` claims.
//!
//! Senders sign one token per (site, push-service origin) and reuse it until near expiry, so
//! the same header arrives thousands of times. [`TokenCache`] remembers headers whose
//! signature verified, with their claims; the time- and origin-dependent checks run on every
//! request, the ECDSA verification once per token.

use std::sync::Arc;

use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED, UnparsedPublicKey};
use base64::Engine as _;
use serde::Deserialize;

use crate::jwt::{B64URL, VerifiedTokens};
use crate::stats::VerifyFailure;

/// Longest a token may live, from now (RFC 8292 §2).
const MAX_LIFETIME_SECS: u64 = 24 * 60 * 60;

/// A failed check and what to tell the client.
pub(crate) type Rejection = (VerifyFailure, String);

/// Claims of a token whose signature verified.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub(crate) struct Claims {
    /// Audience: the push service origin.
    pub(crate) aud: String,
    /// Expiry, unix seconds.
    pub(crate) exp: u64,
    /// Contact: `mailto:` or `https:` URI.
    #[serde(default)]
    pub(crate) sub: Option<String>,
}

#[derive(Deserialize)]
struct Header {
    alg: String,
}

/// Verified `Authorization` headers and their claims.
pub(crate) struct TokenCache {
    verified: VerifiedTokens<Claims>,
}

impl TokenCache {
    pub(crate) fn new() -> Self {
        TokenCache {
            verified: VerifiedTokens::new(),
        }
    }

    /// Checks `authorization` for a request sent to `origin` at `now` (unix seconds); returns
    /// the claims when everything holds.
    pub(crate) fn check(
        &self,
        authorization: &str,
        origin: &str,
        now: u64,
        expected_subject: Option<&str>,
    ) -> Result<Arc<Claims>, Rejection> {
        let claims = self
            .verified
            .get_or_verify(authorization, || verify_signature(authorization))?;
        check_claims(&claims, origin, now, expected_subject)?;
        Ok(claims)
    }
}

/// Parses `vapid t=<jwt>, k=<key>` and verifies the token's ES256 signature with `k`.
fn verify_signature(authorization: &str) -> Result<Claims, Rejection> {
    let bad_header = |why: &str| (VerifyFailure::Authorization, why.to_owned());
    let (scheme, params) = authorization
        .trim()
        .split_once(' ')
        .ok_or_else(|| bad_header("Authorization must be `vapid t=<jwt>, k=<key>`"))?;
    if !scheme.eq_ignore_ascii_case("vapid") {
        return Err(bad_header(
            "Authorization scheme must be `vapid` (RFC 8292)",
        ));
    }
    let (mut token, mut key) = (None, None);
    for param in params.split(',') {
        match param.trim().split_once('=') {
            Some((name, value)) if name.trim().eq_ignore_ascii_case("t") => {
                token = Some(value.trim())
            }
            Some((name, value)) if name.trim().eq_ignore_ascii_case("k") => {
                key = Some(value.trim())
            }
            _ => {}
        }
    }
    let token = token.ok_or_else(|| bad_header("Authorization has no t= (the JWT)"))?;
    let key = key.ok_or_else(|| bad_header("Authorization has no k= (the public key)"))?;
    let key = B64URL
        .decode(key)
        .ok()
        .filter(|k| k.len() == 65 && k[0] == 4)
        .ok_or_else(|| bad_header("k= is not a base64url uncompressed P-256 point"))?;

    let malformed = |why: &str| (VerifyFailure::JwtMalformed, why.to_owned());
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed("JWT must have three dot-separated parts"));
    };
    let header: Header = B64URL
        .decode(header)
        .ok()
        .and_then(|json| serde_json::from_slice(&json).ok())
        .ok_or_else(|| malformed("JWT header is not base64url JSON with `alg`"))?;
    if header.alg != "ES256" {
        return Err(malformed("JWT alg must be ES256"));
    }
    let signature = B64URL
        .decode(signature)
        .ok()
        .filter(|s| s.len() == 64)
        .ok_or_else(|| malformed("JWT signature is not 64 base64url bytes (r ‖ s)"))?;
    // Three parts were found, so there is a last dot; the signing input is all before it.
    let signing_input = token.rsplit_once('.').map_or(token, |(input, _)| input);
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &key)
        .verify(signing_input.as_bytes(), &signature)
        .map_err(|_| {
            (
                VerifyFailure::JwtSignature,
                "JWT signature does not verify with the k= public key".to_owned(),
            )
        })?;
    B64URL
        .decode(payload)
        .ok()
        .and_then(|json| serde_json::from_slice(&json).ok())
        .ok_or_else(|| {
            malformed("JWT claims are not base64url JSON with `aud` (string) and `exp` (integer)")
        })
}

/// The claim checks that depend on the request and the clock.
fn check_claims(
    claims: &Claims,
    origin: &str,
    now: u64,
    expected_subject: Option<&str>,
) -> Result<(), Rejection> {
    if normalize_origin(&claims.aud) != normalize_origin(origin) {
        return Err((
            VerifyFailure::JwtAudience,
            format!(
                "JWT aud {:?} is not this push service's origin {origin:?}",
                claims.aud
            ),
        ));
    }
    if claims.exp <= now {
        return Err((
            VerifyFailure::JwtExpiry,
            format!("JWT expired {} s ago", now - claims.exp),
        ));
    }
    if claims.exp > now + MAX_LIFETIME_SECS {
        return Err((
            VerifyFailure::JwtExpiry,
            format!(
                "JWT exp is {} s ahead; at most 24 hours allowed",
                claims.exp - now
            ),
        ));
    }
    let sub = claims.sub.as_deref().unwrap_or_default();
    if !(sub.starts_with("mailto:") || sub.starts_with("https:")) {
        return Err((
            VerifyFailure::JwtSubject,
            format!("JWT sub {sub:?} must be a mailto: or https: URI"),
        ));
    }
    if let Some(expected) = expected_subject
        && sub != expected
    {
        return Err((
            VerifyFailure::SubjectMismatch,
            format!("JWT sub {sub:?} is not the expected {expected:?}"),
        ));
    }
    Ok(())
}

/// `scheme://host[:port]`, lowercase, without a default port or a trailing slash.
pub(crate) fn normalize_origin(origin: &str) -> String {
    let origin = origin.trim().trim_end_matches('/').to_ascii_lowercase();
    for (scheme, port) in [("https://", ":443"), ("http://", ":80")] {
        if origin.starts_with(scheme)
            && let Some(stripped) = origin.strip_suffix(port)
        {
            return stripped.to_owned();
        }
    }
    origin
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(aud: &str, exp: u64, sub: &str) -> Claims {
        Claims {
            aud: aud.to_owned(),
            exp,
            sub: Some(sub.to_owned()),
        }
    }

    #[test]
    fn origins_compare_without_default_ports_or_case() {
        assert_eq!(
            normalize_origin("https://Push.Example:443/"),
            "https://push.example"
        );
        assert_eq!(normalize_origin("http://127.0.0.1:80"), "http://127.0.0.1");
        assert_eq!(
            normalize_origin("https://localhost:8443"),
            "https://localhost:8443"
        );
    }

    #[test]
    fn claims_are_checked_against_origin_clock_and_subject() {
        let now = 1_700_000_000;
        let origin = "https://localhost:8443";
        let good = claims(origin, now + 3600, "mailto:ops@example.com");
        assert_eq!(check_claims(&good, origin, now, None), Ok(()));
        let reason = |c: &Claims, expected: Option<&str>| {
            check_claims(c, origin, now, expected).map_err(|(reason, _)| reason)
        };
        assert_eq!(
            reason(&claims("https://other:8443", now + 60, "mailto:a@b"), None),
            Err(VerifyFailure::JwtAudience)
        );
        assert_eq!(
            reason(&claims(origin, now, "mailto:a@b"), None),
            Err(VerifyFailure::JwtExpiry)
        );
        assert_eq!(
            reason(&claims(origin, now + 86_401, "mailto:a@b"), None),
            Err(VerifyFailure::JwtExpiry)
        );
        assert_eq!(
            reason(&claims(origin, now + 86_400, "https://example.com"), None),
            Ok(())
        );
        assert_eq!(
            reason(&claims(origin, now + 60, "ops@example.com"), None),
            Err(VerifyFailure::JwtSubject)
        );
        assert_eq!(
            reason(&good, Some("mailto:someone@else")),
            Err(VerifyFailure::SubjectMismatch)
        );
    }

    #[test]
    fn malformed_headers_are_told_apart() {
        let reason = |h: &str| verify_signature(h).map(|_| ()).map_err(|(r, _)| r);
        assert_eq!(reason("Bearer abc"), Err(VerifyFailure::Authorization));
        assert_eq!(reason("vapid t=a.b.c"), Err(VerifyFailure::Authorization));
        assert_eq!(
            reason("vapid t=a.b.c, k=AAAA"),
            Err(VerifyFailure::Authorization)
        );
        let key = B64URL.encode([4u8; 65]);
        assert_eq!(
            reason(&format!("vapid t=a.b, k={key}")),
            Err(VerifyFailure::JwtMalformed)
        );
        let header = B64URL.encode(br#"{"alg":"HS256"}"#);
        assert_eq!(
            reason(&format!("vapid t={header}.e30.AAAA, k={key}")),
            Err(VerifyFailure::JwtMalformed)
        );
        let header = B64URL.encode(br#"{"typ":"JWT","alg":"ES256"}"#);
        let signature = B64URL.encode([1u8; 64]);
        assert_eq!(
            reason(&format!("vapid t={header}.e30.{signature}, k={key}")),
            Err(VerifyFailure::JwtSignature)
        );
    }
}
