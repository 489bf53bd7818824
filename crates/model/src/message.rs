//! Messages that travel through Kafka.
//!
//! JSON on the wire, so operators can read them with `kcat` or `pushctl tail`. They carry ids,
//! never keys or credentials: daemons load those from MongoDB.

use serde::{Deserialize, Serialize};

/// One triggered push, published by `pushctl send` on the `raw-push` topic, keyed by push id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawPushMessage {
    /// The push to fan out (24 hex characters).
    pub push_id: String,
    /// The site the push belongs to, so a parser can reject a mismatch early.
    pub site_id: String,
    /// When it was triggered, milliseconds since the Unix epoch.
    pub triggered_at: i64,
}

impl RawPushMessage {
    /// Serialized form.
    pub fn to_json(&self) -> Vec<u8> {
        // Strings and an integer always serialize.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses a message body; the error says what is wrong with it.
    pub fn from_json(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_field_names() {
        let message = RawPushMessage {
            push_id: "65a1f0c2e4b0a1b2c3d4e5f6".into(),
            site_id: "65a1f0c2e4b0a1b2c3d4e5f7".into(),
            triggered_at: 1_700_000_000_000,
        };
        let bytes = message.to_json();
        let text = std::str::from_utf8(&bytes).expect("utf-8");
        assert!(
            text.contains("\"pushId\":\"65a1f0c2e4b0a1b2c3d4e5f6\""),
            "{text}"
        );
        assert_eq!(RawPushMessage::from_json(&bytes).expect("parses"), message);
    }
}
