//! Maps an APNs answer (status and the `reason` of its JSON body) to a [`DeliveryOutcome`].
//!
//! | answer | outcome |
//! | --- | --- |
//! | 200 | `Accepted` |
//! | 410 (`Unregistered`, `ExpiredToken`), 400 `BadDeviceToken` | `SubscriptionGone`: the app was removed or the token is not a device of this environment |
//! | 403 `ExpiredProviderToken` | `Transient`: the client re-signs its token (see [`ApnsClient`](crate::ApnsClient)) |
//! | 429, 500, 503 | `Transient`, honouring `Retry-After` when sent |
//! | 403 other (`InvalidProviderToken`, `MissingTopic`…), 400 other, 413 | `Permanent` |
//!
//! `DeviceTokenNotForTopic` is permanent, not gone: the token is fine, the site's configured
//! bundle id is wrong, and unsubscribing would punish the user for the operator's mistake.

use pushservice_provider::{DeliveryOutcome, parse_retry_after, snippet};
use serde::Deserialize;

#[derive(Deserialize)]
struct ErrorBody<'a> {
    #[serde(borrow)]
    reason: Option<&'a str>,
}

/// The `reason` of an APNs error body, if it has one.
pub fn reason(body: &[u8]) -> Option<&str> {
    serde_json::from_slice::<ErrorBody<'_>>(body)
        .ok()
        .and_then(|b| b.reason)
}

/// The outcome of an APNs answer.
pub fn classify(status: u16, retry_after: Option<&str>, body: &[u8]) -> DeliveryOutcome {
    let apns_reason = reason(body);
    let described = |what: &str| match apns_reason {
        Some(r) => format!("{status} {r}: {what}"),
        None if body.is_empty() => format!("{status} {what}"),
        None => format!("{status} {what}: {}", snippet(body)),
    };
    let transient = |what: &str| DeliveryOutcome::Transient {
        status: Some(status),
        retry_after: retry_after.and_then(parse_retry_after),
        reason: described(what),
    };
    let permanent = |what: &str| DeliveryOutcome::Permanent {
        status: Some(status),
        reason: described(what),
    };
    match (status, apns_reason) {
        (200..=299, _) => DeliveryOutcome::Accepted,
        (410, _) | (400, Some("BadDeviceToken")) => DeliveryOutcome::SubscriptionGone { status },
        (403, Some("ExpiredProviderToken")) => transient("provider token expired; re-signing"),
        (403, _) => permanent("APNs refused the site's signing key or request"),
        (429, _) => transient("APNs throttled this device or provider"),
        (413, _) => permanent("payload too large for APNs (4 KiB at most)"),
        (500..=599, _) => transient("APNs error"),
        (400..=499, _) => permanent("APNs rejected the request"),
        _ => permanent("unexpected status from APNs"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apple_answers_map_to_outcomes() {
        #[rustfmt::skip]
        let table: &[(u16, &[u8], &str)] = &[
            (200, b"", "accepted"),
            (410, br#"{"reason":"Unregistered","timestamp":1700000000000}"#, "gone"),
            (400, br#"{"reason":"BadDeviceToken"}"#, "gone"),
            (400, br#"{"reason":"DeviceTokenNotForTopic"}"#, "permanent"),
            (400, br#"{"reason":"MissingTopic"}"#, "permanent"),
            (403, br#"{"reason":"ExpiredProviderToken"}"#, "transient"),
            (403, br#"{"reason":"InvalidProviderToken"}"#, "permanent"),
            (413, br#"{"reason":"PayloadTooLarge"}"#, "permanent"),
            (429, br#"{"reason":"TooManyRequests"}"#, "transient"),
            (500, br#"{"reason":"InternalServerError"}"#, "transient"),
            (503, br#"{"reason":"ServiceUnavailable"}"#, "transient"),
            (302, b"", "permanent"),
        ];
        for &(status, body, label) in table {
            let outcome = classify(status, None, body);
            assert_eq!(outcome.label(), label, "{status} {body:?}: {outcome:?}");
        }
    }

    #[test]
    fn reasons_name_apples_reason_and_retry_after_is_honoured() {
        match classify(429, Some("12"), br#"{"reason":"TooManyRequests"}"#) {
            DeliveryOutcome::Transient {
                retry_after,
                reason,
                ..
            } => {
                assert_eq!(retry_after, Some(std::time::Duration::from_secs(12)));
                assert!(reason.starts_with("429 TooManyRequests"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        match classify(400, None, b"<html>oops</html>") {
            DeliveryOutcome::Permanent { reason, .. } => {
                assert!(reason.ends_with("<html>oops</html>"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
    }
}
