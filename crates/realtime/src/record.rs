//! The `realtime` topic's record.
//!
//! Key `<siteId>:<channel>`, so all of a channel's messages land in one partition and keep
//! their order; value a JSON object. Anything may write it (pushapi, pushctl, a site's own
//! producer), so the gateway validates every record it reads.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// The value of a `realtime` record.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RealtimeRecord {
    /// Site id (24 hex digits).
    pub site: String,
    /// Channel name.
    pub channel: String,
    /// The message: any JSON value, passed to clients as it is.
    pub data: Box<RawValue>,
    /// Publish time, milliseconds since the Unix epoch (the record's timestamp when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ts: Option<i64>,
    /// Whether clients should acknowledge the message (always with a fallback).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ack: bool,
    /// A push notification for the user when no device acknowledges in time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<Fallback>,
}

/// The offline fallback of a message to a `user:` channel: a stored, pending push (made by
/// `pushapi` from the publish request's content, its audience the user) that is sent when no
/// device acknowledges the message in time.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Fallback {
    /// The pending push to send.
    pub push_id: String,
    /// How long to wait for an ack before the push goes out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ack_timeout_ms: Option<u64>,
}

/// Default wait for an ack before a fallback push.
pub const DEFAULT_ACK_TIMEOUT_MS: u64 = 10_000;

/// The record key of a channel.
pub fn record_key(site: &str, channel: &str) -> String {
    format!("{site}:{channel}")
}

/// The partition of a channel's records: librdkafka's default partitioner for keyed records,
/// CRC-32 of the key modulo the partition count. Publishers set it explicitly and the gateway
/// computes it for a channel before any of its messages arrives; a site's own producer must
/// use the same (librdkafka's `consistent_random`, its default).
pub fn partition_of(record_key: &str, partitions: usize) -> i32 {
    let hash = crc32fast::hash(record_key.as_bytes());
    i32::try_from(hash as usize % partitions.max(1)).unwrap_or(0)
}

/// A message's id: `<partition>-<offset>`.
pub fn message_id(partition: i32, offset: i64) -> String {
    format!("{partition}-{offset}")
}

/// Parses a message id back into (partition, offset).
pub fn parse_message_id(id: &str) -> Option<(i32, i64)> {
    let (partition, offset) = id.split_once('-')?;
    Some((partition.parse().ok()?, offset.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let text =
            r#"{"site":"665f1c2e9b1e8a3d4c5b6a79","channel":"room:1","data":{"a":[1,2]},"ts":5}"#;
        let record: RealtimeRecord = serde_json::from_str(text).expect("parses");
        assert_eq!(record.data.get(), r#"{"a":[1,2]}"#);
        assert!(!record.ack);
        assert_eq!(serde_json::to_string(&record).expect("encodes"), text);
        assert!(
            serde_json::from_str::<RealtimeRecord>(
                r#"{"site":"x","channel":"c","data":1,"extra":1}"#
            )
            .is_err()
        );
        assert_eq!(parse_message_id(&message_id(7, 1234)), Some((7, 1234)));
        assert_eq!(parse_message_id("7"), None);
    }
}
