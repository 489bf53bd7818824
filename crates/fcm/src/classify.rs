//! Maps an FCM v1 answer (status and the `errorCode` of its Google error body) to a
//! [`DeliveryOutcome`].
//!
//! | answer | outcome |
//! | --- | --- |
//! | 200 | `Accepted` |
//! | 404 `UNREGISTERED` | `SubscriptionGone`: the app was uninstalled or the token expired |
//! | 404 without `UNREGISTERED` | `SuspectToken` ([`SETTING_PROJECT`]): an unknown token, or a wrong project for every token |
//! | 400 `INVALID_ARGUMENT` naming the registration token | `SuspectToken` ([`SETTING_PROJECT`]) |
//! | `SENDER_ID_MISMATCH` (403) | `Misconfigured` ([`SETTING_PROJECT`]): the tokens belong to another Firebase project |
//! | `THIRD_PARTY_AUTH_ERROR` (401) | `Misconfigured` ([`SETTING_THIRD_PARTY`]): the APNs or Web Push credentials in Firebase are wrong |
//! | 403 other (`PERMISSION_DENIED`) | `Misconfigured` ([`SETTING_ACCOUNT`]): the account may not send for the project |
//! | 401 `UNAUTHENTICATED` | `Transient`: the client drops its access token and fetches a new one |
//! | 429 `QUOTA_EXCEEDED`, 500 `INTERNAL`, 503 `UNAVAILABLE` | `Transient`, honouring `Retry-After` |
//! | other 400, 413 | `Permanent` |
//!
//! Only `UNREGISTERED` unsubscribes by itself. A 404 without it is also what every token gets
//! when the site's service account belongs to the wrong project, so it is `SuspectToken`: the
//! sender's per-site breaker unsubscribes it when it is one among successes, and nobody when
//! most of a site's answers are like it.

use pushservice_provider::{DeliveryOutcome, parse_retry_after, snippet};
use serde::Deserialize;

pub use crate::oauth::SETTING_ACCOUNT;

/// What to check when FCM does not know the tokens or they belong to another sender.
pub const SETTING_PROJECT: &str = "the site's FCM service account: its project_id must be the Android app's Firebase project (pushctl site fcm <siteId> --service-account <file>)";
/// What to check when FCM cannot authenticate with Apple or the browser push service.
pub const SETTING_THIRD_PARTY: &str = "the APNs key or Web Push certificate uploaded to the site's Firebase project (Firebase console, Cloud Messaging settings)";

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

/// Whether `body` is FCM's `THIRD_PARTY_AUTH_ERROR` (a 401 that a new access token would
/// not fix).
pub fn is_third_party_error(body: &[u8]) -> bool {
    error_of(body).is_some_and(|(code, _)| code == "THIRD_PARTY_AUTH_ERROR")
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
    let suspect = |what: &str, setting| DeliveryOutcome::SuspectToken {
        status,
        reason: reason(what),
        setting,
    };
    let misconfigured = |what: &str, setting| DeliveryOutcome::Misconfigured {
        status,
        reason: reason(what),
        setting,
    };
    let code = error.as_ref().map(|(code, _)| code.as_str());
    let bad_token = error.as_ref().is_some_and(|(code, message)| {
        code == "INVALID_ARGUMENT" && message.to_ascii_lowercase().contains("registration token")
    });
    match (status, code) {
        (404, Some("UNREGISTERED")) => DeliveryOutcome::SubscriptionGone { status },
        (_, Some("SENDER_ID_MISMATCH")) => misconfigured(
            "the registration tokens belong to another Firebase project",
            SETTING_PROJECT,
        ),
        (_, Some("THIRD_PARTY_AUTH_ERROR")) => misconfigured(
            "FCM could not authenticate with APNs or the browser push service",
            SETTING_THIRD_PARTY,
        ),
        (404, _) => suspect(
            "FCM does not know this token in the site's project",
            SETTING_PROJECT,
        ),
        (400, _) if bad_token => suspect("FCM rejected the registration token", SETTING_PROJECT),
        (401, _) => transient("access token refused; fetching a new one"),
        (403, _) => misconfigured(
            "the service account may not send for this project",
            SETTING_ACCOUNT,
        ),
        (413, _) => permanent("message too large for FCM (4 KiB of data at most)"),
        (429, _) => transient("FCM quota exceeded"),
        (500..=599, _) => transient("FCM error"),
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
                "suspect",
            ),
            (
                404,
                google(
                    404,
                    "NOT_FOUND",
                    "NOT_FOUND",
                    "Requested entity was not found.",
                ),
                "suspect",
            ),
            (404, b"".to_vec(), "suspect"),
            (
                401,
                google(
                    401,
                    "UNAUTHENTICATED",
                    "THIRD_PARTY_AUTH_ERROR",
                    "Auth error from APNS or Web Push Service",
                ),
                "misconfigured",
            ),
            (
                403,
                br#"{"error":{"code":403,"status":"PERMISSION_DENIED","message":"no"}}"#.to_vec(),
                "misconfigured",
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
                "misconfigured",
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
            403,
            None,
            &google(
                403,
                "PERMISSION_DENIED",
                "SENDER_ID_MISMATCH",
                "SenderId mismatch",
            ),
        ) {
            DeliveryOutcome::Misconfigured {
                status,
                reason,
                setting,
            } => {
                assert_eq!(status, 403);
                assert!(reason.starts_with("403 SENDER_ID_MISMATCH"), "{reason}");
                assert_eq!(setting, SETTING_PROJECT);
            }
            other => panic!("{other:?}"),
        }
        match classify(
            404,
            None,
            &google(
                404,
                "NOT_FOUND",
                "UNREGISTERED",
                "Requested entity was not found.",
            ),
        ) {
            DeliveryOutcome::SubscriptionGone { status } => assert_eq!(status, 404),
            other => panic!("{other:?}"),
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
