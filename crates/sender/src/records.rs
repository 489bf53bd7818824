//! The records a finished delivery writes: its outcome, a retry, a dead letter.
//!
//! None of them is written on its own. They travel with the delivery message's offset
//! through [`crate::tracker`] to [`crate::committer`], which writes them in one Kafka
//! transaction with the offset commit: either the message is done and its records exist, or
//! neither (and the message is delivered again).
//!
//! Dead letters keep the delivery message as last attempted, keyed by subscriber id, with
//! headers an operator (and `pushctl dlq`) can act on: `x-reason`, `x-attempts`,
//! `x-push-id`, `x-site-id`, `x-source-topic`, `x-source-partition`, `x-source-offset`,
//! `x-first-attempt-at` and `x-failed-at` (milliseconds since the Unix epoch).

use std::sync::Arc;

use pushservice_model::outcome::short_reason;
use pushservice_model::{DeliveryMessage, OutcomeRecord, OutcomeResult};

/// One record to write to Kafka.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutRecord {
    /// Topic.
    pub topic: Arc<str>,
    /// Key (the subscriber id, so a subscriber's records share a partition).
    pub key: String,
    /// Value.
    pub payload: Vec<u8>,
    /// Headers.
    pub headers: Vec<(&'static str, String)>,
}

/// Where a delivery message came from.
#[derive(Debug, Clone)]
pub struct Source {
    /// Topic name.
    pub topic: Arc<str>,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// When the message's push was sent, milliseconds since the epoch: the record timestamp
    /// the parser sets on the push topic (not on retry topics, where it is the retry's).
    pub push_sent_at_ms: Option<u64>,
}

/// The topics records go to.
#[derive(Debug, Clone)]
pub struct RecordTopics {
    /// Outcome topic.
    pub outcomes: Arc<str>,
    /// Dead-letter topic.
    pub dead_letter: Arc<str>,
    /// Retry tiers, shortest wait first.
    pub retry: Vec<Arc<str>>,
}

impl RecordTopics {
    /// The outcome record of a delivery.
    pub fn outcome(
        &self,
        message: &DeliveryMessage,
        result: OutcomeResult,
        reason: Option<&str>,
        attempts: u32,
    ) -> OutRecord {
        let mut record = OutcomeRecord::new(
            &message.push_id,
            &message.subscriber_id,
            result,
            reason,
            attempts,
            message.replayed,
        );
        record.replaced_failure = message.replaced_failure.as_deref().map(short_reason);
        record.site_id = Some(message.site_id.clone());
        record.platform = Some(message.target.platform());
        OutRecord {
            topic: Arc::clone(&self.outcomes),
            key: message.subscriber_id.clone(),
            payload: record.to_json(),
            headers: Vec::new(),
        }
    }

    /// The message again, on retry tier `tier`, due at `due_at` (milliseconds since the
    /// epoch), after `attempts` attempts. Its TTL stays the original: each attempt sends
    /// what is left of it, counted from `first_attempt_at`.
    pub fn retry(
        &self,
        message: &DeliveryMessage,
        tier: usize,
        attempts: u32,
        first_attempt_at: u64,
        due_at: u64,
    ) -> OutRecord {
        let mut next = message.clone();
        next.attempt = attempts;
        next.first_attempt_at = Some(first_attempt_at);
        next.due_at = Some(due_at);
        let topic = self
            .retry
            .get(tier)
            .or(self.retry.last())
            .map_or_else(|| Arc::clone(&self.dead_letter), Arc::clone);
        OutRecord {
            topic,
            key: message.subscriber_id.clone(),
            payload: next.to_json(),
            headers: Vec::new(),
        }
    }

    /// A dead letter. `raw` is the message as received when it could not be parsed.
    pub fn dead_letter(&self, letter: DeadLetter<'_>) -> OutRecord {
        let (payload, key, push_id, site_id, first_attempt_at) = match letter.message {
            Some(message) => {
                let mut last = message.clone();
                last.attempt = letter.attempts;
                last.due_at = None;
                let first = message.first_attempt_at.unwrap_or(letter.failed_at);
                last.first_attempt_at = Some(first);
                (
                    last.to_json(),
                    message.subscriber_id.clone(),
                    message.push_id.clone(),
                    message.site_id.clone(),
                    first,
                )
            }
            None => (
                letter.raw.to_vec(),
                String::new(),
                String::new(),
                String::new(),
                letter.failed_at,
            ),
        };
        OutRecord {
            topic: Arc::clone(&self.dead_letter),
            key,
            payload,
            headers: vec![
                ("x-reason", letter.reason.to_owned()),
                ("x-attempts", letter.attempts.to_string()),
                ("x-push-id", push_id),
                ("x-site-id", site_id),
                ("x-source-topic", letter.source.topic.to_string()),
                ("x-source-partition", letter.source.partition.to_string()),
                ("x-source-offset", letter.source.offset.to_string()),
                ("x-first-attempt-at", first_attempt_at.to_string()),
                ("x-failed-at", letter.failed_at.to_string()),
            ],
        }
    }
}

/// What a dead letter is made of.
#[derive(Debug, Clone, Copy)]
pub struct DeadLetter<'a> {
    /// The message, when it could be parsed.
    pub message: Option<&'a DeliveryMessage>,
    /// The message as received.
    pub raw: &'a [u8],
    /// Where it came from.
    pub source: &'a Source,
    /// Attempts made.
    pub attempts: u32,
    /// Why it failed.
    pub reason: &'a str,
    /// When it failed, milliseconds since the epoch.
    pub failed_at: u64,
}

#[cfg(test)]
mod tests {
    use pushservice_model::{DELIVERY_VERSION, Target, Urgency};
    use serde_json::value::RawValue;

    use super::*;

    fn topics() -> RecordTopics {
        RecordTopics {
            outcomes: Arc::from("o"),
            dead_letter: Arc::from("dlq"),
            retry: vec![Arc::from("r-10s"), Arc::from("r-1m")],
        }
    }

    fn message() -> DeliveryMessage {
        DeliveryMessage {
            v: DELIVERY_VERSION,
            push_id: "p".into(),
            site_id: "s".into(),
            subscriber_id: "sub".into(),
            target: Target::Ios { token: "ab".into() },
            ttl: 3_600,
            urgency: Urgency::Normal,
            topic: None,
            attempt: 0,
            first_attempt_at: None,
            due_at: None,
            replayed: true,
            replaced_failure: None,
            payload: RawValue::from_string("{}".into()).expect("json"),
        }
    }

    #[test]
    fn retries_carry_the_budget() {
        let record = topics().retry(&message(), 1, 2, 1_000, 61_000);
        assert_eq!(&*record.topic, "r-1m");
        let next = DeliveryMessage::from_json(&record.payload).expect("parses");
        assert_eq!(
            (next.attempt, next.first_attempt_at, next.due_at, next.ttl),
            (2, Some(1_000), Some(61_000), 3_600)
        );
        assert!(next.replayed);
    }

    #[test]
    fn dead_letters_say_why_when_and_where_from() {
        let source = Source {
            topic: Arc::from("push"),
            partition: 3,
            offset: 42,
            push_sent_at_ms: None,
        };
        let message = message();
        let record = topics().dead_letter(DeadLetter {
            message: Some(&message),
            raw: b"",
            source: &source,
            attempts: 4,
            reason: "gave up",
            failed_at: 9_000,
        });
        let header = |k: &str| {
            record
                .headers
                .iter()
                .find(|(key, _)| *key == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(header("x-reason"), Some("gave up"));
        assert_eq!(header("x-attempts"), Some("4"));
        assert_eq!(header("x-push-id"), Some("p"));
        assert_eq!(header("x-source-offset"), Some("42"));
        assert_eq!(header("x-first-attempt-at"), Some("9000"));
        let last = DeliveryMessage::from_json(&record.payload).expect("parses");
        assert_eq!(last.attempt, 4);
        let unreadable = topics().dead_letter(DeadLetter {
            message: None,
            raw: b"not json",
            source: &source,
            attempts: 0,
            reason: "malformed",
            failed_at: 1,
        });
        assert_eq!(unreadable.payload, b"not json");
    }
}
