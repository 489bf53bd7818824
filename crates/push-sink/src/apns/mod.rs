//! The APNs kind (Apple's provider API): `POST /3/device/<hex device token>`.
//!
//! Per request, in the same order as Web Push:
//! 1. count it; a method other than POST is 405 `MethodNotAllowed`, a token that is not hex
//!    digits 400 `BadDeviceToken`;
//! 2. find the token's planned fate and count the attempt (the table key is derived from the
//!    token's hashes, see [`crate::fate`]); read the body, counting its bytes and keeping them
//!    only to verify; over 4096 bytes is 413 `PayloadTooLarge`;
//! 3. wait the configured latency;
//! 4. answer the fate when it is not "accept" on this attempt — 410 `Unregistered` (gone),
//!    400 `BadDeviceToken` (not found), 429 `TooManyRequests` with `Retry-After`, 500
//!    `InternalServerError`, or a reset — before verification, as APNs judges the token first;
//! 5. in verification mode, check the provider token (`jwt`), the `apns-*` headers and the
//!    payload (`verify`); failures are 403 or 400 with Apple's reason, counted by
//!    [`VerifyFailure`];
//! 6. answer 200 with an `apns-id` header (the request's, or a generated UUID) and count the
//!    acceptance (and record the delivery when verifying).
//!
//! Error bodies are Apple's `{"reason":"<Reason>"}`, static for every reason but
//! `Unregistered` (which carries a timestamp). Counting mode thus allocates nothing here
//! beyond a generated `apns-id` header value (36 bytes) when the client sent none.

mod jwt;
mod verify;

use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, RETRY_AFTER};
use hyper::{Method, Request, Response, StatusCode};

use crate::body::{BodyError, read_body};
use crate::fate::{Fate, fate_for_hash, id_hash, token_key};
use crate::service::{Body, ResetStream, Shared};
use crate::stats::{Kind, VerifyFailure};

pub(crate) use verify::Verifier;

/// This module's kind, for counting.
const APNS: Kind = Kind::Apns;

/// Path prefix of APNs requests; the device token follows.
pub const PATH_PREFIX: &str = "/3/device/";

/// Largest payload APNs accepts for regular notifications (VoIP allows 5120; the sink holds
/// every push type to the stricter limit).
pub const MAX_PAYLOAD_BYTES: usize = 4096;

/// Defines [`Reason`]: Apple's error reasons, each with its status and its static JSON body.
macro_rules! reasons {
    ($($(#[$doc:meta])* $name:ident = $status:ident,)*) => {
        /// An APNs error reason, as Apple names it in `{"reason": ...}`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub(crate) enum Reason {
            $($(#[$doc])* $name,)*
        }

        impl Reason {
            /// The status Apple answers with this reason.
            pub(crate) fn status(self) -> StatusCode {
                match self {
                    $(Reason::$name => StatusCode::$status,)*
                }
            }

            /// `{"reason":"<Reason>"}`.
            fn body(self) -> &'static [u8] {
                match self {
                    $(Reason::$name =>
                        concat!("{\"reason\":\"", stringify!($name), "\"}").as_bytes(),)*
                }
            }
        }
    };
}

reasons! {
    /// The device token in the path is not a token (or, as a planned fate, unknown).
    BadDeviceToken = BAD_REQUEST,
    /// No `apns-topic` header.
    MissingTopic = BAD_REQUEST,
    /// `apns-push-type` is not one Apple defines.
    InvalidPushType = BAD_REQUEST,
    /// `apns-priority` is not 10, 5 or 1.
    BadPriority = BAD_REQUEST,
    /// `apns-expiration` is not unix seconds.
    BadExpirationDate = BAD_REQUEST,
    /// `apns-collapse-id` is over 64 bytes.
    BadCollapseId = BAD_REQUEST,
    /// `apns-id` is not a UUID.
    BadMessageId = BAD_REQUEST,
    /// The body is empty.
    PayloadEmpty = BAD_REQUEST,
    /// The body is not a JSON object with an `aps` object (Apple has no closer reason).
    BadRequest = BAD_REQUEST,
    /// No `authorization` header.
    MissingProviderToken = FORBIDDEN,
    /// The provider token is malformed, signed by an unknown key or for another team.
    InvalidProviderToken = FORBIDDEN,
    /// The provider token was issued over an hour ago.
    ExpiredProviderToken = FORBIDDEN,
    /// Not a POST.
    MethodNotAllowed = METHOD_NOT_ALLOWED,
    /// The body is over [`MAX_PAYLOAD_BYTES`].
    PayloadTooLarge = PAYLOAD_TOO_LARGE,
    /// Too many requests for this device token.
    TooManyRequests = TOO_MANY_REQUESTS,
    /// APNs failed.
    InternalServerError = INTERNAL_SERVER_ERROR,
    /// The request path is not a provider API path.
    BadPath = NOT_FOUND,
    /// The action is not allowed.
    Forbidden = FORBIDDEN,
    /// APNs is unavailable.
    ServiceUnavailable = SERVICE_UNAVAILABLE,
}

/// The device token of an APNs request path: what follows [`PATH_PREFIX`], when it is one or
/// more hex digits (either case).
pub fn device_token(path: &str) -> Option<&str> {
    path.strip_prefix(PATH_PREFIX)
        .filter(|token| !token.is_empty() && token.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Whether `path` is an APNs request (whatever its token).
pub(crate) fn matches(path: &str) -> bool {
    path.starts_with(PATH_PREFIX)
}

/// Answers one APNs request (see the module docs for the steps).
pub(crate) async fn handle(
    shared: &Shared,
    request: Request<Incoming>,
) -> Result<Response<Body>, ResetStream> {
    shared.counters.request(Some(APNS));
    let (parts, body) = request.into_parts();
    if parts.method != Method::POST {
        return Ok(reply(shared, Reason::MethodNotAllowed));
    }
    let Some(token) = device_token(parts.uri.path()) else {
        if shared.apns_verifier.is_some() {
            shared
                .counters
                .verify_failed(VerifyFailure::ApnsDeviceToken);
        }
        return Ok(reply(shared, Reason::BadDeviceToken));
    };
    let hash = id_hash(token);
    let key = token_key(token, hash);
    let fate = fate_for_hash(&shared.behaviour, hash);
    let attempt = shared.subscribers.begin_attempt(key, hash);

    let keep_body = shared.apns_verifier.is_some();
    let body = match read_body(body, keep_body, MAX_PAYLOAD_BYTES).await {
        Ok((length, body)) => {
            shared.counters.bytes_in(length);
            body
        }
        Err(BodyError::TooLarge(length)) => {
            shared.counters.bytes_in(length);
            return Ok(reply(shared, Reason::PayloadTooLarge));
        }
        // The client went away mid-body: nobody to answer.
        Err(BodyError::Aborted) => return Err(ResetStream),
    };

    shared.delay(Kind::Apns).await;

    let first = attempt == 1;
    match fate {
        Fate::Gone(410) => return Ok(unregistered(shared)),
        Fate::Gone(_) => return Ok(reply(shared, Reason::BadDeviceToken)),
        Fate::ThrottleOnce if first => {
            let mut response = reply(shared, Reason::TooManyRequests);
            response.headers_mut().insert(
                RETRY_AFTER,
                HeaderValue::from(shared.behaviour.retry_after_secs),
            );
            return Ok(response);
        }
        Fate::ErrorOnce if first => return Ok(reply(shared, Reason::InternalServerError)),
        Fate::ResetOnce if first => {
            shared.counters.reset_stream();
            return Err(ResetStream);
        }
        Fate::Accept | Fate::ThrottleOnce | Fate::ErrorOnce | Fate::ResetOnce => {}
    }

    let received = match (&shared.apns_verifier, &body) {
        (Some(verifier), Some(body)) => match verifier.verify(&parts, token, body, attempt) {
            Ok(received) => Some(received),
            Err(rejection) => {
                shared.counters.verify_failed(rejection.failure);
                tracing::debug!(
                    token_prefix = token.get(..8).unwrap_or(token),
                    reason = rejection.failure.label(),
                    detail = %rejection.detail,
                    "APNs push rejected"
                );
                return Ok(reply(shared, rejection.reason));
            }
        },
        _ => None,
    };
    let nth = shared.subscribers.accept(key, hash);
    shared.counters.accepted(APNS, nth);
    if let (Some(log), Some(received)) = (&shared.received_mobile, received) {
        log.record(token, received);
    }
    let apns_id = match parts.headers.get("apns-id") {
        Some(sent) => Some(sent.clone()),
        None => HeaderValue::from_bytes(&uuid(shared.random_u64(), shared.random_u64())).ok(),
    };
    let mut response = shared.respond(APNS, StatusCode::OK, Bytes::new());
    if let Some(apns_id) = apns_id {
        response.headers_mut().insert("apns-id", apns_id);
    }
    Ok(response)
}

/// Counts and builds the answer with `reason`.
fn reply(shared: &Shared, reason: Reason) -> Response<Body> {
    shared.respond_json(APNS, reason.status(), Bytes::from_static(reason.body()))
}

/// 410 `Unregistered`, with the time (unix ms) APNs learnt the token was no longer valid.
fn unregistered(shared: &Shared) -> Response<Body> {
    let body = format!(
        r#"{{"reason":"Unregistered","timestamp":{}}}"#,
        crate::stats::unix_ms()
    );
    shared.respond_json(APNS, StatusCode::GONE, body)
}

/// The answer of APNs when it is down (an outage, see [`crate::outage`]): `status` with the
/// reason Apple gives for it (`ServiceUnavailable` for 503 and unlisted 5xx,
/// `InternalServerError`, `TooManyRequests`, `BadRequest` for unlisted 4xx, ...). A 400
/// "outage" plays a provider whose environment does not match its app's tokens (sandbox
/// tokens sent to production): Apple answers `BadDeviceToken` for every device.
pub(crate) fn unavailable(shared: &Shared, status: StatusCode) -> Response<Body> {
    let reason = match status.as_u16() {
        400 => Reason::BadDeviceToken,
        403 => Reason::Forbidden,
        404 => Reason::BadPath,
        405 => Reason::MethodNotAllowed,
        410 => return unregistered(shared),
        413 => Reason::PayloadTooLarge,
        429 => Reason::TooManyRequests,
        500 => Reason::InternalServerError,
        _ if status.is_client_error() => Reason::BadRequest,
        _ => Reason::ServiceUnavailable,
    };
    shared.respond_json(APNS, status, Bytes::from_static(reason.body()))
}

/// A version-4-shaped UUID, uppercase as Apple writes them, from 128 well-mixed bits.
fn uuid(high: u64, low: u64) -> [u8; 36] {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut bits = (u128::from(high) << 64) | u128::from(low);
    // Version 4 and the RFC 4122 variant.
    bits = (bits & !(0xf << 76)) | (0x4 << 76);
    bits = (bits & !(0x3 << 62)) | (0x2 << 62);
    let mut out = [b'-'; 36];
    let mut nibble = 0;
    for (i, slot) in out.iter_mut().enumerate() {
        if matches!(i, 8 | 13 | 18 | 23) {
            continue;
        }
        *slot = HEX[((bits >> (124 - 4 * nibble)) & 0xf) as usize];
        nibble += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_tokens_are_hex_after_the_prefix() {
        assert_eq!(device_token("/3/device/00fA9b"), Some("00fA9b"));
        assert_eq!(device_token("/3/device/"), None);
        assert_eq!(device_token("/3/device/xyz"), None);
        assert_eq!(device_token("/3/device/ab/cd"), None);
        assert!(matches("/3/device/xyz"));
        assert!(!matches("/wp/65a1b2c3d4e5f60718293a4b"));
    }

    #[test]
    fn reasons_have_apple_bodies_and_statuses() {
        assert_eq!(
            Reason::MissingTopic.body(),
            br#"{"reason":"MissingTopic"}"#.as_slice()
        );
        assert_eq!(Reason::ExpiredProviderToken.status(), StatusCode::FORBIDDEN);
        assert_eq!(Reason::PayloadTooLarge.status().as_u16(), 413);
    }

    #[test]
    fn generated_ids_are_uuids() {
        let id = uuid(u64::MAX, 0x0123_4567_89ab_cdef);
        let id = std::str::from_utf8(&id).expect("ASCII");
        assert!(verify::is_uuid(id), "{id}");
        assert_eq!(&id[14..15], "4", "{id}");
        assert_ne!(uuid(1, 2), uuid(1, 3));
    }
}
