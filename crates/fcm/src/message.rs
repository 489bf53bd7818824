//! The FCM v1 request body for one device, built from a delivery:
//!
//! ```json
//! {"message":{"token":"…",
//!   "notification":{"title":"…","body":"…","image":"…"},
//!   "data":{"pushId":"…","launchUrl":"…"},
//!   "android":{"ttl":"600s","priority":"HIGH","collapse_key":"…",
//!              "notification":{"tag":"…"}}}}
//! ```
//!
//! `data` values must be strings (FCM rejects anything else); the app reads them when the
//! user taps. `priority` is `HIGH` for high urgency only: FCM deprioritises apps whose
//! high-priority messages do not show a notification, so it is not the default.

use pushservice_model::{PayloadFields, Urgency};
use serde::Serialize;

/// The body of one send request.
#[derive(Debug, Serialize)]
pub struct FcmMessage<'a> {
    message: Message<'a>,
}

#[derive(Debug, Serialize)]
struct Message<'a> {
    token: &'a str,
    notification: Notification<'a>,
    data: Data<'a>,
    android: Android<'a>,
}

#[derive(Debug, Serialize)]
struct Notification<'a> {
    title: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    body: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    image: Option<&'a str>,
}

#[derive(Debug, Serialize)]
struct Data<'a> {
    #[serde(rename = "pushId", skip_serializing_if = "str::is_empty")]
    push_id: &'a str,
    #[serde(rename = "launchUrl", skip_serializing_if = "Option::is_none")]
    launch_url: Option<&'a str>,
}

#[derive(Debug, Serialize)]
struct Android<'a> {
    ttl: String,
    priority: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    collapse_key: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    notification: Option<AndroidNotification<'a>>,
}

#[derive(Debug, Serialize)]
struct AndroidNotification<'a> {
    tag: &'a str,
}

/// The body sending `fields` to `token`, kept `ttl` seconds, with `urgency`; `collapse_key`
/// replaces an undelivered message with the same key.
pub fn build<'a>(
    token: &'a str,
    fields: &'a PayloadFields,
    ttl: u32,
    urgency: Urgency,
    collapse_key: Option<&'a str>,
) -> FcmMessage<'a> {
    let options = &fields.options;
    FcmMessage {
        message: Message {
            token,
            notification: Notification {
                title: &fields.title,
                body: options.body.as_deref(),
                image: options.image.as_deref(),
            },
            data: Data {
                push_id: &fields.push_id,
                launch_url: fields.launch_url.as_deref(),
            },
            android: Android {
                ttl: format!("{ttl}s"),
                priority: if urgency == Urgency::High {
                    "HIGH"
                } else {
                    "NORMAL"
                },
                collapse_key,
                notification: options
                    .tag
                    .as_deref()
                    .map(|tag| AndroidNotification { tag }),
            },
        },
    }
}

impl FcmMessage<'_> {
    /// The JSON bytes.
    pub fn to_json(&self) -> Vec<u8> {
        // Strings only: always serializes.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use pushservice_model::Notification as Options;

    use super::*;

    #[test]
    fn a_push_becomes_a_v1_message_with_string_data() {
        let fields = PayloadFields {
            push_id: "65a1b2c3d4e5f60718293a4b".into(),
            title: "Sale".into(),
            options: Options {
                body: Some("Half price".into()),
                image: Some("https://cdn.example/i.png".into()),
                tag: Some("sale".into()),
                ..Options::default()
            },
            launch_url: Some("https://shop.example/sale".into()),
        };
        let json: serde_json::Value = serde_json::from_slice(
            &build("tok:APA91", &fields, 600, Urgency::High, Some("daily")).to_json(),
        )
        .expect("JSON");
        assert_eq!(
            json,
            serde_json::json!({"message": {
                "token": "tok:APA91",
                "notification": {"title": "Sale", "body": "Half price", "image": "https://cdn.example/i.png"},
                "data": {"pushId": "65a1b2c3d4e5f60718293a4b", "launchUrl": "https://shop.example/sale"},
                "android": {"ttl": "600s", "priority": "HIGH", "collapse_key": "daily",
                            "notification": {"tag": "sale"}}
            }})
        );
        let plain = PayloadFields {
            title: "Hi".into(),
            ..PayloadFields::default()
        };
        assert_eq!(
            build("t", &plain, 0, Urgency::Normal, None).to_json(),
            br#"{"message":{"token":"t","notification":{"title":"Hi"},"data":{},"android":{"ttl":"0s","priority":"NORMAL"}}}"#
        );
    }
}
