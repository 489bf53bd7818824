//! `pushctl dlq stats [--push ID] [--json]`: how many dead letters, of which pushes, why, and
//! when, over the topic from its beginning to its end when the command started.

use std::collections::BTreeMap;

use pushservice_kafka::ScanFrom;

use super::{DeadLetter, Scan, push_filter, rfc3339};
use crate::cli::DlqStatsArgs;
use crate::error::CommandError;

/// The key under which dead letters without a push id are counted.
pub const UNKNOWN_PUSH: &str = "(unknown)";
/// The key under which dead letters without a reason are counted.
pub const NO_REASON: &str = "(none)";

/// Counts of dead letters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeadLetterStats {
    /// Dead letters counted.
    pub total: u64,
    /// Of those, values that are not a delivery message (never replayed).
    pub unreadable: u64,
    /// By push id ([`UNKNOWN_PUSH`] when none).
    pub by_push: BTreeMap<String, u64>,
    /// By reason ([`NO_REASON`] when none).
    pub by_reason: BTreeMap<String, u64>,
    /// Earliest failure, ms since the epoch.
    pub oldest_failed_at: Option<u64>,
    /// Latest failure, ms since the epoch.
    pub newest_failed_at: Option<u64>,
}

impl DeadLetterStats {
    /// Counts `letter`.
    pub fn add(&mut self, letter: &DeadLetter) {
        self.total += 1;
        if letter.message.is_err() {
            self.unreadable += 1;
        }
        let push = letter.push_id().unwrap_or(UNKNOWN_PUSH);
        *self.by_push.entry(push.to_owned()).or_default() += 1;
        let reason = letter.reason().unwrap_or(NO_REASON);
        *self.by_reason.entry(reason.to_owned()).or_default() += 1;
        if let Some(at) = letter.failed_at() {
            self.oldest_failed_at = Some(self.oldest_failed_at.map_or(at, |t| t.min(at)));
            self.newest_failed_at = Some(self.newest_failed_at.map_or(at, |t| t.max(at)));
        }
    }

    /// The JSON `--json` prints.
    pub fn to_json(&self, topic: &str, push: Option<&str>) -> serde_json::Value {
        serde_json::json!({
            "topic": topic,
            "push": push,
            "total": self.total,
            "unreadable": self.unreadable,
            "byPush": self.by_push,
            "byReason": self.by_reason,
            "oldestFailedAt": self.oldest_failed_at,
            "newestFailedAt": self.newest_failed_at,
        })
    }

    /// The text printed without `--json`.
    pub fn to_text(&self, topic: &str, push: Option<&str>) -> String {
        let mut text = match push {
            Some(push) => format!("{topic}: {} dead letters of push {push}", self.total),
            None => format!("{topic}: {} dead letters", self.total),
        };
        if self.unreadable > 0 {
            text += &format!(" ({} unreadable, never replayed)", self.unreadable);
        }
        text.push('\n');
        if let (Some(oldest), Some(newest)) = (self.oldest_failed_at, self.newest_failed_at) {
            text += &format!("failed from {} to {}\n", rfc3339(oldest), rfc3339(newest));
        }
        for (title, counts) in [("by push", &self.by_push), ("by reason", &self.by_reason)] {
            if counts.is_empty() {
                continue;
            }
            text += &format!("{title}:\n");
            let mut rows: Vec<(&String, &u64)> = counts.iter().collect();
            // Most first; ties in name order.
            rows.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
            let width = rows
                .iter()
                .map(|(_, n)| n.to_string().len())
                .max()
                .unwrap_or(1);
            for (name, n) in rows {
                text += &format!("  {n:>width$}  {name}\n");
            }
        }
        text
    }
}

/// Runs `pushctl dlq stats`.
pub async fn run(args: DlqStatsArgs) -> Result<(), CommandError> {
    let push = push_filter(args.push_id.as_deref())?;
    let kafka = args.kafka.kafka.settings()?;
    let topic = args.kafka.topics.settings()?.dead_letter.name;

    let mut scan = Scan::start(kafka, topic.clone(), ScanFrom::Beginning, false);
    let mut stats = DeadLetterStats::default();
    while let Some(record) = scan.next().await {
        let letter = DeadLetter::from_record(record);
        if push.as_deref().is_none_or(|p| letter.push_id() == Some(p)) {
            stats.add(&letter);
        }
    }
    scan.finish().await?;

    if args.json {
        println!("{:#}", stats.to_json(&topic, push.as_deref()));
    } else {
        print!("{}", stats.to_text(&topic, push.as_deref()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use pushservice_kafka::ReadMessage;

    use super::super::header;
    use super::*;

    fn letter(push: &str, reason: &str, failed_at: &str) -> DeadLetter {
        DeadLetter::from_record(ReadMessage {
            partition: 0,
            offset: 0,
            key: None,
            payload: Some(b"raw".to_vec()),
            timestamp_ms: None,
            headers: vec![
                (header::PUSH_ID.to_owned(), push.as_bytes().to_vec()),
                (header::REASON.to_owned(), reason.as_bytes().to_vec()),
                (header::FAILED_AT.to_owned(), failed_at.as_bytes().to_vec()),
            ],
        })
    }

    #[test]
    fn counts_by_push_and_reason_with_the_time_span() {
        let mut stats = DeadLetterStats::default();
        stats.add(&letter("a", "HTTP 400", "3000"));
        stats.add(&letter("a", "HTTP 400", "1000"));
        stats.add(&letter("b", "", "2000"));
        stats.add(&letter("", "HTTP 413", ""));
        assert_eq!((stats.total, stats.unreadable), (4, 4));
        assert_eq!(
            stats.by_push,
            BTreeMap::from([
                ("(unknown)".to_owned(), 1),
                ("a".to_owned(), 2),
                ("b".to_owned(), 1)
            ])
        );
        assert_eq!(stats.by_reason.get("(none)"), Some(&1));
        assert_eq!(stats.by_reason.get("HTTP 400"), Some(&2));
        assert_eq!(
            (stats.oldest_failed_at, stats.newest_failed_at),
            (Some(1000), Some(3000))
        );
        let text = stats.to_text("dlq", None);
        assert!(
            text.starts_with("dlq: 4 dead letters (4 unreadable"),
            "{text}"
        );
        assert!(text.contains("by reason:\n  2  HTTP 400\n"), "{text}");
        let json = stats.to_json("dlq", Some("a"));
        assert_eq!(json["byPush"]["a"], 2, "{json}");
        assert_eq!(json["oldestFailedAt"], 1000, "{json}");
    }
}
