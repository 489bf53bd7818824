//! A subscriber: one browser (or device) subscription of one site.
//!
//! The original service stores the browser's `PushSubscription` as a JSON *string* in
//! `pushEndPoint`, exactly as `JSON.stringify(subscription)` produced it. We keep that shape and
//! parse it when it is used, so one broken subscription is reported on its own and never stops
//! a push.

use base64::Engine as _;
use bson::DateTime;
use bson::oid::ObjectId;
use serde::{Deserialize, Serialize};

/// Which delivery platform a subscriber is reached through.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Platform {
    /// A browser, through Web Push with VAPID (the only kind the original service knew).
    #[default]
    Web,
    /// An iOS app, through APNs.
    Ios,
    /// An Android app, through FCM.
    Android,
}

impl Platform {
    /// The platform's name as stored and used in metric labels: `web`, `ios`, `android`.
    pub fn as_str(self) -> &'static str {
        match self {
            Platform::Web => "web",
            Platform::Ios => "ios",
            Platform::Android => "android",
        }
    }
}

/// A document of the `subscribers` collection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Subscriber {
    /// The subscriber id.
    #[serde(rename = "_id")]
    pub id: ObjectId,
    /// The site this subscription belongs to.
    pub site_id: ObjectId,
    /// False once the push service said the subscription is gone (404/410) or the user left.
    #[serde(default = "default_true")]
    pub subscribed: bool,
    /// The browser's `PushSubscription` as a JSON string; see [`PushSubscription`].
    #[serde(default)]
    pub push_end_point: String,
    /// Delivery platform; absent in the original service's documents, which are all Web Push.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    /// APNs or FCM registration token, for `ios` and `android` subscribers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_token: Option<String>,
    /// The site's own id for the user behind this subscription, so a push can target users.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    /// Labels the site gave the subscriber (interests, plans, languages); a push can target
    /// any of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// When the document was created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<DateTime>,
    /// When the document was last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<DateTime>,
    /// Mongoose's document version key.
    #[serde(rename = "__v", default)]
    pub version: i32,
}

fn default_true() -> bool {
    true
}

impl Subscriber {
    /// A new subscribed Web Push subscriber with timestamps set to now.
    pub fn new_web(id: ObjectId, site_id: ObjectId, subscription: &PushSubscription) -> Self {
        let now = DateTime::now();
        Subscriber {
            id,
            site_id,
            subscribed: true,
            push_end_point: subscription.to_json(),
            platform: None,
            device_token: None,
            external_id: None,
            tags: Vec::new(),
            created_at: Some(now),
            updated_at: Some(now),
            version: 0,
        }
    }

    /// A new subscribed iOS or Android subscriber reached through its device `token`.
    pub fn new_device(id: ObjectId, site_id: ObjectId, platform: Platform, token: String) -> Self {
        let now = DateTime::now();
        Subscriber {
            id,
            site_id,
            subscribed: true,
            push_end_point: String::new(),
            platform: Some(platform),
            device_token: Some(token),
            external_id: None,
            tags: Vec::new(),
            created_at: Some(now),
            updated_at: Some(now),
            version: 0,
        }
    }

    /// Parses and checks `pushEndPoint`.
    pub fn subscription(&self) -> Result<PushSubscription, SubscriptionError> {
        PushSubscription::parse(&self.push_end_point)
    }
}

/// The browser's `PushSubscription`, as `JSON.stringify` writes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PushSubscription {
    /// The push service URL to POST to; unique per subscription.
    pub endpoint: String,
    /// Milliseconds since the epoch after which the subscription is void, or null.
    #[serde(default)]
    pub expiration_time: Option<f64>,
    /// The keys for RFC 8291 message encryption.
    pub keys: SubscriptionKeys,
}

/// The subscription's encryption keys, base64url as the browser gives them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionKeys {
    /// The user agent's public key: an uncompressed P-256 point (65 bytes, first byte 0x04).
    pub p256dh: String,
    /// The 16-byte authentication secret.
    pub auth: String,
}

/// Why a `pushEndPoint` cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubscriptionError {
    /// Not JSON, or JSON without `endpoint` / `keys.p256dh` / `keys.auth`.
    #[error("pushEndPoint is not a PushSubscription JSON object: {0}")]
    NotJson(String),
    /// The endpoint is not an absolute http(s) URL.
    #[error("endpoint {0:?} is not an absolute https:// (or http://) URL")]
    BadEndpoint(String),
    /// `keys.p256dh` is not base64 of a 65-byte uncompressed P-256 point.
    #[error("keys.p256dh is not base64url of a 65-byte uncompressed P-256 point ({0})")]
    BadP256dh(String),
    /// `keys.auth` is not base64 of 16 bytes.
    #[error("keys.auth is not base64url of a 16-byte secret ({0})")]
    BadAuth(String),
}

/// Length of an uncompressed P-256 public key.
pub const P256_POINT_LEN: usize = 65;
/// Length of a Web Push authentication secret.
pub const AUTH_SECRET_LEN: usize = 16;

impl PushSubscription {
    /// A subscription with no expiration time, keys encoded base64url without padding.
    pub fn new(endpoint: String, p256dh: &[u8], auth: &[u8]) -> Self {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        PushSubscription {
            endpoint,
            expiration_time: None,
            keys: SubscriptionKeys {
                p256dh: b64.encode(p256dh),
                auth: b64.encode(auth),
            },
        }
    }

    /// Parses a `pushEndPoint` string and checks the endpoint and both keys.
    pub fn parse(json: &str) -> Result<Self, SubscriptionError> {
        let subscription: PushSubscription =
            serde_json::from_str(json).map_err(|e| SubscriptionError::NotJson(e.to_string()))?;
        subscription.check()?;
        Ok(subscription)
    }

    /// The JSON string stored in `pushEndPoint`.
    pub fn to_json(&self) -> String {
        // A struct of strings and an optional float always serializes.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Decoded `p256dh`: the 65-byte uncompressed point.
    pub fn p256dh_bytes(&self) -> Result<[u8; P256_POINT_LEN], SubscriptionError> {
        let bytes = decode_base64(&self.keys.p256dh).map_err(SubscriptionError::BadP256dh)?;
        let point: [u8; P256_POINT_LEN] = bytes
            .try_into()
            .map_err(|b: Vec<u8>| SubscriptionError::BadP256dh(format!("{} bytes", b.len())))?;
        if point[0] != 0x04 {
            return Err(SubscriptionError::BadP256dh(
                "not an uncompressed point".into(),
            ));
        }
        Ok(point)
    }

    /// Decoded `auth`: the 16-byte secret.
    pub fn auth_bytes(&self) -> Result<[u8; AUTH_SECRET_LEN], SubscriptionError> {
        let bytes = decode_base64(&self.keys.auth).map_err(SubscriptionError::BadAuth)?;
        bytes
            .try_into()
            .map_err(|b: Vec<u8>| SubscriptionError::BadAuth(format!("{} bytes", b.len())))
    }

    fn check(&self) -> Result<(), SubscriptionError> {
        let endpoint = self.endpoint.as_str();
        let rest = endpoint
            .strip_prefix("https://")
            .or_else(|| endpoint.strip_prefix("http://"))
            .ok_or_else(|| SubscriptionError::BadEndpoint(self.endpoint.clone()))?;
        if rest.is_empty() || rest.starts_with('/') || rest.contains(char::is_whitespace) {
            return Err(SubscriptionError::BadEndpoint(self.endpoint.clone()));
        }
        self.p256dh_bytes()?;
        self.auth_bytes()?;
        Ok(())
    }
}

/// Decodes base64 the way browsers and libraries write it: URL-safe or standard alphabet,
/// with or without padding.
pub fn decode_base64(text: &str) -> Result<Vec<u8>, String> {
    use base64::engine::{
        DecodePaddingMode, GeneralPurposeConfig, general_purpose::GeneralPurpose,
    };
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::URL_SAFE,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    let normalized: String = text
        .trim()
        .chars()
        .map(|c| match c {
            '+' => '-',
            '/' => '_',
            c => c,
        })
        .collect();
    LENIENT.decode(normalized).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const P256DH: &str =
        "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4";
    const AUTH: &str = "BTBZMqHH6r4Tts7J_aSIgg";

    fn json(endpoint: &str, p256dh: &str, auth: &str) -> String {
        format!(
            r#"{{"endpoint":"{endpoint}","expirationTime":null,"keys":{{"p256dh":"{p256dh}","auth":"{auth}"}}}}"#
        )
    }

    #[test]
    fn parses_browser_subscription() {
        let text = json("https://fcm.googleapis.com/fcm/send/abc", P256DH, AUTH);
        let subscription = PushSubscription::parse(&text).expect("valid subscription");
        assert_eq!(
            subscription.endpoint,
            "https://fcm.googleapis.com/fcm/send/abc"
        );
        assert_eq!(subscription.auth_bytes().expect("auth").len(), 16);
        assert_eq!(subscription.p256dh_bytes().expect("p256dh")[0], 4);
    }

    #[test]
    fn accepts_standard_alphabet_with_padding() {
        let p256dh = P256DH.replace('-', "+").replace('_', "/") + "=";
        let auth = AUTH.replace('_', "/") + "==";
        PushSubscription::parse(&json("https://push.example/x", &p256dh, &auth))
            .expect("standard base64 accepted");
    }

    #[test]
    fn round_trips_through_json_string() {
        let subscription =
            PushSubscription::new("https://push.example/1".into(), &[4; 65], &[7; 16]);
        assert_eq!(
            PushSubscription::parse(&subscription.to_json()),
            Ok(subscription)
        );
    }

    #[test]
    fn names_what_is_wrong() {
        let cases = [
            ("not json", "is not a PushSubscription JSON object"),
            (r#"{"endpoint":"x"}"#, "missing field `keys`"),
            (
                &json("ftp://push.example/x", P256DH, AUTH),
                "is not an absolute https://",
            ),
            (&json("https://push.example/x", "AAAA", AUTH), "keys.p256dh"),
            (&json("https://push.example/x", P256DH, "AAAA"), "keys.auth"),
        ];
        for (input, expected) in cases {
            let err = PushSubscription::parse(input).expect_err(input).to_string();
            assert!(
                err.contains(expected),
                "input {input:?}: expected {expected:?} in {err:?}"
            );
        }
    }

    #[test]
    fn loads_original_document() {
        let document = bson::doc! {
            "_id": ObjectId::new(), "siteId": ObjectId::new(), "subscribed": true,
            "pushEndPoint": json("https://push.example/x", P256DH, AUTH),
            "createdAt": DateTime::now(), "updatedAt": DateTime::now(), "__v": 0,
        };
        let subscriber: Subscriber = bson::from_document(document).expect("loads");
        assert_eq!(subscriber.platform, None);
        subscriber.subscription().expect("subscription parses");
    }
}
