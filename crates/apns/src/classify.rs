//! Maps an APNs answer (status and the `reason` of its JSON body) to a [`DeliveryOutcome`].
//!
//! | answer | outcome |
//! | --- | --- |
//! | 200 | `Accepted` |
//! | 410 (`Unregistered`, `ExpiredToken`) | `SubscriptionGone`: the app was removed or the token expired |
//! | 400 `BadDeviceToken` | `SuspectToken` ([`SETTING_ENVIRONMENT`]): a dead token, or every token when the site's sandbox flag is wrong |
//! | 400 `DeviceTokenNotForTopic` | `SuspectToken` ([`SETTING_TOPIC`]): a token of another app, or every token when the bundle id is wrong |
//! | 400 `TopicDisallowed`, `BadTopic`, `MissingTopic` | `Misconfigured` ([`SETTING_TOPIC`]) |
//! | 403 `InvalidProviderToken` | `Misconfigured` ([`SETTING_KEY`]); the client first re-signs once and retries (`Transient`) |
//! | 403 `BadCertificate`, `BadCertificateEnvironment`, `BadEnvironmentKeyInToken` | `Misconfigured` ([`SETTING_ENVIRONMENT`] or [`SETTING_KEY`]) |
//! | 403 `ExpiredProviderToken` | `Transient`: the client re-signs its token (see [`ApnsClient`](crate::ApnsClient)) |
//! | 429, 500, 503 | `Transient`, honouring `Retry-After` when sent |
//! | 403 other (`MissingProviderToken`, `Forbidden`), 400 other, 413 | `Permanent` |
//!
//! Apple answers `BadDeviceToken` for *every* token when a site's sandbox flag does not match
//! how its app was built, so it never unsubscribes by itself: the sender's per-site breaker
//! tells one dead token among successes (unsubscribe it) from a misconfigured site (fail the
//! push naming the setting, unsubscribe nobody).

use pushservice_provider::{DeliveryOutcome, parse_retry_after, snippet};
use serde::Deserialize;

#[derive(Deserialize)]
struct ErrorBody<'a> {
    #[serde(borrow)]
    reason: Option<&'a str>,
}

/// What to check when APNs blames the environment: the sandbox flag (and the topic with it).
pub const SETTING_ENVIRONMENT: &str =
    "the site's APNs sandbox flag and topic (pushctl site apns <siteId> ... [--sandbox])";
/// What to check when APNs blames the bundle id.
pub const SETTING_TOPIC: &str = "the site's APNs topic, the iOS app's bundle id (pushctl site apns <siteId> ... --topic <bundle id>)";
/// What to check when APNs refuses the provider token.
pub const SETTING_KEY: &str = "the site's APNs key, key id and team id (pushctl site apns <siteId> --key-file AuthKey_<KEYID>.p8 --team-id <TEAM>)";

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
    let suspect = |what: &str, setting| DeliveryOutcome::SuspectToken {
        status,
        reason: described(what),
        setting,
    };
    let misconfigured = |what: &str, setting| DeliveryOutcome::Misconfigured {
        status,
        reason: described(what),
        setting,
    };
    match (status, apns_reason) {
        (200..=299, _) => DeliveryOutcome::Accepted,
        (410, _) => DeliveryOutcome::SubscriptionGone { status },
        (_, Some("BadDeviceToken")) => suspect(
            "APNs does not know this device token in the site's environment",
            SETTING_ENVIRONMENT,
        ),
        (_, Some("DeviceTokenNotForTopic")) => suspect(
            "the device token belongs to another app than the site's topic",
            SETTING_TOPIC,
        ),
        (_, Some("TopicDisallowed" | "BadTopic" | "MissingTopic")) => misconfigured(
            "APNs does not accept the site's topic for its key",
            SETTING_TOPIC,
        ),
        (_, Some("BadCertificateEnvironment" | "BadEnvironmentKeyInToken")) => misconfigured(
            "the site's key or token is for the other APNs environment",
            SETTING_ENVIRONMENT,
        ),
        (_, Some("InvalidProviderToken" | "BadCertificate")) => {
            misconfigured("APNs refused the site's signing key", SETTING_KEY)
        }
        (403, Some("ExpiredProviderToken")) => transient("provider token expired; re-signing"),
        (403, _) => permanent("APNs refused the request"),
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
            (410, br#"{"reason":"ExpiredToken"}"#, "gone"),
            (400, br#"{"reason":"BadDeviceToken"}"#, "suspect"),
            (400, br#"{"reason":"DeviceTokenNotForTopic"}"#, "suspect"),
            (400, br#"{"reason":"TopicDisallowed"}"#, "misconfigured"),
            (400, br#"{"reason":"BadTopic"}"#, "misconfigured"),
            (400, br#"{"reason":"MissingTopic"}"#, "misconfigured"),
            (403, br#"{"reason":"BadCertificateEnvironment"}"#, "misconfigured"),
            (403, br#"{"reason":"BadCertificate"}"#, "misconfigured"),
            (403, br#"{"reason":"ExpiredProviderToken"}"#, "transient"),
            (403, br#"{"reason":"InvalidProviderToken"}"#, "misconfigured"),
            (403, br#"{"reason":"MissingProviderToken"}"#, "permanent"),
            (400, br#"{"reason":"BadCollapseId"}"#, "permanent"),
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
    fn suspect_and_misconfigured_answers_name_the_setting() {
        match classify(400, None, br#"{"reason":"BadDeviceToken"}"#) {
            DeliveryOutcome::SuspectToken {
                status,
                reason,
                setting,
            } => {
                assert_eq!(status, 400);
                assert!(reason.starts_with("400 BadDeviceToken"), "{reason}");
                assert_eq!(setting, SETTING_ENVIRONMENT);
                assert!(setting.contains("--sandbox"), "{setting}");
            }
            other => panic!("{other:?}"),
        }
        for (body, expected) in [
            (
                &br#"{"reason":"DeviceTokenNotForTopic"}"#[..],
                SETTING_TOPIC,
            ),
            (br#"{"reason":"TopicDisallowed"}"#, SETTING_TOPIC),
            (br#"{"reason":"InvalidProviderToken"}"#, SETTING_KEY),
        ] {
            match classify(400, None, body) {
                DeliveryOutcome::SuspectToken { setting, .. }
                | DeliveryOutcome::Misconfigured { setting, .. } => assert_eq!(setting, expected),
                other => panic!("{other:?}"),
            }
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
