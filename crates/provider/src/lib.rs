//! What every delivery provider (Web Push, APNs, FCM) shares.
//!
//! Every platform answers a delivery attempt with one [`DeliveryOutcome`]; the sender acts on
//! the variant alone (count, unsubscribe, retry, dead-letter) and never on status codes or
//! strings, so adding a platform never touches the sender's bookkeeping.
//!
//! # Layout
//!
//! - [`DeliveryOutcome`], [`parse_retry_after`], [`snippet`] — the outcome and the pieces
//!   every response classification uses.
//! - [`pool`] — the delivery client, [`Http2Pool`]: several HTTP/2 connections per push
//!   service origin on `h2`, each within the server's stream limit, GOAWAY honoured, requests
//!   the server did not process resent at once.
//! - [`http`] — settings every client shares ([`HttpConfig`]), the reqwest client for
//!   HTTP/1.1 origins and OAuth ([`build_client`]), capped reading of answers, outcomes for
//!   requests that got none.
//! - [`endpoint`] — the [`EndpointPolicy`] against SSRF: which URLs and resolved addresses
//!   the senders may connect to, enforced by the client's resolver.
//! - [`slots`] — [`RequestSlots`]: a global bound on requests in flight with a fair share per
//!   push service or credential.
//! - [`keys`] — PKCS#8 private keys to and from PEM (APNs `.p8` files, service-account
//!   keys), Apple's key file names, and JWT base64url.

pub mod endpoint;
pub mod http;
pub mod keys;
pub mod pool;
pub mod slots;

pub use endpoint::{EndpointPolicy, EndpointRefused, is_public};
pub use http::{Answer, ClientError, HttpConfig, build_client, outcome_from_error, read_answer};
pub use keys::{
    PemError, b64url, jwt_signing_input, key_id_from_file_name, pem_from_pkcs8, pkcs8_from_pem,
};
pub use pool::{Http2Pool, Origin, PoolConfig, SendError, path_of};
pub use slots::{InvalidSlots, RequestSlot, RequestSlots, SlotError};
pub use tokio_util::sync::CancellationToken;

use std::time::Duration;

/// What became of one delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// The push service took the message (Web Push 201, APNs 200, FCM 200).
    Accepted,
    /// The subscription no longer exists (Web Push 404/410, APNs 410 `Unregistered` /
    /// `ExpiredToken`, FCM 404 `UNREGISTERED`): mark the subscriber `subscribed: false`.
    SubscriptionGone {
        /// HTTP status the push service answered.
        status: u16,
    },
    /// The push service rejected the device token in a way that also happens when the
    /// *site's* settings are wrong (APNs `BadDeviceToken` / `DeviceTokenNotForTopic`, which
    /// Apple answers for every token when sandbox and production are mixed up; FCM 404
    /// without `UNREGISTERED`). The sender's per-site breaker decides: among successes it is
    /// one dead token (unsubscribe it); when most answers of a site are like this, the
    /// setting is wrong and nobody is unsubscribed.
    SuspectToken {
        /// HTTP status the push service answered.
        status: u16,
        /// What the push service said.
        reason: String,
        /// The setting an operator should check if this turns out to be the site's fault.
        setting: &'static str,
    },
    /// The site's credentials or environment are wrong for every device (APNs
    /// `TopicDisallowed`, FCM `SENDER_ID_MISMATCH` / `THIRD_PARTY_AUTH_ERROR`): fail the
    /// delivery naming the setting, trip the site's breaker, never unsubscribe.
    Misconfigured {
        /// HTTP status the push service answered; 0 when the configuration was refused before
        /// anything was sent (an FCM service account whose `token_uri` is not
        /// `SENDER_FCM_TOKEN_URL`).
        status: u16,
        /// What the push service said.
        reason: String,
        /// The setting an operator should fix.
        setting: &'static str,
    },
    /// Not sent: the caller withdrew the delivery (its push was canceled) before a request
    /// slot was free. Nothing reached the push service.
    Withdrawn,
    /// Not attempted: the push service's request slots are all taken and as many deliveries
    /// already wait for one (it answers slowly). Try again later without counting an
    /// attempt, so one slow push service cannot fill the sender with its waiting deliveries.
    Deferred {
        /// Why, for logs.
        reason: String,
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
    /// A permanent failure with no push-service answer behind it (a malformed message, an
    /// unusable key, a refused configuration).
    pub fn permanent(reason: impl Into<String>) -> Self {
        DeliveryOutcome::Permanent {
            status: None,
            reason: reason.into(),
        }
    }

    /// A transient failure with no push-service answer behind it (no response, MongoDB
    /// trouble): retried on the caller's own backoff.
    pub fn transient(reason: impl Into<String>) -> Self {
        DeliveryOutcome::Transient {
            status: None,
            retry_after: None,
            reason: reason.into(),
        }
    }

    /// The outcome of not getting a request slot of `origin`.
    pub fn from_slot_error(origin: &str, error: SlotError) -> Self {
        match error {
            SlotError::Busy => DeliveryOutcome::Deferred {
                reason: format!("{origin}: {error}"),
            },
            SlotError::Withdrawn => DeliveryOutcome::Withdrawn,
            SlotError::Closed => DeliveryOutcome::transient(format!("{origin}: {error}")),
        }
    }

    /// Short label for metrics and logs: `accepted`, `gone`, `suspect`, `misconfigured`,
    /// `deferred`, `permanent`, `transient`.
    pub fn label(&self) -> &'static str {
        match self {
            DeliveryOutcome::Accepted => "accepted",
            DeliveryOutcome::SubscriptionGone { .. } => "gone",
            DeliveryOutcome::SuspectToken { .. } => "suspect",
            DeliveryOutcome::Misconfigured { .. } => "misconfigured",
            DeliveryOutcome::Deferred { .. } => "deferred",
            DeliveryOutcome::Withdrawn => "withdrawn",
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

/// Longest body snippet kept in a reason, in characters.
const SNIPPET_CHARS: usize = 200;

/// The body as one line of at most [`SNIPPET_CHARS`] characters: invalid UTF-8 replaced,
/// whitespace runs (newlines included) collapsed to one space, other control characters
/// dropped so a hostile body cannot forge log lines, `…` marking a cut.
pub fn snippet(body: &[u8]) -> String {
    // Decoding more than could ever be shown is wasted work on a large error page.
    let text = String::from_utf8_lossy(&body[..body.len().min(SNIPPET_CHARS * 4)]);
    let mut out = String::with_capacity(text.len().min(SNIPPET_CHARS + 3));
    let mut chars = 0;
    let mut pending_space = false;
    for c in text.chars() {
        if c.is_whitespace() {
            pending_space = chars > 0;
            continue;
        }
        if c.is_control() {
            continue;
        }
        let needed = 1 + usize::from(pending_space);
        if chars + needed > SNIPPET_CHARS {
            out.push('…');
            return out;
        }
        if pending_space {
            out.push(' ');
            pending_space = false;
        }
        out.push(c);
        chars += needed;
    }
    out
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

    #[test]
    fn snippets_are_capped() {
        let long = "é".repeat(1_000);
        let s = snippet(long.as_bytes());
        assert_eq!(s.chars().count(), SNIPPET_CHARS + 1);
        assert!(s.ends_with('…'));
        assert_eq!(snippet(b"\n\n"), "");
        let exact = "x".repeat(SNIPPET_CHARS);
        assert_eq!(
            snippet(exact.as_bytes()),
            exact,
            "no ellipsis when nothing was cut"
        );
    }
}
