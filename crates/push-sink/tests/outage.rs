//! Outages over real HTTP/2: `POST /__sink/outage` makes every push request (or those of one
//! kind) answer its status in each platform's error shape, with `Retry-After` when asked,
//! until the time is over or `DELETE /__sink/outage`; the stats count those answers apart,
//! and planned fates and deliveries are untouched by them. Also: the random latency range.

mod common;

use std::time::{Duration, Instant};

use common::mobile::{Answer, answer, apns_token, fcm_token, token_with_fate};
use common::{Client, client, endpoint};
use pushservice_model::ObjectId;
use pushservice_push_sink::{
    Behaviour, Fate, Latency, Outage, Protocol, PushKind, Sink, SinkConfig, Stats,
};
use serde_json::{Value, json};

/// A sink of `protocol` where a tenth of subscribers are throttled once, and a client.
async fn start(protocol: Protocol) -> (Sink, reqwest::Client, Behaviour) {
    let behaviour = Behaviour {
        throttle_per_mille: 100,
        retry_after_secs: 1,
        ..Behaviour::default()
    };
    let sink = common::start_with(SinkConfig {
        protocol,
        behaviour,
        ..SinkConfig::default()
    })
    .await;
    let kind = match protocol {
        Protocol::Tls => Client::Tls,
        _ => Client::H2c,
    };
    let client = client(&sink, kind);
    (sink, client, behaviour)
}

/// A Web Push answer: status, `Retry-After`, body as JSON (`Null` when it is not JSON: the
/// planned fates answer in plain text).
struct WebAnswer {
    status: u16,
    retry_after: Option<String>,
    json: Value,
}

async fn webpush(client: &reqwest::Client, sink: &Sink, id: &ObjectId) -> WebAnswer {
    let response = client
        .post(endpoint(sink, id))
        .body(vec![7u8; 100])
        .send()
        .await
        .expect("the sink answers");
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = response.bytes().await.expect("body");
    let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
    WebAnswer {
        status,
        retry_after,
        json,
    }
}

async fn apns(client: &reqwest::Client, sink: &Sink, token: &str) -> Answer {
    let url = common::apns::url(sink, token);
    let request = common::apns::apns_request(client, &url, None, common::apns::payload());
    answer(request).await.expect("the sink answers")
}

async fn fcm(client: &reqwest::Client, sink: &Sink, token: &str) -> Answer {
    let url = common::fcm::send_url(sink, common::fcm::PROJECT);
    let body = common::fcm::message(token);
    let request = common::fcm::fcm_request(client, &url, None, &body);
    answer(request).await.expect("the sink answers")
}

/// `method /__sink/outage` with `body`: status and JSON answer (`Null` when not JSON).
async fn control(
    client: &reqwest::Client,
    sink: &Sink,
    method: reqwest::Method,
    body: Option<&str>,
) -> (u16, Value, String) {
    let url = format!("{}/__sink/outage", sink.base_url());
    let mut request = client.request(method, url);
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body.to_owned());
    }
    let response = request.send().await.expect("control request");
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    (status, json, text)
}

async fn stats_over_http(client: &reqwest::Client, sink: &Sink) -> Stats {
    let url = format!("{}/__sink/stats", sink.base_url());
    let response = client.get(url).send().await.expect("stats");
    serde_json::from_slice(&response.bytes().await.expect("body")).expect("Stats JSON")
}

async fn every_kind_is_down_then_up_again(protocol: Protocol) {
    let (sink, client, behaviour) = start(protocol).await;
    // Subscribers whose planned fate is "429 once": the outage must not use that up.
    let web_throttled = (0..100_000)
        .map(|_| ObjectId::new())
        .find(|id| {
            pushservice_push_sink::planned_fate(&behaviour, &id.to_hex()) == Fate::ThrottleOnce
        })
        .expect("a throttled id");
    // And one planned to be accepted: a random id is throttled once in a tenth of runs.
    let web = (0..100_000)
        .map(|_| ObjectId::new())
        .find(|id| pushservice_push_sink::planned_fate(&behaviour, &id.to_hex()) == Fate::Accept)
        .expect("an accepted id");
    let apns_token = token_with_fate(&behaviour, Fate::Accept, apns_token);
    let fcm_token = token_with_fate(&behaviour, Fate::Accept, fcm_token);

    let (status, started, text) = control(
        &client,
        &sink,
        reqwest::Method::POST,
        Some(r#"{"seconds": 60, "retryAfter": 5}"#),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(started["status"], 503, "{started}");
    assert_eq!(started["retry_after_secs"], 5, "{started}");
    assert_eq!(started["kind"], Value::Null, "{started}");
    assert!(started["remaining_ms"].as_u64() > Some(59_000), "{started}");

    for id in [&web, &web_throttled] {
        let down = webpush(&client, &sink, id).await;
        assert_eq!(down.status, 503);
        assert_eq!(down.retry_after.as_deref(), Some("5"));
        assert_eq!(down.json["code"], 503, "{}", down.json);
        assert_eq!(down.json["error"], "Service Unavailable", "{}", down.json);
    }
    let down = apns(&client, &sink, &apns_token).await;
    assert_eq!((down.status, down.retry_after.as_deref()), (503, Some("5")));
    assert_eq!(down.json, json!({ "reason": "ServiceUnavailable" }));
    let down = fcm(&client, &sink, &fcm_token).await;
    assert_eq!((down.status, down.retry_after.as_deref()), (503, Some("5")));
    assert_eq!(down.json["error"]["status"], "UNAVAILABLE", "{}", down.json);
    assert_eq!(
        down.json["error"]["details"][0]["errorCode"], "UNAVAILABLE",
        "{}",
        down.json
    );

    let during = stats_over_http(&client, &sink).await;
    assert_eq!(during.outage_answered, 4, "{during:?}");
    assert_eq!((during.requests, during.accepted), (4, 0), "{during:?}");
    assert_eq!(during.by_status.get(&503), Some(&4), "{during:?}");
    assert_eq!(during.distinct_accepted, 0, "{during:?}");
    assert_eq!(during.by_kind["webpush"].outage_answered, 2, "{during:?}");
    assert_eq!(during.by_kind["apns"].outage_answered, 1, "{during:?}");
    let outage = during.outage.expect("outage in force");
    assert_eq!((outage.status, outage.answered), (503, 4), "{outage:?}");

    let (status, ended, _) = control(&client, &sink, reqwest::Method::DELETE, None).await;
    assert_eq!(status, 200);
    assert_eq!(ended["answered"], 4, "{ended}");
    let (_, none, _) = control(&client, &sink, reqwest::Method::GET, None).await;
    assert_eq!(none, Value::Null);

    // Up again, and the planned fates start from the first request the service handles.
    assert_eq!(webpush(&client, &sink, &web).await.status, 201);
    let first = webpush(&client, &sink, &web_throttled).await;
    assert_eq!(
        (first.status, first.retry_after.as_deref()),
        (429, Some("1"))
    );
    assert_eq!(webpush(&client, &sink, &web_throttled).await.status, 201);
    assert_eq!(apns(&client, &sink, &apns_token).await.status, 200);
    assert_eq!(fcm(&client, &sink, &fcm_token).await.status, 200);

    let after = sink.stats();
    assert_eq!(after.outage, None, "{after:?}");
    assert_eq!(after.outage_answered, 4, "{after:?}");
    assert_eq!(
        (after.accepted, after.distinct_accepted),
        (4, 4),
        "{after:?}"
    );
    assert_eq!(after.duplicates, 0, "outage answers are no deliveries");
    sink.shutdown().await;
}

#[tokio::test]
async fn every_kind_is_down_then_up_again_over_h2c() {
    every_kind_is_down_then_up_again(Protocol::H2c).await;
}

#[tokio::test]
async fn every_kind_is_down_then_up_again_over_tls() {
    every_kind_is_down_then_up_again(Protocol::Tls).await;
}

#[tokio::test]
async fn an_outage_of_one_kind_leaves_the_others_and_the_token_endpoint_up() {
    let (sink, client, behaviour) = start(Protocol::H2c).await;
    let (status, _, text) = control(
        &client,
        &sink,
        reqwest::Method::POST,
        Some(r#"{"seconds": 30, "status": 500, "kind": "apns"}"#),
    )
    .await;
    assert_eq!(status, 200, "{text}");

    let token = token_with_fate(&behaviour, Fate::Accept, apns_token);
    let down = apns(&client, &sink, &token).await;
    assert_eq!((down.status, down.retry_after), (500, None));
    assert_eq!(down.json, json!({ "reason": "InternalServerError" }));
    let web = ObjectId::new();
    let web = (0..100)
        .map(|_| ObjectId::new())
        .find(|id| pushservice_push_sink::planned_fate(&behaviour, &id.to_hex()) == Fate::Accept)
        .unwrap_or(web);
    assert_eq!(webpush(&client, &sink, &web).await.status, 201);
    let fcm_token = token_with_fate(&behaviour, Fate::Accept, fcm_token);
    assert_eq!(fcm(&client, &sink, &fcm_token).await.status, 200);
    // The OAuth endpoint answers as it always does (counting mode has no accounts).
    let token = common::fcm::token_request(&client, &sink, "grant_type=x".into());
    let token = answer(token).await.expect("answers");
    assert_ne!(token.status, 500, "{}", token.json);

    let stats = sink.stats();
    assert_eq!(stats.outage_answered, 1, "{stats:?}");
    assert_eq!(stats.outage.map(|o| o.kind), Some(Some(PushKind::Apns)));
    assert!(!stats.by_kind.contains_key("oauth") || stats.by_kind["oauth"].outage_answered == 0);
    sink.shutdown().await;
}

#[tokio::test]
async fn an_outage_ends_by_itself_when_its_time_is_over() {
    let (sink, client, _) = start(Protocol::H2c).await;
    let status = sink.start_outage(Outage::unavailable(Duration::from_millis(300)));
    assert_eq!(status.status, 503);
    let id = ObjectId::new();
    let first = webpush(&client, &sink, &id).await;
    assert_eq!((first.status, first.retry_after), (503, None));
    tokio::time::sleep(Duration::from_millis(400)).await;
    let stats = stats_over_http(&client, &sink).await;
    assert_eq!(stats.outage, None, "{stats:?}");
    assert_ne!(webpush(&client, &sink, &id).await.status, 503);
    assert_eq!(sink.end_outage(), None, "nothing left to end");
    sink.shutdown().await;
}

#[tokio::test]
async fn bad_outage_requests_are_refused_saying_why() {
    let (sink, client, _) = start(Protocol::H2c).await;
    for (body, says) in [
        ("{}", "seconds"),
        (r#"{"seconds": 10, "status": 200}"#, "400-599"),
        (r#"{"seconds": 10, "kind": "sms"}"#, "webpush|apns|fcm"),
        ("60", "expected JSON"),
    ] {
        let (status, _, text) = control(&client, &sink, reqwest::Method::POST, Some(body)).await;
        assert_eq!(status, 400, "{body}: {text}");
        assert!(text.contains(says), "{body}: {text}");
    }
    let (status, _, text) = control(&client, &sink, reqwest::Method::PUT, None).await;
    assert_eq!(status, 405, "{text}");
    assert!(text.contains("DELETE /__sink/outage"), "{text}");
    assert_eq!(sink.stats().outage, None);
    // Nothing was started: a push request gets its planned fate (201 or 429 here).
    assert_ne!(webpush(&client, &sink, &ObjectId::new()).await.status, 503);
    assert_eq!(sink.stats().outage_answered, 0);
    sink.shutdown().await;
}

#[tokio::test]
async fn a_latency_range_spreads_answers_within_it_side_by_side() {
    let sink = common::start_with(SinkConfig {
        latency: "50-150".parse::<Latency>().expect("range"),
        ..SinkConfig::default()
    })
    .await;
    let client = client(&sink, Client::H2c);
    let started = Instant::now();
    let mut requests = tokio::task::JoinSet::new();
    for _ in 0..40 {
        let (client, url) = (client.clone(), endpoint(&sink, &ObjectId::new()));
        requests.spawn(async move {
            let started = Instant::now();
            let status = client.post(url).send().await.expect("answer").status();
            (status.as_u16(), started.elapsed())
        });
    }
    let answers = requests.join_all().await;
    let all = started.elapsed();
    let shortest = answers.iter().map(|(_, d)| *d).min().expect("answers");
    let longest = answers.iter().map(|(_, d)| *d).max().expect("answers");
    assert!(answers.iter().all(|(status, _)| *status == 201));
    assert!(shortest >= Duration::from_millis(50), "{shortest:?}");
    // Spread over the range, not one fixed delay.
    assert!(
        longest - shortest >= Duration::from_millis(30),
        "{shortest:?}-{longest:?}"
    );
    // 40 concurrent streams wait side by side: about the longest delay, not their sum.
    assert!(all < Duration::from_millis(1000), "{all:?}");
    sink.shutdown().await;
}
