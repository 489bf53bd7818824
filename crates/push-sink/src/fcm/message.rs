//! FCM HTTP v1 request bodies: `{"message": {...}, "validate_only": bool}`.
//!
//! Two readings. [`target`] runs on every request, in counting mode too, and only finds what
//! the sink acts on (`message.token`, `validate_only`), skipping the rest unparsed. [`validate`]
//! runs in verification mode and holds the whole message to the HTTP v1 schema the sender
//! uses: known fields only (FCM refuses unknown names), exactly one target, string `data`
//! values, an Android `ttl` of the form `3.5s` and a priority of `NORMAL` or `HIGH`.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::{Map, Value};

/// What the sink needs of every request.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Target<'b> {
    /// `message.token`: the device, and the fate key.
    pub(crate) token: Cow<'b, str>,
    /// Check only; deliver nothing.
    pub(crate) validate_only: bool,
}

#[derive(Deserialize)]
struct Envelope<'b> {
    #[serde(borrow)]
    message: Option<MessageTarget<'b>>,
    #[serde(default)]
    validate_only: bool,
}

#[derive(Deserialize)]
struct MessageTarget<'b> {
    #[serde(borrow, default)]
    token: Option<Cow<'b, str>>,
}

/// Finds `message.token` and `validate_only`; the error is what a 400 says.
pub(crate) fn target(body: &[u8]) -> Result<Target<'_>, String> {
    let envelope: Envelope<'_> =
        serde_json::from_slice(body).map_err(|e| format!("Invalid JSON payload received. {e}"))?;
    let message = envelope
        .message
        .ok_or("The request has no `message` object.")?;
    let token = message
        .token
        .filter(|token| !token.is_empty())
        .ok_or("message.token is missing or empty: the sink delivers to device tokens only.")?;
    Ok(Target {
        token,
        validate_only: envelope.validate_only,
    })
}

/// Fields of a `Message` (HTTP v1).
const MESSAGE_FIELDS: [&str; 10] = [
    "name",
    "data",
    "notification",
    "android",
    "webpush",
    "apns",
    "fcm_options",
    "token",
    "topic",
    "condition",
];
/// Fields of a `Notification`.
const NOTIFICATION_FIELDS: [&str; 3] = ["title", "body", "image"];
/// Fields of an `AndroidConfig`.
const ANDROID_FIELDS: [&str; 8] = [
    "collapse_key",
    "priority",
    "ttl",
    "restricted_package_name",
    "data",
    "notification",
    "fcm_options",
    "direct_boot_ok",
];

/// Checks the whole request body and returns its `message` object; the error is what a 400
/// says.
pub(crate) fn validate(body: &[u8]) -> Result<Value, String> {
    let mut request: Map<String, Value> =
        serde_json::from_slice(body).map_err(|e| format!("Invalid JSON payload received. {e}"))?;
    known_fields("the request", &request, &["message", "validate_only"])?;
    if request
        .get("validate_only")
        .is_some_and(|v| !v.is_boolean())
    {
        return Err("validate_only must be a boolean.".to_owned());
    }
    let message = request
        .remove("message")
        .ok_or("The request has no `message` object.")?;
    let fields = object("message", &message)?;
    known_fields("message", fields, &MESSAGE_FIELDS)?;
    let targets = ["token", "topic", "condition"]
        .iter()
        .filter(|name| fields.contains_key(**name))
        .count();
    if targets != 1 {
        return Err(format!(
            "message must have exactly one of token, topic or condition; it has {targets}."
        ));
    }
    let token = fields.get("token").and_then(Value::as_str);
    if token.is_none_or(str::is_empty) {
        return Err("message.token must be a non-empty string.".to_owned());
    }
    if let Some(notification) = fields.get("notification") {
        notification_fields("message.notification", notification)?;
    }
    if let Some(data) = fields.get("data") {
        string_map("message.data", data)?;
    }
    if let Some(android) = fields.get("android") {
        validate_android(android)?;
    }
    Ok(message)
}

/// Checks `message.android`.
fn validate_android(android: &Value) -> Result<(), String> {
    let fields = object("message.android", android)?;
    known_fields("message.android", fields, &ANDROID_FIELDS)?;
    if let Some(ttl) = fields.get("ttl") {
        match ttl.as_str() {
            Some(ttl) if is_duration(ttl) => {}
            _ => {
                return Err(format!(
                    "message.android.ttl {ttl}: a duration in seconds like \"3600s\" or \"3.5s\"."
                ));
            }
        }
    }
    if let Some(priority) = fields.get("priority")
        && !matches!(priority.as_str(), Some("NORMAL" | "HIGH"))
    {
        return Err(format!(
            "message.android.priority {priority}: use \"NORMAL\" or \"HIGH\"."
        ));
    }
    if let Some(collapse_key) = fields.get("collapse_key")
        && !collapse_key.is_string()
    {
        return Err("message.android.collapse_key must be a string.".to_owned());
    }
    if let Some(data) = fields.get("data") {
        string_map("message.android.data", data)?;
    }
    if let Some(notification) = fields.get("notification") {
        object("message.android.notification", notification)?;
    }
    Ok(())
}

/// The fields of `value`, when it is an object.
fn object<'v>(what: &str, value: &'v Value) -> Result<&'v Map<String, Value>, String> {
    value
        .as_object()
        .ok_or_else(|| format!("{what} must be an object."))
}

/// Refuses names outside `known`, as FCM does ("Unknown name").
fn known_fields(what: &str, fields: &Map<String, Value>, known: &[&str]) -> Result<(), String> {
    match fields.keys().find(|name| !known.contains(&name.as_str())) {
        Some(name) => Err(format!(
            "Invalid JSON payload received. Unknown name {name:?} in {what}."
        )),
        None => Ok(()),
    }
}

/// Checks a `Notification`: known fields, string values.
fn notification_fields(what: &str, value: &Value) -> Result<(), String> {
    let fields = object(what, value)?;
    known_fields(what, fields, &NOTIFICATION_FIELDS)?;
    match fields.iter().find(|(_, v)| !v.is_string()) {
        Some((name, _)) => Err(format!("{what}.{name} must be a string.")),
        None => Ok(()),
    }
}

/// Checks a `map<string, string>`.
fn string_map(what: &str, value: &Value) -> Result<(), String> {
    match object(what, value)?.iter().find(|(_, v)| !v.is_string()) {
        Some((name, v)) => Err(format!(
            "{what}.{name} is {v}; data values must be strings."
        )),
        None => Ok(()),
    }
}

/// Whether `ttl` is a protobuf JSON duration in seconds: `^\d+(\.\d{1,9})?s$`.
fn is_duration(ttl: &str) -> bool {
    let Some(number) = ttl.strip_suffix('s') else {
        return false;
    };
    let (whole, fraction) = match number.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (number, None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    digits(whole) && fraction.is_none_or(|f| digits(f) && f.len() <= 9)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_target_is_found_without_reading_the_rest() {
        let body = br#"{"message":{"token":"abc:1","data":{"n":1}},"validate_only":true}"#;
        let target = target(body).expect("has a token");
        assert_eq!(target.token, "abc:1");
        assert!(target.validate_only);
        assert!(super::target(b"not json").is_err());
        assert!(super::target(br#"{"message":{"topic":"news"}}"#).is_err());
        assert!(super::target(br#"{"message":{"token":""}}"#).is_err());
        assert!(super::target(br#"{}"#).is_err());
    }

    #[test]
    fn durations_are_seconds_with_up_to_nine_decimals() {
        for good in ["0s", "3600s", "3.5s", "1.123456789s"] {
            assert!(is_duration(good), "{good}");
        }
        for bad in [
            "3600",
            "s",
            ".5s",
            "1.s",
            "1.1234567890s",
            "-1s",
            "1m",
            "1.5.5s",
        ] {
            assert!(!is_duration(bad), "{bad}");
        }
    }

    #[test]
    fn messages_are_held_to_the_http_v1_schema() {
        let good = serde_json::json!({
            "message": {
                "token": "t",
                "notification": {"title": "Hi", "body": "there", "image": "https://x/i.png"},
                "data": {"k": "v"},
                "android": {"ttl": "60s", "priority": "HIGH", "collapse_key": "c",
                            "notification": {"icon": "i"}},
            },
            "validate_only": false,
        });
        let message = validate(good.to_string().as_bytes()).expect("valid");
        assert_eq!(message, good["message"]);

        let invalid = |patch: fn(&mut Value)| {
            let mut body = good.clone();
            patch(&mut body);
            validate(body.to_string().as_bytes()).expect_err("invalid")
        };
        invalid(|b| b["message"]["topic"] = "news".into());
        invalid(|b| b["message"]["data"]["n"] = 1.into());
        invalid(|b| b["message"]["android"]["ttl"] = "60".into());
        invalid(|b| b["message"]["android"]["priority"] = "high".into());
        invalid(|b| b["message"]["notification"]["subtitle"] = "x".into());
        invalid(|b| b["message"]["tokens"] = "x".into());
        invalid(|b| b["validate_only"] = "yes".into());
        let err = invalid(|b| b["extra"] = 1.into());
        assert!(err.contains("Unknown name"), "{err}");
    }
}
