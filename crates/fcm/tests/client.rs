//! The FCM client against the push-service simulator playing FCM and Google's OAuth endpoint
//! (verifying every assertion and bearer token), over real HTTP/2.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use pushservice_fcm::classify::SETTING_ACCOUNT;
use pushservice_fcm::oauth::SETTING_TOKEN_URL;
use pushservice_fcm::{FcmClient, FcmConfig, FcmRequest, ServiceAccount};
use pushservice_model::{PayloadFields, Urgency};
use pushservice_provider::{ClientError, DeliveryOutcome, EndpointPolicy, HttpConfig};
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

/// The sender's settings for the simulator: its FCM and token URLs on loopback, with
/// `SENDER_ALLOW_PRIVATE_ENDPOINTS=true`.
fn client(sink: &Sink) -> FcmClient {
    FcmClient::new(FcmConfig {
        http: HttpConfig {
            http2_prior_knowledge: true,
            endpoint_policy: EndpointPolicy {
                allow_private: true,
                allowed_hosts: Vec::new(),
            },
            ..HttpConfig::default()
        },
        base_url: Some(sink.base_url()),
        token_url: token_uri(sink),
        ..FcmConfig::default()
    })
    .expect("client")
}

fn token_uri(sink: &Sink) -> String {
    format!("{}/token", sink.base_url())
}

/// `json` with another `token_uri` (same account, same key).
fn with_token_uri(json: &str, token_uri: &str) -> String {
    let mut value: serde_json::Value = serde_json::from_str(json).expect("JSON");
    value["token_uri"] = token_uri.into();
    value.to_string()
}

/// The account the sender uses: the key file as `seed credentials --token-uri` writes it.
fn account_for(sink: &Sink, json: &str) -> ServiceAccount {
    ServiceAccount::from_json(&with_token_uri(json, &token_uri(sink))).expect("account")
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
    let account = account_for(&sink, &json);
    let fields = fields();
    let tokens: Vec<String> = (0..50).map(|i| format!("device-{i}:APA91b")).collect();
    let requests: Vec<FcmRequest<'_>> = tokens
        .iter()
        .map(|token| FcmRequest {
            withdrawn: None,
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
async fn a_refused_account_is_misconfigured_without_asking_again_for_each_message() {
    let trusted = fcm_test_service_account("trusted", "https://oauth2.googleapis.com/token")
        .expect("service account");
    let stranger = fcm_test_service_account("stranger", "https://oauth2.googleapis.com/token")
        .expect("service account");
    let sink = sink(&[&trusted], Behaviour::default()).await;
    let client = client(&sink);
    let account = account_for(&sink, &stranger);
    let fields = fields();
    for _ in 0..3 {
        let outcome = client
            .send(&FcmRequest {
                withdrawn: None,
                token: "device:APA91b",
                account: &account,
                fields: &fields,
                ttl: 60,
                urgency: Urgency::Normal,
                collapse_key: None,
            })
            .await;
        match outcome {
            DeliveryOutcome::Misconfigured {
                reason, setting, ..
            } => {
                assert!(reason.contains("refused the service account"), "{reason}");
                assert_eq!(setting, SETTING_ACCOUNT);
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
    let account = account_for(&sink, &json);
    let fields = fields();
    let mut seen = (0, 0);
    for i in 0..60 {
        let token = format!("fate-{i}:APA91b");
        let outcome = client
            .send(&FcmRequest {
                withdrawn: None,
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

fn request<'a>(
    token: &'a str,
    account: &'a ServiceAccount,
    fields: &'a PayloadFields,
) -> FcmRequest<'a> {
    FcmRequest {
        withdrawn: None,
        token,
        account,
        fields,
        ttl: 60,
        urgency: Urgency::Normal,
        collapse_key: None,
    }
}

#[tokio::test]
async fn sites_sharing_a_client_email_never_share_or_poison_tokens() {
    // Same project, so the same client_email; different private keys.
    let genuine = fcm_test_service_account("shared", "https://oauth2.googleapis.com/token")
        .expect("service account");
    let copycat = fcm_test_service_account("shared", "https://oauth2.googleapis.com/token")
        .expect("service account");
    let sink = sink(&[&genuine], Behaviour::default()).await;
    let client = client(&sink);
    let (genuine, copycat) = (account_for(&sink, &genuine), account_for(&sink, &copycat));
    assert_eq!(genuine.client_email, copycat.client_email);
    let fields = fields();
    // The copycat is refused first; that refusal must not block the genuine site ...
    let outcome = client.send(&request("a:APA91b", &copycat, &fields)).await;
    assert_eq!(outcome.label(), "misconfigured", "{outcome:?}");
    let outcome = client.send(&request("b:APA91b", &genuine, &fields)).await;
    assert_eq!(outcome, DeliveryOutcome::Accepted);
    // ... and the genuine site's token must not serve the copycat.
    let outcome = client.send(&request("c:APA91b", &copycat, &fields)).await;
    assert_eq!(outcome.label(), "misconfigured", "{outcome:?}");
    assert_eq!(sink.stats().accepted, 1);
    assert_eq!(oauth_requests(&sink), 2, "one token request per key");
    sink.shutdown().await;
}

#[tokio::test]
async fn an_account_naming_another_token_endpoint_is_misconfigured_without_a_request() {
    let json = fcm_test_service_account("elsewhere", "https://oauth.attacker.example/token")
        .expect("service account");
    let sink = sink(&[&json], Behaviour::default()).await;
    let client = client(&sink);
    let account = ServiceAccount::from_json(&json).expect("account");
    let fields = fields();
    match client.send(&request("d:APA91b", &account, &fields)).await {
        DeliveryOutcome::Misconfigured {
            status,
            reason,
            setting,
        } => {
            assert_eq!(status, 0);
            assert!(reason.contains("not SENDER_FCM_TOKEN_URL"), "{reason}");
            assert_eq!(setting, SETTING_TOKEN_URL);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(sink.stats().requests, 0, "nothing was sent anywhere");
    // The same URL spelled differently is the same endpoint.
    let spelled = with_token_uri(&json, &token_uri(&sink).replace("http://", "HTTP://"));
    let account = ServiceAccount::from_json(&spelled).expect("account");
    let outcome = client.send(&request("e:APA91b", &account, &fields)).await;
    assert_eq!(outcome, DeliveryOutcome::Accepted);
    sink.shutdown().await;
}

#[tokio::test]
async fn the_default_policy_refuses_loopback_fcm_and_token_endpoints_without_connecting() {
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
    for (base, token) in [
        (format!("https://127.0.0.1:{port}"), None),
        (format!("http://127.0.0.1:{port}"), None),
        (
            "https://fcm.googleapis.com".to_owned(),
            Some(format!("https://[::1]:{port}/token")),
        ),
    ] {
        let config = FcmConfig {
            base_url: Some(base.clone()),
            token_url: token.unwrap_or_else(|| FcmConfig::default().token_url),
            ..FcmConfig::default()
        };
        match FcmClient::new(config) {
            Err(ClientError::Endpoint { refused, .. }) => assert!(
                refused.to_string().starts_with("endpoint not allowed: "),
                "{base}: {refused}"
            ),
            other => panic!("{base}: {other:?}"),
        }
    }
    // Names are refused when they resolve: here the token endpoint, first of the two.
    let token_url = format!("https://localhost:{port}/token");
    let client = FcmClient::new(FcmConfig {
        base_url: Some(format!("https://localhost:{port}")),
        token_url: token_url.clone(),
        ..FcmConfig::default()
    })
    .expect("client");
    let json = fcm_test_service_account("loopback", &token_url).expect("service account");
    let account = ServiceAccount::from_json(&json).expect("account");
    let fields = fields();
    match client.send(&request("f:APA91b", &account, &fields)).await {
        DeliveryOutcome::Misconfigured {
            reason, setting, ..
        } => {
            assert!(
                reason.contains("endpoint not allowed: localhost"),
                "{reason}"
            );
            assert_eq!(setting, SETTING_TOKEN_URL);
        }
        other => panic!("{other:?}"),
    }
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!(accepted.load(Ordering::SeqCst), 0, "a connection was made");
}
