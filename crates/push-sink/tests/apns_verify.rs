//! The APNs kind end to end in verification mode: well-signed requests are accepted and kept;
//! each kind of bad one is refused with Apple's status and reason and counted by reason; fates
//! still come first.

mod common;

use common::apns::{KEY_ID, TEAM, TOPIC, apns_request, assert_reason, payload, send, url};
use common::mobile::{ApnsSigner, apns_token, start_verifying};
use common::{Client, client, now_secs};
use pushservice_push_sink::{Behaviour, MobileKind, Protocol, SinkConfig};
use serde_json::Value;

#[tokio::test]
async fn verify_mode_accepts_signed_requests_and_keeps_them() {
    let signer = ApnsSigner::generate(TEAM, KEY_ID);
    let sink = start_verifying(Protocol::Tls, vec![signer.trusted()], Vec::new()).await;
    let client = client(&sink, Client::Tls);
    let token = apns_token();
    let authorization = signer.authorization(now_secs() - 60);

    let sent_id = "0f0e0d0c-0b0a-4908-8706-050403020100";
    let accepted = send(
        apns_request(
            &client,
            &url(&sink, &token),
            Some(&authorization),
            payload(),
        )
        .header("apns-id", sent_id),
    )
    .await;
    assert_eq!(accepted.status, 200, "{}", accepted.json);
    assert_eq!(accepted.apns_id.as_deref(), Some(sent_id));
    // The same provider token again (senders reuse it for up to an hour).
    let again = send(apns_request(
        &client,
        &url(&sink, &token),
        Some(&authorization),
        payload(),
    ))
    .await;
    assert_eq!(again.status, 200, "{}", again.json);

    let received = sink.received_mobile(&token);
    assert_eq!(received.len(), 2, "{received:?}");
    let delivery = &received[0];
    assert_eq!(delivery.kind, MobileKind::Apns);
    assert_eq!(delivery.token, token);
    assert_eq!(
        delivery.body,
        serde_json::from_slice::<Value>(&payload()).expect("JSON")
    );
    assert_eq!(delivery.apns_topic.as_deref(), Some(TOPIC));
    assert_eq!(delivery.apns_push_type.as_deref(), Some("alert"));
    assert_eq!(delivery.apns_priority, Some(10));
    assert_eq!(delivery.apns_expiration, Some(1_900_000_000));
    assert_eq!(delivery.apns_collapse_id.as_deref(), Some("sale"));
    assert_eq!(delivery.issuer, TEAM);
    assert_eq!(delivery.project_id, None);
    assert_eq!((delivery.attempt, received[1].attempt), (1, 2));

    let stats = sink.stats();
    assert_eq!(
        (stats.accepted, stats.distinct_accepted, stats.duplicates),
        (2, 1, 1)
    );
    assert_eq!(stats.verify_failures(), 0, "{stats:?}");
    sink.shutdown().await;
}

#[tokio::test]
async fn verify_mode_refuses_each_mistake_with_apples_reason() {
    let signer = ApnsSigner::generate(TEAM, KEY_ID);
    let sink = start_verifying(Protocol::H2c, vec![signer.trusted()], Vec::new()).await;
    let client = client(&sink, Client::H2c);
    let token = apns_token();
    let url = url(&sink, &token);
    let now = now_secs();
    let good = signer.authorization(now);
    let request =
        |authorization: Option<&str>| apns_request(&client, &url, authorization, payload());

    // Provider token problems: 403.
    assert_reason(&send(request(None)).await, 403, "MissingProviderToken");
    let impostor = ApnsSigner::generate(TEAM, KEY_ID);
    let forged = impostor.authorization(now);
    assert_reason(
        &send(request(Some(&forged))).await,
        403,
        "InvalidProviderToken",
    );
    let other_team = format!("bearer {}", signer.token_with(KEY_ID, "OTHERTEAM1", now));
    assert_reason(
        &send(request(Some(&other_team))).await,
        403,
        "InvalidProviderToken",
    );
    let unknown_kid = format!("bearer {}", signer.token_with("KEY7654321", TEAM, now));
    assert_reason(
        &send(request(Some(&unknown_kid))).await,
        403,
        "InvalidProviderToken",
    );
    let expired = signer.authorization(now - 3700);
    assert_reason(
        &send(request(Some(&expired))).await,
        403,
        "ExpiredProviderToken",
    );
    let future = signer.authorization(now + 600);
    assert_reason(
        &send(request(Some(&future))).await,
        403,
        "InvalidProviderToken",
    );
    assert_reason(
        &send(request(Some("bearer not.a.jwt"))).await,
        403,
        "InvalidProviderToken",
    );

    // Header problems: 400.
    let no_topic = client
        .post(&url)
        .header("authorization", &good)
        .body(payload());
    assert_reason(&send(no_topic).await, 400, "MissingTopic");
    let cases = [
        ("apns-push-type", "banner", "InvalidPushType"),
        ("apns-priority", "7", "BadPriority"),
        ("apns-expiration", "tomorrow", "BadExpirationDate"),
        ("apns-id", "not-a-uuid", "BadMessageId"),
    ];
    // Only the topic, so that each case's header is the only one of its name.
    let minimal = || {
        client
            .post(&url)
            .header("authorization", &good)
            .header("apns-topic", TOPIC)
            .body(payload())
    };
    for (name, value, reason) in cases {
        assert_reason(&send(minimal().header(name, value)).await, 400, reason);
    }
    let long_collapse_id = "c".repeat(65);
    let answer = send(minimal().header("apns-collapse-id", long_collapse_id)).await;
    assert_reason(&answer, 400, "BadCollapseId");

    // Payload problems: 400.
    let empty = apns_request(&client, &url, Some(&good), Vec::new());
    assert_reason(&send(empty).await, 400, "PayloadEmpty");
    let no_aps = apns_request(&client, &url, Some(&good), br#"{"alert":"hi"}"#.to_vec());
    assert_reason(&send(no_aps).await, 400, "BadRequest");
    let not_json = apns_request(&client, &url, Some(&good), b"hello".to_vec());
    assert_reason(&send(not_json).await, 400, "BadRequest");

    // A path that is no device token.
    let bad_token = format!("{}/3/device/zz{token}", sink.base_url());
    let answer = send(apns_request(&client, &bad_token, Some(&good), payload())).await;
    assert_reason(&answer, 400, "BadDeviceToken");

    let stats = sink.stats();
    let actual: Vec<(&str, u64)> = stats
        .verify_failed
        .iter()
        .map(|(reason, n)| (reason.as_str(), *n))
        .collect();
    let expected = vec![
        ("apns_device_token", 1),
        ("apns_headers", 6),
        ("apns_payload", 3),
        ("apns_provider_token", 6),
        ("apns_token_expired", 1),
    ];
    assert_eq!(actual, expected, "verify_failed");
    assert_eq!(stats.accepted, 0);
    assert!(sink.received_mobile(&token).is_empty());

    // The connection survived all of that.
    assert_eq!(send(request(Some(&good))).await.status, 200);
    sink.shutdown().await;
}

#[tokio::test]
async fn without_configured_keys_every_provider_token_is_invalid() {
    let signer = ApnsSigner::generate(TEAM, KEY_ID);
    let sink = start_verifying(Protocol::H2c, Vec::new(), Vec::new()).await;
    let client = client(&sink, Client::H2c);
    let authorization = signer.authorization(now_secs());
    let answer = send(apns_request(
        &client,
        &url(&sink, &apns_token()),
        Some(&authorization),
        payload(),
    ))
    .await;
    assert_reason(&answer, 403, "InvalidProviderToken");
    assert_eq!(
        sink.stats().verify_failed.get("apns_provider_token"),
        Some(&1)
    );
}

#[tokio::test]
async fn fates_come_before_verification() {
    let signer = ApnsSigner::generate(TEAM, KEY_ID);
    let sink = common::start_with(SinkConfig {
        protocol: Protocol::H2c,
        behaviour: Behaviour {
            gone_per_mille: 1000,
            ..Behaviour::default()
        },
        verify: Some(pushservice_push_sink::Verify {
            key_seed: common::SEED.to_vec(),
            expected_subject: None,
            apns_keys: vec![signer.trusted()],
            fcm_accounts: Vec::new(),
        }),
        ..SinkConfig::default()
    })
    .await;
    let client = client(&sink, Client::H2c);
    // No provider token at all: the unregistered device is what APNs reports.
    let answer = send(client.post(url(&sink, &apns_token()))).await;
    assert_reason(&answer, 410, "Unregistered");
    assert_eq!(sink.stats().verify_failures(), 0);
}
