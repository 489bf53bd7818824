//! The delivery message: one (push, subscriber) pair on the `push` topic.
//!
//! It carries everything a sender needs to deliver without another lookup except the site's
//! credentials, which senders load from MongoDB and cache: ids, the target, the payload the
//! service worker receives, TTL, urgency and an attempt counter. No private keys or
//! credentials travel through Kafka (the original service put the site's VAPID private key in
//! every message).
//!
//! The payload is the same for every subscriber of a push, so the parser serializes it once
//! and embeds it verbatim ([`RawValue`]); senders encrypt exactly those bytes.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::push::{Notification, Priority, Push};

/// Version of the delivery message format; senders refuse versions they do not know.
pub const DELIVERY_VERSION: u8 = 1;

/// Web Push `Urgency` (RFC 8030 §5.3).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Urgency {
    /// On power and Wi-Fi only.
    VeryLow,
    /// On power or Wi-Fi.
    Low,
    /// Neither on power nor Wi-Fi (the default).
    #[default]
    Normal,
    /// Deliver now, even on low battery.
    High,
}

impl Urgency {
    /// The header value.
    pub fn as_str(self) -> &'static str {
        match self {
            Urgency::VeryLow => "very-low",
            Urgency::Low => "low",
            Urgency::Normal => "normal",
            Urgency::High => "high",
        }
    }
}

impl From<Priority> for Urgency {
    fn from(priority: Priority) -> Self {
        match priority {
            Priority::Normal => Urgency::Normal,
            Priority::High => Urgency::High,
        }
    }
}

/// Where a delivery goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Target {
    /// A browser, through its push service (RFC 8030), payload encrypted per RFC 8291.
    Web {
        /// Push service URL.
        endpoint: String,
        /// User agent public key, base64url (65-byte uncompressed P-256 point).
        p256dh: String,
        /// Authentication secret, base64url (16 bytes).
        auth: String,
    },
    /// An iOS device, through APNs.
    Ios {
        /// APNs device token (hex).
        token: String,
    },
    /// An Android device, through FCM.
    Android {
        /// FCM registration token.
        token: String,
    },
}

impl Target {
    /// The platform this target is reached through.
    pub fn platform(&self) -> crate::Platform {
        match self {
            Target::Web { .. } => crate::Platform::Web,
            Target::Ios { .. } => crate::Platform::Ios,
            Target::Android { .. } => crate::Platform::Android,
        }
    }
}

/// One message on the `push` topic, keyed by subscriber id.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryMessage {
    /// Format version, [`DELIVERY_VERSION`].
    pub v: u8,
    /// Push id (hex).
    pub push_id: String,
    /// Site id (hex): which credentials sign the request.
    pub site_id: String,
    /// Subscriber id (hex): unsubscribed when the push service says the subscription is gone.
    pub subscriber_id: String,
    /// Where to deliver.
    pub target: Target,
    /// Seconds the push service may keep the message for an offline device.
    pub ttl: u32,
    /// Delivery urgency.
    pub urgency: Urgency,
    /// Replaces an undelivered message with the same topic on the push service (optional).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    /// Deliveries already attempted (0 on the first).
    #[serde(default)]
    pub attempt: u32,
    /// When the first attempt was made, milliseconds since the Unix epoch; set once the
    /// delivery needs a retry (the retry budget is counted from it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_attempt_at: Option<u64>,
    /// When a retry is due, milliseconds since the Unix epoch (messages on a retry topic).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due_at: Option<u64>,
    /// Put back on the push topic from the dead-letter topic (`pushctl dlq replay`): the
    /// push already counted this delivery as failed, so its final outcome replaces that.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub replayed: bool,
    /// The reason the push counted this delivery's failure under, when replayed: its final
    /// outcome takes that failure back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaced_failure: Option<String>,
    /// What the service worker receives: JSON, embedded verbatim.
    pub payload: Box<RawValue>,
}

impl DeliveryMessage {
    /// Serialized form.
    pub fn to_json(&self) -> Vec<u8> {
        // Strings, numbers and already-valid raw JSON always serialize.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses a message; the error says which field is wrong.
    pub fn from_json(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        let message: DeliveryMessage = serde_json::from_slice(bytes)?;
        if message.v != DELIVERY_VERSION {
            return Err(serde::de::Error::custom(format!(
                "delivery message version {} is not supported (expected {DELIVERY_VERSION})",
                message.v
            )));
        }
        Ok(message)
    }
}

/// A delivery message to be written, borrowing everything: the parser encodes millions of
/// these per push, so the shared payload is never copied into an owned message first. It
/// serializes to exactly the shape [`DeliveryMessage`] parses.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryEnvelope<'a> {
    /// Format version, [`DELIVERY_VERSION`].
    pub v: u8,
    /// Push id (hex).
    pub push_id: &'a str,
    /// Site id (hex).
    pub site_id: &'a str,
    /// Subscriber id (hex).
    pub subscriber_id: &'a str,
    /// Where to deliver.
    pub target: TargetRef<'a>,
    /// Seconds the push service may keep the message.
    pub ttl: u32,
    /// Delivery urgency.
    pub urgency: Urgency,
    /// Replacement topic, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub topic: Option<&'a str>,
    /// Deliveries already attempted.
    pub attempt: u32,
    /// The push's payload, embedded verbatim.
    pub payload: &'a RawValue,
}

/// Borrowed form of [`Target`], serialized identically.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum TargetRef<'a> {
    /// See [`Target::Web`].
    Web {
        /// Push service URL.
        endpoint: &'a str,
        /// User agent public key, base64url.
        p256dh: &'a str,
        /// Authentication secret, base64url.
        auth: &'a str,
    },
    /// See [`Target::Ios`].
    Ios {
        /// APNs device token.
        token: &'a str,
    },
    /// See [`Target::Android`].
    Android {
        /// FCM registration token.
        token: &'a str,
    },
}

impl DeliveryEnvelope<'_> {
    /// Serializes into `buffer` (cleared first), so one buffer serves a whole fan-out.
    pub fn write_json(&self, buffer: &mut Vec<u8>) {
        buffer.clear();
        // Strings, numbers and already-valid raw JSON always serialize.
        let _ = serde_json::to_writer(&mut *buffer, self);
    }
}

/// The JSON a service worker receives for a push: what `showNotification` needs and where a
/// click leads. Built once per push by the parser.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NotificationPayload<'a> {
    /// Push id, so the service worker can report deliveries and clicks.
    pub push_id: String,
    /// Notification title.
    pub title: &'a str,
    /// `showNotification` options, as stored on the push.
    pub options: &'a Notification,
    /// Where a click leads.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub launch_url: Option<&'a str>,
    /// Priority the push was sent with.
    pub priority: Priority,
}

impl<'a> NotificationPayload<'a> {
    /// The payload of `push`.
    pub fn of(push: &'a Push) -> Self {
        NotificationPayload {
            push_id: push.id.to_hex(),
            title: &push.title,
            options: &push.options,
            launch_url: push.launch_url.as_deref(),
            priority: push.priority,
        }
    }

    /// Serialized once, to be embedded in every delivery message of the push.
    pub fn to_raw(&self) -> Box<RawValue> {
        let json = serde_json::to_string(self).unwrap_or_else(|_| "{}".to_owned());
        // `json` came from serde_json, so it is valid JSON.
        RawValue::from_string(json).unwrap_or_else(|_| empty_object())
    }
}

/// The fields of a delivery's payload that APNs and FCM need: unlike a service worker, those
/// platforms take the notification in their own JSON shape, which each provider builds from
/// these. Lenient: a field missing from the payload is empty, never an error.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PayloadFields {
    /// Push id.
    #[serde(default)]
    pub push_id: String,
    /// Notification title.
    #[serde(default)]
    pub title: String,
    /// Body, image, tag, silence ... as stored on the push.
    #[serde(default)]
    pub options: Notification,
    /// Where a click leads.
    #[serde(default)]
    pub launch_url: Option<String>,
}

impl PayloadFields {
    /// Reads the fields of a delivery message's payload.
    pub fn parse(payload: &RawValue) -> Result<Self, serde_json::Error> {
        serde_json::from_str(payload.get())
    }
}

fn empty_object() -> Box<RawValue> {
    // A literal empty object is valid JSON.
    RawValue::from_string("{}".to_owned()).expect("'{}' is valid JSON")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ObjectId;

    fn message() -> DeliveryMessage {
        let mut push = Push::new(ObjectId::new(), "Sale".into(), Notification::default());
        push.launch_url = Some("https://shop.example".into());
        DeliveryMessage {
            v: DELIVERY_VERSION,
            push_id: push.id.to_hex(),
            site_id: push.site_id.to_hex(),
            subscriber_id: ObjectId::new().to_hex(),
            target: Target::Web {
                endpoint: "https://push.example/x".into(),
                p256dh: "BCVx".into(),
                auth: "BTBZ".into(),
            },
            ttl: 60,
            urgency: Urgency::High,
            topic: None,
            attempt: 0,
            first_attempt_at: None,
            due_at: None,
            replayed: false,
            replaced_failure: None,
            payload: NotificationPayload::of(&push).to_raw(),
        }
    }

    #[test]
    fn round_trips_with_payload_verbatim() {
        let original = message();
        let bytes = original.to_json();
        let text = std::str::from_utf8(&bytes).expect("utf-8");
        assert!(
            text.contains(r#""target":{"kind":"web","endpoint":"https://push.example/x""#),
            "{text}"
        );
        assert!(text.contains(r#""urgency":"high""#), "{text}");
        let parsed = DeliveryMessage::from_json(&bytes).expect("parses");
        assert_eq!(parsed.payload.get(), original.payload.get());
        assert_eq!(parsed.target, original.target);
        let payload: serde_json::Value = serde_json::from_str(parsed.payload.get()).expect("json");
        assert_eq!(payload["title"], "Sale");
        assert_eq!(payload["launchUrl"], "https://shop.example");
    }

    #[test]
    fn envelope_encodes_what_delivery_message_parses() {
        let owned = message();
        let Target::Web {
            endpoint,
            p256dh,
            auth,
        } = &owned.target
        else {
            panic!("web target")
        };
        let envelope = DeliveryEnvelope {
            v: DELIVERY_VERSION,
            push_id: &owned.push_id,
            site_id: &owned.site_id,
            subscriber_id: &owned.subscriber_id,
            target: TargetRef::Web {
                endpoint,
                p256dh,
                auth,
            },
            ttl: owned.ttl,
            urgency: owned.urgency,
            topic: None,
            attempt: 0,
            payload: &owned.payload,
        };
        let mut buffer = vec![1, 2, 3];
        envelope.write_json(&mut buffer);
        assert_eq!(buffer, owned.to_json());
    }

    #[test]
    fn rejects_unknown_version_and_missing_fields() {
        let mut value: serde_json::Value =
            serde_json::from_slice(&message().to_json()).expect("json");
        value["v"] = 9.into();
        let err = DeliveryMessage::from_json(value.to_string().as_bytes()).expect_err("v9");
        assert!(
            err.to_string().contains("version 9 is not supported"),
            "{err}"
        );
        let err = DeliveryMessage::from_json(br#"{"v":1}"#).expect_err("missing");
        assert!(err.to_string().contains("missing field"), "{err}");
    }
}
