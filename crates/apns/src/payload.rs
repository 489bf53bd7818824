//! Apple's notification JSON and request headers, built from a delivery.
//!
//! The service-worker payload a push carries (`{"pushId","title","options":{...},
//! "launchUrl"}`) becomes:
//!
//! ```json
//! {"aps":{"alert":{"title":"…","body":"…"},"sound":"default","thread-id":"<tag>",
//!         "mutable-content":1},
//!  "pushId":"…","launchUrl":"…","image":"…"}
//! ```
//!
//! `sound` is left out for silent pushes, `thread-id` without a tag, and `mutable-content`
//! (which lets a notification service extension fetch the image) without an image. The
//! custom keys beside `aps` are what the app reads when the user taps.

use pushservice_model::{PayloadFields, Urgency};
use serde::Serialize;

/// Largest payload APNs accepts for regular notifications.
pub const MAX_PAYLOAD_BYTES: usize = 4096;

/// What one push sends to every iOS device: the JSON body and the per-push headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApnsPayload {
    /// The request body (shared, not copied, by every request that sends it).
    pub body: bytes::Bytes,
    /// `apns-priority`: 10 (now) for normal and high urgency, 5 (power-considerate) below.
    pub priority: u8,
    /// `apns-push-type`: always `alert`; these are visible notifications.
    pub push_type: &'static str,
}

#[derive(Serialize)]
struct Body<'a> {
    aps: Aps<'a>,
    #[serde(rename = "pushId", skip_serializing_if = "str::is_empty")]
    push_id: &'a str,
    #[serde(rename = "launchUrl", skip_serializing_if = "Option::is_none")]
    launch_url: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    image: Option<&'a str>,
}

#[derive(Serialize)]
struct Aps<'a> {
    alert: Alert<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sound: Option<&'static str>,
    #[serde(rename = "thread-id", skip_serializing_if = "Option::is_none")]
    thread_id: Option<&'a str>,
    #[serde(rename = "mutable-content", skip_serializing_if = "Option::is_none")]
    mutable_content: Option<u8>,
}

#[derive(Serialize)]
struct Alert<'a> {
    title: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    body: Option<&'a str>,
}

/// The APNs body and headers for a push with `fields`, sent with `urgency`.
pub fn build(fields: &PayloadFields, urgency: Urgency) -> ApnsPayload {
    let options = &fields.options;
    let image = options.image.as_deref();
    let body = Body {
        aps: Aps {
            alert: Alert {
                title: &fields.title,
                body: options.body.as_deref(),
            },
            sound: (options.silent != Some(true)).then_some("default"),
            thread_id: options.tag.as_deref(),
            mutable_content: image.map(|_| 1),
        },
        push_id: &fields.push_id,
        launch_url: fields.launch_url.as_deref(),
        image,
    };
    ApnsPayload {
        // Strings and integers always serialize.
        body: serde_json::to_vec(&body).unwrap_or_default().into(),
        priority: match urgency {
            Urgency::Normal | Urgency::High => 10,
            Urgency::Low | Urgency::VeryLow => 5,
        },
        push_type: "alert",
    }
}

#[cfg(test)]
mod tests {
    use pushservice_model::push::Notification;

    use super::*;

    #[test]
    fn a_full_push_becomes_an_alert_with_its_custom_keys() {
        let fields = PayloadFields {
            push_id: "65a1b2c3d4e5f60718293a4b".into(),
            title: "Sale".into(),
            options: Notification {
                body: Some("Half price \"today\"".into()),
                image: Some("https://cdn.example/i.png".into()),
                tag: Some("sale".into()),
                ..Notification::default()
            },
            launch_url: Some("https://shop.example/sale".into()),
        };
        let payload = build(&fields, Urgency::High);
        let json: serde_json::Value = serde_json::from_slice(&payload.body).expect("JSON");
        assert_eq!(
            json,
            serde_json::json!({
                "aps": {
                    "alert": {"title": "Sale", "body": "Half price \"today\""},
                    "sound": "default",
                    "thread-id": "sale",
                    "mutable-content": 1
                },
                "pushId": "65a1b2c3d4e5f60718293a4b",
                "launchUrl": "https://shop.example/sale",
                "image": "https://cdn.example/i.png"
            })
        );
        assert_eq!((payload.priority, payload.push_type), (10, "alert"));
    }

    #[test]
    fn silent_low_urgency_pushes_have_no_sound_and_priority_5() {
        let fields = PayloadFields {
            title: "Quiet".into(),
            options: Notification {
                silent: Some(true),
                ..Notification::default()
            },
            ..PayloadFields::default()
        };
        let payload = build(&fields, Urgency::Low);
        assert_eq!(&payload.body[..], br#"{"aps":{"alert":{"title":"Quiet"}}}"#);
        assert_eq!(payload.priority, 5);
    }
}
