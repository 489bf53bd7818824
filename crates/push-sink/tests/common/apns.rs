//! Test helpers for APNs requests: URLs, a payload, a request with every header, and
//! assertions on Apple's `{"reason": ...}` answers.

use pushservice_push_sink::Sink;
use serde_json::json;

use super::mobile::{Answer, answer};

pub const TOPIC: &str = "com.example.shop";
pub const TEAM: &str = "TEAM123456";
pub const KEY_ID: &str = "KEY1234567";

pub fn url(sink: &Sink, token: &str) -> String {
    format!("{}/3/device/{token}", sink.base_url())
}

pub fn payload() -> Vec<u8> {
    json!({ "aps": { "alert": { "title": "Sale", "body": "Today only" }, "sound": "default" },
            "push_id": "p1" })
    .to_string()
    .into_bytes()
}

/// An APNs request with a full set of headers; `authorization` as given (if any).
pub fn apns_request(
    client: &reqwest::Client,
    url: &str,
    authorization: Option<&str>,
    body: Vec<u8>,
) -> reqwest::RequestBuilder {
    let request = client
        .post(url)
        .header("apns-topic", TOPIC)
        .header("apns-push-type", "alert")
        .header("apns-priority", "10")
        .header("apns-expiration", "1900000000")
        .header("apns-collapse-id", "sale")
        .body(body);
    match authorization {
        Some(authorization) => request.header("authorization", authorization),
        None => request,
    }
}

pub async fn send(request: reqwest::RequestBuilder) -> Answer {
    answer(request).await.expect("the sink answers")
}

#[track_caller]
pub fn assert_reason(answer: &Answer, status: u16, reason: &str) {
    assert_eq!(
        (answer.status, answer.json["reason"].as_str()),
        (status, Some(reason)),
        "body {}",
        answer.json
    );
}
