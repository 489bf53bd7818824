//! FCM HTTP v1 end to end over real HTTP/2: a sender gets an access token with a signed
//! assertion and sends with it; counting mode accepts anything addressed to a token; each
//! planned fate answers in Google's words; verification mode checks access tokens, projects
//! and messages, refusing each mistake with Google's status and counting it by reason. (The
//! token endpoint's assertion checks: `fcm_oauth.rs`.)

mod common;

use common::fcm::{
    PROJECT, access_token, assert_error, assert_oauth_error, fcm_request, message, send, send_url,
    token_request, token_uri,
};
use common::mobile::{JWT_BEARER, ServiceAccount, answer, fcm_token, start_verifying, token_form};
use common::{Client, client, now_secs};
use pushservice_push_sink::{Behaviour, Fate, MobileKind, Protocol, SinkConfig};
use serde_json::{Value, json};

#[tokio::test]
async fn counting_mode_issues_tokens_and_accepts_any_sender() {
    let sink = common::start(Protocol::H2c, false).await;
    let client = client(&sink, Client::H2c);
    let account = ServiceAccount::generate(PROJECT);

    // Any parseable assertion gets a token: the aud is wrong and nothing is checked.
    let assertion = account.assertion(&account.claims("https://elsewhere/token", now_secs()));
    let issued = send(token_request(&client, &sink, token_form(&assertion))).await;
    let bearer = access_token(&issued);
    let wrong_grant = format!("grant_type=password&assertion={assertion}");
    let refused = send(token_request(&client, &sink, wrong_grant)).await;
    assert_oauth_error(&refused, "unsupported_grant_type", JWT_BEARER);
    let garbage = send(token_request(&client, &sink, token_form("garbage"))).await;
    assert_oauth_error(&garbage, "invalid_grant", "three");

    let token = fcm_token();
    let url = send_url(&sink, PROJECT);
    for bearer in [Some(bearer.as_str()), Some("anything"), None] {
        let accepted = send(fcm_request(&client, &url, bearer, &message(&token))).await;
        assert_eq!(accepted.status, 200, "{}", accepted.json);
        let name = accepted.json["name"].as_str().expect("a message name");
        assert!(
            name.starts_with("projects/demo-project/messages/"),
            "{name}"
        );
    }
    let mut check_only = message(&token);
    check_only["validate_only"] = true.into();
    let validated = send(fcm_request(&client, &url, None, &check_only)).await;
    assert_eq!(
        validated.json["name"],
        "projects/demo-project/messages/fake_message_id"
    );

    // The token is the fate key, so a body without one is refused even here.
    let no_token = json!({ "message": { "topic": "news" } });
    let answer = send(fcm_request(&client, &url, None, &no_token)).await;
    assert_error(&answer, 400, "INVALID_ARGUMENT", Some("INVALID_ARGUMENT"));
    let not_json = client.post(&url).body("{oops");
    assert_error(
        &send(not_json).await,
        400,
        "INVALID_ARGUMENT",
        Some("INVALID_ARGUMENT"),
    );
    let nowhere = format!("{}/v1/projects/{PROJECT}/messages", sink.base_url());
    assert_error(&send(client.post(nowhere)).await, 404, "NOT_FOUND", None);

    let stats = sink.stats();
    // Token requests are not pushes.
    assert_eq!((stats.requests, stats.accepted), (7, 3), "{stats:?}");
    assert_eq!((stats.distinct_accepted, stats.duplicates), (1, 2));
    let fcm = &stats.by_kind["fcm"];
    assert_eq!((fcm.requests, fcm.accepted), (7, 3), "{fcm:?}");
    let by_status: Vec<(u16, u64)> = fcm.by_status.clone().into_iter().collect();
    assert_eq!(by_status, vec![(200, 4), (400, 2), (404, 1)]);
    let oauth = &stats.by_kind["oauth"];
    assert_eq!((oauth.requests, oauth.accepted), (3, 1), "{oauth:?}");
    assert!(
        sink.received_mobile(&token).is_empty(),
        "counting mode keeps nothing"
    );
    sink.shutdown().await;
}

/// A token with the given planned fate.
fn token_with(behaviour: &Behaviour, fate: Fate) -> String {
    common::mobile::token_with_fate(behaviour, fate, fcm_token)
}

#[tokio::test]
async fn each_fate_answers_in_googles_words() {
    let behaviour = Behaviour {
        gone_per_mille: 150,
        not_found_per_mille: 150,
        throttle_per_mille: 150,
        retry_after_secs: 6,
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
    let url = send_url(&sink, PROJECT);
    let post = |token: &str| answer(fcm_request(&client, &url, Some("t"), &message(token)));

    for fate in [Fate::Gone(410), Fate::Gone(404)] {
        let token = token_with(&behaviour, fate);
        for _ in 0..2 {
            let answer = post(&token).await.expect("answers");
            assert_error(&answer, 404, "NOT_FOUND", Some("UNREGISTERED"));
        }
    }
    let throttled = token_with(&behaviour, Fate::ThrottleOnce);
    let first = post(&throttled).await.expect("answers");
    assert_error(&first, 429, "RESOURCE_EXHAUSTED", Some("QUOTA_EXCEEDED"));
    assert_eq!(first.retry_after.as_deref(), Some("6"));
    assert_eq!(post(&throttled).await.expect("answers").status, 200);

    let failing = token_with(&behaviour, Fate::ErrorOnce);
    let first = post(&failing).await.expect("answers");
    assert_error(&first, 500, "INTERNAL", Some("INTERNAL"));
    assert_eq!(post(&failing).await.expect("answers").status, 200);

    let reset = token_with(&behaviour, Fate::ResetOnce);
    assert!(post(&reset).await.is_none(), "first attempt is reset");
    assert_eq!(post(&reset).await.expect("answers").status, 200);

    let stats = sink.stats();
    assert_eq!(
        (stats.requests, stats.accepted, stats.resets),
        (10, 3, 1),
        "{stats:?}"
    );
    let by_status: Vec<(u16, u64)> = stats.by_kind["fcm"].by_status.clone().into_iter().collect();
    assert_eq!(by_status, vec![(200, 3), (404, 4), (429, 1), (500, 1)]);
    sink.shutdown().await;
}

#[tokio::test]
async fn verify_mode_accepts_a_sender_with_a_real_service_account() {
    let account = ServiceAccount::generate(PROJECT);
    let sink = start_verifying(Protocol::Tls, Vec::new(), vec![account.trusted()]).await;
    let client = client(&sink, Client::Tls);

    let assertion = account.assertion(&account.claims(&token_uri(&sink), now_secs()));
    let bearer = access_token(&send(token_request(&client, &sink, token_form(&assertion))).await);

    let token = fcm_token();
    let body = message(&token);
    let accepted = send(fcm_request(
        &client,
        &send_url(&sink, PROJECT),
        Some(&bearer),
        &body,
    ))
    .await;
    assert_eq!(accepted.status, 200, "{}", accepted.json);
    assert_eq!(accepted.content_type.as_deref(), Some("application/json"));

    let received = sink.received_mobile(&token);
    assert_eq!(received.len(), 1, "{received:?}");
    let delivery = &received[0];
    assert_eq!(delivery.kind, MobileKind::Fcm);
    assert_eq!(delivery.token, token);
    assert_eq!(delivery.body, body["message"]);
    assert_eq!(delivery.issuer, account.client_email);
    assert_eq!(delivery.project_id.as_deref(), Some(PROJECT));
    assert_eq!(delivery.apns_topic, None);
    assert_eq!(delivery.attempt, 1);

    let stats = sink.stats();
    assert_eq!(stats.verify_failures(), 0, "{stats:?}");
    assert_eq!(
        (
            stats.by_kind["oauth"].accepted,
            stats.by_kind["fcm"].accepted
        ),
        (1, 1)
    );
    sink.shutdown().await;
}

#[tokio::test]
async fn verify_mode_refuses_bad_senders_and_messages() {
    let account = ServiceAccount::generate(PROJECT);
    let sink = start_verifying(Protocol::H2c, Vec::new(), vec![account.trusted()]).await;
    let client = client(&sink, Client::H2c);
    let assertion = account.assertion(&account.claims(&token_uri(&sink), now_secs()));
    let bearer = access_token(&send(token_request(&client, &sink, token_form(&assertion))).await);
    let token = fcm_token();
    let url = send_url(&sink, PROJECT);

    // Who is sending.
    let answer = send(fcm_request(&client, &url, None, &message(&token))).await;
    assert_error(&answer, 401, "UNAUTHENTICATED", None);
    let answer = send(fcm_request(
        &client,
        &url,
        Some("ya29.made-up"),
        &message(&token),
    ))
    .await;
    assert_error(&answer, 401, "UNAUTHENTICATED", None);
    let other_project = send_url(&sink, "other-project");
    let answer = send(fcm_request(
        &client,
        &other_project,
        Some(&bearer),
        &message(&token),
    ))
    .await;
    assert_error(
        &answer,
        403,
        "PERMISSION_DENIED",
        Some("SENDER_ID_MISMATCH"),
    );

    // What is sent.
    let patches: [fn(&mut Value); 6] = [
        |m| m["message"]["topic"] = "news".into(),
        |m| m["message"]["data"]["count"] = 3.into(),
        |m| m["message"]["android"]["ttl"] = "3600".into(),
        |m| m["message"]["android"]["priority"] = "URGENT".into(),
        |m| m["message"]["notification"]["title"] = json!(["not", "text"]),
        |m| m["message"]["unknown_field"] = true.into(),
    ];
    for patch in patches {
        let mut body = message(&token);
        patch(&mut body);
        let answer = send(fcm_request(&client, &url, Some(&bearer), &body)).await;
        assert_error(&answer, 400, "INVALID_ARGUMENT", Some("INVALID_ARGUMENT"));
    }
    let no_token = json!({ "message": { "topic": "news" } });
    let answer = send(fcm_request(&client, &url, Some(&bearer), &no_token)).await;
    assert_error(&answer, 400, "INVALID_ARGUMENT", Some("INVALID_ARGUMENT"));

    let stats = sink.stats();
    let actual: Vec<(&str, u64)> = stats
        .verify_failed
        .iter()
        .map(|(reason, n)| (reason.as_str(), *n))
        .collect();
    let expected = vec![
        ("fcm_auth", 2),
        ("fcm_message", 7),
        ("fcm_sender_mismatch", 1),
    ];
    assert_eq!(actual, expected, "verify_failed");
    assert_eq!(stats.accepted, 0);
    assert!(sink.received_mobile(&token).is_empty());

    // The same sender, fixed, goes through.
    let answer = send(fcm_request(&client, &url, Some(&bearer), &message(&token))).await;
    assert_eq!(answer.status, 200, "{}", answer.json);
    sink.shutdown().await;
}
