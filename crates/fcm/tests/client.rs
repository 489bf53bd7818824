//! The FCM client against the push-service simulator playing FCM and Google's OAuth endpoint
//! (verifying every assertion and bearer token), over real HTTP/2.

use pushservice_fcm::{FcmClient, FcmConfig, FcmRequest, ServiceAccount};
use pushservice_model::{PayloadFields, Urgency};
use pushservice_provider::{DeliveryOutcome, HttpConfig};
use pushservice_push_sink::{Behaviour, FcmAccount, Sink, SinkConfig, Verify, planned_fate};
use pushservice_seed::fcm_test_service_account;

async fn sink(trusted: &[&str], behaviour: Behaviour) -> Sink {
    Sink::start(SinkConfig {
        behaviour,
        verify: Some(Verify {
            key_seed: b"fcm-client-test".to_vec(),
            expected_subject: None,
            apns_keys: Vec::new(),
            fcm_accounts: trusted
                .iter()
                .map(|json| FcmAccount::from_service_account_json(json).expect("account"))
                .collect(),
        }),
        ..SinkConfig::default()
    })
    .await
    .expect("simulator starts")
}

fn client(sink: &Sink) -> FcmClient {
    FcmClient::new(FcmConfig {
        http: HttpConfig {
            http2_prior_knowledge: true,
            ..HttpConfig::default()
        },
        base_url: Some(sink.base_url()),
        token_url: Some(format!("{}/token", sink.base_url())),
    })
    .expect("client")
}

fn fields() -> PayloadFields {
    PayloadFields {
        push_id: "65a1b2c3d4e5f60718293a4b".into(),
        title: "Hello".into(),
        ..PayloadFields::default()
    }
}

fn oauth_requests(sink: &Sink) -> u64 {
    sink.stats().by_kind.get("oauth").map_or(0, |k| k.requests)
}

#[tokio::test]
async fn one_access_token_serves_many_concurrent_sends() {
    let json = fcm_test_service_account("client-test", "https://oauth2.googleapis.com/token")
        .expect("service account");
    let sink = sink(&[&json], Behaviour::default()).await;
    let client = client(&sink);
    let account = ServiceAccount::from_json(&json).expect("account");
    let fields = fields();
    let tokens: Vec<String> = (0..50).map(|i| format!("device-{i}:APA91b")).collect();
    let requests: Vec<FcmRequest<'_>> = tokens
        .iter()
        .map(|token| FcmRequest {
            token,
            account: &account,
            fields: &fields,
            ttl: 60,
            urgency: Urgency::High,
            collapse_key: None,
        })
        .collect();
    let sends = requests.iter().map(|request| client.send(request));
    let outcomes = futures::future::join_all(sends).await;
    assert!(
        outcomes.iter().all(|o| *o == DeliveryOutcome::Accepted),
        "{outcomes:?}"
    );
    assert_eq!(
        oauth_requests(&sink),
        1,
        "the token is fetched once and shared"
    );
    let received = sink.received_mobile("device-7:APA91b");
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].body["android"]["priority"], "HIGH");
    assert_eq!(received[0].project_id.as_deref(), Some("client-test"));
    assert_eq!(sink.stats().verify_failures(), 0);
    sink.shutdown().await;
}

#[tokio::test]
async fn a_refused_account_fails_permanently_without_asking_again_for_each_message() {
    let trusted = fcm_test_service_account("trusted", "https://oauth2.googleapis.com/token")
        .expect("service account");
    let stranger = fcm_test_service_account("stranger", "https://oauth2.googleapis.com/token")
        .expect("service account");
    let sink = sink(&[&trusted], Behaviour::default()).await;
    let client = client(&sink);
    let account = ServiceAccount::from_json(&stranger).expect("account");
    let fields = fields();
    for _ in 0..3 {
        let outcome = client
            .send(&FcmRequest {
                token: "device:APA91b",
                account: &account,
                fields: &fields,
                ttl: 60,
                urgency: Urgency::Normal,
                collapse_key: None,
            })
            .await;
        match outcome {
            DeliveryOutcome::Permanent { reason, .. } => {
                assert!(reason.contains("refused the service account"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(oauth_requests(&sink), 1, "the refusal is remembered");
    assert_eq!(sink.stats().accepted, 0);
    sink.shutdown().await;
}

#[tokio::test]
async fn gone_and_throttled_tokens_become_the_outcomes_the_sender_acts_on() {
    let json = fcm_test_service_account("fates", "https://oauth2.googleapis.com/token")
        .expect("service account");
    let behaviour = Behaviour {
        gone_per_mille: 300,
        throttle_per_mille: 300,
        retry_after_secs: 7,
        ..Behaviour::default()
    };
    let sink = sink(&[&json], behaviour).await;
    let client = client(&sink);
    let account = ServiceAccount::from_json(&json).expect("account");
    let fields = fields();
    let mut seen = (0, 0);
    for i in 0..60 {
        let token = format!("fate-{i}:APA91b");
        let outcome = client
            .send(&FcmRequest {
                token: &token,
                account: &account,
                fields: &fields,
                ttl: 60,
                urgency: Urgency::Normal,
                collapse_key: None,
            })
            .await;
        match planned_fate(&behaviour, &token) {
            pushservice_push_sink::Fate::Gone(_) => {
                assert_eq!(outcome, DeliveryOutcome::SubscriptionGone { status: 404 });
                seen.0 += 1;
            }
            pushservice_push_sink::Fate::ThrottleOnce => {
                match outcome {
                    DeliveryOutcome::Transient { retry_after, .. } => {
                        assert_eq!(retry_after, Some(std::time::Duration::from_secs(7)))
                    }
                    other => panic!("{token}: {other:?}"),
                }
                seen.1 += 1;
            }
            _ => assert_eq!(outcome, DeliveryOutcome::Accepted, "{token}"),
        }
    }
    assert!(seen.0 > 0 && seen.1 > 0, "both fates exercised: {seen:?}");
    sink.shutdown().await;
}
