//! The Web Push kind (RFC 8030): `POST <any prefix>/<24-hex subscriber id>`.
//!
//! Per request, in this order:
//! 1. count it, find the subscriber id (the last path segment) and its planned fate;
//! 2. count the attempt and read the body (counting its bytes, keeping them only to verify);
//! 3. wait the configured latency;
//! 4. answer the fate when it is not "accept" on this attempt (410/404, 429, 500, reset) —
//!    before verification, as a push service rejects unknown or throttled subscriptions first;
//! 5. in verification mode, check VAPID, headers and decrypt (`verify`); failures are 400,
//!    401 or 403, counted by reason;
//! 6. answer 201 and count the acceptance (and record the delivery when verifying).
//!
//! Counting mode allocates nothing here: the id is parsed in place, the table is keyed by its
//! 12 bytes, body frames are counted and dropped, and the 201 has an empty static body.

pub mod decrypt;
mod vapid;
mod verify;

use hyper::body::Incoming;
use hyper::header::{HeaderValue, RETRY_AFTER};
use hyper::{Method, Request, Response, StatusCode};

use crate::body::{BodyError, read_body};
use crate::fate::{Fate, fate_for_hash, id_hash, parse_key};
use crate::service::{Body, ResetStream, Shared};
use crate::stats::Kind;

/// This module's kind, for counting.
const WEBPUSH: Kind = Kind::WebPush;

pub use decrypt::{DecryptError, decrypt_aes128gcm};
pub(crate) use vapid::normalize_origin;
pub(crate) use verify::Verifier;

/// Largest body accepted. RFC 8030 requires push services to take 4096 bytes of payload;
/// with the `aes128gcm` header and tag a maximal message is about 4200 bytes.
pub const MAX_BODY_BYTES: usize = 8 * 1024;

/// The subscriber id of a Web Push endpoint path: its last segment, when that is 24 hex
/// digits.
pub fn subscriber_id(path: &str) -> Option<&str> {
    let last = path.rsplit('/').next()?;
    parse_key(last).map(|_| last)
}

/// Whether `path` is a Web Push endpoint.
pub(crate) fn matches(path: &str) -> bool {
    subscriber_id(path).is_some()
}

/// Answers one Web Push request (see the module docs for the steps).
pub(crate) async fn handle(
    shared: &Shared,
    request: Request<Incoming>,
) -> Result<Response<Body>, ResetStream> {
    shared.counters.request(Some(WEBPUSH));
    let (parts, body) = request.into_parts();
    let path = parts.uri.path();
    // `matches` routed us here, so this succeeds; answer 404 rather than trust it blindly.
    let Some((id, key)) = subscriber_id(path).and_then(|id| Some((id, parse_key(id)?))) else {
        return Ok(shared.respond(
            WEBPUSH,
            StatusCode::NOT_FOUND,
            "no subscriber id in the path",
        ));
    };
    if parts.method != Method::POST {
        return Ok(shared.respond(
            WEBPUSH,
            StatusCode::METHOD_NOT_ALLOWED,
            "push messages are POSTed",
        ));
    }
    let hash = id_hash(id);
    let fate = fate_for_hash(&shared.behaviour, hash);
    let attempt = shared.subscribers.begin_attempt(key, hash);

    let keep_body = shared.webpush_verifier.is_some();
    let body = match read_body(body, keep_body, MAX_BODY_BYTES).await {
        Ok((length, body)) => {
            shared.counters.bytes_in(length);
            body
        }
        Err(BodyError::TooLarge(length)) => {
            shared.counters.bytes_in(length);
            return Ok(shared.respond(
                WEBPUSH,
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("body over {MAX_BODY_BYTES} bytes"),
            ));
        }
        // The client went away mid-body: nobody to answer.
        Err(BodyError::Aborted) => return Err(ResetStream),
    };

    shared.delay(Kind::WebPush).await;

    let first = attempt == 1;
    match fate {
        Fate::Gone(410) => {
            return Ok(shared.respond(WEBPUSH, StatusCode::GONE, "subscription expired"));
        }
        Fate::Gone(_) => {
            return Ok(shared.respond(WEBPUSH, StatusCode::NOT_FOUND, "subscription not found"));
        }
        Fate::ThrottleOnce if first => {
            let mut response = shared.respond(WEBPUSH, StatusCode::TOO_MANY_REQUESTS, "slow down");
            response.headers_mut().insert(
                RETRY_AFTER,
                HeaderValue::from(shared.behaviour.retry_after_secs),
            );
            return Ok(response);
        }
        Fate::ErrorOnce if first => {
            return Ok(shared.respond(
                WEBPUSH,
                StatusCode::INTERNAL_SERVER_ERROR,
                "simulated push service failure",
            ));
        }
        Fate::ResetOnce if first => {
            shared.counters.reset_stream();
            return Err(ResetStream);
        }
        Fate::Accept | Fate::ThrottleOnce | Fate::ErrorOnce | Fate::ResetOnce => {}
    }

    let received = match (&shared.webpush_verifier, &body) {
        (Some(verifier), Some(body)) => match verifier.verify(&parts, id, body, attempt) {
            Ok(received) => Some(received),
            Err((reason, message)) => {
                shared.counters.verify_failed(reason);
                tracing::debug!(subscriber_id = id, reason = reason.label(), %message, "push rejected");
                let status =
                    StatusCode::from_u16(reason.status()).unwrap_or(StatusCode::BAD_REQUEST);
                return Ok(shared.respond(WEBPUSH, status, message));
            }
        },
        _ => None,
    };
    let nth = shared.subscribers.accept(key, hash);
    shared.counters.accepted(WEBPUSH, nth);
    if let (Some(log), Some(received)) = (&shared.received, received) {
        log.record(id, received);
    }
    Ok(shared.respond(WEBPUSH, StatusCode::CREATED, ""))
}

/// The answer of a push service that is down (an outage, see [`crate::outage`]): `status`
/// with an error body in the JSON shape Mozilla's autopush uses,
/// `{"code", "errno", "error", "message"}` (errno 999: unknown error).
pub(crate) fn unavailable(shared: &Shared, status: StatusCode) -> Response<Body> {
    let body = serde_json::json!({
        "code": status.as_u16(),
        "errno": 999,
        "error": status.canonical_reason().unwrap_or("Error"),
        "message": "push service unavailable (push-sink outage)",
    })
    .to_string();
    shared.respond_json(WEBPUSH, status, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_subscriber_id_is_the_last_path_segment() {
        let id = "65a1b2c3d4e5f60718293a4b";
        assert_eq!(subscriber_id(&format!("/wp/{id}")), Some(id));
        assert_eq!(subscriber_id(&format!("/any/prefix/{id}")), Some(id));
        assert_eq!(subscriber_id(&format!("/{id}")), Some(id));
        assert_eq!(subscriber_id(&format!("/wp/{id}/")), None);
        assert_eq!(subscriber_id("/wp/not-an-id"), None);
        assert_eq!(subscriber_id("/wp/"), None);
    }
}
