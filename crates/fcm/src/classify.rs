//! Maps an FCM v1 answer (status and the `errorCode` of its Google error body) to a
//! [`DeliveryOutcome`].
//!
//! | answer | outcome |
//! | --- | --- |
//! | 200 | `Accepted` |
//! | 404 `UNREGISTERED` (any 404) | `SubscriptionGone`: the app was uninstalled or the token expired |
//! | 400 `INVALID_ARGUMENT` naming the registration token | `SubscriptionGone`: the token is not a valid FCM token |
//! | 401 `UNAUTHENTICATED` | `Transient`: the client drops its access token and fetches a new one |
//! | 429 `QUOTA_EXCEEDED`, 500 `INTERNAL`, 503 `UNAVAILABLE` | `Transient`, honouring `Retry-After` |
//! | 403 `SENDER_ID_MISMATCH`, other 400, 413 | `Permanent` |

use pushservice_provider::{DeliveryOutcome, parse_retry_after, snippet};
use serde::Deserialize;

#[derive(Deserialize)]
struct ErrorBody {
    error: GoogleError,
}

#[derive(Deserialize)]
struct GoogleError {
    #[serde(default)]
    message: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    details: Vec<Detail>,
}

#[derive(Deserialize)]
struct Detail {
    #[serde(rename = "errorCode", default)]
    error_code: Option<String>,
}

/// `(errorCode or status, message)` of a Google error body.
fn error_of(body: &[u8]) -> Option<(String, String)> {
    let body: ErrorBody = serde_json::from_slice(body).ok()?;
    let code = body
        .error
        .details
        .into_iter()
        .find_map(|d| d.error_code)
        .unwrap_or(body.error.status);
    Some((code, body.error.message))
}

/// The outcome of an FCM answer.
pub fn classify(status: u16, retry_after: Option<&str>, body: &[u8]) -> DeliveryOutcome {
    if (200..300).contains(&status) {
        return DeliveryOutcome::Accepted;
    }
    let error = error_of(body);
    let reason = |what: &str| match &error {
        Some((code, message)) => {
            format!("{status} {code}: {what}: {}", snippet(message.as_bytes()))
        }
        None if body.is_empty() => format!("{status} {what}"),
        None => format!("{status} {what}: {}", snippet(body)),
    };
    let transient = |what: &str| DeliveryOutcome::Transient {
        status: Some(status),
        retry_after: retry_after.and_then(parse_retry_after),
        reason: reason(what),
    };
    let permanent = |what: &str| DeliveryOutcome::Permanent {
        status: Some(status),
        reason: reason(what),
    };
    let bad_token = error.as_ref().is_some_and(|(code, message)| {
        code == "INVALID_ARGUMENT" && message.to_ascii_lowercase().contains("registration token")
    });
    match status {
        404 => DeliveryOutcome::SubscriptionGone { status },
        400 if bad_token => DeliveryOutcome::SubscriptionGone { status },
        401 => transient("access token refused; fetching a new one"),
        403 => permanent("the service account may not send for this project"),
        413 => permanent("message too large for FCM (4 KiB of data at most)"),
        429 => transient("FCM quota exceeded"),
        500..=599 => transient("FCM error"),
        _ => permanent("FCM rejected the message"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn google(code: u16, status: &str, error_code: &str, message: &str) -> Vec<u8> {
        serde_json::json!({"error": {"code": code, "message": message, "status": status,
            "details": [{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError",
                         "errorCode": error_code}]}})
        .to_string()
        .into_bytes()
    }

    #[test]
    fn google_answers_map_to_outcomes() {
        let cases: Vec<(u16, Vec<u8>, &str)> = vec![
            (
                200,
                br#"{"name":"projects/p/messages/1"}"#.to_vec(),
                "accepted",
            ),
            (
                404,
                google(
                    404,
                    "NOT_FOUND",
                    "UNREGISTERED",
                    "Requested entity was not found.",
                ),
                "gone",
            ),
            (
                400,
                google(
                    400,
                    "INVALID_ARGUMENT",
                    "INVALID_ARGUMENT",
                    "The registration token is not a valid FCM registration token",
                ),
                "gone",
            ),
            (
                400,
                google(
                    400,
                    "INVALID_ARGUMENT",
                    "INVALID_ARGUMENT",
                    "Invalid value at 'message.android.ttl'",
                ),
                "permanent",
            ),
            (
                401,
                br#"{"error":{"code":401,"status":"UNAUTHENTICATED","message":"bad"}}"#.to_vec(),
                "transient",
            ),
            (
                403,
                google(
                    403,
                    "PERMISSION_DENIED",
                    "SENDER_ID_MISMATCH",
                    "SenderId mismatch",
                ),
                "permanent",
            ),
            (
                429,
                google(429, "RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED", "quota"),
                "transient",
            ),
            (
                503,
                google(503, "UNAVAILABLE", "UNAVAILABLE", "later"),
                "transient",
            ),
            (500, b"".to_vec(), "transient"),
        ];
        for (status, body, label) in cases {
            let outcome = classify(status, Some("3"), &body);
            assert_eq!(outcome.label(), label, "{status}: {outcome:?}");
        }
        match classify(
            429,
            Some("3"),
            &google(429, "RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED", "quota"),
        ) {
            DeliveryOutcome::Transient {
                retry_after,
                reason,
                ..
            } => {
                assert_eq!(retry_after, Some(std::time::Duration::from_secs(3)));
                assert!(reason.starts_with("429 QUOTA_EXCEEDED"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
    }
}
