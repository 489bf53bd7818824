//! `pushctl tail <topic>`: messages of a topic as JSON lines, for operators and demos.

use std::time::Duration;

use pushservice_kafka::{ReadFrom, read_topic};

use crate::cli::TailArgs;
use crate::error::CommandError;

/// Runs `pushctl tail`.
pub async fn run(args: TailArgs) -> Result<(), CommandError> {
    let kafka = args.kafka.settings()?;
    let from = if args.from_beginning {
        ReadFrom::Beginning
    } else {
        ReadFrom::End
    };
    let (topic, max, idle) = (
        args.topic.clone(),
        args.max,
        Duration::from_millis(args.idle_ms),
    );
    let messages = tokio::task::spawn_blocking(move || read_topic(&kafka, &topic, from, max, idle))
        .await
        .map_err(|e| anyhow::anyhow!("reader task failed: {e}"))??;
    let wanted = args.key.as_deref().map(str::as_bytes);
    for message in messages {
        if wanted.is_some_and(|key| message.key.as_deref() != Some(key)) {
            continue;
        }
        let text = |bytes: &Option<Vec<u8>>| {
            bytes
                .as_deref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
        };
        // Show JSON values as JSON, anything else as a string.
        let value = message
            .payload
            .as_deref()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(b).ok())
            .unwrap_or_else(|| serde_json::json!(text(&message.payload)));
        let line = serde_json::json!({
            "topic": args.topic,
            "partition": message.partition,
            "offset": message.offset,
            "timestamp": message.timestamp_ms,
            "key": text(&message.key),
            "value": value,
        });
        println!("{line}");
    }
    Ok(())
}
