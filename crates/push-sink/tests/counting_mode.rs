//! Counting mode and the admin endpoints: `GET /__sink/stats` reports what was counted,
//! `POST /__sink/reset` zeroes it and forgets attempts, non-push requests are refused
//! without harm, and latency delays answers.

mod common;

use std::time::{Duration, Instant};

use common::{Client, client, endpoint};
use pushservice_model::ObjectId;
use pushservice_push_sink::{Behaviour, Latency, Protocol, SinkConfig, Stats};

async fn status(request: reqwest::RequestBuilder) -> u16 {
    request
        .send()
        .await
        .expect("request completes")
        .status()
        .as_u16()
}

#[tokio::test]
async fn stats_endpoint_reports_counts_and_reset_zeroes_them() {
    let sink = common::start_with(SinkConfig {
        behaviour: Behaviour {
            throttle_per_mille: 1000,
            retry_after_secs: 1,
            ..Behaviour::default()
        },
        ..SinkConfig::default()
    })
    .await;
    let client = client(&sink, Client::H2c);
    let (a, b) = (ObjectId::new(), ObjectId::new());
    for id in [&a, &a, &a, &b] {
        status(client.post(endpoint(&sink, id)).body(vec![0u8; 50])).await;
    }

    let stats_url = format!("{}/__sink/stats", sink.base_url());
    let response = client.get(&stats_url).send().await.expect("stats");
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(
        response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/json")
    );
    let json: serde_json::Value =
        serde_json::from_slice(&response.bytes().await.expect("body")).expect("JSON");
    assert_eq!(json["requests"], 4, "{json}");
    assert_eq!(json["accepted"], 2, "{json}");
    assert_eq!(json["by_status"]["201"], 2, "{json}");
    assert_eq!(json["by_status"]["429"], 2, "{json}");
    assert_eq!(json["bytes_in"], 200, "{json}");
    assert_eq!(json["distinct_accepted"], 1, "{json}");
    assert_eq!(json["duplicates"], 1, "{json}");
    assert!(json["first_accepted_unix_ms"].as_u64().is_some(), "{json}");
    let parsed: Stats = serde_json::from_value(json).expect("Stats");
    assert_eq!(parsed, sink.stats(), "admin requests are not counted");

    let reset = client
        .post(format!("{}/__sink/reset", sink.base_url()))
        .send()
        .await
        .expect("reset");
    assert_eq!(reset.status().as_u16(), 200);
    assert_eq!(sink.stats(), Stats::default());
    // Attempts were forgotten too: `a` is throttled again.
    assert_eq!(status(client.post(endpoint(&sink, &a))).await, 429);
    assert_eq!(status(client.get(&stats_url)).await, 200);
    assert_eq!(
        status(client.get(format!("{}/__sink/nope", sink.base_url()))).await,
        404
    );
    sink.shutdown().await;
}

#[tokio::test]
async fn non_push_requests_are_refused_and_counted_and_the_sink_keeps_serving() {
    let sink = common::start(Protocol::H2c, false).await;
    let client = client(&sink, Client::Http1);
    let id = ObjectId::new();
    let base = sink.base_url();
    assert_eq!(status(client.post(format!("{base}/wp/not-hex"))).await, 404);
    assert_eq!(status(client.get(endpoint(&sink, &id))).await, 405);
    let too_big = vec![0u8; pushservice_push_sink::webpush::MAX_BODY_BYTES + 1];
    assert_eq!(
        status(client.post(endpoint(&sink, &id)).body(too_big)).await,
        413
    );
    // Any prefix before the id works.
    assert_eq!(
        status(client.post(format!("{base}/fcm/send/{}", id.to_hex()))).await,
        201
    );
    let stats = sink.stats();
    assert_eq!(stats.requests, 4, "{stats:?}");
    assert_eq!(stats.accepted, 1);
    assert!(
        sink.received(&id.to_hex()).is_empty(),
        "counting mode keeps nothing"
    );
}

#[tokio::test]
async fn latency_delays_answers() {
    let sink = common::start_with(SinkConfig {
        latency: Latency::Fixed(Duration::from_millis(150)),
        ..SinkConfig::default()
    })
    .await;
    let client = client(&sink, Client::H2c);
    let started = Instant::now();
    let (first, second) = tokio::join!(
        status(client.post(endpoint(&sink, &ObjectId::new()))),
        status(client.post(endpoint(&sink, &ObjectId::new())))
    );
    let elapsed = started.elapsed();
    assert_eq!((first, second), (201, 201));
    // Concurrent streams wait side by side, not one after the other.
    assert!(
        elapsed >= Duration::from_millis(150) && elapsed < Duration::from_millis(290),
        "{elapsed:?}"
    );
}

#[tokio::test]
async fn shutdown_stops_listening() {
    let sink = common::start(Protocol::H2c, false).await;
    let addr = sink.local_addr();
    sink.shutdown().await;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn garbage_and_abandoned_connections_do_not_hurt_the_sink() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    for protocol in [Protocol::H2c, Protocol::Tls] {
        let sink = common::start(protocol, false).await;
        // Not HTTP at all (and, for TLS, not a handshake).
        let mut garbage = tokio::net::TcpStream::connect(sink.local_addr())
            .await
            .expect("connects");
        garbage
            .write_all(b"\x16\x03\x01\x00\x05hello, not http\r\n\r\n")
            .await
            .expect("writes");
        let mut sink_said = Vec::new();
        let _ =
            tokio::time::timeout(Duration::from_secs(2), garbage.read_to_end(&mut sink_said)).await;
        // A half-sent request, then hang up.
        let mut abandoned = tokio::net::TcpStream::connect(sink.local_addr())
            .await
            .expect("connects");
        abandoned
            .write_all(b"POST /wp/65a1b2c3d4e5f60718293a4b HTTP/1.1\r\nhost: x\r\ncontent-length: 500\r\n\r\nabc")
            .await
            .expect("writes");
        drop(abandoned);

        let kind = match protocol {
            Protocol::Tls => Client::Tls,
            _ => Client::H2c,
        };
        let client = client(&sink, kind);
        assert_eq!(
            status(client.post(endpoint(&sink, &ObjectId::new()))).await,
            201,
            "{protocol} still serves"
        );
        sink.shutdown().await;
    }
}
