//! The APNs client against the push-service simulator playing APNs (verifying every provider
//! token and header), over real HTTP/2.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use pushservice_apns::classify::SETTING_KEY;
use pushservice_apns::{ApnsClient, ApnsConfig, ApnsKey, ApnsRequest, build_payload};
use pushservice_model::{PayloadFields, Urgency};
use pushservice_provider::{ClientError, DeliveryOutcome, EndpointPolicy, HttpConfig};
use pushservice_push_sink::{Behaviour, Fate, Sink, SinkConfig, Verify, planned_fate};
use pushservice_seed::apns_test_key;

const TEAM: &str = "CLIENTTEAM";

async fn sink(trusted: &[(&str, &str)], behaviour: Behaviour) -> Sink {
    Sink::start(SinkConfig {
        behaviour,
        verify: Some(Verify {
            key_seed: b"apns-client-test".to_vec(),
            expected_subject: None,
            apns_keys: trusted
                .iter()
                .map(|(id, p8)| pushservice_push_sink::ApnsKey::from_p8(TEAM, id, p8).expect("key"))
                .collect(),
            fcm_accounts: Vec::new(),
        }),
        ..SinkConfig::default()
    })
    .await
    .expect("simulator starts")
}

fn client(sink: &Sink) -> ApnsClient {
    ApnsClient::new(ApnsConfig {
        http: HttpConfig {
            http2_prior_knowledge: true,
            // The simulator listens on loopback: SENDER_ALLOW_PRIVATE_ENDPOINTS=true.
            endpoint_policy: EndpointPolicy {
                allow_private: true,
                allowed_hosts: Vec::new(),
            },
            ..HttpConfig::default()
        },
        base_url: Some(sink.base_url()),
        ..ApnsConfig::default()
    })
    .expect("client")
}

fn token(i: u32) -> String {
    format!("{i:064x}")
}

#[tokio::test]
async fn notifications_arrive_signed_with_the_teams_key_and_fates_map_to_outcomes() {
    let key = apns_test_key().expect("key");
    let behaviour = Behaviour {
        gone_per_mille: 200,
        not_found_per_mille: 200,
        throttle_per_mille: 200,
        retry_after_secs: 3,
        ..Behaviour::default()
    };
    let sink = sink(&[(&key.key_id, &key.p8)], behaviour).await;
    let client = client(&sink);
    let signing = ApnsKey::from_p8(TEAM, &key.key_id, &key.p8).expect("key");
    let payload = build_payload(
        &PayloadFields {
            title: "Hello".into(),
            ..PayloadFields::default()
        },
        Urgency::Normal,
    );
    for i in 0..50 {
        let device = token(i);
        let outcome = client
            .send(&ApnsRequest {
                withdrawn: None,
                token: &device,
                key: &signing,
                topic: "com.example.client",
                sandbox: false,
                payload: &payload,
                expiration: 1_900_000_000,
                collapse_id: Some("daily"),
            })
            .await;
        match planned_fate(&behaviour, &device) {
            Fate::Gone(410) => {
                assert_eq!(outcome, DeliveryOutcome::SubscriptionGone { status: 410 })
            }
            // APNs has no 404: an unknown token is 400 BadDeviceToken, which is only suspect:
            // Apple answers it for every token when the site's environment is wrong.
            Fate::Gone(_) => match outcome {
                DeliveryOutcome::SuspectToken { status, reason, .. } => {
                    assert_eq!(status, 400);
                    assert!(reason.contains("BadDeviceToken"), "{reason}");
                }
                other => panic!("{device}: {other:?}"),
            },
            Fate::ThrottleOnce => assert_eq!(outcome.label(), "transient", "{device}"),
            _ => {
                assert_eq!(outcome, DeliveryOutcome::Accepted, "{device}");
                let received = sink.received_mobile(&device);
                assert_eq!(received[0].body["aps"]["alert"]["title"], "Hello");
                assert_eq!(received[0].apns_collapse_id.as_deref(), Some("daily"));
                assert_eq!(received[0].apns_expiration, Some(1_900_000_000));
                assert_eq!(received[0].issuer, TEAM);
            }
        }
    }
    assert_eq!(
        sink.stats().verify_failures(),
        0,
        "{:?}",
        sink.stats().verify_failed
    );
    sink.shutdown().await;
}

#[tokio::test]
async fn a_key_apple_does_not_know_is_resigned_once_then_misconfigured_and_bad_tokens_never_leave()
{
    let trusted = apns_test_key().expect("key");
    let unknown = apns_test_key().expect("key");
    let sink = sink(&[(&trusted.key_id, &trusted.p8)], Behaviour::default()).await;
    let client = client(&sink);
    let signing = ApnsKey::from_p8(TEAM, &unknown.key_id, &unknown.p8).expect("key");
    let payload = build_payload(&PayloadFields::default(), Urgency::High);
    let request = |token| ApnsRequest {
        withdrawn: None,
        token,
        key: &signing,
        topic: "com.example.client",
        sandbox: false,
        payload: &payload,
        expiration: 0,
        collapse_id: None,
    };
    let device = token(1);
    // The first refusal may be a stale token: re-sign and retry.
    match client.send(&request(&device)).await {
        DeliveryOutcome::Transient { status, reason, .. } => {
            assert_eq!(status, Some(403));
            assert!(reason.contains("InvalidProviderToken"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    // The re-signed token is refused too: the site's key is wrong, and every further
    // delivery says so without signing again.
    for _ in 0..2 {
        match client.send(&request(&device)).await {
            DeliveryOutcome::Misconfigured {
                status,
                reason,
                setting,
            } => {
                assert_eq!(status, 403);
                assert!(reason.contains("InvalidProviderToken"), "{reason}");
                assert_eq!(setting, SETTING_KEY);
            }
            other => panic!("{other:?}"),
        }
    }
    let requests = sink.stats().requests;
    match client.send(&request("not/a/token")).await {
        DeliveryOutcome::Permanent {
            status: None,
            reason,
        } => {
            assert!(reason.contains("malformed APNs device token"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        sink.stats().requests,
        requests,
        "nothing sent for a malformed token"
    );
    sink.shutdown().await;
}

#[tokio::test]
async fn the_default_policy_refuses_a_loopback_apns_host_without_connecting() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("listener");
    let port = listener.local_addr().expect("address").port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&accepted);
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            drop(socket);
        }
    });
    let config = |base: String| ApnsConfig {
        base_url: Some(base),
        ..ApnsConfig::default()
    };
    // Literal private addresses and http are refused when the client is built.
    for base in [
        format!("https://127.0.0.1:{port}"),
        format!("https://[::1]:{port}"),
        format!("http://127.0.0.1:{port}"),
    ] {
        match ApnsClient::new(config(base.clone())) {
            Err(ClientError::Endpoint { refused, .. }) => {
                assert!(
                    refused.to_string().starts_with("endpoint not allowed: "),
                    "{base}"
                )
            }
            other => panic!("{base}: {other:?}"),
        }
    }
    // A name is refused when it resolves, before any connection.
    let client = ApnsClient::new(config(format!("https://localhost:{port}"))).expect("client");
    let key = apns_test_key().expect("key");
    let signing = ApnsKey::from_p8(TEAM, &key.key_id, &key.p8).expect("key");
    let payload = build_payload(&PayloadFields::default(), Urgency::High);
    let device = token(7);
    match client
        .send(&ApnsRequest {
            withdrawn: None,
            token: &device,
            key: &signing,
            topic: "com.example.client",
            sandbox: false,
            payload: &payload,
            expiration: 0,
            collapse_id: None,
        })
        .await
    {
        DeliveryOutcome::Permanent {
            status: None,
            reason,
        } => {
            assert!(
                reason.starts_with("endpoint not allowed: localhost"),
                "{reason}"
            )
        }
        other => panic!("{other:?}"),
    }
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!(accepted.load(Ordering::SeqCst), 0, "a connection was made");
}
