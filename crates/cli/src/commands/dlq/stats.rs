//! `pushctl dlq stats [--push ID] [--json]`: how many dead letters, of which pushes, why, and
//! when, over the topic from its beginning to its end when the command started.

use pushservice_control::dlq::{self, DeadLetterStats, Filter};

use super::{push_filter, rfc3339};
use crate::cli::DlqStatsArgs;
use crate::error::CommandError;

pub use pushservice_control::dlq::{NO_REASON, UNKNOWN_PUSH};

/// The JSON `--json` prints.
pub fn to_json(stats: &DeadLetterStats, topic: &str, push: Option<&str>) -> serde_json::Value {
    serde_json::json!({
        "topic": topic,
        "push": push,
        "total": stats.total,
        "unreadable": stats.unreadable,
        "byPush": stats.by_push,
        "byReason": stats.by_reason,
        "oldestFailedAt": stats.oldest_failed_at,
        "newestFailedAt": stats.newest_failed_at,
    })
}

/// The text printed without `--json`.
pub fn to_text(stats: &DeadLetterStats, topic: &str, push: Option<&str>) -> String {
    let mut text = match push {
        Some(push) => format!("{topic}: {} dead letters of push {push}", stats.total),
        None => format!("{topic}: {} dead letters", stats.total),
    };
    if stats.unreadable > 0 {
        text += &format!(" ({} unreadable, never replayed)", stats.unreadable);
    }
    text.push('\n');
    if let (Some(oldest), Some(newest)) = (stats.oldest_failed_at, stats.newest_failed_at) {
        text += &format!("failed from {} to {}\n", rfc3339(oldest), rfc3339(newest));
    }
    for (title, counts) in [("by push", &stats.by_push), ("by reason", &stats.by_reason)] {
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

/// Runs `pushctl dlq stats`.
pub async fn run(args: DlqStatsArgs) -> Result<(), CommandError> {
    let push = push_filter(args.push_id.as_deref())?;
    let kafka = args.kafka.kafka.settings()?;
    let topic = args.kafka.topics.settings()?.dead_letter.name;
    let filter = Filter {
        push: push.clone(),
        ..Filter::default()
    };
    let stats = dlq::stats(&kafka, &topic, &filter, None).await?;
    if args.json {
        println!("{:#}", to_json(&stats, &topic, push.as_deref()));
    } else {
        print!("{}", to_text(&stats, &topic, push.as_deref()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use pushservice_control::dlq::DeadLetter;
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
    fn prints_counts_by_push_and_reason_with_the_time_span() {
        let mut stats = DeadLetterStats::default();
        stats.add(&letter("a", "HTTP 400", "3000"));
        stats.add(&letter("a", "HTTP 400", "1000"));
        stats.add(&letter("b", "", "2000"));
        stats.add(&letter("", "HTTP 413", ""));
        let text = to_text(&stats, "dlq", None);
        assert!(
            text.starts_with("dlq: 4 dead letters (4 unreadable"),
            "{text}"
        );
        assert!(text.contains("by reason:\n  2  HTTP 400\n"), "{text}");
        let json = to_json(&stats, "dlq", Some("a"));
        assert_eq!(json["byPush"]["a"], 2, "{json}");
        assert_eq!(json["byReason"][NO_REASON], 1, "{json}");
        assert_eq!(json["byPush"][UNKNOWN_PUSH], 1, "{json}");
        assert_eq!(json["oldestFailedAt"], 1000, "{json}");
    }
}
