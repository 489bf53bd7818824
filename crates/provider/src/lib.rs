//! The delivery provider interface.
//!
//! Every platform (Web Push, APNs, FCM) answers a delivery attempt with one
//! [`DeliveryOutcome`]; the sender acts on the variant alone (count, unsubscribe, retry,
//! dead-letter) and never on status codes or strings, so adding a platform never touches the
//! sender's bookkeeping.

use std::time::Duration;

/// What became of one delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// The push service took the message (Web Push 201, APNs 200, FCM 200).
    Accepted,
    /// The subscription no longer exists (Web Push 404/410, APNs 410 / `Unregistered` /
    /// `BadDeviceToken`, FCM `UNREGISTERED`): mark the subscriber `subscribed: false`.
    SubscriptionGone {
        /// HTTP status the push service answered.
        status: u16,
    },
    /// Will never succeed as sent (400, 403, 413, a broken subscription ...): count, log and
    /// dead-letter; do not retry.
    Permanent {
        /// HTTP status, when there was a response.
        status: Option<u16>,
        /// Why, for logs and the dead-letter record (never a credential).
        reason: String,
    },
    /// May succeed later (429, 5xx, timeouts, connection errors): retry with backoff, no
    /// sooner than `retry_after` when the push service said so.
    Transient {
        /// HTTP status, when there was a response.
        status: Option<u16>,
        /// Earliest retry the push service asked for (`Retry-After`).
        retry_after: Option<Duration>,
        /// Why, for logs.
        reason: String,
    },
}

impl DeliveryOutcome {
    /// Short label for metrics and logs: `accepted`, `gone`, `permanent`, `transient`.
    pub fn label(&self) -> &'static str {
        match self {
            DeliveryOutcome::Accepted => "accepted",
            DeliveryOutcome::SubscriptionGone { .. } => "gone",
            DeliveryOutcome::Permanent { .. } => "permanent",
            DeliveryOutcome::Transient { .. } => "transient",
        }
    }
}

/// Parses an HTTP `Retry-After` value given in seconds (the form push services use); an
/// HTTP-date or garbage gives `None`, and the caller's own backoff applies.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    value
        .trim()
        .parse::<u64>()
        .ok()
        .map(|s| Duration::from_secs(s.min(3_600)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_seconds_are_capped_at_an_hour() {
        assert_eq!(parse_retry_after(" 30 "), Some(Duration::from_secs(30)));
        assert_eq!(
            parse_retry_after("999999"),
            Some(Duration::from_secs(3_600))
        );
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
    }
}
