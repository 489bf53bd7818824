//! The web console (`/console`) and the routes it needs, against the real Kafka broker and
//! MongoDB-protocol server.
//!
//! - `console_routes_answer_by_caller`: the console's files with their content types and a
//!   strict Content-Security-Policy; `GET /v1/sites` (the admin: every site, a site key: its
//!   own) with subscribers counted by platform; dead letters by reason for the admin and for
//!   a site (403 for another site's key), replayed once and then skipped; channels online.
//! - `the_console_follows_and_cancels_a_push_in_chromium`: Debian's headless Chromium,
//!   driven by `sdk/test/console.mjs` (puppeteer-core), signs in with the admin token, opens
//!   a pending push of a 5,000-subscriber site, sends it, sees its progress move, cancels it
//!   and sees it end canceled. A real parser and sender deliver to the push-service
//!   simulator (answering in 50 to 250 ms). Only a push still being fanned out can be
//!   canceled, so the parser checkpoints after every subscriber: each checkpoint waits for
//!   the broker's acknowledgement of the previous message (the producer lingers 10 ms) and
//!   a MongoDB write, so the fan-out lasts at least 50 s however fast the machine, and a
//!   loaded machine only makes it longer; the console needs a few seconds. The page is kept
//!   as `target/console.png` (CI artifact; the README shows a copy, `docs/console.png`).
//!
//! Needs Chromium and the test's npm packages: `scripts/browser-deps` installs them
//! (`scripts/test` runs it first).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{ADMIN_TOKEN, KEY_SEED, Options, World};
use pushservice_kafka::rdkafka::message::{Header, OwnedHeaders};
use pushservice_kafka::rdkafka::producer::FutureRecord;
use pushservice_kafka::{ProducerTuning, producer};
use pushservice_model::{
    DELIVERY_VERSION, DateTime, DeliveryMessage, ObjectId, Platform, Subscriber, Target, Urgency,
};
use pushservice_push_sink::Latency;
use pushservice_seed::{SubscriberSeed, seed_subscribers};
use pushservice_store::{ChannelPresence, PresenceCount, PresenceSnapshot};
use reqwest::{Method, StatusCode};
use serde_json::value::RawValue;
use serde_json::{Value, json};

/// Subscribers of the site whose push the browser follows.
const AUDIENCE: i64 = 20_000;

const REASON_400: &str = "HTTP 400: invalid request";
const REASON_503: &str = "retry budget spent: HTTP 503 Service Unavailable";

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Writes dead letters of `site` as a sender does (value, key, headers), one per reason.
async fn write_dead_letters(world: &World, site: &str, push: &str, reasons: &[&str]) {
    let producer =
        producer(&world.kafka, &ProducerTuning::command(world.kafka.timeout)).expect("producer");
    for (i, reason) in reasons.iter().enumerate() {
        let subscriber = ObjectId::new().to_hex();
        let message = DeliveryMessage {
            v: DELIVERY_VERSION,
            push_id: push.to_owned(),
            site_id: site.to_owned(),
            subscriber_id: subscriber.clone(),
            target: Target::Android {
                token: format!("token-{subscriber}"),
            },
            ttl: 3_600,
            urgency: Urgency::Normal,
            topic: None,
            attempt: 9,
            first_attempt_at: Some(1),
            due_at: None,
            replayed: false,
            replaced_failure: None,
            payload: RawValue::from_string(r#"{"title":"Sale"}"#.into()).expect("JSON"),
        };
        let failed_at = (DateTime::now().timestamp_millis() - 60_000 + i as i64).to_string();
        let headers = [
            ("x-reason", *reason),
            ("x-attempts", "9"),
            ("x-push-id", push),
            ("x-site-id", site),
            ("x-failed-at", &failed_at),
        ]
        .into_iter()
        .fold(OwnedHeaders::new(), |headers, (key, value)| {
            headers.insert(Header {
                key,
                value: Some(value),
            })
        });
        let value = message.to_json();
        producer
            .send(
                FutureRecord::to(&world.topics.dead_letter.name)
                    .key(&subscriber)
                    .payload(&value)
                    .headers(headers),
                Duration::from_secs(10),
            )
            .await
            .unwrap_or_else(|(e, _)| panic!("writing a dead letter: {e}"));
    }
}

/// A gateway's presence snapshot for `site`: two channels, three users.
async fn write_presence(world: &World, site: &str) {
    let snapshot = PresenceSnapshot {
        id: format!("console-test-gateway:{site}"),
        gateway: "console-test-gateway".into(),
        site_id: site.to_owned(),
        expires_at: DateTime::from_millis(DateTime::now().timestamp_millis() + 600_000),
        connections: 4,
        users: ["ana", "bo", "cy"]
            .iter()
            .map(|u| PresenceCount {
                id: (*u).into(),
                connections: 1,
            })
            .collect(),
        channels: vec![
            ChannelPresence {
                name: "room:ops".into(),
                connections: 3,
                users: vec!["ana".into(), "bo".into()],
            },
            ChannelPresence {
                name: "user:cy".into(),
                connections: 1,
                users: vec!["cy".into()],
            },
        ],
    };
    world
        .store
        .write_presence("console-test-gateway", &[snapshot])
        .await
        .expect("presence written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_routes_answer_by_caller() {
    let world = World::start(Options::default()).await;
    let (site, key) = world.create_site(&[]).await;
    let (other, other_key) = world.create_site(&[]).await;
    let site_id = ObjectId::parse_str(&site).expect("id");

    // The console's files: their types, and a policy that allows no inline script.
    for (path, content_type) in [
        ("/console", "text/html; charset=utf-8"),
        ("/console/console.js", "text/javascript; charset=utf-8"),
        ("/console/chart.js", "text/javascript; charset=utf-8"),
        ("/console/console.css", "text/css; charset=utf-8"),
        ("/console/favicon.svg", "image/svg+xml"),
    ] {
        let response = world
            .http
            .get(format!("{}{path}", world.base))
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        assert_eq!(header("content-type"), content_type, "{path}");
        let csp = header("content-security-policy");
        assert!(
            csp.contains("script-src 'self'")
                && csp.contains("default-src 'none'")
                && !csp.contains("unsafe-inline"),
            "{path}: {csp}"
        );
        assert_eq!(header("x-content-type-options"), "nosniff", "{path}");
    }
    let page = world
        .http
        .get(format!("{}/console", world.base))
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("text");
    assert!(
        !page.contains("<script>") && !page.contains(" onclick="),
        "no inline script in the page"
    );
    let (status, body) = world
        .call(Method::GET, "/console/nothing.js", None, None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let slash = world
        .http
        .get(format!("{}/console/", world.base))
        .send()
        .await
        .expect("request");
    assert_eq!(slash.url().path(), "/console", "followed the redirect");

    // Subscribers by platform: two browsers, one iPhone, one Android phone gone.
    seed_subscribers(
        &world.store,
        &SubscriberSeed {
            site_id,
            count: 2,
            platform: Platform::Web,
            endpoint_base: "https://push.example/wp".into(),
            key_seed: KEY_SEED.to_vec(),
            batch_size: 100,
        },
        |_| {},
    )
    .await
    .expect("browsers seeded");
    let ios = Subscriber::new_device(
        ObjectId::new(),
        site_id,
        Platform::Ios,
        world.device_token(Platform::Ios),
    );
    let mut android = Subscriber::new_device(
        ObjectId::new(),
        site_id,
        Platform::Android,
        world.device_token(Platform::Android),
    );
    android.subscribed = false;
    world
        .store
        .insert_subscribers(&[ios, android])
        .await
        .expect("devices");

    let counts = |sites: &Value, id: &str| {
        sites["sites"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["id"] == json!(id)))
            .map(|s| s["subscribers"].clone())
            .unwrap_or(Value::Null)
    };
    let (status, all) = world
        .call(Method::GET, "/v1/sites", Some(ADMIN_TOKEN), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{all}");
    assert_eq!(all["sites"].as_array().map(Vec::len), Some(2), "{all:#}");
    assert_eq!(
        counts(&all, &site),
        json!({ "web": 2, "ios": 1, "android": 0, "total": 3, "unsubscribed": 1 }),
        "{all:#}"
    );
    assert_eq!(counts(&all, &other)["total"], json!(0), "{all:#}");
    assert!(
        all["sites"][0].get("privateKey").is_none(),
        "no secrets: {all:#}"
    );
    let (status, page) = world
        .call(Method::GET, "/v1/sites?limit=1", Some(ADMIN_TOKEN), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let next = page["next"].as_str().expect("a next page").to_owned();
    let (_, rest) = world
        .call(
            Method::GET,
            &format!("/v1/sites?limit=1&after={next}"),
            Some(ADMIN_TOKEN),
            None,
        )
        .await;
    assert_eq!(rest["sites"].as_array().map(Vec::len), Some(1), "{rest:#}");
    assert_eq!(rest["next"], Value::Null, "{rest:#}");
    let (status, own) = world.call(Method::GET, "/v1/sites", Some(&key), None).await;
    assert_eq!(status, StatusCode::OK, "{own}");
    let ids: Vec<&Value> = own["sites"]
        .as_array()
        .map(|s| s.iter().map(|s| &s["id"]).collect())
        .unwrap_or_default();
    assert_eq!(ids, vec![&json!(site)], "a site key sees its own site only");
    let (status, refused) = world.call(Method::GET, "/v1/sites", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{refused}");
    let (status, refused) = world
        .call(Method::GET, "/v1/sites?limit=0", Some(ADMIN_TOKEN), None)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");

    // Dead letters: three of this site (two reasons), one of the other site.
    let push = ObjectId::new().to_hex();
    write_dead_letters(&world, &site, &push, &[REASON_400, REASON_400, REASON_503]).await;
    write_dead_letters(&world, &other, &ObjectId::new().to_hex(), &[REASON_503]).await;
    let reasons = |summary: &Value| -> Vec<(String, i64, i64)> {
        summary["reasons"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| {
                (
                    r["reason"].as_str().unwrap_or_default().to_owned(),
                    r["count"].as_i64().unwrap_or(-1),
                    r["replayed"].as_i64().unwrap_or(-1),
                )
            })
            .collect()
    };
    let (status, everything) = world
        .call(Method::GET, "/v1/dead-letters", Some(ADMIN_TOKEN), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{everything}");
    assert_eq!(everything["total"], json!(4), "{everything:#}");
    assert_eq!(
        reasons(&everything),
        vec![(REASON_400.into(), 2, 0), (REASON_503.into(), 2, 0)],
        "{everything:#}"
    );
    let (status, refused) = world
        .call(Method::GET, "/v1/dead-letters", Some(&key), None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{refused}");
    let site_letters = format!("/v1/sites/{site}/dead-letters");
    let (status, refused) = world
        .call(Method::GET, &site_letters, Some(&other_key), None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{refused}");
    let (status, mine) = world
        .call(Method::GET, &site_letters, Some(&key), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{mine}");
    assert_eq!(mine["total"], json!(3), "{mine:#}");
    assert_eq!(mine["pushes"][0], json!({ "pushId": push, "count": 3 }));

    // Replay one reason with the site key: once, then skipped.
    let replay = format!("{site_letters}/replay");
    let (status, refused) = world
        .call(
            Method::POST,
            &replay,
            Some(&other_key),
            Some(json!({ "nonsense": 1 })),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "credentials before the body: {refused}"
    );
    let (status, refused) = world
        .call(
            Method::POST,
            &replay,
            Some(&key),
            Some(json!({ "reasons": [] })),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    let (status, replayed) = world
        .call(
            Method::POST,
            &replay,
            Some(&key),
            Some(json!({ "reason": REASON_400 })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{replayed}");
    assert_eq!(
        (&replayed["replayed"], &replayed["skipped"]),
        (&json!(2), &json!(0)),
        "{replayed:#}"
    );
    let (_, again) = world
        .call(
            Method::POST,
            &replay,
            Some(&key),
            Some(json!({ "reason": REASON_400 })),
        )
        .await;
    assert_eq!(
        (&again["replayed"], &again["skipped"]),
        (&json!(0), &json!(2)),
        "{again:#}"
    );
    let (_, mine) = world
        .call(Method::GET, &site_letters, Some(&key), None)
        .await;
    assert_eq!(
        reasons(&mine),
        vec![(REASON_400.into(), 2, 2), (REASON_503.into(), 1, 0)],
        "{mine:#}"
    );
    let (status, dry) = world
        .call(
            Method::POST,
            "/v1/dead-letters/replay",
            Some(ADMIN_TOKEN),
            Some(json!({ "dryRun": true })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{dry}");
    assert_eq!(
        (&dry["replayed"], &dry["skipped"]),
        (&json!(2), &json!(2)),
        "{dry:#}"
    );

    // Who is online, channel by channel.
    write_presence(&world, &site).await;
    let (status, channels) = world
        .call(
            Method::GET,
            &format!("/v1/sites/{site}/realtime/channels"),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{channels}");
    assert_eq!(
        channels,
        json!({
            "connections": 4, "users": 3, "gateways": 1, "otherChannels": 0,
            "channels": [
                { "name": "room:ops", "connections": 3, "users": 2 },
                { "name": "user:cy", "connections": 1, "users": 1 },
            ],
        })
    );
    let (status, refused) = world
        .call(
            Method::GET,
            &format!("/v1/sites/{site}/realtime/channels"),
            Some(&other_key),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{refused}");

    world.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_console_follows_and_cancels_a_push_in_chromium() {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let script = repository().join("sdk/test/console.mjs");
    assert!(
        Path::new(&chromium).exists()
            && repository()
                .join("sdk/test/node_modules/puppeteer-core")
                .exists(),
        "Chromium ({chromium}) or the test's npm packages are missing: run scripts/browser-deps"
    );

    // A parser that reads one subscriber per MongoDB round trip (a fan-out that lasts, so the
    // push can be canceled from the page) and one sender.
    let world = World::start(Options {
        senders: 1,
        latency: Latency::Uniform {
            min: Duration::from_millis(50),
            max: Duration::from_millis(250),
        },
        parser_query_batch_size: Some(1),
        ..Options::default()
    })
    .await;
    let (site, key) = world.create_site(&[]).await;
    let sink = world.sink.as_ref().expect("simulator");
    seed_subscribers(
        &world.store,
        &SubscriberSeed {
            site_id: ObjectId::parse_str(&site).expect("id"),
            count: AUDIENCE as u64,
            platform: Platform::Web,
            endpoint_base: format!("{}/wp", sink.base_url()),
            key_seed: KEY_SEED.to_vec(),
            batch_size: 5_000,
        },
        |_| {},
    )
    .await
    .expect("audience seeded");
    // Something in every panel: an earlier push's dead letters and a few users online.
    write_dead_letters(
        &world,
        &site,
        &ObjectId::new().to_hex(),
        &[REASON_400, REASON_400, REASON_503],
    )
    .await;
    write_presence(&world, &site).await;

    let (status, push) = world
        .call(
            Method::POST,
            &format!("/v1/sites/{site}/pushes"),
            Some(&key),
            Some(json!({
                "title": "Flash sale: 30% off until midnight",
                "options": { "body": "Followed and canceled from the console" },
                "launchUrl": "https://shop.example/sale",
            })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{push}");
    let push_id = push["id"].as_str().expect("id").to_owned();

    let screenshot = repository().join("target/console.png");
    let _ = std::fs::remove_file(&screenshot);
    let output = tokio::task::spawn_blocking({
        let (base, site, push_id, screenshot) = (
            world.base.clone(),
            site.clone(),
            push_id.clone(),
            screenshot.clone(),
        );
        move || {
            Command::new("node")
                .arg(&script)
                .env("API_BASE", &base)
                .env("ADMIN_TOKEN", ADMIN_TOKEN)
                .env("SITE_ID", &site)
                .env("PUSH_ID", &push_id)
                .env("CHROMIUM", &chromium)
                .env("SCREENSHOT", &screenshot)
                .stderr(Stdio::inherit())
                .output()
                .expect("node runs the console test")
        }
    })
    .await
    .expect("console test task");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let result: Value = stdout
        .lines()
        .rev()
        .find_map(|line| serde_json::from_str(line).ok())
        .unwrap_or_else(|| panic!("no result line from the console test: {stdout}"));
    assert_eq!(result["ok"], json!(true), "console test failed: {result:#}");

    // The browser saw deliveries settle and their number grow before it canceled.
    let seen: Vec<i64> = result["settledSeen"]
        .as_array()
        .expect("settledSeen")
        .iter()
        .filter_map(Value::as_i64)
        .collect();
    assert!(
        seen.len() >= 2 && seen[0] > 0 && seen.windows(2).all(|w| w[0] < w[1]),
        "progress seen moving: {result:#}"
    );
    assert!(
        seen.last().is_some_and(|&n| n < AUDIENCE),
        "canceled before the end: {result:#}"
    );
    assert_eq!(result["finalStatus"], json!("canceled"), "{result:#}");
    assert_eq!(result["tokenInCookie"], json!(false), "{result:#}");
    assert_eq!(result["tokenInUrl"], json!(false), "{result:#}");
    assert_eq!(result["tokenInSessionStorage"], json!(true), "{result:#}");
    assert_eq!(result["cspViolations"], json!([]), "{result:#}");

    // As the API tells it: canceled, every subscriber accounted for.
    let settled = world
        .wait_push(&push_id, &key, Duration::from_secs(180), |p| {
            p["final"] == json!(true)
        })
        .await;
    let totals = &settled["totals"];
    let count = |name: &str| totals[name].as_i64().unwrap_or(-1);
    assert_eq!(settled["status"], json!("canceled"), "{settled:#}");
    assert_eq!(
        count("accepted") + count("unsubscribed") + count("failed") + count("canceled"),
        AUDIENCE,
        "every subscriber accounted for: {settled:#}"
    );
    assert!(count("canceled") > 0, "{settled:#}");
    let png = std::fs::read(&screenshot).expect("screenshot kept");
    assert!(
        png.starts_with(b"\x89PNG"),
        "a PNG at {}",
        screenshot.display()
    );
    eprintln!(
        "console: settled counts seen {seen:?}; final totals {totals}; screenshot {}",
        screenshot.display()
    );

    world.finish().await;
}
