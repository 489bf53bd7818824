//! The FCM HTTP v1 kind: `POST /v1/projects/<project id>/messages:send`, and (in [`oauth`])
//! the OAuth2 token endpoint its senders get access tokens from.
//!
//! Per request, in the same order as Web Push:
//! 1. count it; an unknown path under `/v1/` is 404, a method other than POST 405;
//! 2. read the body (kept even in counting mode: the fate key, `message.token`, is in it) and
//!    find the token; a body that is not JSON or has no token is 400 `INVALID_ARGUMENT`;
//! 3. find the token's planned fate and count the attempt, then wait the configured latency;
//! 4. answer the fate when it is not "accept" on this attempt — 404 `UNREGISTERED` (gone and
//!    not found alike), 429 `QUOTA_EXCEEDED` with `Retry-After`, 500 `INTERNAL`, or a reset —
//!    before verification;
//! 5. in verification mode, check the access token (`auth`: issued here, unexpired, for this
//!    project) and the message (`message`); failures are 401, 403 or 400, counted by reason;
//! 6. answer 200 `{"name":"projects/<project>/messages/<id>"}` and count the acceptance (and
//!    record the delivery when verifying). A `validate_only` request gets the same checks and
//!    answer (with Google's fixed `fake_message_id`) but delivers nothing, so is neither
//!    counted as accepted nor recorded.
//!
//! Errors are Google's JSON: `{"error":{"code","message","status","details":[{FcmError}]}}`.

mod auth;
mod message;
pub mod oauth;

use hyper::body::Incoming;
use hyper::header::{HeaderValue, RETRY_AFTER};
use hyper::{Method, Request, Response, StatusCode};

use crate::body::{BodyError, read_body};
use crate::fate::{Fate, fate_for_hash, id_hash, token_key};
use crate::service::{Body, ResetStream, Shared};
use crate::stats::{Kind, VerifyFailure};

pub(crate) use auth::Verifier;

/// This module's kind, for counting.
const FCM: Kind = Kind::Fcm;

/// Largest request body read. FCM limits the message payload to 4096 bytes; the JSON around
/// it (token, Android options) is allowed plenty on top.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The project id of an FCM send path: `/v1/projects/<project id>/messages:send`.
pub fn project_id(path: &str) -> Option<&str> {
    path.strip_prefix("/v1/projects/")?
        .strip_suffix("/messages:send")
        .filter(|project| !project.is_empty() && !project.contains('/'))
}

/// Whether `path` is meant for FCM (answered 404 unless it is a send path).
pub(crate) fn matches(path: &str) -> bool {
    path.starts_with("/v1/")
}

/// Answers one FCM request (see the module docs for the steps).
pub(crate) async fn handle(
    shared: &Shared,
    request: Request<Incoming>,
) -> Result<Response<Body>, ResetStream> {
    shared.counters.request(Some(FCM));
    let (parts, body) = request.into_parts();
    let Some(project) = project_id(parts.uri.path()) else {
        let message = "no such method: POST to /v1/projects/<project id>/messages:send";
        return Ok(error(
            shared,
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            message,
            None,
        ));
    };
    if parts.method != Method::POST {
        let message = "messages:send takes POST";
        return Ok(error(
            shared,
            StatusCode::METHOD_NOT_ALLOWED,
            "INVALID_ARGUMENT",
            message,
            None,
        ));
    }
    let verifying = shared.fcm_verifier.is_some();
    let body = match read_body(body, true, MAX_BODY_BYTES).await {
        Ok((length, body)) => {
            shared.counters.bytes_in(length);
            body.unwrap_or_default()
        }
        Err(BodyError::TooLarge(length)) => {
            shared.counters.bytes_in(length);
            if verifying {
                shared.counters.verify_failed(VerifyFailure::FcmMessage);
            }
            let message = format!("request body over {MAX_BODY_BYTES} bytes: message too big");
            return Ok(invalid_argument(shared, &message));
        }
        // The client went away mid-body: nobody to answer.
        Err(BodyError::Aborted) => return Err(ResetStream),
    };
    let target = match message::target(&body) {
        Ok(target) => target,
        Err(why) => {
            if verifying {
                shared.counters.verify_failed(VerifyFailure::FcmMessage);
            }
            return Ok(invalid_argument(shared, &why));
        }
    };
    let token: &str = &target.token;
    let hash = id_hash(token);
    let key = token_key(token, hash);
    let fate = fate_for_hash(&shared.behaviour, hash);
    let attempt = shared.subscribers.begin_attempt(key, hash);

    shared.delay(Kind::Fcm).await;

    let first = attempt == 1;
    match fate {
        Fate::Gone(_) => {
            let message = "Requested entity was not found.";
            let code = Some("UNREGISTERED");
            return Ok(error(
                shared,
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
                message,
                code,
            ));
        }
        Fate::ThrottleOnce if first => {
            let message = "Quota exceeded for sending to this device.";
            let code = Some("QUOTA_EXCEEDED");
            let status = StatusCode::TOO_MANY_REQUESTS;
            let mut response = error(shared, status, "RESOURCE_EXHAUSTED", message, code);
            response.headers_mut().insert(
                RETRY_AFTER,
                HeaderValue::from(shared.behaviour.retry_after_secs),
            );
            return Ok(response);
        }
        Fate::ErrorOnce if first => {
            let message = "Internal error encountered.";
            let status = StatusCode::INTERNAL_SERVER_ERROR;
            return Ok(error(shared, status, "INTERNAL", message, Some("INTERNAL")));
        }
        Fate::ResetOnce if first => {
            shared.counters.reset_stream();
            return Err(ResetStream);
        }
        Fate::Accept | Fate::ThrottleOnce | Fate::ErrorOnce | Fate::ResetOnce => {}
    }

    let received = match &shared.fcm_verifier {
        Some(verifier) => match verifier.verify(&parts, project, &body, token, attempt) {
            Ok(received) => Some(received),
            Err((failure, message)) => {
                shared.counters.verify_failed(failure);
                tracing::debug!(
                    project,
                    token_prefix = token.get(..8).unwrap_or(token),
                    reason = failure.label(),
                    %message,
                    "FCM push rejected"
                );
                return Ok(rejected(shared, failure, &message));
            }
        },
        None => None,
    };
    let name = if target.validate_only {
        format!("projects/{project}/messages/fake_message_id")
    } else {
        let nth = shared.subscribers.accept(key, hash);
        shared.counters.accepted(FCM, nth);
        if let (Some(log), Some(received)) = (&shared.received_mobile, received) {
            log.record(token, received);
        }
        format!(
            "projects/{project}/messages/0:{}%{:016x}",
            crate::stats::unix_ms(),
            shared.random_u64()
        )
    };
    let body = serde_json::json!({ "name": name }).to_string();
    Ok(shared.respond_json(FCM, StatusCode::OK, body))
}

/// A Google API error: `status` is the canonical code name, `error_code` the FcmError detail.
fn error(
    shared: &Shared,
    code: StatusCode,
    status: &str,
    message: &str,
    error_code: Option<&str>,
) -> Response<Body> {
    let mut error = serde_json::json!({
        "code": code.as_u16(),
        "message": message,
        "status": status,
    });
    if let Some(error_code) = error_code {
        error["details"] = serde_json::json!([{
            "@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError",
            "errorCode": error_code,
        }]);
    }
    let body = serde_json::json!({ "error": error }).to_string();
    shared.respond_json(FCM, code, body)
}

/// The answer of FCM when it is down (an outage, see [`crate::outage`]): `status` with
/// Google's canonical status name and the FcmError code Google documents for that HTTP status
/// (503 `UNAVAILABLE`, 500 `INTERNAL`, 429 `QUOTA_EXCEEDED`, ...).
pub(crate) fn unavailable(shared: &Shared, status: StatusCode) -> Response<Body> {
    let (canonical, error_code) = match status.as_u16() {
        400 => ("INVALID_ARGUMENT", "INVALID_ARGUMENT"),
        401 => ("UNAUTHENTICATED", "THIRD_PARTY_AUTH_ERROR"),
        403 => ("PERMISSION_DENIED", "SENDER_ID_MISMATCH"),
        404 => ("NOT_FOUND", "UNREGISTERED"),
        429 => ("RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED"),
        500 => ("INTERNAL", "INTERNAL"),
        503 => ("UNAVAILABLE", "UNAVAILABLE"),
        504 => ("DEADLINE_EXCEEDED", "UNSPECIFIED_ERROR"),
        _ if status.is_client_error() => ("FAILED_PRECONDITION", "UNSPECIFIED_ERROR"),
        _ => ("UNKNOWN", "UNSPECIFIED_ERROR"),
    };
    let message = "The service is currently unavailable (push-sink outage).";
    error(shared, status, canonical, message, Some(error_code))
}

/// 400 `INVALID_ARGUMENT`.
fn invalid_argument(shared: &Shared, message: &str) -> Response<Body> {
    let status = StatusCode::BAD_REQUEST;
    error(
        shared,
        status,
        "INVALID_ARGUMENT",
        message,
        Some("INVALID_ARGUMENT"),
    )
}

/// The answer to a verification failure.
fn rejected(shared: &Shared, failure: VerifyFailure, message: &str) -> Response<Body> {
    match failure {
        VerifyFailure::FcmAuth => error(
            shared,
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
            message,
            None,
        ),
        VerifyFailure::FcmSenderMismatch => error(
            shared,
            StatusCode::FORBIDDEN,
            "PERMISSION_DENIED",
            message,
            Some("SENDER_ID_MISMATCH"),
        ),
        _ => invalid_argument(shared, message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_project_is_between_projects_and_messages_send() {
        assert_eq!(
            project_id("/v1/projects/demo-1/messages:send"),
            Some("demo-1")
        );
        assert_eq!(project_id("/v1/projects//messages:send"), None);
        assert_eq!(project_id("/v1/projects/a/b/messages:send"), None);
        assert_eq!(project_id("/v1/projects/demo-1/messages"), None);
        assert!(matches("/v1/anything"));
        assert!(!matches("/token"));
    }
}
