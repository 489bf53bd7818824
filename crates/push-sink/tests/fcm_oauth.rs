//! The OAuth2 token endpoint in verification mode: each way an assertion can be wrong (signer,
//! issuer, audience, scope, lifetime, request form) is refused with `invalid_grant` or
//! `invalid_request` and counted, and token requests never count as pushes.

mod common;

use common::fcm::{PROJECT, access_token, assert_oauth_error, send, token_request, token_uri};
use common::mobile::{ServiceAccount, start_verifying, token_form};
use common::{Client, client, now_secs};
use pushservice_push_sink::Protocol;
use serde_json::Value;

#[tokio::test]
async fn verify_mode_refuses_bad_assertions() {
    let account = ServiceAccount::generate(PROJECT);
    let sink = start_verifying(Protocol::H2c, Vec::new(), vec![account.trusted()]).await;
    let client = client(&sink, Client::H2c);
    let now = now_secs();
    let good = account.claims(&token_uri(&sink), now);
    let refused = |claims: Value, signer: &ServiceAccount| {
        let form = token_form(&signer.assertion(&claims));
        send(token_request(&client, &sink, form))
    };
    let with = |field: &str, value: Value| {
        let mut claims = good.clone();
        claims[field] = value;
        claims
    };

    let impostor = ServiceAccount::generate(PROJECT);
    assert_oauth_error(
        &refused(good.clone(), &impostor).await,
        "invalid_grant",
        "Signature",
    );
    let stranger = ServiceAccount::generate("other-project");
    let claims = stranger.claims(&token_uri(&sink), now);
    assert_oauth_error(
        &refused(claims, &stranger).await,
        "invalid_grant",
        "not a configured",
    );
    let aud = with("aud", "https://oauth2.googleapis.com/token".into());
    assert_oauth_error(&refused(aud, &account).await, "invalid_grant", "aud");
    let scope = with(
        "scope",
        "https://www.googleapis.com/auth/userinfo.email".into(),
    );
    assert_oauth_error(&refused(scope, &account).await, "invalid_grant", "scope");
    let expired = with("exp", (now - 10).into());
    assert_oauth_error(
        &refused(expired, &account).await,
        "invalid_grant",
        "expired",
    );
    let long_lived = with("exp", (now + 7200).into());
    assert_oauth_error(
        &refused(long_lived, &account).await,
        "invalid_grant",
        "short-lived",
    );
    // The cloud-platform scope, among others, is enough.
    let broad = with(
        "scope",
        "openid https://www.googleapis.com/auth/cloud-platform".into(),
    );
    access_token(&refused(broad, &account).await);

    let json_body = client
        .post(token_uri(&sink))
        .header("content-type", "application/json")
        .body(token_form(&account.assertion(&good)));
    let answer = send(json_body).await;
    assert_oauth_error(&answer, "invalid_request", "content-type");

    let stats = sink.stats();
    assert_eq!(
        stats.verify_failed.get("oauth_assertion"),
        Some(&6),
        "{stats:?}"
    );
    assert_eq!(
        stats.verify_failed.get("oauth_request"),
        Some(&1),
        "{stats:?}"
    );
    let oauth = &stats.by_kind["oauth"];
    assert_eq!((oauth.requests, oauth.accepted), (8, 1), "{oauth:?}");
    assert_eq!(stats.requests, 0, "token requests are not pushes");
    sink.shutdown().await;
}

#[tokio::test]
async fn without_configured_accounts_every_assertion_is_refused() {
    let account = ServiceAccount::generate(PROJECT);
    let sink = start_verifying(Protocol::H2c, Vec::new(), Vec::new()).await;
    let client = client(&sink, Client::H2c);
    let assertion = account.assertion(&account.claims(&token_uri(&sink), now_secs()));
    let answer = send(token_request(&client, &sink, token_form(&assertion))).await;
    assert_oauth_error(&answer, "invalid_grant", "--fcm-service-accounts");
}
