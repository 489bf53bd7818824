//! Verification mode end to end: real Web Push requests, encrypted by the `ece` crate and
//! signed with `p256`, sent by `reqwest` over TLS (HTTP/2 by ALPN), h2c and HTTP/1.1. Good
//! ones are accepted and decrypted; each kind of bad one is refused with its status and
//! counted under its reason.

mod common;

use common::{Client, SEED, Vapid, client, encrypt_for, endpoint, now_secs, push_request};
use pushservice_model::{ObjectId, Urgency};
use pushservice_push_sink::{Behaviour, Protocol, SinkConfig, Verify};

const MESSAGE: &[u8] = br#"{"title":"Hello","options":{"body":"from the sink tests"}}"#;
const SUBJECT: &str = "mailto:ops@example.com";

async fn accepted_and_decrypted(protocol: Protocol, kind: Client, version: reqwest::Version) {
    let sink = common::start(protocol, true).await;
    let client = client(&sink, kind);
    let vapid = Vapid::new(3);
    let id = ObjectId::new();
    let authorization = vapid.authorization(&sink.base_url(), now_secs() + 3600, SUBJECT);

    let response = push_request(
        &client,
        &endpoint(&sink, &id),
        Some(&authorization),
        encrypt_for(SEED, &id, MESSAGE),
    )
    .send()
    .await
    .expect("request completes");
    let status = response.status().as_u16();
    let got_version = response.version();
    let text = response.text().await.expect("body");
    assert_eq!(
        (status, text.as_str()),
        (201, ""),
        "expected 201 via {kind:?}"
    );
    assert_eq!(got_version, version, "HTTP version via {kind:?}");

    let received = sink.received(&id.to_hex());
    assert_eq!(received.len(), 1, "{received:?}");
    let delivery = &received[0];
    assert_eq!(delivery.plaintext, MESSAGE);
    assert_eq!(delivery.ttl, 3600);
    assert_eq!(delivery.urgency, Some(Urgency::High));
    assert_eq!(delivery.topic.as_deref(), Some("news"));
    assert_eq!(delivery.vapid_sub, SUBJECT);
    assert_eq!(delivery.vapid_aud, sink.base_url());
    assert_eq!(delivery.attempt, 1);

    let stats = sink.stats();
    assert_eq!((stats.requests, stats.accepted), (1, 1), "{stats:?}");
    assert_eq!(stats.verify_failures(), 0, "{stats:?}");
    assert_eq!(stats.distinct_accepted, 1);
    assert!(stats.bytes_in > MESSAGE.len() as u64);
    sink.shutdown().await;
}

#[tokio::test]
async fn tls_http2_delivery_is_accepted_and_decrypted() {
    accepted_and_decrypted(Protocol::Tls, Client::Tls, reqwest::Version::HTTP_2).await;
}

#[tokio::test]
async fn h2c_delivery_is_accepted_and_decrypted() {
    accepted_and_decrypted(Protocol::H2c, Client::H2c, reqwest::Version::HTTP_2).await;
}

#[tokio::test]
async fn http1_delivery_on_the_h2c_port_is_accepted_and_decrypted() {
    accepted_and_decrypted(Protocol::H2c, Client::Http1, reqwest::Version::HTTP_11).await;
}

#[tokio::test]
async fn http1_only_sink_accepts_http1() {
    accepted_and_decrypted(Protocol::Http1, Client::Http1, reqwest::Version::HTTP_11).await;
}

/// Sends one request and returns its status and body.
async fn refused(request: reqwest::RequestBuilder) -> (u16, String) {
    let response = request.send().await.expect("request completes");
    let status = response.status().as_u16();
    (status, response.text().await.expect("body"))
}

#[tokio::test]
async fn bad_requests_are_refused_with_their_status_and_counted_by_reason() {
    let sink = common::start(Protocol::Tls, true).await;
    let client = client(&sink, Client::Tls);
    let vapid = Vapid::new(3);
    let origin = sink.base_url();
    let good_auth = vapid.authorization(&origin, now_secs() + 3600, SUBJECT);
    let id = ObjectId::new();
    let url = endpoint(&sink, &id);
    let body = || encrypt_for(SEED, &id, MESSAGE);

    // Tampered ciphertext: 400.
    let mut tampered = body();
    let last = tampered.len() - 1;
    tampered[last] ^= 0x40;
    let (status, text) = refused(push_request(&client, &url, Some(&good_auth), tampered)).await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("decrypt"), "{text}");

    // Encrypted for another seed's keys: 400.
    let (status, _) = refused(push_request(
        &client,
        &url,
        Some(&good_auth),
        encrypt_for(b"other-seed", &id, MESSAGE),
    ))
    .await;
    assert_eq!(status, 400);

    // Signed by one key, claiming another: bad signature, 401.
    let impostor = Vapid::new(5);
    let forged = format!(
        "vapid t={}, k={}",
        impostor.token(&origin, now_secs() + 3600, SUBJECT),
        vapid.public_key()
    );
    let (status, text) = refused(push_request(&client, &url, Some(&forged), body())).await;
    assert_eq!(status, 401, "{text}");
    assert!(text.contains("signature"), "{text}");

    // Expired token: 401.
    let expired = vapid.authorization(&origin, now_secs() - 10, SUBJECT);
    let (status, text) = refused(push_request(&client, &url, Some(&expired), body())).await;
    assert_eq!(status, 401, "{text}");
    assert!(text.contains("expired"), "{text}");

    // Too far in the future: 401.
    let too_long = vapid.authorization(&origin, now_secs() + 25 * 3600, SUBJECT);
    let (status, _) = refused(push_request(&client, &url, Some(&too_long), body())).await;
    assert_eq!(status, 401);

    // Audience of another push service: 401.
    let elsewhere = vapid.authorization("https://fcm.googleapis.com", now_secs() + 3600, SUBJECT);
    let (status, text) = refused(push_request(&client, &url, Some(&elsewhere), body())).await;
    assert_eq!(status, 401, "{text}");
    assert!(text.contains("aud"), "{text}");

    // Subject that is not a contact URI: 401.
    let anonymous = vapid.authorization(&origin, now_secs() + 3600, "ops@example.com");
    let (status, _) = refused(push_request(&client, &url, Some(&anonymous), body())).await;
    assert_eq!(status, 401);

    // No VAPID at all: 401.
    let (status, _) = refused(push_request(&client, &url, None, body())).await;
    assert_eq!(status, 401);

    // Wrong content coding and missing TTL: 400.
    let old_coding = client
        .post(&url)
        .header("content-encoding", "aesgcm")
        .header("ttl", "60")
        .header("authorization", &good_auth)
        .body(body());
    let (status, text) = refused(old_coding).await;
    assert_eq!(status, 400, "{text}");
    let no_ttl = client
        .post(&url)
        .header("content-encoding", "aes128gcm")
        .header("authorization", &good_auth)
        .body(body());
    let (status, text) = refused(no_ttl).await;
    assert_eq!(status, 400, "{text}");

    let stats = sink.stats();
    let expected: Vec<(&str, u64)> = vec![
        ("content_encoding", 1),
        ("encryption", 2),
        ("jwt_audience", 1),
        ("jwt_expiry", 2),
        ("jwt_signature", 1),
        ("jwt_subject", 1),
        ("missing_authorization", 1),
        ("ttl", 1),
    ];
    let actual: Vec<(&str, u64)> = stats
        .verify_failed
        .iter()
        .map(|(reason, n)| (reason.as_str(), *n))
        .collect();
    assert_eq!(actual, expected, "verify_failed");
    assert_eq!(stats.accepted, 0);
    assert_eq!(stats.requests, 10);
    assert_eq!(stats.by_status.get(&400), Some(&4));
    assert_eq!(stats.by_status.get(&401), Some(&6));
    assert!(sink.received(&id.to_hex()).is_empty());

    // The connection survived all of that: a good request still goes through.
    let (status, _) = refused(push_request(&client, &url, Some(&good_auth), body())).await;
    assert_eq!(status, 201);
    sink.shutdown().await;
}

#[tokio::test]
async fn an_unexpected_subject_is_forbidden() {
    let sink = common::start_with(SinkConfig {
        protocol: Protocol::H2c,
        verify: Some(Verify {
            key_seed: SEED.to_vec(),
            expected_subject: Some("mailto:expected@example.com".to_owned()),
            apns_keys: Vec::new(),
            fcm_accounts: Vec::new(),
        }),
        ..SinkConfig::default()
    })
    .await;
    let client = client(&sink, Client::H2c);
    let vapid = Vapid::new(3);
    let id = ObjectId::new();
    let url = endpoint(&sink, &id);
    let wrong = vapid.authorization(&sink.base_url(), now_secs() + 600, SUBJECT);
    let (status, text) = refused(push_request(
        &client,
        &url,
        Some(&wrong),
        encrypt_for(SEED, &id, MESSAGE),
    ))
    .await;
    assert_eq!(status, 403, "{text}");
    let right = vapid.authorization(
        &sink.base_url(),
        now_secs() + 600,
        "mailto:expected@example.com",
    );
    let (status, text) = refused(push_request(
        &client,
        &url,
        Some(&right),
        encrypt_for(SEED, &id, MESSAGE),
    ))
    .await;
    assert_eq!(status, 201, "{text}");
    assert_eq!(sink.stats().verify_failed.get("subject_mismatch"), Some(&1));
}

#[tokio::test]
async fn a_throttled_delivery_is_recorded_on_its_second_attempt() {
    let sink = common::start_with(SinkConfig {
        protocol: Protocol::H2c,
        behaviour: Behaviour {
            throttle_per_mille: 1000,
            retry_after_secs: 3,
            ..Behaviour::default()
        },
        verify: Some(Verify {
            key_seed: SEED.to_vec(),
            expected_subject: None,
            apns_keys: Vec::new(),
            fcm_accounts: Vec::new(),
        }),
        ..SinkConfig::default()
    })
    .await;
    let client = client(&sink, Client::H2c);
    let vapid = Vapid::new(3);
    let id = ObjectId::new();
    let url = endpoint(&sink, &id);
    let auth = vapid.authorization(&sink.base_url(), now_secs() + 600, SUBJECT);
    let send = || push_request(&client, &url, Some(&auth), encrypt_for(SEED, &id, MESSAGE)).send();
    let first = send().await.expect("first attempt");
    assert_eq!(first.status().as_u16(), 429);
    assert_eq!(
        first
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("3")
    );
    assert_eq!(send().await.expect("second attempt").status().as_u16(), 201);
    let received = sink.received(&id.to_hex());
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].attempt, 2);
}

#[tokio::test]
async fn cert_out_receives_the_certificate_clients_trust() {
    let path = std::env::temp_dir().join(format!("push-sink-test-{}.pem", std::process::id()));
    let sink = common::start_with(SinkConfig {
        protocol: Protocol::Tls,
        cert_out: Some(path.clone()),
        ..SinkConfig::default()
    })
    .await;
    let written = std::fs::read(&path).expect("certificate written");
    assert_eq!(Some(written.as_slice()), sink.cert_pem());
    let _ = std::fs::remove_file(&path);
    assert!(
        sink.base_url().starts_with("https://localhost:"),
        "{}",
        sink.base_url()
    );
}
