//! Verification mode for APNs: does this request hold up as Apple's provider API would see it?
//!
//! The provider token first (403: who is sending, see `jwt`), then the `apns-*` headers (400:
//! a topic, and valid push type, priority, expiration, collapse id and id when present), then
//! the payload (400: a JSON object with an `aps` object). Each failure carries Apple's reason
//! for the response and a [`VerifyFailure`] for the counters.

use hyper::HeaderMap;
use hyper::header::AUTHORIZATION;
use hyper::http::request::Parts;

use super::Reason;
use super::jwt::ProviderTokens;
use crate::config::Verify;
use crate::received::{MobileKind, MobileReceived};
use crate::stats::VerifyFailure;

/// Push types Apple defines for `apns-push-type`.
const PUSH_TYPES: [&str; 10] = [
    "alert",
    "background",
    "voip",
    "complication",
    "fileprovider",
    "mdm",
    "location",
    "liveactivity",
    "pushtotalk",
    "widgets",
];

/// Longest `apns-collapse-id`, bytes.
const MAX_COLLAPSE_ID_BYTES: usize = 64;

/// A failed check: the counter, Apple's reason, and a detail for the log.
#[derive(Debug)]
pub(crate) struct Rejection {
    pub(crate) failure: VerifyFailure,
    pub(crate) reason: Reason,
    pub(crate) detail: String,
}

impl Rejection {
    pub(crate) fn new(failure: VerifyFailure, reason: Reason, detail: impl Into<String>) -> Self {
        Rejection {
            failure,
            reason,
            detail: detail.into(),
        }
    }
}

/// Checks APNs requests for one sink.
pub(crate) struct Verifier {
    tokens: ProviderTokens,
}

/// The `apns-*` headers of a valid request.
#[derive(Debug, Default, PartialEq, Eq)]
struct ApnsHeaders {
    topic: String,
    push_type: Option<String>,
    priority: Option<u8>,
    expiration: Option<u64>,
    collapse_id: Option<String>,
}

impl Verifier {
    pub(crate) fn new(verify: &Verify) -> Self {
        Verifier {
            tokens: ProviderTokens::new(verify.apns_keys.clone()),
        }
    }

    /// Checks one request for device `token` with payload `body`.
    pub(crate) fn verify(
        &self,
        parts: &Parts,
        token: &str,
        body: &[u8],
        attempt: u32,
    ) -> Result<MobileReceived, Rejection> {
        let headers = &parts.headers;
        let now = crate::stats::unix_ms() / 1000;
        let provider = self
            .tokens
            .check(header(headers, AUTHORIZATION.as_str()), now)?;
        let apns = check_headers(headers)?;
        let payload = check_payload(body)?;
        Ok(MobileReceived {
            kind: MobileKind::Apns,
            token: token.to_owned(),
            body: payload,
            apns_topic: Some(apns.topic),
            apns_push_type: apns.push_type,
            apns_priority: apns.priority,
            apns_expiration: apns.expiration,
            apns_collapse_id: apns.collapse_id,
            issuer: provider.team_id.clone(),
            project_id: None,
            attempt,
        })
    }
}

/// A header's value as text, when present and visible ASCII.
fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Whether `id` is a UUID in its 8-4-4-4-12 hex form (either case).
pub(crate) fn is_uuid(id: &str) -> bool {
    let groups: Vec<&str> = id.split('-').collect();
    groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12])
        && groups
            .iter()
            .all(|g| g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Checks the `apns-*` headers.
fn check_headers(headers: &HeaderMap) -> Result<ApnsHeaders, Rejection> {
    let bad = |reason: Reason, detail: String| {
        Err(Rejection::new(VerifyFailure::ApnsHeaders, reason, detail))
    };
    // A present header that is not visible ASCII is as bad as a wrong value.
    let optional = |name: &str| match headers.get(name) {
        None => Ok(None),
        Some(value) => value.to_str().map(|v| Some(v.trim())).map_err(|_| ()),
    };
    let topic = match header(headers, "apns-topic").map(str::trim) {
        Some(topic) if !topic.is_empty() => topic.to_owned(),
        _ => return bad(Reason::MissingTopic, "no apns-topic header".to_owned()),
    };
    let push_type = match optional("apns-push-type") {
        Ok(None) => None,
        Ok(Some(kind)) if PUSH_TYPES.contains(&kind) => Some(kind.to_owned()),
        other => {
            return bad(
                Reason::InvalidPushType,
                format!("apns-push-type {other:?}: use one of {PUSH_TYPES:?}"),
            );
        }
    };
    let priority = match optional("apns-priority") {
        Ok(None) => None,
        Ok(Some("10")) => Some(10),
        Ok(Some("5")) => Some(5),
        Ok(Some("1")) => Some(1),
        other => {
            return bad(
                Reason::BadPriority,
                format!("apns-priority {other:?}: use 10, 5 or 1"),
            );
        }
    };
    let expiration = match optional("apns-expiration") {
        Ok(None) => None,
        Ok(Some(secs)) => match secs.parse::<u64>() {
            Ok(secs) => Some(secs),
            Err(_) => {
                return bad(
                    Reason::BadExpirationDate,
                    format!("apns-expiration {secs:?} is not unix seconds"),
                );
            }
        },
        Err(()) => {
            return bad(
                Reason::BadExpirationDate,
                "apns-expiration is not ASCII".to_owned(),
            );
        }
    };
    let collapse_id = match headers.get("apns-collapse-id") {
        None => None,
        Some(id) if id.len() <= MAX_COLLAPSE_ID_BYTES => {
            Some(String::from_utf8_lossy(id.as_bytes()).into_owned())
        }
        Some(id) => {
            return bad(
                Reason::BadCollapseId,
                format!(
                    "apns-collapse-id is {} bytes; at most {MAX_COLLAPSE_ID_BYTES}",
                    id.len()
                ),
            );
        }
    };
    match optional("apns-id") {
        Ok(None) => {}
        Ok(Some(id)) if is_uuid(id) => {}
        other => {
            return bad(
                Reason::BadMessageId,
                format!("apns-id {other:?} is not a UUID (8-4-4-4-12 hex)"),
            );
        }
    }
    Ok(ApnsHeaders {
        topic,
        push_type,
        priority,
        expiration,
        collapse_id,
    })
}

/// Checks the payload: a JSON object with an `aps` object.
fn check_payload(body: &[u8]) -> Result<serde_json::Value, Rejection> {
    if body.is_empty() {
        return Err(Rejection::new(
            VerifyFailure::ApnsPayload,
            Reason::PayloadEmpty,
            "the payload is empty",
        ));
    }
    let bad = |detail: &str| Rejection::new(VerifyFailure::ApnsPayload, Reason::BadRequest, detail);
    let payload: serde_json::Value =
        serde_json::from_slice(body).map_err(|_| bad("the payload is not JSON"))?;
    if !payload.get("aps").is_some_and(serde_json::Value::is_object) {
        return Err(bad("the payload is not a JSON object with an `aps` object"));
    }
    Ok(payload)
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

    fn reason(pairs: &[(&'static str, &'static str)]) -> Result<(), Reason> {
        check_headers(&headers(pairs))
            .map(|_| ())
            .map_err(|r| r.reason)
    }

    #[test]
    fn headers_are_checked_as_apple_documents() {
        let full = check_headers(&headers(&[
            ("apns-topic", "com.example.app"),
            ("apns-push-type", "alert"),
            ("apns-priority", "5"),
            ("apns-expiration", "0"),
            ("apns-collapse-id", "news"),
            ("apns-id", "123e4567-E89B-12d3-a456-426614174000"),
        ]))
        .map_err(|r| r.reason);
        assert_eq!(
            full,
            Ok(ApnsHeaders {
                topic: "com.example.app".to_owned(),
                push_type: Some("alert".to_owned()),
                priority: Some(5),
                expiration: Some(0),
                collapse_id: Some("news".to_owned()),
            })
        );
        let topic = ("apns-topic", "t");
        assert_eq!(reason(&[]), Err(Reason::MissingTopic));
        assert_eq!(
            reason(&[topic, ("apns-push-type", "Alert")]),
            Err(Reason::InvalidPushType)
        );
        assert_eq!(
            reason(&[topic, ("apns-priority", "9")]),
            Err(Reason::BadPriority)
        );
        assert_eq!(
            reason(&[topic, ("apns-expiration", "-1")]),
            Err(Reason::BadExpirationDate)
        );
        let long_id = "x".repeat(65).leak();
        assert_eq!(
            reason(&[topic, ("apns-collapse-id", long_id)]),
            Err(Reason::BadCollapseId)
        );
        assert_eq!(
            reason(&[topic, ("apns-id", "123e4567e89b12d3a456426614174000")]),
            Err(Reason::BadMessageId)
        );
    }

    #[test]
    fn payloads_need_an_aps_object() {
        let reason = |b: &[u8]| check_payload(b).map(|_| ()).map_err(|r| r.reason);
        assert_eq!(reason(br#"{"aps":{"alert":"hi"}}"#), Ok(()));
        assert_eq!(reason(b""), Err(Reason::PayloadEmpty));
        assert_eq!(reason(b"{"), Err(Reason::BadRequest));
        assert_eq!(reason(br#"{"alert":"hi"}"#), Err(Reason::BadRequest));
        assert_eq!(reason(br#"{"aps":"hi"}"#), Err(Reason::BadRequest));
    }
}
