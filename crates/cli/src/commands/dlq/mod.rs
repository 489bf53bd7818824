//! `pushctl dlq stats|tail|replay`: the dead-letter topic (`TOPIC_PUSH_DLQ`) as something an
//! operator can act on.
//!
//! A dead letter is what a sender writes when a delivery failed for good (see the sender's
//! `records` module): the delivery message as last attempted (or the raw bytes when it could
//! not be parsed), keyed by subscriber id, with UTF-8 headers `x-reason`, `x-attempts`,
//! `x-push-id`, `x-site-id`, `x-source-topic`, `x-source-partition`, `x-source-offset`,
//! `x-first-attempt-at` and `x-failed-at` (milliseconds since the Unix epoch). [`DeadLetter`]
//! reads one leniently: a header that is missing or not a number is `None`, never an error,
//! so one odd record cannot stop a listing.
//!
//! Every subcommand reads the topic with [`pushservice_kafka::scan_topic`] on a blocking
//! thread that hands records over a bounded channel ([`Scan`]): memory stays flat however
//! many dead letters there are, and without `--follow` the scan ends at the topic's end as it
//! was when the command started, even while senders keep adding to it.
//!
//! - [`stats`] — counts by push and by reason, oldest and newest failure.
//! - [`tail`] — JSON lines.
//! - [`replay`] — back onto the push topic with a fresh budget, at most once per dead letter.

pub mod replay;
pub mod stats;
pub mod tail;

use pushservice_config::KafkaSettings;
use pushservice_kafka::{ReadMessage, ScanFrom, scan_topic};
use pushservice_model::{DeliveryMessage, parse_object_id};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::cli::{DlqAction, DlqArgs};
use crate::error::CommandError;

/// Runs `pushctl dlq ...`.
pub async fn run(args: DlqArgs) -> Result<(), CommandError> {
    match args.action {
        DlqAction::Stats(args) => stats::run(args).await,
        DlqAction::Tail(args) => tail::run(args).await,
        DlqAction::Replay(args) => replay::run(args).await,
    }
}

/// Header names of a dead letter.
pub mod header {
    /// Why the delivery failed.
    pub const REASON: &str = "x-reason";
    /// Attempts made (decimal).
    pub const ATTEMPTS: &str = "x-attempts";
    /// Push id (hex).
    pub const PUSH_ID: &str = "x-push-id";
    /// Site id (hex; empty when unknown).
    pub const SITE_ID: &str = "x-site-id";
    /// Topic the delivery message was read from.
    pub const SOURCE_TOPIC: &str = "x-source-topic";
    /// Its partition (decimal).
    pub const SOURCE_PARTITION: &str = "x-source-partition";
    /// Its offset (decimal).
    pub const SOURCE_OFFSET: &str = "x-source-offset";
    /// First attempt, milliseconds since the Unix epoch.
    pub const FIRST_ATTEMPT_AT: &str = "x-first-attempt-at";
    /// When it was given up, milliseconds since the Unix epoch.
    pub const FAILED_AT: &str = "x-failed-at";
    /// Every header above, in the order `tail` prints them.
    pub const ALL: [&str; 9] = [
        REASON,
        ATTEMPTS,
        PUSH_ID,
        SITE_ID,
        SOURCE_TOPIC,
        SOURCE_PARTITION,
        SOURCE_OFFSET,
        FIRST_ATTEMPT_AT,
        FAILED_AT,
    ];
}

/// One dead letter as read from the topic.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// The record as read.
    pub record: ReadMessage,
    /// The delivery message, or why the value is not one (it is then never replayed).
    pub message: Result<DeliveryMessage, String>,
}

impl DeadLetter {
    /// Reads a record of the dead-letter topic.
    pub fn from_record(record: ReadMessage) -> Self {
        let message = match record.payload.as_deref() {
            Some(bytes) => DeliveryMessage::from_json(bytes).map_err(|e| e.to_string()),
            None => Err("the record has no value".to_owned()),
        };
        DeadLetter { record, message }
    }

    /// A header's value, `None` when missing, empty or not UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.record.header(name).filter(|value| !value.is_empty())
    }

    /// A numeric header, `None` when missing or not a number.
    pub fn number<T: std::str::FromStr>(&self, name: &str) -> Option<T> {
        self.header(name)?.trim().parse().ok()
    }

    /// The push it belongs to: `x-push-id`, else the message's.
    pub fn push_id(&self) -> Option<&str> {
        self.header(header::PUSH_ID).or_else(|| {
            self.message
                .as_ref()
                .ok()
                .map(|m| m.push_id.as_str())
                .filter(|id| !id.is_empty())
        })
    }

    /// Why it failed (`x-reason`).
    pub fn reason(&self) -> Option<&str> {
        self.header(header::REASON)
    }

    /// When it failed: `x-failed-at`, else the record's timestamp (ms since the epoch).
    pub fn failed_at(&self) -> Option<u64> {
        self.number(header::FAILED_AT).or_else(|| {
            self.record
                .timestamp_ms
                .and_then(|ms| u64::try_from(ms).ok())
        })
    }

    /// `<topic>:<partition>:<offset>`: the dead letter's identity.
    pub fn id(&self, topic: &str) -> String {
        format!("{topic}:{}:{}", self.record.partition, self.record.offset)
    }
}

/// The `--push` filter, checked as an id first (exit 2 on a malformed one).
pub(crate) fn push_filter(push_id: Option<&str>) -> Result<Option<String>, CommandError> {
    push_id
        .map(|id| parse_object_id("push", id).map(|id| id.to_hex()))
        .transpose()
        .map_err(CommandError::from)
}

/// Milliseconds since the epoch as RFC 3339 (UTC), for people.
pub(crate) fn rfc3339(ms: u64) -> String {
    let ms = i64::try_from(ms).unwrap_or(i64::MAX);
    bson::DateTime::from_millis(ms)
        .try_to_rfc3339_string()
        .unwrap_or_else(|_| format!("{ms} ms"))
}

/// How many records may wait between the reading thread and the command.
const SCAN_BUFFER: usize = 1024;

/// A topic being read on a blocking thread; records arrive through [`Scan::next`].
pub(crate) struct Scan {
    records_rx: mpsc::Receiver<ReadMessage>,
    task: JoinHandle<Result<Vec<i64>, pushservice_kafka::KafkaError>>,
}

impl Scan {
    /// Starts reading `topic` from `from` (see [`scan_topic`]).
    pub(crate) fn start(kafka: KafkaSettings, topic: String, from: ScanFrom, follow: bool) -> Self {
        let (records_tx, records_rx) = mpsc::channel(SCAN_BUFFER);
        let task = tokio::task::spawn_blocking(move || {
            scan_topic(&kafka, &topic, from, follow, |record| {
                // The command stopped listening (done or failed): stop reading.
                match records_tx.blocking_send(record) {
                    Ok(()) => std::ops::ControlFlow::Continue(()),
                    Err(_) => std::ops::ControlFlow::Break(()),
                }
            })
        });
        Scan { records_rx, task }
    }

    /// The next record; `None` once the scan is over (then call [`Scan::finish`]).
    pub(crate) async fn next(&mut self) -> Option<ReadMessage> {
        self.records_rx.recv().await
    }

    /// Waits for the reader; by partition, where a later scan would go on from.
    pub(crate) async fn finish(self) -> Result<Vec<i64>, CommandError> {
        drop(self.records_rx);
        let positions = self
            .task
            .await
            .map_err(|e| anyhow::anyhow!("dead-letter reader task failed: {e}"))??;
        Ok(positions)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(headers: &[(&str, &str)], payload: &[u8]) -> ReadMessage {
        ReadMessage {
            partition: 2,
            offset: 17,
            key: Some(b"sub".to_vec()),
            payload: Some(payload.to_vec()),
            timestamp_ms: Some(1_000),
            headers: headers
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.as_bytes().to_vec()))
                .collect(),
        }
    }

    #[test]
    fn headers_are_read_leniently_and_a_bad_value_is_unreadable_not_an_error() {
        let letter = DeadLetter::from_record(record(
            &[
                (header::REASON, "HTTP 400"),
                (header::ATTEMPTS, "x"),
                (header::SITE_ID, ""),
                (header::FAILED_AT, "1700000000000"),
            ],
            b"not json",
        ));
        assert_eq!(letter.reason(), Some("HTTP 400"));
        assert_eq!(letter.number::<u32>(header::ATTEMPTS), None);
        assert_eq!(letter.header(header::SITE_ID), None);
        assert_eq!(letter.failed_at(), Some(1_700_000_000_000));
        assert_eq!(letter.push_id(), None);
        assert!(letter.message.is_err());
        assert_eq!(letter.id("push-dlq"), "push-dlq:2:17");

        let without = DeadLetter::from_record(record(&[], b"{}"));
        assert_eq!(without.failed_at(), Some(1_000), "record timestamp");
    }

    #[test]
    fn times_print_as_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
    }
}
