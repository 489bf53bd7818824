//! Bad input gets a clear error naming what is wrong, with the status the issue names, and
//! nothing is half-written: after every refusal below, the site has no subscriber and only
//! the pushes that were accepted.

mod common;

use common::{ADMIN_TOKEN, Options, World};
use pushservice_model::ObjectId;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const P256DH: &str =
    "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4";
const AUTH: &str = "BTBZMqHH6r4Tts7J_aSIgg";

fn subscription(endpoint: &str, p256dh: &str, auth: &str) -> Value {
    json!({ "endpoint": endpoint, "keys": { "p256dh": p256dh, "auth": auth } })
}

fn assert_error(
    status: StatusCode,
    body: &Value,
    expected: StatusCode,
    code: &str,
    mentions: &str,
) {
    assert_eq!(status, expected, "{body}");
    assert_eq!(body["error"]["code"], json!(code), "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(mentions),
        "{mentions:?} not in {message:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_input_is_refused_with_a_clear_error_and_nothing_half_written() {
    // Production endpoint policy: only https on public addresses.
    let world = World::start(Options {
        allow_private: false,
        body_limit: 4 * 1024,
        ..Options::default()
    })
    .await;
    let (site, key) = world.create_site(&[]).await;
    let (other_site, other_key) = world.create_site(&[]).await;
    let site_id = ObjectId::parse_str(&site).expect("id");
    let subscribers = format!("/v1/sites/{site}/subscribers");

    // Authentication: none, malformed, revoked, admin-only routes, another site's key.
    let (s, b) = world
        .call(Method::GET, &format!("/v1/sites/{site}"), None, None)
        .await;
    assert_error(
        s,
        &b,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "Authorization: Bearer",
    );
    let (s, b) = world
        .call(
            Method::GET,
            &format!("/v1/sites/{site}"),
            Some("nonsense"),
            None,
        )
        .await;
    assert_error(s, &b, StatusCode::UNAUTHORIZED, "unauthorized", "malformed");
    let (s, b) = world
        .call(
            Method::GET,
            &format!("/v1/sites/{site}"),
            Some(&other_key),
            None,
        )
        .await;
    assert_error(
        s,
        &b,
        StatusCode::FORBIDDEN,
        "forbidden",
        &format!("cannot act on site {site}"),
    );
    let (s, b) = world
        .call(
            Method::POST,
            "/v1/sites",
            Some(&key),
            Some(json!({ "subject": "mailto:a@b.c" })),
        )
        .await;
    assert_error(s, &b, StatusCode::FORBIDDEN, "forbidden", "admin token");
    let (s, b) = world
        .call(
            Method::POST,
            "/v1/sites",
            None,
            Some(json!({ "subject": "mailto:a@b.c" })),
        )
        .await;
    assert_error(
        s,
        &b,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "admin token",
    );
    let (s, b) = world
        .call(
            Method::POST,
            "/v1/sites",
            Some(ADMIN_TOKEN),
            Some(json!({ "subject": "ops@example.com" })),
        )
        .await;
    assert_error(s, &b, StatusCode::BAD_REQUEST, "invalid_field", "subject");
    let (s, b) = world
        .call(
            Method::POST,
            "/v1/sites",
            Some(ADMIN_TOKEN),
            Some(json!({ "subject": "mailto:a@b.c", "allowedOrigins": ["https://ok.example", "https://x.example/path"] })),
        )
        .await;
    assert_error(
        s,
        &b,
        StatusCode::BAD_REQUEST,
        "invalid_field",
        "allowedOrigins[1]",
    );

    // Key rotation: a new key works, the old one is revoked at once, the last cannot go.
    let (s, fresh) = world
        .call(
            Method::POST,
            &format!("/v1/sites/{site}/keys"),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{fresh}");
    let fresh_key = fresh["key"].as_str().expect("key").to_owned();
    let old_id = key.split('_').nth(2).expect("key id").to_owned();
    let (s, _) = world
        .call(
            Method::DELETE,
            &format!("/v1/sites/{site}/keys/{old_id}"),
            Some(&fresh_key),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, b) = world
        .call(Method::GET, &format!("/v1/sites/{site}"), Some(&key), None)
        .await;
    assert_error(s, &b, StatusCode::UNAUTHORIZED, "unauthorized", "not valid");
    let key = fresh_key;
    let fresh_id = fresh["id"].as_str().expect("id");
    let (s, b) = world
        .call(
            Method::DELETE,
            &format!("/v1/sites/{site}/keys/{fresh_id}"),
            Some(&key),
            None,
        )
        .await;
    assert_error(s, &b, StatusCode::CONFLICT, "conflict", "last API key");
    let (s, site_view) = world
        .call(Method::GET, &format!("/v1/sites/{site}"), Some(&key), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        site_view.get("privateKey").is_none() && !site_view.to_string().contains("hash"),
        "{site_view}"
    );

    // Malformed JSON, a wrong field, a body over the limit, no JSON content type.
    let response = world
        .http
        .post(format!("{}{subscribers}", world.base))
        .header("content-type", "application/json")
        .body("{\"endpoint\": ")
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let b: Value = response.json().await.expect("json");
    assert_eq!(b["error"]["code"], json!("malformed_json"), "{b}");
    let (s, b) = world
        .call(
            Method::POST,
            &subscribers,
            None,
            Some(json!({ "endpoint": 42, "keys": {} })),
        )
        .await;
    assert_error(s, &b, StatusCode::BAD_REQUEST, "invalid_field", "endpoint");
    assert_eq!(b["error"]["field"], json!("endpoint"));
    let (s, b) = world
        .call(Method::POST, &subscribers, None, Some(json!({ "endpoint": "https://fcm.googleapis.com/fcm/send/x", "keys": { "p256dh": P256DH, "auth": AUTH }, "colour": "red" })))
        .await;
    assert_error(
        s,
        &b,
        StatusCode::BAD_REQUEST,
        "invalid_field",
        "unknown field `colour`",
    );
    let big = "x".repeat(8 * 1024);
    let (s, b) = world
        .call(
            Method::POST,
            &subscribers,
            None,
            Some(json!({ "endpoint": big, "keys": {} })),
        )
        .await;
    assert_error(
        s,
        &b,
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        "API_BODY_LIMIT_BYTES",
    );
    let response = world
        .http
        .post(format!("{}{subscribers}", world.base))
        .body("endpoint=x")
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);

    // Endpoints the senders' policy refuses, keys that cannot be used.
    for (endpoint, mentions) in [
        ("http://push.example.net/x", "http://"),
        ("https://127.0.0.1/x", "127.0.0.1"),
        ("https://10.1.2.3/x", "10.1.2.3"),
        ("https://[::1]/x", "::1"),
        ("https://user:pw@push.example.net/x", "endpoint"),
    ] {
        let (s, b) = world
            .call(
                Method::POST,
                &subscribers,
                None,
                Some(subscription(endpoint, P256DH, AUTH)),
            )
            .await;
        assert_error(
            s,
            &b,
            StatusCode::UNPROCESSABLE_ENTITY,
            "endpoint_refused",
            mentions,
        );
    }
    let good = "https://fcm.googleapis.com/fcm/send/abc";
    let mut off_curve = pushservice_model::subscriber::decode_base64(P256DH).expect("b64");
    off_curve[40] ^= 0xff;
    let off_curve = base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        &off_curve,
    );
    for (p256dh, auth, field) in [
        (off_curve.as_str(), AUTH, "keys.p256dh"),
        ("AAAA", AUTH, "keys.p256dh"),
        (P256DH, "BTBZMqHH6r4Tts7J", "keys.auth"),
        (P256DH, "%%%", "keys.auth"),
    ] {
        let (s, b) = world
            .call(
                Method::POST,
                &subscribers,
                None,
                Some(subscription(good, p256dh, auth)),
            )
            .await;
        assert_error(
            s,
            &b,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_key",
            field,
        );
        assert_eq!(b["error"]["field"], json!(field));
    }
    // App tokens need the key, and the key of this site.
    let token = "ab".repeat(32);
    let (s, b) = world
        .call(
            Method::POST,
            &subscribers,
            None,
            Some(json!({ "platform": "ios", "token": token })),
        )
        .await;
    assert_error(s, &b, StatusCode::UNAUTHORIZED, "unauthorized", "API key");
    let (s, b) = world
        .call(
            Method::POST,
            &subscribers,
            Some(&other_key),
            Some(json!({ "platform": "ios", "token": token })),
        )
        .await;
    assert_error(s, &b, StatusCode::FORBIDDEN, "forbidden", &other_site);
    let (s, b) = world
        .call(
            Method::POST,
            &subscribers,
            Some(&key),
            Some(json!({ "platform": "ios", "token": "not hex" })),
        )
        .await;
    assert_error(s, &b, StatusCode::BAD_REQUEST, "invalid_field", "token");
    let (s, b) = world
        .call(
            Method::POST,
            &subscribers,
            Some(&key),
            Some(json!({ "platform": "windows", "token": token })),
        )
        .await;
    assert_error(s, &b, StatusCode::BAD_REQUEST, "invalid_field", "platform");
    assert_eq!(
        world
            .store
            .count_subscribers(site_id, false)
            .await
            .expect("count"),
        0,
        "a refused registration wrote a subscriber"
    );

    // Pushes: a bad field, a payload too large for Web Push, unknown pushes, another site's.
    let pushes = format!("/v1/sites/{site}/pushes");
    for (body, field) in [
        (json!({ "title": "" }), "title"),
        (json!({ "title": "t", "priority": "urgent" }), "priority"),
        (json!({ "title": "t", "timeToLive": -1 }), "timeToLive"),
        (
            json!({ "title": "t", "launchUrl": "javascript:alert(1)" }),
            "launchUrl",
        ),
        (
            json!({ "title": "t", "options": { "bdy": "typo" } }),
            "options.bdy",
        ),
        (
            json!({ "title": "t", "options": { "actions": [{ "title": 5 }] } }),
            "options.actions[0].title",
        ),
        (
            json!({ "title": "t", "audience": { "externalIds": [""] } }),
            "audience.externalIds[0]",
        ),
    ] {
        let (s, b) = world
            .call(Method::POST, &pushes, Some(&key), Some(body))
            .await;
        assert_error(s, &b, StatusCode::BAD_REQUEST, "invalid_field", field);
        assert_eq!(b["error"]["field"], json!(field), "{b}");
    }
    let (s, b) = world
        .call(
            Method::POST,
            &pushes,
            Some(&key),
            Some(json!({ "title": "t", "options": { "body": "x".repeat(3_990) } })),
        )
        .await;
    assert_error(
        s,
        &b,
        StatusCode::UNPROCESSABLE_ENTITY,
        "payload_too_large",
        "Web Push carries at most",
    );
    let unknown = ObjectId::new().to_hex();
    for path in [
        format!("/v1/pushes/{unknown}"),
        format!("/v1/pushes/{unknown}/progress"),
    ] {
        let (s, b) = world.call(Method::GET, &path, Some(&key), None).await;
        assert_error(s, &b, StatusCode::NOT_FOUND, "not_found", &unknown);
    }
    let (s, b) = world
        .call(
            Method::POST,
            &format!("/v1/pushes/{unknown}/send"),
            Some(&key),
            None,
        )
        .await;
    assert_error(s, &b, StatusCode::NOT_FOUND, "not_found", &unknown);
    let (s, b) = world
        .call(Method::GET, "/v1/pushes/not-an-id", Some(&key), None)
        .await;
    assert_error(
        s,
        &b,
        StatusCode::BAD_REQUEST,
        "invalid_field",
        "malformed push id",
    );
    assert_eq!(b["error"]["field"], json!("pushId"));
    // A typo in the audience must not send to everyone.
    let (s, b) = world
        .call(
            Method::POST,
            &pushes,
            Some(&key),
            Some(json!({ "title": "t", "audience": { "externalId": ["u1"] } })),
        )
        .await;
    assert_error(
        s,
        &b,
        StatusCode::BAD_REQUEST,
        "invalid_field",
        "unknown field `externalId`",
    );
    // Credentials are checked before the body: a caller without them hears 401.
    let (s, b) = world
        .call(Method::POST, &pushes, None, Some(json!({ "title": 5 })))
        .await;
    assert_error(s, &b, StatusCode::UNAUTHORIZED, "unauthorized", "API key");
    let (s, b) = world.call(Method::PUT, &pushes, Some(&key), None).await;
    assert_error(
        s,
        &b,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "does not take PUT",
    );
    let (s, b) = world
        .call(
            Method::GET,
            &format!("{pushes}?limit=abc"),
            Some(&key),
            None,
        )
        .await;
    assert_error(s, &b, StatusCode::BAD_REQUEST, "invalid_query", "limit");
    assert_eq!(
        world
            .store
            .list_pushes(site_id, None, 100, None)
            .await
            .expect("list")
            .len(),
        0
    );

    // A push already sending: 409, and its state is untouched.
    let (s, push) = world
        .call(
            Method::POST,
            &pushes,
            Some(&key),
            Some(json!({ "title": "Once", "send": true })),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{push}");
    let push_id = push["id"].as_str().expect("id").to_owned();
    let (s, b) = world
        .call(
            Method::POST,
            &format!("/v1/pushes/{push_id}/send"),
            Some(&key),
            None,
        )
        .await;
    assert_error(
        s,
        &b,
        StatusCode::CONFLICT,
        "conflict",
        "is processing, not pending; add ?force=true",
    );
    let (s, b) = world
        .call(
            Method::GET,
            &format!("/v1/pushes/{push_id}"),
            Some(&other_key),
            None,
        )
        .await;
    assert_error(
        s,
        &b,
        StatusCode::FORBIDDEN,
        "forbidden",
        "cannot act on site",
    );
    let (s, b) = world
        .call(
            Method::POST,
            &format!("/v1/pushes/{push_id}/cancel"),
            Some(&other_key),
            None,
        )
        .await;
    assert_error(
        s,
        &b,
        StatusCode::FORBIDDEN,
        "forbidden",
        "cannot act on site",
    );
    let stored = world
        .store
        .push(ObjectId::parse_str(&push_id).expect("id"))
        .await
        .expect("query")
        .expect("push");
    assert_eq!(stored.status, pushservice_model::PushStatus::Processing);
    assert_eq!(
        stored.trigger_count, 1,
        "the refused send did not trigger it again"
    );

    // Events: malformed ids and types are named.
    for (body, field) in [
        (
            json!({ "pushId": "x", "subscriberId": ObjectId::new().to_hex(), "type": "click" }),
            "pushId",
        ),
        (
            json!({ "pushId": push_id, "subscriberId": ObjectId::new().to_hex(), "type": "opened" }),
            "type",
        ),
    ] {
        let (s, b) = world
            .call(Method::POST, "/v1/events", None, Some(body))
            .await;
        assert_error(s, &b, StatusCode::BAD_REQUEST, "invalid_field", field);
    }

    // Unknown routes and site ids.
    let (s, b) = world
        .call(Method::GET, "/v1/nothing-here", None, None)
        .await;
    assert_error(
        s,
        &b,
        StatusCode::NOT_FOUND,
        "no_such_route",
        "/openapi.json",
    );
    let (s, b) = world
        .call(
            Method::GET,
            &format!("/v1/sites/{}/vapid-public-key", ObjectId::new().to_hex()),
            None,
            None,
        )
        .await;
    assert_error(s, &b, StatusCode::NOT_FOUND, "not_found", "does not exist");

    world.finish().await;
}
