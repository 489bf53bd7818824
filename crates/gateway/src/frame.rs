//! Turning a `realtime` record into the frame clients receive, once per message.

use std::sync::Arc;

use axum::extract::ws::Utf8Bytes;
use pushservice_model::ObjectId;
use pushservice_realtime::channel::USER_PREFIX;
use pushservice_realtime::{RealtimeRecord, message_id, validate_channel};

use crate::hub::Msg;

/// A record read and checked.
#[derive(Debug)]
pub struct Parsed {
    /// Site id (hex).
    pub site: String,
    /// The message as clients get it.
    pub msg: Arc<Msg>,
    /// The record, for the history recorder (fallbacks).
    pub record: RealtimeRecord,
}

/// Reads a record's value; an error says what is wrong with it.
pub fn parse(
    payload: Option<&[u8]>,
    partition: i32,
    offset: i64,
    timestamp_ms: Option<i64>,
    max_bytes: usize,
) -> Result<Parsed, String> {
    let payload = payload.ok_or("the record has no value")?;
    let record: RealtimeRecord = serde_json::from_slice(payload)
        .map_err(|e| format!("the value is not a realtime record: {e}"))?;
    ObjectId::parse_str(&record.site)
        .map_err(|_| format!("site {:?} is not a site id (24 hex digits)", record.site))?;
    validate_channel(&record.channel).map_err(|e| e.to_string())?;
    if record.data.get().len() > max_bytes {
        return Err(format!(
            "data of {} bytes is over REALTIME_MAX_MESSAGE_BYTES ({max_bytes})",
            record.data.get().len()
        ));
    }
    if record.fallback.is_some() && !record.channel.starts_with(USER_PREFIX) {
        return Err("a fallback is only for user: channels".into());
    }
    let ts_ms = record.ts.or(timestamp_ms).unwrap_or_default();
    let ack = record.ack || record.fallback.is_some();
    let frame = frame_text(
        &record.channel,
        partition,
        offset,
        record.data.get(),
        ts_ms,
        ack,
    );
    Ok(Parsed {
        site: record.site.clone(),
        msg: Arc::new(Msg {
            channel: Arc::from(record.channel.as_str()),
            partition,
            offset,
            ts_ms,
            ack,
            frame: Utf8Bytes::from(frame),
        }),
        record,
    })
}

/// The JSON of a message frame.
pub fn frame_text(
    channel: &str,
    partition: i32,
    offset: i64,
    data: &str,
    ts_ms: i64,
    ack: bool,
) -> String {
    let channel = serde_json::to_string(channel).unwrap_or_default();
    let id = message_id(partition, offset);
    let mut frame = String::with_capacity(data.len() + channel.len() + 96);
    frame.push_str("{\"type\":\"message\",\"channel\":");
    frame.push_str(&channel);
    frame.push_str(",\"offset\":");
    frame.push_str(&offset.to_string());
    frame.push_str(",\"id\":\"");
    frame.push_str(&id);
    frame.push_str("\",\"data\":");
    frame.push_str(data);
    frame.push_str(",\"ts\":");
    frame.push_str(&ts_ms.to_string());
    if ack {
        frame.push_str(",\"ack\":true");
    }
    frame.push('}');
    frame
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_frames_and_refuses_bad_records() {
        let good =
            br#"{"site":"665f1c2e9b1e8a3d4c5b6a79","channel":"room:1","data":{"t":"hi"},"ts":7}"#;
        let parsed = parse(Some(good), 3, 41, None, 1024).expect("valid");
        let frame: serde_json::Value =
            serde_json::from_str(parsed.msg.frame.as_str()).expect("JSON");
        assert_eq!(
            frame,
            serde_json::json!({"type":"message","channel":"room:1","offset":41,"id":"3-41","data":{"t":"hi"},"ts":7})
        );
        for (bad, why) in [
            (&b"nope"[..], "not a realtime record"),
            (br#"{"site":"x","channel":"c","data":1}"#, "not a site id"),
            (br#"{"site":"665f1c2e9b1e8a3d4c5b6a79","channel":"a b","data":1}"#, "not allowed"),
            (br#"{"site":"665f1c2e9b1e8a3d4c5b6a79","channel":"c","data":"0123456789abcdef0123"}"#, "over"),
            (br#"{"site":"665f1c2e9b1e8a3d4c5b6a79","channel":"room","data":1,"fallback":{"pushId":"x"}}"#, "only for user"),
        ] {
            let error = parse(Some(bad), 0, 0, None, 16).expect_err("refused");
            assert!(error.contains(why), "{error}");
        }
    }
}
