//! The browser SDK in a real browser: Debian's Chromium, headless, driven by
//! `sdk/test/browser.mjs` (puppeteer-core) against the `pushapi` binary over real HTTP, with
//! the real Kafka broker and MongoDB-protocol server behind it.
//!
//! The demo page registers `sw.js`, subscribes through the SDK (the browser's
//! `pushManager.subscribe` is replaced by a stand-in: it needs Google's push service, which
//! this machine cannot reach), the exact payload our senders encrypt for a push is delivered
//! to the service worker, the notification is shown with the push's title and body, and the
//! worker's `delivered` report raises the push's `totalDeliver` to 1 through the API.
//!
//! Needs Chromium and the test's npm packages: `scripts/browser-deps` installs them
//! (`scripts/test` runs it first).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{ADMIN_TOKEN, SUBJECT};
use pushservice_model::{NotificationPayload, ObjectId};
use pushservice_testkit::{create_topics, env_for, kafka_settings, mongo_settings, store, topics};
use reqwest::StatusCode;
use serde_json::{Value, json};

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A daemon process killed when dropped, so a failing test leaves none behind.
struct Daemon(std::process::Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sdk_shows_a_push_in_chromium_and_reports_its_delivery() {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let script = repository().join("sdk/test/browser.mjs");
    assert!(
        Path::new(&chromium).exists()
            && repository()
                .join("sdk/test/node_modules/puppeteer-core")
                .exists(),
        "Chromium ({chromium}) or the test's npm packages are missing: run scripts/browser-deps"
    );

    let (mongo, kafka, topics) = (mongo_settings(), kafka_settings(), topics());
    create_topics(&kafka, &topics).await;
    let store = store(&mongo).await;
    // A free loopback port for the binary.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let _api = Daemon(
        Command::new(env!("CARGO_BIN_EXE_pushapi"))
            .envs(env_for(&mongo, &kafka, &topics))
            .env("API_LISTEN", format!("127.0.0.1:{port}"))
            .env("API_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("LOG_LEVEL", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("pushapi starts"),
    );
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while http
        .get(format!("{base}/readyz"))
        .send()
        .await
        .map(|r| r.status())
        .ok()
        != Some(StatusCode::OK)
    {
        assert!(Instant::now() < deadline, "pushapi not ready in 60 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A site that allows the demo page's origin, and a push sent (no parser runs: the
    // browser gets the payload straight from the test).
    let created: Value = http
        .post(format!("{base}/v1/sites"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({ "subject": SUBJECT, "allowedOrigins": [base] }))
        .send()
        .await
        .expect("create site")
        .json()
        .await
        .expect("JSON");
    let site = created["site"]["id"].as_str().expect("site id").to_owned();
    let key = created["apiKey"]["key"].as_str().expect("key").to_owned();
    let push: Value = http
        .post(format!("{base}/v1/sites/{site}/pushes"))
        .bearer_auth(&key)
        .json(&json!({
            "title": "Browser test",
            "options": { "body": "Shown by the service worker", "tag": "browser-test",
                         "actions": [{ "action": "open", "title": "Open", "url": "https://shop.example/a" }] },
            "launchUrl": "https://shop.example/",
            "send": true,
        }))
        .send()
        .await
        .expect("create push")
        .json()
        .await
        .expect("JSON");
    let push_id = push["id"].as_str().expect("push id").to_owned();
    let stored = store
        .push(ObjectId::parse_str(&push_id).expect("id"))
        .await
        .expect("query")
        .expect("push");
    // Exactly what the parser puts in every delivery message and the senders encrypt.
    let payload = NotificationPayload::of(&stored).to_raw();

    let screenshot = repository().join("target/browser-demo.png");
    let output = tokio::task::spawn_blocking({
        let (base, site, payload) = (base.clone(), site.clone(), payload.get().to_owned());
        move || {
            Command::new("node")
                .arg(&script)
                .env("API_BASE", &base)
                .env("SITE_ID", &site)
                .env("PUSH_PAYLOAD", payload)
                .env("EXTERNAL_ID", "browser-user-1")
                .env("CHROMIUM", &chromium)
                .env("SCREENSHOT", &screenshot)
                .stderr(Stdio::inherit())
                .output()
                .expect("node runs the browser test")
        }
    })
    .await
    .expect("browser test task");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let result: Value = stdout
        .lines()
        .rev()
        .find_map(|line| serde_json::from_str(line).ok())
        .unwrap_or_else(|| panic!("no result line from the browser test: {stdout}"));
    assert_eq!(result["ok"], json!(true), "browser test failed: {result:#}");
    let notification = &result["notifications"][0];
    assert_eq!(notification["title"], json!("Browser test"), "{result:#}");
    assert_eq!(
        notification["body"],
        json!("Shown by the service worker"),
        "{result:#}"
    );
    assert_eq!(notification["tag"], json!("browser-test"), "{result:#}");

    // The subscription the SDK registered is stored in the original schema.
    let subscriber_id =
        ObjectId::parse_str(result["subscriberId"].as_str().expect("subscriber id")).expect("id");
    let subscriber = store
        .subscriber(subscriber_id)
        .await
        .expect("query")
        .expect("subscriber");
    assert_eq!(subscriber.site_id.to_hex(), site);
    assert_eq!(subscriber.external_id.as_deref(), Some("browser-user-1"));
    subscriber
        .subscription()
        .expect("pushEndPoint is a PushSubscription JSON string");

    // The worker's report raised totalDeliver to 1, through the API.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let live: Value = http
            .get(format!("{base}/v1/pushes/{push_id}"))
            .bearer_auth(&key)
            .send()
            .await
            .expect("status")
            .json()
            .await
            .expect("JSON");
        if live["totals"]["delivered"] == json!(1) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "totalDeliver never reached 1: {live:#}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let stored = store
        .push(ObjectId::parse_str(&push_id).expect("id"))
        .await
        .expect("query")
        .expect("push");
    assert_eq!(stored.total_deliver, 1);

    pushservice_testkit::remove_test_data(&store, &kafka, &topics).await;
}
