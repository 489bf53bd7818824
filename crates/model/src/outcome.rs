//! The outcome record: what became of one delivery, on the outcome topic.
//!
//! A sender writes one record per delivery whose outcome is final (accepted, subscription
//! gone, failed for good) in the same Kafka transaction that commits the delivery message's
//! offset, so a delivery counts exactly when its message is done. MongoDB hears of it later:
//! the outcome recorder applies counters and unsubscribes from this topic in batches,
//! idempotently, so a slow or failing store never holds back delivery.
//!
//! Keyed by subscriber id (like the push topic), small and JSON, readable with `kcat`.

use serde::{Deserialize, Serialize};

/// Version of the outcome record format; the recorder skips versions it does not know.
pub const OUTCOME_VERSION: u8 = 1;

/// Longest reason kept on a record, in characters (reasons are grouped and stored on the
/// push, so they must stay short).
pub const MAX_REASON_CHARS: usize = 160;

/// What became of a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutcomeResult {
    /// The push service took it.
    Accepted,
    /// The subscription is gone: the subscriber must be unsubscribed.
    Gone,
    /// Failed for good (dead-lettered).
    Failed,
    /// Not attempted: the push was canceled before this delivery went out.
    Canceled,
}

/// One record on the outcome topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutcomeRecord {
    /// Format version, [`OUTCOME_VERSION`].
    pub v: u8,
    /// Push id (hex).
    pub push_id: String,
    /// Subscriber id (hex).
    pub subscriber_id: String,
    /// What became of the delivery.
    pub result: OutcomeResult,
    /// Why it failed (failed only), at most [`MAX_REASON_CHARS`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Attempts made.
    #[serde(default)]
    pub attempts: u32,
    /// A dead letter put back with `pushctl dlq replay`: this outcome replaces the failure
    /// the push already counted for it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub replayed: bool,
    /// The reason that failure was counted under (replayed only), shortened like `reason`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaced_failure: Option<String>,
    /// Site id (hex), for fleet statistics (`pushctl stats`); absent on older records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site_id: Option<String>,
    /// Platform of the delivery, for fleet statistics; absent on older records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<crate::Platform>,
}

impl OutcomeRecord {
    /// A record of `result`; `reason` is shortened to [`MAX_REASON_CHARS`].
    pub fn new(
        push_id: &str,
        subscriber_id: &str,
        result: OutcomeResult,
        reason: Option<&str>,
        attempts: u32,
        replayed: bool,
    ) -> Self {
        OutcomeRecord {
            v: OUTCOME_VERSION,
            push_id: push_id.to_owned(),
            subscriber_id: subscriber_id.to_owned(),
            result,
            reason: reason.map(short_reason),
            attempts,
            replayed,
            replaced_failure: None,
            site_id: None,
            platform: None,
        }
    }

    /// Serialized form.
    pub fn to_json(&self) -> Vec<u8> {
        // Strings, numbers and enums always serialize.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses a record; the error says which field is wrong.
    pub fn from_json(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        let record: OutcomeRecord = serde_json::from_slice(bytes)?;
        if record.v != OUTCOME_VERSION {
            return Err(serde::de::Error::custom(format!(
                "outcome record version {} is not supported (expected {OUTCOME_VERSION})",
                record.v
            )));
        }
        Ok(record)
    }
}

/// `reason` cut to [`MAX_REASON_CHARS`] characters, `…` marking a cut.
pub fn short_reason(reason: &str) -> String {
    match reason.char_indices().nth(MAX_REASON_CHARS) {
        None => reason.to_owned(),
        Some((cut, _)) => format!("{}…", &reason[..cut]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_omits_defaults() {
        let record = OutcomeRecord::new("p", "s", OutcomeResult::Gone, None, 1, false);
        let json = String::from_utf8(record.to_json()).expect("utf-8");
        assert_eq!(
            json,
            r#"{"v":1,"pushId":"p","subscriberId":"s","result":"gone","attempts":1}"#
        );
        assert_eq!(
            OutcomeRecord::from_json(json.as_bytes()).expect("parses"),
            record
        );
    }

    #[test]
    fn reasons_are_short_and_versions_checked() {
        let long = "é".repeat(500);
        let record = OutcomeRecord::new("p", "s", OutcomeResult::Failed, Some(&long), 3, true);
        let reason = record.reason.as_deref().expect("reason");
        assert_eq!(reason.chars().count(), MAX_REASON_CHARS + 1);
        let err = OutcomeRecord::from_json(
            br#"{"v":9,"pushId":"p","subscriberId":"s","result":"failed"}"#,
        )
        .expect_err("version 9");
        assert!(err.to_string().contains("version 9"), "{err}");
    }
}
