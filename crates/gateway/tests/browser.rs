//! The realtime SDK (`sdk/realtime.js`) in a real browser: Debian's Chromium, headless, driven
//! by `sdk/test/realtime.mjs` (puppeteer-core), against a gateway in this process on the real
//! Kafka broker and MongoDB-protocol server.
//!
//! The script and this test follow a line-based exchange (described at the top of the
//! script): the page's SSE client and then its WebSocket client each receive one message
//! published here (each first handed an expired token, which the gateway must refuse and the
//! SDK must replace through `getToken()`); then the gateway is stopped, two messages are
//! published to each client's channel while it is down, a new gateway starts on the same
//! address, and both clients must come back with exactly the missed messages, once, in order,
//! told `recovered: true`.
//!
//! The demo page is served from a second origin by a small static server here, so the SSE
//! stream and the ack endpoint go through the gateway's CORS answers for the site's allowed
//! origin. Needs Chromium and the test's npm packages: `scripts/browser-deps` installs them.

use std::io::{BufRead as _, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use pushservice_config::{KafkaSettings, MongoSettings, Topics};
use pushservice_control::RealtimePublisher;
use pushservice_gateway::GatewayArgs;
use pushservice_store::RealtimeSettings;
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Messages published to each channel while the gateway is down.
const MISSED: u64 = 2;

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A node process killed when dropped, so a failing test leaves no browser behind.
struct Script(std::process::Child);

impl Drop for Script {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A gateway in this process.
struct Gateway {
    stop: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Gateway {
    /// Starts one on `addr` and waits until it answers.
    async fn start(
        addr: SocketAddr,
        mongo: &MongoSettings,
        kafka: &KafkaSettings,
        topics: &Topics,
        history_group: &str,
    ) -> Gateway {
        use clap::Parser as _;
        let config = GatewayArgs::parse_from([
            "gateway".to_owned(),
            format!("--mongodb-url={}", mongo.url),
            format!("--kafka-brokers={}", kafka.brokers),
            format!("--topic-realtime={}", topics.realtime.name),
            format!("--topic-realtime-partitions={}", topics.realtime.partitions),
            format!("--gateway-history-group={history_group}"),
            "--gateway-shutdown-spread-ms=200".to_owned(),
        ])
        .settings()
        .expect("gateway settings");
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .expect("the gateway's address is free again");
        let stop = CancellationToken::new();
        let signal = stop.clone();
        let task = tokio::spawn(async move {
            pushservice_gateway::serve(config, listener, async move { signal.cancelled().await })
                .await
        });
        let client = reqwest::Client::new();
        for _ in 0..400 {
            assert!(!task.is_finished(), "the gateway stopped while starting");
            if client
                .get(format!("http://{addr}/healthz"))
                .send()
                .await
                .is_ok()
            {
                return Gateway { stop, task };
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the gateway did not answer on {addr}");
    }

    async fn stop(self) {
        self.stop.cancel();
        self.task
            .await
            .expect("the gateway task")
            .expect("the gateway stops cleanly");
    }
}

/// Serves `sdk/realtime-demo.html` and `sdk/realtime.js` under `/sdk/` on `listener`.
async fn serve_sdk(listener: tokio::net::TcpListener) {
    use axum::extract::Path as UrlPath;
    use axum::http::{StatusCode, header};
    use axum::response::IntoResponse as _;
    let app = axum::Router::new().route(
        "/sdk/{file}",
        axum::routing::get(|UrlPath(file): UrlPath<String>| async move {
            let content_type = match file.as_str() {
                "realtime.js" => "text/javascript; charset=utf-8",
                "realtime-demo.html" => "text/html; charset=utf-8",
                _ => return StatusCode::NOT_FOUND.into_response(),
            };
            match std::fs::read(repository().join("sdk").join(&file)) {
                Ok(body) => ([(header::CONTENT_TYPE, content_type)], body).into_response(),
                Err(_) => StatusCode::NOT_FOUND.into_response(),
            }
        }),
    );
    let _ = axum::serve(listener, app).await;
}

/// The script's next line (stdout), within `limit`.
async fn next_line(
    lines: &mut tokio::sync::mpsc::UnboundedReceiver<String>,
    limit: Duration,
) -> String {
    tokio::time::timeout(limit, lines.recv())
        .await
        .unwrap_or_else(|_| panic!("no line from sdk/test/realtime.mjs within {limit:?}"))
        .expect("sdk/test/realtime.mjs ended without DONE or FAIL")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sdk_receives_over_sse_and_websocket_and_recovers_what_a_gateway_restart_missed() {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let script = repository().join("sdk/test/realtime.mjs");
    assert!(
        Path::new(&chromium).exists()
            && repository()
                .join("sdk/test/node_modules/puppeteer-core")
                .exists(),
        "Chromium ({chromium}) or the test's npm packages are missing: run scripts/browser-deps"
    );
    pushservice_testkit::show_daemon_logs();
    let (mongo, kafka, topics) = (
        pushservice_testkit::mongo_settings(),
        pushservice_testkit::kafka_settings(),
        pushservice_testkit::topics(),
    );
    pushservice_testkit::create_topics(&kafka, &topics).await;
    let store = pushservice_testkit::store(&mongo).await;
    let publisher =
        RealtimePublisher::new(&kafka, topics.realtime.name.clone()).expect("publisher");

    // The page's origin, and a site that allows it.
    let pages = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let origin = format!("http://{}", pages.local_addr().expect("addr"));
    tokio::spawn(serve_sdk(pages));
    let site = pushservice_control::sites::new_site(
        "mailto:ops@example.com",
        std::slice::from_ref(&origin),
    )
    .expect("site");
    store.insert_site(&site).await.expect("insert site");
    let secret = pushservice_realtime::new_secret();
    store
        .set_realtime_settings(
            site.id,
            &RealtimeSettings {
                secrets: vec![secret.clone()],
                history_size: None,
                history_ttl_seconds: None,
            },
        )
        .await
        .expect("realtime settings");

    // The gateway's address stays the same across the restart.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port");
    let history_group = pushservice_testkit::unique_name("history");
    let mut gateway = Some(Gateway::start(addr, &mongo, &kafka, &topics, &history_group).await);

    let screenshot = repository().join("target/realtime-browser.png");
    let channel_sse = "room:browser-sse";
    let channel_ws = "room:browser-ws";
    let mut child = Script(
        Command::new("node")
            .arg(&script)
            .env("PAGE_URL", format!("{origin}/sdk/realtime-demo.html"))
            .env("GATEWAY_URL", format!("http://{addr}"))
            .env("SITE_ID", site.id.to_hex())
            .env("REALTIME_SECRET", &secret)
            .env("RT_USER", "browser-user-1")
            .env("CHANNEL_SSE", channel_sse)
            .env("CHANNEL_WS", channel_ws)
            .env("CHROMIUM", &chromium)
            .env("SCREENSHOT", &screenshot)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node runs sdk/test/realtime.mjs"),
    );
    let mut stdin = child.0.stdin.take().expect("stdin");
    let stdout = child.0.stdout.take().expect("stdout");
    let (lines_tx, mut lines) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });

    let publish = |channel: &'static str, data: Value, ack: bool| {
        let publisher = &publisher;
        async move {
            let raw = serde_json::value::RawValue::from_string(data.to_string()).expect("raw");
            publisher
                .publish(site.id, channel, raw, ack, None)
                .await
                .expect("publish");
        }
    };
    let mut got: Vec<(String, Value)> = Vec::new();
    let mut recovered: Vec<(String, Value)> = Vec::new();
    let summary: Value = loop {
        let line = next_line(&mut lines, Duration::from_secs(120)).await;
        eprintln!("realtime.mjs: {line}");
        let (word, rest) = line.split_once(' ').unwrap_or((line.as_str(), ""));
        match word {
            "READY" => {
                let channel = match rest {
                    r if r == format!("sse {channel_sse}") => channel_sse,
                    r if r == format!("ws {channel_ws}") => channel_ws,
                    other => panic!("READY for an unexpected client: {other}"),
                };
                // With `ack: true`: the SDK must acknowledge it on its own.
                publish(channel, json!({ "hello": channel }), true).await;
            }
            "GOT" => {
                let (label, message) = rest.split_once(' ').expect("GOT <label> <message>");
                got.push((
                    label.to_owned(),
                    serde_json::from_str(message).expect("JSON"),
                ));
            }
            "RESTART" => {
                if let Some(running) = gateway.take() {
                    running.stop().await;
                }
                for n in 0..MISSED {
                    publish(channel_sse, json!({ "missed": n }), false).await;
                    publish(channel_ws, json!({ "missed": n }), false).await;
                }
                gateway = Some(Gateway::start(addr, &mongo, &kafka, &topics, &history_group).await);
                writeln!(stdin, "RESTARTED {MISSED}").expect("write to the script");
                stdin.flush().expect("flush");
            }
            "RECOVERED" => {
                let (label, messages) = rest.split_once(' ').expect("RECOVERED <label> <messages>");
                for message in serde_json::from_str::<Vec<Value>>(messages).expect("JSON") {
                    recovered.push((label.to_owned(), message));
                }
            }
            "DONE" => break serde_json::from_str(rest).expect("DONE <JSON>"),
            "FAIL" => panic!("the browser test failed: {rest}"),
            other => panic!("unexpected line from the script: {other} {rest}"),
        }
    };

    let data_of = |list: &[(String, Value)], label: &str| -> Vec<Value> {
        list.iter()
            .filter(|(l, _)| l == label)
            .map(|(_, m)| m["data"].clone())
            .collect()
    };
    assert_eq!(
        data_of(&got, "sse"),
        vec![json!({ "hello": channel_sse })],
        "SSE: the live message"
    );
    assert_eq!(
        data_of(&got, "ws"),
        vec![json!({ "hello": channel_ws })],
        "WebSocket: the live message"
    );
    let missed: Vec<Value> = (0..MISSED).map(|n| json!({ "missed": n })).collect();
    assert_eq!(
        data_of(&recovered, "sse"),
        missed,
        "SSE: what was published while the gateway was down, once each, in order"
    );
    assert_eq!(
        data_of(&recovered, "ws"),
        missed,
        "WebSocket: what was published while the gateway was down, once each, in order"
    );
    for label in ["sse", "ws"] {
        let stats = &summary["clients"][label]["stats"];
        assert_eq!(
            stats["duplicates"], 0,
            "{label}: duplicates the SDK dropped"
        );
        assert!(
            stats["acksSent"].as_u64().unwrap_or(0) >= 1,
            "{label}: the message with ack: true was acknowledged: {stats}"
        );
        assert!(
            stats["tokenRequests"].as_u64().unwrap_or(0) >= 2,
            "{label}: getToken() was asked again after the expired token: {stats}"
        );
    }
    assert!(screenshot.exists(), "the screenshot was saved");
    if let Some(running) = gateway.take() {
        running.stop().await;
    }
}
