//! The APNs kind end to end over real HTTP/2 in counting mode: requests are accepted and
//! counted, structural mistakes refused, and each planned fate answers in Apple's words.
//! (Verification mode: `apns_verify.rs`.)

mod common;

use common::apns::{assert_reason, payload, send, url};
use common::mobile::{answer, apns_token};
use common::{Client, client};
use pushservice_push_sink::{Behaviour, Fate, Protocol, SinkConfig};
use serde_json::Value;

#[tokio::test]
async fn counting_mode_accepts_and_answers_an_apns_id() {
    let sink = common::start(Protocol::H2c, false).await;
    let client = client(&sink, Client::H2c);
    let token = apns_token();

    let generated = send(client.post(url(&sink, &token)).body(payload())).await;
    assert_eq!((generated.status, &generated.json), (200, &Value::Null));
    let id = generated.apns_id.expect("an apns-id");
    assert_eq!(id.len(), 36, "{id}");
    assert_eq!(id.matches('-').count(), 4, "{id}");

    let sent_id = "123E4567-E89B-12D3-A456-426614174000";
    let echoed = send(
        client
            .post(url(&sink, &token.to_uppercase()))
            .header("apns-id", sent_id),
    )
    .await;
    assert_eq!(echoed.status, 200);
    assert_eq!(echoed.apns_id.as_deref(), Some(sent_id));

    // Structural mistakes are answered in counting mode too.
    assert_reason(
        &send(client.post(url(&sink, "not-hex"))).await,
        400,
        "BadDeviceToken",
    );
    assert_reason(
        &send(client.get(url(&sink, &token))).await,
        405,
        "MethodNotAllowed",
    );
    let too_big = vec![b' '; pushservice_push_sink::apns::MAX_PAYLOAD_BYTES + 1];
    assert_reason(
        &send(client.post(url(&sink, &token)).body(too_big)).await,
        413,
        "PayloadTooLarge",
    );

    let stats = sink.stats();
    assert_eq!((stats.requests, stats.accepted), (5, 2), "{stats:?}");
    assert_eq!((stats.distinct_accepted, stats.duplicates), (2, 0));
    let apns = &stats.by_kind["apns"];
    assert_eq!((apns.requests, apns.accepted), (5, 2), "{apns:?}");
    let by_status: Vec<(u16, u64)> = apns.by_status.clone().into_iter().collect();
    assert_eq!(by_status, vec![(200, 2), (400, 1), (405, 1), (413, 1)]);
    assert_eq!(stats.by_kind.len(), 1, "only APNs was used: {stats:?}");
    assert!(
        sink.received_mobile(&token).is_empty(),
        "counting mode keeps nothing"
    );
    sink.shutdown().await;
}

/// A token with the given planned fate.
fn token_with(behaviour: &Behaviour, fate: Fate) -> String {
    common::mobile::token_with_fate(behaviour, fate, apns_token)
}

#[tokio::test]
async fn each_fate_answers_in_apples_words() {
    let behaviour = Behaviour {
        gone_per_mille: 150,
        not_found_per_mille: 150,
        throttle_per_mille: 150,
        retry_after_secs: 4,
        error_once_per_mille: 150,
        reset_per_mille: 150,
    };
    let sink = common::start_with(SinkConfig {
        protocol: Protocol::Tls,
        behaviour,
        ..SinkConfig::default()
    })
    .await;
    let client = client(&sink, Client::Tls);
    let post = |token: &str| answer(client.post(url(&sink, token)).body(payload()));

    let gone = token_with(&behaviour, Fate::Gone(410));
    for _ in 0..2 {
        let answer = post(&gone).await.expect("answers");
        assert_reason(&answer, 410, "Unregistered");
        let timestamp = answer.json["timestamp"].as_u64().expect("timestamp");
        assert!(timestamp > 1_700_000_000_000, "unix ms: {timestamp}");
    }
    let not_found = token_with(&behaviour, Fate::Gone(404));
    assert_reason(
        &post(&not_found).await.expect("answers"),
        400,
        "BadDeviceToken",
    );

    let throttled = token_with(&behaviour, Fate::ThrottleOnce);
    let first = post(&throttled).await.expect("answers");
    assert_reason(&first, 429, "TooManyRequests");
    assert_eq!(first.retry_after.as_deref(), Some("4"));
    assert_eq!(post(&throttled).await.expect("answers").status, 200);

    let failing = token_with(&behaviour, Fate::ErrorOnce);
    assert_reason(
        &post(&failing).await.expect("answers"),
        500,
        "InternalServerError",
    );
    assert_eq!(post(&failing).await.expect("answers").status, 200);

    let reset = token_with(&behaviour, Fate::ResetOnce);
    assert!(post(&reset).await.is_none(), "first attempt is reset");
    assert_eq!(post(&reset).await.expect("answers").status, 200);

    let stats = sink.stats();
    assert_eq!(
        (stats.requests, stats.accepted, stats.resets),
        (9, 3, 1),
        "{stats:?}"
    );
    let by_status: Vec<(u16, u64)> = stats.by_kind["apns"]
        .by_status
        .clone()
        .into_iter()
        .collect();
    assert_eq!(
        by_status,
        vec![(200, 3), (400, 1), (410, 2), (429, 1), (500, 1)]
    );
    sink.shutdown().await;
}
