//! Test helpers for FCM and OAuth requests: URLs, a message, send and token requests, and
//! assertions on Google's error answers.

use pushservice_push_sink::Sink;
use serde_json::{Value, json};

use super::mobile::{Answer, answer};

pub const PROJECT: &str = "demo-project";

pub fn send_url(sink: &Sink, project: &str) -> String {
    format!("{}/v1/projects/{project}/messages:send", sink.base_url())
}

pub fn token_uri(sink: &Sink) -> String {
    format!("{}/token", sink.base_url())
}

pub fn message(token: &str) -> Value {
    json!({
        "message": {
            "token": token,
            "notification": { "title": "Sale", "body": "Today only" },
            "data": { "push_id": "p1", "url": "https://shop.example/sale" },
            "android": { "ttl": "3600s", "priority": "HIGH", "collapse_key": "sale" },
        }
    })
}

pub async fn send(request: reqwest::RequestBuilder) -> Answer {
    answer(request).await.expect("the sink answers")
}

pub fn fcm_request(
    client: &reqwest::Client,
    url: &str,
    bearer: Option<&str>,
    body: &Value,
) -> reqwest::RequestBuilder {
    let request = client
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_string());
    match bearer {
        Some(bearer) => request.header("authorization", format!("Bearer {bearer}")),
        None => request,
    }
}

pub fn token_request(
    client: &reqwest::Client,
    sink: &Sink,
    form: String,
) -> reqwest::RequestBuilder {
    client
        .post(token_uri(sink))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
}

/// Google's error status and FcmError code of an answer.
#[track_caller]
pub fn assert_error(answer: &Answer, code: u16, status: &str, error_code: Option<&str>) {
    let error = &answer.json["error"];
    assert_eq!(
        (
            answer.status,
            error["code"].as_u64(),
            error["status"].as_str(),
            error["details"][0]["errorCode"].as_str(),
        ),
        (code, Some(u64::from(code)), Some(status), error_code),
        "body {}",
        answer.json
    );
    if error_code.is_some() {
        assert_eq!(
            error["details"][0]["@type"],
            "type.googleapis.com/google.firebase.fcm.v1.FcmError"
        );
    } else {
        assert!(error.get("details").is_none(), "{}", answer.json);
    }
}

#[track_caller]
pub fn assert_oauth_error(answer: &Answer, error: &str, mentions: &str) {
    let description = answer.json["error_description"]
        .as_str()
        .unwrap_or_default();
    assert_eq!(
        (answer.status, answer.json["error"].as_str()),
        (400, Some(error)),
        "{}",
        answer.json
    );
    assert!(
        description.contains(mentions),
        "{description:?} should mention {mentions:?}"
    );
}

/// The access token of a successful token answer.
#[track_caller]
pub fn access_token(answer: &Answer) -> String {
    assert_eq!(answer.status, 200, "{}", answer.json);
    assert_eq!(answer.content_type.as_deref(), Some("application/json"));
    assert_eq!(answer.json["token_type"], "Bearer");
    assert_eq!(answer.json["expires_in"], 3599);
    answer.json["access_token"]
        .as_str()
        .expect("an access token")
        .to_owned()
}
