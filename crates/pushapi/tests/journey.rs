//! A site goes from nothing to notifications with only the API: created with the admin
//! token, 200 browsers and 20 iOS and 20 Android apps registered, a push sent to everyone,
//! events raising its totals, a push to chosen users, a direct send to raw tokens, progress
//! followed over Server-Sent Events. Real Kafka, real MongoDB-protocol server, a verifying
//! push-service simulator that decrypts every payload, a parser and two senders.

mod common;

use std::time::Duration;

use common::{Options, World};
use futures::StreamExt as _;
use pushservice_model::{ObjectId, Platform};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

fn is_final(push: &Value) -> bool {
    push["final"].as_bool() == Some(true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_site_reaches_its_audience_through_the_api_alone() {
    let world = World::start(Options {
        senders: 2,
        ..Options::default()
    })
    .await;
    let (site, key) = world.create_site(&["https://shop.example"]).await;
    world.set_credentials(&site, &key).await;

    // 200 browsers (10 of them users with ids, all tagged by half), 20 iOS, 20 Android.
    let mut web = Vec::new();
    for i in 0..200 {
        let (endpoint_id, mut subscription) = world.web_subscription();
        if i < 10 {
            subscription["externalId"] = json!(format!("user-{i}"));
        }
        subscription["tags"] = json!([if i % 2 == 0 { "even" } else { "odd" }]);
        let (status, body) = world
            .call(
                Method::POST,
                &format!("/v1/sites/{site}/subscribers"),
                None,
                Some(subscription.clone()),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        web.push((
            endpoint_id,
            body["id"].as_str().expect("id").to_owned(),
            subscription,
        ));
    }
    // The same subscription again: the same subscriber, 200, no second document.
    let (status, again) = world
        .call(
            Method::POST,
            &format!("/v1/sites/{site}/subscribers"),
            None,
            Some(web[0].2.clone()),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["id"], json!(web[0].1));
    assert_eq!(again["created"], json!(false));

    let mut tokens = Vec::new();
    for platform in [Platform::Ios, Platform::Android] {
        let name = if platform == Platform::Ios {
            "ios"
        } else {
            "android"
        };
        for _ in 0..20 {
            let token = world.device_token(platform);
            let (status, body) = world
                .call(
                    Method::POST,
                    &format!("/v1/sites/{site}/subscribers"),
                    Some(&key),
                    Some(json!({ "platform": name, "token": token })),
                )
                .await;
            assert_eq!(status, StatusCode::CREATED, "{body}");
            tokens.push((name, token, body["id"].as_str().expect("id").to_owned()));
        }
    }
    let site_id = ObjectId::parse_str(&site).expect("site id");
    assert_eq!(
        world
            .store
            .count_subscribers(site_id, true)
            .await
            .expect("count"),
        240
    );

    // A push to everyone, sent at once.
    let (status, push) = world
        .call(
            Method::POST,
            &format!("/v1/sites/{site}/pushes"),
            Some(&key),
            Some(json!({
                "title": "Hello from the API",
                "options": { "body": "Everyone gets this", "tag": "hello", "vibrate": [100, 50, 100] },
                "launchUrl": "https://shop.example/hello",
                "timeToLive": 600,
                "send": true,
            })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{push}");
    assert_eq!(push["status"], json!("processing"));
    let push_id = push["id"].as_str().expect("push id").to_owned();

    // Follow it over Server-Sent Events until it is final.
    let response = world.progress_stream(&push_id, &key).await;
    let mut stream = response.bytes_stream();
    let mut text = String::new();
    let ended = tokio::time::timeout(Duration::from_secs(120), async {
        while let Some(chunk) = stream.next().await {
            text.push_str(&String::from_utf8_lossy(&chunk.expect("chunk")));
            if text.contains("event: end") {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(
        ended,
        Ok(true),
        "the progress stream ended with a final push: {text}"
    );
    let progress_events = text.matches("event: progress").count();
    assert!(progress_events >= 1, "{text}");

    let done = world
        .wait_push(&push_id, &key, Duration::from_secs(60), is_final)
        .await;
    assert_eq!(done["status"], json!("done"), "{done:#}");
    assert_eq!(done["totals"]["sent"], json!(240), "{done:#}");
    assert_eq!(done["totals"]["accepted"], json!(240), "{done:#}");
    assert_eq!(done["totals"]["failed"], json!(0), "{done:#}");
    let sink = world.sink.as_ref().expect("simulator");
    let stats = sink.stats();
    assert_eq!(stats.distinct_accepted, 240, "{stats:?}");
    assert_eq!(stats.verify_failures(), 0, "{stats:?}");
    // Every browser decrypted exactly the push's payload.
    for (endpoint_id, _, _) in &web {
        let received = sink.received(&endpoint_id.to_hex());
        assert_eq!(received.len(), 1, "{endpoint_id}");
        let payload: Value = serde_json::from_slice(&received[0].plaintext).expect("payload JSON");
        assert_eq!(payload["pushId"], json!(push_id));
        assert_eq!(payload["title"], json!("Hello from the API"));
        assert_eq!(payload["options"]["vibration"], json!([100, 50, 100]));
    }
    for (_, token, _) in &tokens {
        assert_eq!(sink.received_mobile(token).len(), 1, "token {token}");
    }

    // Service workers report: 50 shown, 10 clicked, 5 closed; some reported twice.
    let mut reports = Vec::new();
    for (i, (_, subscriber, _)) in web.iter().enumerate().take(50) {
        reports.push((subscriber.clone(), "delivered"));
        if i < 10 {
            reports.push((subscriber.clone(), "click"));
        }
        if i < 5 {
            reports.push((subscriber.clone(), "close"));
            reports.push((subscriber.clone(), "delivered")); // again: counts once
        }
    }
    // Invented ids count nothing.
    reports.push((ObjectId::new().to_hex(), "delivered"));
    for (subscriber, kind) in reports {
        let (status, body) = world
            .call(
                Method::POST,
                "/v1/events",
                None,
                Some(json!({ "pushId": push_id, "subscriberId": subscriber, "type": kind })),
            )
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    }
    let counted = world
        .wait_push(&push_id, &key, Duration::from_secs(30), |p| {
            p["totals"]["delivered"] == json!(50)
                && p["totals"]["clicked"] == json!(10)
                && p["totals"]["closed"] == json!(5)
        })
        .await;
    // The push document itself carries the original schema's totals too.
    let stored = world
        .store
        .push(ObjectId::parse_str(&push_id).expect("id"))
        .await
        .expect("query")
        .expect("push");
    assert_eq!(
        (stored.total_deliver, stored.total_click, stored.total_close),
        (50, 10, 5),
        "{counted:#}"
    );

    // A push to two users reaches only their devices.
    let (status, targeted) = world
        .call(
            Method::POST,
            &format!("/v1/sites/{site}/pushes"),
            Some(&key),
            Some(json!({
                "title": "Just for you",
                "audience": { "externalIds": ["user-3", "user-7"] },
                "send": true,
            })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{targeted}");
    let targeted_id = targeted["id"].as_str().expect("id").to_owned();
    let targeted = world
        .wait_push(&targeted_id, &key, Duration::from_secs(60), is_final)
        .await;
    assert_eq!(targeted["totals"]["sent"], json!(2), "{targeted:#}");
    assert_eq!(targeted["totals"]["accepted"], json!(2), "{targeted:#}");
    for (i, (endpoint_id, _, _)) in web.iter().enumerate() {
        let got = sink
            .received(&endpoint_id.to_hex())
            .iter()
            .filter(|r| String::from_utf8_lossy(&r.plaintext).contains(&targeted_id))
            .count();
        assert_eq!(got, usize::from(i == 3 || i == 7), "browser {i}");
    }

    // A direct send: a raw iOS token, a raw Android token, a raw browser subscription, a
    // stored subscriber and a user.
    let raw_ios = world.device_token(Platform::Ios);
    let raw_android = world.device_token(Platform::Android);
    let (raw_endpoint_id, raw_subscription) = world.web_subscription();
    let (status, direct) = world
        .call(
            Method::POST,
            &format!("/v1/sites/{site}/notifications"),
            Some(&key),
            Some(json!({
                "title": "Direct",
                "options": { "body": "to chosen targets" },
                "targets": [
                    { "platform": "ios", "token": raw_ios },
                    { "platform": "android", "token": raw_android },
                    { "subscription": raw_subscription },
                    { "subscriberId": web[20].1 },
                    { "externalId": "user-1" },
                    { "subscriberId": ObjectId::new().to_hex() },
                ],
            })),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{direct}");
    assert_eq!(direct["produced"], json!(5), "{direct:#}");
    assert_eq!(direct["skipped"][0]["index"], json!(5), "{direct:#}");
    let direct_id = direct["push"]["id"].as_str().expect("id").to_owned();
    let direct = world
        .wait_push(&direct_id, &key, Duration::from_secs(60), is_final)
        .await;
    assert_eq!(direct["totals"]["accepted"], json!(5), "{direct:#}");
    assert_eq!(sink.received_mobile(&raw_ios).len(), 1);
    assert_eq!(sink.received_mobile(&raw_android).len(), 1);
    assert_eq!(sink.received(&raw_endpoint_id.to_hex()).len(), 1);
    for i in [1, 20] {
        let got = sink
            .received(&web[i].0.to_hex())
            .iter()
            .filter(|r| String::from_utf8_lossy(&r.plaintext).contains(&direct_id))
            .count();
        assert_eq!(got, 1, "browser {i}");
    }

    // Newest first, one page at a time.
    let (status, page) = world
        .call(
            Method::GET,
            &format!("/v1/sites/{site}/pushes?limit=2"),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["pushes"][0]["id"], json!(direct_id));
    assert_eq!(page["pushes"][1]["id"], json!(targeted_id));
    let next = page["next"].as_str().expect("a next page").to_owned();
    let (_, page) = world
        .call(
            Method::GET,
            &format!("/v1/sites/{site}/pushes?limit=2&after={next}"),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(page["pushes"][0]["id"], json!(push_id), "{page}");
    assert_eq!(page["next"], Value::Null, "{page}");

    // A browser leaves; an app is deleted.
    let (status, left) = world
        .call(
            Method::POST,
            &format!("/v1/sites/{site}/subscribers/unsubscribe"),
            None,
            Some(json!({ "endpoint": web[199].2["endpoint"] })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{left}");
    assert_eq!(left["id"], json!(web[199].1));
    let (status, _) = world
        .call(
            Method::DELETE,
            &format!("/v1/sites/{site}/subscribers/{}", tokens[0].2),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(
        world
            .store
            .count_subscribers(site_id, true)
            .await
            .expect("count"),
        238
    );

    world.finish().await;
}
