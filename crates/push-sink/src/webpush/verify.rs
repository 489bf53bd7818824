//! Verification mode for Web Push: does this request hold up as a strict push service (and
//! then the browser) would see it?
//!
//! VAPID first (401/403: who is sending), then the RFC 8030 headers (400: `Content-Encoding:
//! aes128gcm`, an integer `TTL`, a valid `Urgency` and `Topic` when present), then decryption
//! with the subscriber's keys, derived from the seed exactly as the `seed` command derived
//! them, so no key store is needed. The audience must be the origin the client addressed:
//! the sink's scheme with the `Host` (HTTP/1.1) or `:authority` (HTTP/2) it was sent.

use hyper::HeaderMap;
use hyper::header::{AUTHORIZATION, CONTENT_ENCODING, HOST};
use hyper::http::request::Parts;
use pushservice_model::{ObjectId, Urgency};
use pushservice_seed::subscriber_keys;

use super::decrypt::decrypt_aes128gcm;
use super::vapid::{Rejection, TokenCache};
use crate::config::Verify;
use crate::received::Received;
use crate::stats::VerifyFailure;

/// Checks and decrypts Web Push requests for one sink.
pub(crate) struct Verifier {
    key_seed: Vec<u8>,
    expected_subject: Option<String>,
    /// `http` or `https`: the scheme clients used to reach this sink.
    scheme: &'static str,
    tokens: TokenCache,
}

impl Verifier {
    pub(crate) fn new(verify: &Verify, scheme: &'static str) -> Self {
        Verifier {
            key_seed: verify.key_seed.clone(),
            expected_subject: verify.expected_subject.clone(),
            scheme,
            tokens: TokenCache::new(),
        }
    }

    /// Checks one request for subscriber `id` (24 hex digits) and decrypts `body`.
    pub(crate) fn verify(
        &self,
        parts: &Parts,
        id: &str,
        body: &[u8],
        attempt: u32,
    ) -> Result<Received, Rejection> {
        let headers = &parts.headers;
        let authorization = header(headers, AUTHORIZATION.as_str()).ok_or_else(|| {
            (
                VerifyFailure::MissingAuthorization,
                "no Authorization header: VAPID (RFC 8292) is required".to_owned(),
            )
        })?;
        let authority = parts
            .uri
            .authority()
            .map(|a| a.as_str())
            .or_else(|| header(headers, HOST.as_str()))
            .ok_or_else(|| {
                (
                    VerifyFailure::JwtAudience,
                    "no Host or :authority to check the JWT aud against".to_owned(),
                )
            })?;
        let origin = format!("{}://{authority}", self.scheme);
        let now = crate::stats::unix_ms() / 1000;
        let claims = self.tokens.check(
            authorization,
            &origin,
            now,
            self.expected_subject.as_deref(),
        )?;

        let (ttl, urgency, topic) = check_headers(headers)?;

        let object_id = ObjectId::parse_str(id).map_err(|_| {
            (
                VerifyFailure::Encryption,
                format!("subscriber id {id:?} is not an ObjectId: no keys to decrypt with"),
            )
        })?;
        let keys = subscriber_keys(&self.key_seed, &object_id);
        let plaintext = decrypt_aes128gcm(&keys.private_key, &keys.public_key, &keys.auth, body)
            .map_err(|e| (VerifyFailure::Encryption, format!("cannot decrypt: {e}")))?;

        Ok(Received {
            subscriber_id: id.to_owned(),
            plaintext,
            ttl,
            urgency,
            topic: topic.map(str::to_owned),
            vapid_sub: claims.sub.clone().unwrap_or_default(),
            vapid_aud: claims.aud.clone(),
            attempt,
            at: std::time::Instant::now(),
        })
    }
}

/// A header's value as text, when present and visible ASCII.
fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Checks `Content-Encoding`, `TTL`, `Urgency` and `Topic`; returns TTL, urgency and topic.
fn check_headers(headers: &HeaderMap) -> Result<(u32, Option<Urgency>, Option<&str>), Rejection> {
    // Exactly one coding: `aes128gcm` stacked with anything else is not a Web Push message.
    let mut encodings = headers.get_all(CONTENT_ENCODING).iter();
    let encoding = match (encodings.next(), encodings.next()) {
        (Some(only), None) => only.to_str().unwrap_or_default(),
        (None, _) => "",
        (Some(_), Some(_)) => "several values",
    };
    if !encoding.trim().eq_ignore_ascii_case("aes128gcm") {
        return Err((
            VerifyFailure::ContentEncoding,
            format!("Content-Encoding is {encoding:?}; Web Push needs aes128gcm (RFC 8291)"),
        ));
    }
    let ttl = header(headers, "ttl")
        .and_then(|v| v.trim().parse::<u32>().ok())
        .ok_or_else(|| {
            (
                VerifyFailure::Ttl,
                "TTL header missing or not a non-negative integer (RFC 8030 §5.2)".to_owned(),
            )
        })?;
    let urgency = match header(headers, "urgency").map(str::trim) {
        None => None,
        Some("very-low") => Some(Urgency::VeryLow),
        Some("low") => Some(Urgency::Low),
        Some("normal") => Some(Urgency::Normal),
        Some("high") => Some(Urgency::High),
        Some(other) => {
            return Err((
                VerifyFailure::Urgency,
                format!("Urgency {other:?}: use very-low, low, normal or high (RFC 8030 §5.3)"),
            ));
        }
    };
    let topic = header(headers, "topic");
    if let Some(topic) = topic {
        let base64url = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
        if topic.is_empty() || topic.len() > 32 || !topic.bytes().all(base64url) {
            return Err((
                VerifyFailure::Topic,
                format!("Topic {topic:?}: at most 32 base64url characters (RFC 8030 §5.4)"),
            ));
        }
    }
    Ok((ttl, urgency, topic))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn headers_are_checked_as_rfc_8030_says() {
        let ok = headers(&[("content-encoding", "aes128gcm"), ("ttl", "60")]);
        assert_eq!(check_headers(&ok).map_err(|e| e.0), Ok((60, None, None)));
        let full = headers(&[
            ("content-encoding", "aes128gcm"),
            ("ttl", "0"),
            ("urgency", "high"),
            ("topic", "news_1"),
        ]);
        assert_eq!(
            check_headers(&full).map_err(|e| e.0),
            Ok((0, Some(Urgency::High), Some("news_1")))
        );
        let reason = |pairs: &[(&'static str, &'static str)]| {
            check_headers(&headers(pairs)).map(|_| ()).map_err(|e| e.0)
        };
        assert_eq!(
            reason(&[("content-encoding", "aesgcm"), ("ttl", "60")]),
            Err(VerifyFailure::ContentEncoding)
        );
        assert_eq!(
            reason(&[("content-encoding", "aes128gcm")]),
            Err(VerifyFailure::Ttl)
        );
        let mut stacked = headers(&[("content-encoding", "aes128gcm"), ("ttl", "1")]);
        stacked.append("content-encoding", HeaderValue::from_static("gzip"));
        assert_eq!(
            check_headers(&stacked).map(|_| ()).map_err(|e| e.0),
            Err(VerifyFailure::ContentEncoding)
        );
        assert_eq!(
            reason(&[("content-encoding", "aes128gcm"), ("ttl", "-1")]),
            Err(VerifyFailure::Ttl)
        );
        assert_eq!(
            reason(&[
                ("content-encoding", "aes128gcm"),
                ("ttl", "1"),
                ("urgency", "now")
            ]),
            Err(VerifyFailure::Urgency)
        );
        assert_eq!(
            reason(&[
                ("content-encoding", "aes128gcm"),
                ("ttl", "1"),
                ("topic", "a b")
            ]),
            Err(VerifyFailure::Topic)
        );
    }
}
