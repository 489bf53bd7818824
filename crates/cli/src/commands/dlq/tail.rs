//! `pushctl dlq tail [--from-beginning | --last N] [--push ID] [--follow]`: dead letters as
//! JSON lines, one per dead letter: where it is, its key, its headers as fields, the message.
//!
//! Without `--from-beginning`, the last N (10) dead letters by failure time: with `--push`
//! the whole topic is read to find that push's last ones, otherwise only about the last N of
//! each partition ([`latest`]). `--follow` then goes on from exactly where that reading ended, so nothing
//! written in between is missed, and prints new dead letters as they come until interrupted.

use pushservice_config::KafkaSettings;
use pushservice_kafka::ScanFrom;
use serde_json::{Map, Value, json};

use super::{DeadLetter, Scan, header, push_filter};
use crate::cli::DlqTailArgs;
use crate::error::CommandError;

/// The JSON line of `letter`, read from `topic`.
pub fn to_json(topic: &str, letter: &DeadLetter) -> Value {
    let record = &letter.record;
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    let mut line = Map::new();
    line.insert("topic".into(), json!(topic));
    line.insert("partition".into(), json!(record.partition));
    line.insert("offset".into(), json!(record.offset));
    line.insert("timestamp".into(), json!(record.timestamp_ms));
    line.insert("key".into(), json!(record.key.as_deref().map(text)));
    let mut others = Map::new();
    for (name, value) in &record.headers {
        let value = text(value);
        let Some(field) = field_name(name) else {
            others.insert(name.clone(), json!(value));
            continue;
        };
        // Numbers as numbers when they are; anything else as sent.
        let value = match value.parse::<i64>() {
            Ok(n) if is_numeric(name) => json!(n),
            _ => json!(value),
        };
        line.insert(field.into(), value);
    }
    if !others.is_empty() {
        line.insert("headers".into(), Value::Object(others));
    }
    let payload = record.payload.as_deref().unwrap_or_default();
    // The message as JSON when it is JSON (even when not a delivery message), else as text.
    let message = serde_json::from_slice::<Value>(payload).unwrap_or_else(|_| json!(text(payload)));
    line.insert("message".into(), message);
    if let Err(why) = &letter.message {
        line.insert("unreadable".into(), json!(why));
    }
    Value::Object(line)
}

/// The field a known header is printed as.
fn field_name(header: &str) -> Option<&'static str> {
    Some(match header {
        header::REASON => "reason",
        header::ATTEMPTS => "attempts",
        header::PUSH_ID => "pushId",
        header::SITE_ID => "siteId",
        header::SOURCE_TOPIC => "sourceTopic",
        header::SOURCE_PARTITION => "sourcePartition",
        header::SOURCE_OFFSET => "sourceOffset",
        header::FIRST_ATTEMPT_AT => "firstAttemptAt",
        header::FAILED_AT => "failedAt",
        _ => return None,
    })
}

/// Whether a known header holds a number.
fn is_numeric(header: &str) -> bool {
    matches!(
        header,
        header::ATTEMPTS
            | header::SOURCE_PARTITION
            | header::SOURCE_OFFSET
            | header::FIRST_ATTEMPT_AT
            | header::FAILED_AT
    )
}

/// The `n` most recent dead letters by failure time (then partition and offset) among those
/// added, in bounded memory: partitions interleave, so read order is not time order.
struct Latest {
    n: usize,
    kept: Vec<DeadLetter>,
}

impl Latest {
    fn new(n: usize) -> Self {
        Latest {
            n,
            kept: Vec::new(),
        }
    }

    fn add(&mut self, letter: DeadLetter) {
        self.kept.push(letter);
        // Trim now and then, not on every add: each trim sorts.
        if self.kept.len() >= 4 * self.n.max(16) {
            self.trim();
        }
    }

    fn trim(&mut self) {
        self.kept
            .sort_by_key(|l| (l.failed_at(), l.record.partition, l.record.offset));
        let excess = self.kept.len().saturating_sub(self.n);
        self.kept.drain(..excess);
    }

    /// The kept ones, oldest first.
    fn into_sorted(mut self) -> Vec<DeadLetter> {
        self.trim();
        self.kept
    }
}

/// The last `n` dead letters of `topic` by failure time, and where a follow goes on from.
///
/// The newest `n` are among the last `n` of each partition, but a partition's last `n`
/// offsets may hold fewer messages: transaction markers take offsets too (senders write
/// dead letters in transactions). So the window doubles until each partition gave `n` or
/// gave no more than the smaller window did (it was read from its beginning); the rescans
/// cost at most as much as the final one.
async fn latest(
    kafka: &KafkaSettings,
    topic: &str,
    n: usize,
) -> Result<(Vec<DeadLetter>, Vec<i64>), CommandError> {
    let mut window = n.max(1) as u64;
    let mut previous: Vec<usize> = Vec::new();
    loop {
        let from = ScanFrom::Last(window);
        let mut scan = Scan::start(kafka.clone(), topic.to_owned(), from, false);
        let mut last = Latest::new(n);
        let mut counts: Vec<usize> = Vec::new();
        while let Some(record) = scan.next().await {
            let partition = usize::try_from(record.partition).unwrap_or(0);
            if counts.len() <= partition {
                counts.resize(partition + 1, 0);
            }
            counts[partition] += 1;
            last.add(DeadLetter::from_record(record));
        }
        let positions = scan.finish().await?;
        counts.resize(positions.len(), 0);
        let complete = counts
            .iter()
            .enumerate()
            .all(|(p, &count)| count >= n || previous.get(p) == Some(&count));
        if complete {
            return Ok((last.into_sorted(), positions));
        }
        previous = counts;
        window = window.saturating_mul(2);
    }
}

/// Runs `pushctl dlq tail`.
pub async fn run(args: DlqTailArgs) -> Result<(), CommandError> {
    let push = push_filter(args.push_id.as_deref())?;
    let kafka = args.kafka.kafka.settings()?;
    let topic = args.kafka.topics.settings()?.dead_letter.name;
    let wanted = |letter: &DeadLetter| push.as_deref().is_none_or(|p| letter.push_id() == Some(p));
    let print = |letter: &DeadLetter| println!("{}", to_json(&topic, letter));

    if args.from_beginning {
        let mut scan = Scan::start(kafka, topic.clone(), ScanFrom::Beginning, args.follow);
        while let Some(record) = scan.next().await {
            let letter = DeadLetter::from_record(record);
            if wanted(&letter) {
                print(&letter);
            }
        }
        scan.finish().await?;
        return Ok(());
    }

    let (last, positions) = match push {
        // That push's last ones may be anywhere in the topic.
        Some(_) => {
            let mut scan = Scan::start(kafka.clone(), topic.clone(), ScanFrom::Beginning, false);
            let mut last = Latest::new(args.last);
            while let Some(record) = scan.next().await {
                let letter = DeadLetter::from_record(record);
                if wanted(&letter) {
                    last.add(letter);
                }
            }
            (last.into_sorted(), scan.finish().await?)
        }
        None => latest(&kafka, &topic, args.last).await?,
    };
    last.iter().for_each(print);

    if args.follow {
        let mut scan = Scan::start(kafka, topic.clone(), ScanFrom::Offsets(positions), true);
        while let Some(record) = scan.next().await {
            let letter = DeadLetter::from_record(record);
            if wanted(&letter) {
                print(&letter);
            }
        }
        scan.finish().await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use pushservice_kafka::ReadMessage;

    use super::*;

    fn at(failed_at: u64) -> DeadLetter {
        DeadLetter::from_record(ReadMessage {
            partition: 0,
            offset: 0,
            key: None,
            payload: None,
            timestamp_ms: None,
            headers: vec![("x-failed-at".into(), failed_at.to_string().into_bytes())],
        })
    }

    #[test]
    fn the_latest_are_kept_by_failure_time_not_read_order() {
        let mut latest = Latest::new(3);
        for t in (0..200u64).map(|i| (i * 37) % 200) {
            latest.add(at(t));
        }
        let kept: Vec<Option<u64>> = latest
            .into_sorted()
            .iter()
            .map(DeadLetter::failed_at)
            .collect();
        assert_eq!(kept, vec![Some(197), Some(198), Some(199)]);
        assert!(Latest::new(0).into_sorted().is_empty());
    }

    #[test]
    fn headers_become_typed_fields_and_unreadable_values_say_why() {
        let letter = DeadLetter::from_record(ReadMessage {
            partition: 1,
            offset: 9,
            key: Some(b"sub1".to_vec()),
            payload: Some(br#"{"not":"a delivery"}"#.to_vec()),
            timestamp_ms: Some(5),
            headers: vec![
                ("x-reason".into(), b"HTTP 400: bad".to_vec()),
                ("x-attempts".into(), b"3".to_vec()),
                ("x-source-offset".into(), b"oops".to_vec()),
                ("x-site-id".into(), b"".to_vec()),
                ("x-custom".into(), b"v".to_vec()),
            ],
        });
        let line = to_json("dlq", &letter);
        assert_eq!(line["key"], "sub1", "{line}");
        assert_eq!(line["reason"], "HTTP 400: bad", "{line}");
        assert_eq!(line["attempts"], 3, "{line}");
        assert_eq!(line["sourceOffset"], "oops", "{line}");
        assert_eq!(line["siteId"], "", "{line}");
        assert_eq!(line["headers"]["x-custom"], "v", "{line}");
        assert_eq!(line["message"]["not"], "a delivery", "{line}");
        assert!(line["unreadable"].is_string(), "{line}");
    }
}
