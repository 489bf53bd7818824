//! Maps a push service's answer (RFC 8030 §5, plus what FCM, Mozilla autopush, Apple and WNS
//! actually send) to a [`DeliveryOutcome`], the only thing the sender acts on.
//!
//! The mapping, in order:
//!
//! | status | outcome |
//! | --- | --- |
//! | 2xx (201 in practice, 200/202 from some services) | `Accepted` |
//! | 404, 410 | `SubscriptionGone`: the browser unsubscribed or the subscription expired |
//! | 429 | `Transient`, honouring `Retry-After` |
//! | 408 | `Transient`: the service gave up waiting for our request |
//! | 5xx | `Transient`, honouring `Retry-After` (503 sends it) |
//! | 413 | `Permanent`: payload too large for this service |
//! | 401, 403 | `Permanent`: the VAPID credentials were refused |
//! | other 4xx, 1xx, 3xx | `Permanent`: the request is wrong and resending it will not help |
//!
//! Reasons carry a short, single-line snippet of the body, which is where services say what
//! was wrong (FCM: "the key in the authorization header does not correspond to the sender ID").

use pushservice_provider::{DeliveryOutcome, parse_retry_after, snippet};

/// The outcome of a push service response with `status`, its `Retry-After` header if any,
/// and (the first bytes of) its body.
pub fn classify(status: u16, retry_after: Option<&str>, body: &[u8]) -> DeliveryOutcome {
    let transient = |what: &str| DeliveryOutcome::Transient {
        status: Some(status),
        retry_after: retry_after.and_then(parse_retry_after),
        reason: with_snippet(status, what, body),
    };
    let permanent = |what: &str| DeliveryOutcome::Permanent {
        status: Some(status),
        reason: with_snippet(status, what, body),
    };
    match status {
        200..=299 => DeliveryOutcome::Accepted,
        400..=499 => match status {
            404 | 410 => DeliveryOutcome::SubscriptionGone { status },
            429 => transient("rate limited by the push service"),
            408 => transient("push service timed out waiting for the request"),
            413 => permanent("payload too large for the push service"),
            401 | 403 => permanent("push service rejected the VAPID credentials"),
            400 => permanent("push service rejected the request as malformed"),
            _ => permanent("push service rejected the request"),
        },
        500..=599 => transient("push service error"),
        _ => permanent("unexpected status from the push service"),
    }
}

/// `"<status> <what>: <snippet>"`, or without the colon part when the body is empty.
fn with_snippet(status: u16, what: &str, body: &[u8]) -> String {
    let mut reason = format!("{status} {what}");
    let snippet = snippet(body);
    if !snippet.is_empty() {
        reason.push_str(": ");
        reason.push_str(&snippet);
    }
    reason
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn status_table() {
        use DeliveryOutcome::*;
        let secs = |s| Some(Duration::from_secs(s));
        #[rustfmt::skip]
        let table: &[(u16, Option<&str>, &str)] = &[
            (200, None, "accepted"), (201, None, "accepted"), (202, None, "accepted"),
            (204, None, "accepted"),
            (404, None, "gone"), (410, None, "gone"),
            (429, Some("7"), "transient"), (408, None, "transient"),
            (500, None, "transient"), (502, None, "transient"), (503, Some("30"), "transient"),
            (504, None, "transient"),
            (400, None, "permanent"), (401, None, "permanent"), (403, None, "permanent"),
            (413, None, "permanent"), (405, None, "permanent"), (422, None, "permanent"),
            (301, None, "permanent"), (100, None, "permanent"),
        ];
        for &(status, retry_after, label) in table {
            let outcome = classify(status, retry_after, b"");
            assert_eq!(outcome.label(), label, "{status}: {outcome:?}");
        }
        assert_eq!(
            classify(410, None, b"gone"),
            SubscriptionGone { status: 410 }
        );
        match classify(429, Some("7"), b"") {
            Transient {
                status,
                retry_after,
                ..
            } => {
                assert_eq!((status, retry_after), (Some(429), secs(7)));
            }
            other => panic!("429: {other:?}"),
        }
        match classify(503, Some(" 30 "), b"") {
            Transient { retry_after, .. } => assert_eq!(retry_after, secs(30)),
            other => panic!("503: {other:?}"),
        }
        match classify(500, Some("Wed, 21 Oct 2015 07:28:00 GMT"), b"") {
            Transient { retry_after, .. } => assert_eq!(retry_after, None, "dates are ignored"),
            other => panic!("500: {other:?}"),
        }
    }

    fn reason(outcome: DeliveryOutcome) -> String {
        match outcome {
            DeliveryOutcome::Permanent { reason, .. }
            | DeliveryOutcome::Transient { reason, .. } => reason,
            other => panic!("no reason in {other:?}"),
        }
    }

    #[test]
    fn reasons_name_the_problem_and_quote_the_body() {
        assert_eq!(
            reason(classify(413, None, b"")),
            "413 payload too large for the push service"
        );
        let r = reason(classify(
            403,
            None,
            b"the key in the authorization header does not\ncorrespond",
        ));
        assert_eq!(
            r,
            "403 push service rejected the VAPID credentials: the key in the authorization \
             header does not correspond"
        );
        assert!(reason(classify(401, None, b"")).contains("VAPID credentials"));
        assert_eq!(
            reason(classify(
                400,
                None,
                b"  {\"error\":\r\n\t\"bad\"}\x1b[31m \xff "
            )),
            "400 push service rejected the request as malformed: {\"error\": \"bad\"}[31m \u{fffd}"
        );
    }
}
