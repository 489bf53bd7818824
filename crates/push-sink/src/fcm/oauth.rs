//! The OAuth2 token endpoint a Google service account's `token_uri` points at: `POST /token`
//! with the form `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=<JWT>`
//! (RFC 7523), answered with a bearer access token for FCM.
//!
//! The assertion is an RS256 JWT signed with the account's private key, with claims `iss`
//! (the account's e-mail), `scope`, `aud` (this endpoint's URL), `iat` and `exp`. In
//! verification mode every claim and the signature are checked as Google does, failures are
//! 400 `invalid_grant` counted as [`VerifyFailure::OauthAssertion`], and issued tokens are
//! remembered for the FCM handler ([`super::Verifier`]). In counting mode any parseable
//! assertion gets a token, so load tests can run senders without real accounts.
//!
//! Token requests are counted only under `by_kind["oauth"]`: they are not pushes. The
//! configured latency does not apply to them.

use aws_lc_rs::signature::{RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey};
use base64::Engine as _;
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HOST};
use hyper::http::request::Parts;
use hyper::{Method, Request, Response, StatusCode};
use serde::Deserialize;
use serde::de::IgnoredAny;

use super::auth::{Rejection, Verifier};
use crate::body::{BodyError, read_body};
use crate::config::FcmAccount;
use crate::service::{Body, ResetStream, Shared};
use crate::stats::{Kind, VerifyFailure};

/// This module's kind, for counting.
const OAUTH: Kind = Kind::Oauth;

/// Where the endpoint listens: service accounts' `token_uri` is `{base_url}/token`.
pub const TOKEN_PATH: &str = "/token";

/// The only grant type served (RFC 7523 §2.1).
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// Scopes that allow sending through FCM.
const SCOPES: [&str; 2] = [
    "https://www.googleapis.com/auth/firebase.messaging",
    "https://www.googleapis.com/auth/cloud-platform",
];

/// Lifetime of issued tokens, seconds, as Google answers.
const EXPIRES_IN_SECS: u64 = 3599;
/// Longest assertion lifetime (`exp - iat`) Google accepts.
const MAX_ASSERTION_SECS: u64 = 3600;
/// How far ahead of the sink's clock `iat` may be.
const MAX_SKEW_SECS: u64 = 5 * 60;
/// Largest form read.
const MAX_FORM_BYTES: usize = 16 * 1024;

#[derive(Deserialize)]
struct Header {
    alg: String,
}

#[derive(Deserialize)]
struct Claims {
    iss: String,
    scope: String,
    aud: String,
    iat: u64,
    exp: u64,
}

/// Whether `path` is the token endpoint.
pub(crate) fn matches(path: &str) -> bool {
    path == TOKEN_PATH
}

/// Answers one token request.
pub(crate) async fn handle(
    shared: &Shared,
    request: Request<Incoming>,
) -> Result<Response<Body>, ResetStream> {
    shared.counters.request(Some(OAUTH));
    let (parts, body) = request.into_parts();
    if parts.method != Method::POST {
        let status = StatusCode::METHOD_NOT_ALLOWED;
        return Ok(error(
            shared,
            status,
            "invalid_request",
            "the token endpoint takes POST",
        ));
    }
    let verifier = shared.fcm_verifier.as_ref();
    let request_fault = |message: &str| {
        if verifier.is_some() {
            shared.counters.verify_failed(VerifyFailure::OauthRequest);
        }
        error(shared, StatusCode::BAD_REQUEST, "invalid_request", message)
    };
    let form_type = parts
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .starts_with("application/x-www-form-urlencoded")
        });
    if verifier.is_some() && !form_type {
        return Ok(request_fault(
            "content-type must be application/x-www-form-urlencoded",
        ));
    }
    let form = match read_body(body, true, MAX_FORM_BYTES).await {
        Ok((_, body)) => body.unwrap_or_default(),
        Err(BodyError::TooLarge(_)) => return Ok(request_fault("the form is too large")),
        Err(BodyError::Aborted) => return Err(ResetStream),
    };
    let Some((grant_type, assertion)) = parse_form(&form) else {
        return Ok(request_fault("the body is not a valid urlencoded form"));
    };
    if grant_type.as_deref() != Some(JWT_BEARER) {
        let message = format!("grant_type must be {JWT_BEARER}");
        return Ok(error(
            shared,
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            &message,
        ));
    }
    let Some(assertion) = assertion else {
        return Ok(request_fault("no assertion in the form"));
    };

    let checked = match verifier {
        Some(verifier) => {
            let origin = request_origin(&parts, verifier.scheme);
            let now = crate::stats::unix_ms() / 1000;
            verify_assertion(verifier, &assertion, origin.as_deref(), now).map(Some)
        }
        None => crate::jwt::parse::<IgnoredAny, IgnoredAny>(&assertion)
            .map(|_| None)
            .map_err(|why| (VerifyFailure::OauthAssertion, why.to_owned())),
    };
    let account = match checked {
        Ok(account) => account,
        Err((failure, message)) => {
            if verifier.is_some() {
                shared.counters.verify_failed(failure);
            }
            tracing::debug!(reason = failure.label(), %message, "token request refused");
            return Ok(error(
                shared,
                StatusCode::BAD_REQUEST,
                "invalid_grant",
                &message,
            ));
        }
    };
    let mut secret = [0u8; 32];
    if aws_lc_rs::rand::fill(&mut secret).is_err() {
        let status = StatusCode::INTERNAL_SERVER_ERROR;
        return Ok(error(
            shared,
            status,
            "server_error",
            "no randomness for a token",
        ));
    }
    let access_token = format!("ya29.sink-{}", crate::jwt::B64URL.encode(secret));
    if let (Some(verifier), Some(account)) = (verifier, account) {
        let expires_at = crate::stats::unix_ms() / 1000 + EXPIRES_IN_SECS;
        verifier.issue(&access_token, account, expires_at);
    }
    shared.counters.accepted(OAUTH, 1);
    let body = serde_json::json!({
        "access_token": access_token,
        "expires_in": EXPIRES_IN_SECS,
        "token_type": "Bearer",
    });
    Ok(shared.respond_json(OAUTH, StatusCode::OK, body.to_string()))
}

/// An OAuth error answer (RFC 6749 §5.2).
fn error(shared: &Shared, status: StatusCode, error: &str, description: &str) -> Response<Body> {
    let body = serde_json::json!({ "error": error, "error_description": description });
    shared.respond_json(OAUTH, status, body.to_string())
}

/// `<scheme>://<authority>`: the origin the client addressed (`:authority` in HTTP/2, `Host`
/// in HTTP/1.1).
fn request_origin(parts: &Parts, scheme: &str) -> Option<String> {
    let authority = parts
        .uri
        .authority()
        .map(|a| a.as_str())
        .or_else(|| parts.headers.get(HOST).and_then(|v| v.to_str().ok()))?;
    Some(format!("{scheme}://{authority}"))
}

/// Checks an assertion as Google does; returns the account it authenticates.
fn verify_assertion<'v>(
    verifier: &'v Verifier,
    assertion: &str,
    origin: Option<&str>,
    now: u64,
) -> Result<&'v FcmAccount, Rejection> {
    let invalid = |why: String| (VerifyFailure::OauthAssertion, why);
    let jwt = crate::jwt::parse::<Header, Claims>(assertion).map_err(|why| {
        invalid(format!(
            "assertion: {why} (claims iss, scope, aud, iat, exp)"
        ))
    })?;
    if jwt.header.alg != "RS256" {
        return Err(invalid(format!(
            "assertion alg is {:?}; RS256 is required",
            jwt.header.alg
        )));
    }
    let claims = &jwt.claims;
    if verifier.accounts.is_empty() {
        return Err(invalid(
            "no service account is configured (--fcm-service-accounts) to verify assertions"
                .to_owned(),
        ));
    }
    let account = verifier
        .accounts
        .iter()
        .find(|account| account.client_email == claims.iss)
        .ok_or_else(|| {
            invalid(format!(
                "iss {:?} is not a configured service account",
                claims.iss
            ))
        })?;
    UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, &account.public_key)
        .verify(jwt.signing_input.as_bytes(), &jwt.signature)
        .map_err(|_| {
            invalid(format!(
                "Invalid JWT Signature (not signed by {})",
                claims.iss
            ))
        })?;
    if !claims
        .scope
        .split_whitespace()
        .any(|scope| SCOPES.contains(&scope))
    {
        return Err(invalid(format!(
            "scope {:?} includes neither {} nor {}",
            claims.scope, SCOPES[0], SCOPES[1]
        )));
    }
    let origin =
        origin.ok_or_else(|| invalid("no Host or :authority to check aud against".to_owned()))?;
    let aud_origin = claims.aud.strip_suffix(TOKEN_PATH);
    if aud_origin.map(crate::webpush::normalize_origin)
        != Some(crate::webpush::normalize_origin(origin))
    {
        return Err(invalid(format!(
            "aud {:?} is not this token endpoint, {origin}{TOKEN_PATH}",
            claims.aud
        )));
    }
    if claims.exp <= now {
        return Err(invalid(format!(
            "Invalid JWT: the assertion expired {} s ago",
            now - claims.exp
        )));
    }
    if claims.iat > now + MAX_SKEW_SECS || claims.iat > claims.exp {
        return Err(invalid(format!(
            "Invalid JWT: iat {} is in the future or after exp",
            claims.iat
        )));
    }
    if claims.exp - claims.iat > MAX_ASSERTION_SECS {
        return Err(invalid(format!(
            "Invalid JWT: Token must be a short-lived token ({MAX_ASSERTION_SECS} s); exp - iat is {} s",
            claims.exp - claims.iat
        )));
    }
    Ok(account)
}

/// `grant_type` and `assertion` of an urlencoded form; `None` when it is not valid.
fn parse_form(form: &[u8]) -> Option<(Option<String>, Option<String>)> {
    let form = std::str::from_utf8(form).ok()?;
    let (mut grant_type, mut assertion) = (None, None);
    for pair in form.split('&').filter(|pair| !pair.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        match percent_decode(name)?.as_str() {
            "grant_type" => grant_type = Some(percent_decode(value)?),
            "assertion" => assertion = Some(percent_decode(value)?),
            _ => {}
        }
    }
    Some((grant_type, assertion))
}

/// Decodes `application/x-www-form-urlencoded` text: `+` is a space, `%XX` a byte.
fn percent_decode(text: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(text.len());
    let mut rest = text.bytes();
    while let Some(byte) = rest.next() {
        match byte {
            b'+' => bytes.push(b' '),
            b'%' => {
                let high = char::from(rest.next()?).to_digit(16)?;
                let low = char::from(rest.next()?).to_digit(16)?;
                // Two hex digits make at most 0xff.
                bytes.push((high * 16 + low) as u8);
            }
            other => bytes.push(other),
        }
    }
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_decode_as_urlencoded() {
        let form =
            b"grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=a.b.c";
        assert_eq!(
            parse_form(form),
            Some((Some(JWT_BEARER.to_owned()), Some("a.b.c".to_owned())))
        );
        assert_eq!(
            parse_form(b"assertion=x+y%2Bz&other=1"),
            Some((None, Some("x y+z".to_owned())))
        );
        assert_eq!(parse_form(b"grant_type=%zz"), None);
        assert_eq!(parse_form(b"grant_type=%4"), None);
        assert_eq!(parse_form(&[0xff]), None);
    }
}
