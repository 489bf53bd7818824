//! Realtime channels end to end, on the real Kafka broker and MongoDB-protocol server: two and
//! three gateway instances in this process, an SSE client (HTTP/1.1 streaming) and a WebSocket
//! client, messages published through the same code as `pushctl publish`.

use std::time::Duration;

use futures::{SinkExt as _, StreamExt as _};
use pushservice_config::{KafkaSettings, MongoSettings, Topics};
use pushservice_control::RealtimePublisher;
use pushservice_gateway::{GatewayArgs, GatewayConfig};
use pushservice_model::ObjectId;
use pushservice_store::{RealtimeSettings, Store};
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_util::sync::CancellationToken;

struct World {
    mongo: MongoSettings,
    kafka: KafkaSettings,
    topics: Topics,
    store: Store,
    publisher: RealtimePublisher,
}

impl World {
    async fn new() -> World {
        pushservice_testkit::show_daemon_logs();
        let mongo = pushservice_testkit::mongo_settings();
        let kafka = pushservice_testkit::kafka_settings();
        let topics = pushservice_testkit::topics();
        pushservice_testkit::create_topics(&kafka, &topics).await;
        let store = pushservice_testkit::store(&mongo).await;
        let publisher =
            RealtimePublisher::new(&kafka, topics.realtime.name.clone()).expect("publisher");
        World {
            mongo,
            kafka,
            topics,
            store,
            publisher,
        }
    }

    /// Gives `site` an API key and starts `pushapi` on the test's database and topics:
    /// returns the key, the API's base URL, its stop signal and its task.
    async fn pushapi(
        &self,
        site: ObjectId,
    ) -> (
        pushservice_control::NewApiKey,
        String,
        CancellationToken,
        JoinHandle<anyhow::Result<()>>,
    ) {
        use clap::Parser as _;
        let key = pushservice_control::api_keys::generate(site).expect("key");
        self.store
            .add_api_key(site, &key.record)
            .await
            .expect("key stored");
        let api = pushservice_pushapi::ApiArgs::try_parse_from([
            "pushapi".to_owned(),
            "--api-admin-token=test-admin-token-0123456789abcdef".to_owned(),
            format!("--mongodb-url={}", self.mongo.url),
            format!("--kafka-brokers={}", self.kafka.brokers),
            format!("--topic-raw-push={}", self.topics.raw_push.name),
            format!("--topic-realtime={}", self.topics.realtime.name),
        ])
        .expect("flags")
        .settings()
        .expect("settings");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let stop = CancellationToken::new();
        let signal = stop.clone();
        let task = tokio::spawn(pushservice_pushapi::serve(api, listener, async move {
            signal.cancelled().await;
        }));
        (key, base, stop, task)
    }

    fn config(&self, extra: &[&str]) -> GatewayConfig {
        use clap::Parser as _;
        let mut args = vec![
            "gateway".to_owned(),
            format!("--mongodb-url={}", self.mongo.url),
            format!("--kafka-brokers={}", self.kafka.brokers),
            format!("--topic-realtime={}", self.topics.realtime.name),
            format!("--topic-raw-push={}", self.topics.raw_push.name),
            format!(
                "--topic-realtime-partitions={}",
                self.topics.realtime.partitions
            ),
            format!(
                "--gateway-history-group={}",
                pushservice_testkit::unique_name("history")
            ),
            "--gateway-shutdown-spread-ms=200".to_owned(),
        ];
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        GatewayArgs::parse_from(args).settings().expect("settings")
    }

    /// Starts a gateway; returns its address, its stop signal and its task.
    async fn gateway(&self, extra: &[&str]) -> Gateway {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let stop = CancellationToken::new();
        let signal = stop.clone();
        let config = self.config(extra);
        let task =
            tokio::spawn(async move {
                let result = pushservice_gateway::serve(config, listener, async move {
                    signal.cancelled().await
                })
                .await;
                if let Err(e) = &result {
                    eprintln!("gateway failed: {e:#}");
                }
                result
            });
        // Ready when it answers.
        let client = reqwest::Client::new();
        for _ in 0..200 {
            assert!(!task.is_finished(), "the gateway stopped while starting");
            if client
                .get(format!("http://{addr}/healthz"))
                .send()
                .await
                .is_ok()
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Gateway { addr, stop, task }
    }

    async fn site(&self, history_size: Option<u32>) -> (ObjectId, String) {
        self.site_with(history_size, None).await
    }

    async fn site_with(
        &self,
        history_size: Option<u32>,
        history_ttl_seconds: Option<u32>,
    ) -> (ObjectId, String) {
        let site =
            pushservice_control::sites::new_site("mailto:ops@example.com", &[]).expect("site");
        self.store.insert_site(&site).await.expect("insert site");
        let secret = pushservice_realtime::new_secret();
        let settings = RealtimeSettings {
            secrets: vec![secret.clone()],
            history_size,
            history_ttl_seconds,
        };
        self.store
            .set_realtime_settings(site.id, &settings)
            .await
            .expect("settings");
        (site.id, secret)
    }

    async fn token(&self, site: ObjectId, user: &str, channels: &[&str]) -> String {
        pushservice_control::realtime::token(
            &self.store,
            site,
            user,
            channels.iter().map(|c| (*c).to_owned()).collect(),
            Duration::from_secs(600),
        )
        .await
        .expect("token")
        .0
    }

    async fn publish(&self, site: ObjectId, channel: &str, n: u32) {
        let data =
            serde_json::value::RawValue::from_string(json!({ "n": n }).to_string()).expect("raw");
        self.publisher
            .publish(site, channel, data, false, None)
            .await
            .expect("publish");
    }
}

struct Gateway {
    addr: std::net::SocketAddr,
    stop: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
}

/// An SSE client reading events as (id, event, data).
struct Sse {
    stream: std::pin::Pin<Box<dyn futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    buffer: String,
}

#[derive(Debug, Clone)]
struct Event {
    id: Option<String>,
    event: String,
    data: Value,
}

impl Sse {
    async fn connect(
        gateway: &Gateway,
        token: &str,
        channels: &str,
        last_event_id: Option<&str>,
    ) -> Result<Sse, (u16, Value)> {
        let mut request = reqwest::Client::new()
            .get(format!(
                "http://{}/v1/realtime/sse?channels={channels}",
                gateway.addr
            ))
            .bearer_auth(token);
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id);
        }
        let response = request.send().await.expect("SSE request");
        if !response.status().is_success() {
            let status = response.status().as_u16();
            return Err((status, response.json().await.unwrap_or(Value::Null)));
        }
        Ok(Sse {
            stream: Box::pin(response.bytes_stream()),
            buffer: String::new(),
        })
    }

    async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut event = Event {
                    id: None,
                    event: String::new(),
                    data: Value::Null,
                };
                for line in block.lines() {
                    if let Some(id) = line.strip_prefix("id: ") {
                        event.id = Some(id.to_owned());
                    } else if let Some(name) = line.strip_prefix("event: ") {
                        event.event = name.to_owned();
                    } else if let Some(data) = line.strip_prefix("data: ") {
                        event.data = serde_json::from_str(data).expect("event data is JSON");
                    }
                }
                if event.event.is_empty() {
                    continue; // A comment (heartbeat) or a retry line.
                }
                return Some(event);
            }
            let chunk = tokio::time::timeout(Duration::from_secs(20), self.stream.next())
                .await
                .ok()??
                .ok()?;
            self.buffer
                .push_str(std::str::from_utf8(&chunk).expect("UTF-8"));
        }
    }

    /// The next `n` message events.
    async fn messages(&mut self, n: usize) -> Vec<Event> {
        let mut got = Vec::new();
        while got.len() < n {
            let event = self.next().await.expect("stream ended early");
            if event.event == "message" {
                got.push(event);
            }
        }
        got
    }
}

/// What the gateway answers a hand-written HTTP/1.1 request on the SSE route, read until the
/// gateway closes the connection (within `within`).
async fn raw_sse(gateway: &Gateway, request_headers: &str, within: Duration) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(gateway.addr)
        .await
        .expect("connect");
    stream
        .write_all(
            format!("GET /v1/realtime/sse HTTP/1.1\r\nHost: gw\r\n{request_headers}\r\n")
                .as_bytes(),
        )
        .await
        .expect("write the request");
    let mut answer = Vec::new();
    tokio::time::timeout(within, stream.read_to_end(&mut answer))
        .await
        .expect("the gateway closes the connection after its answer")
        .expect("read the answer");
    String::from_utf8(answer).expect("UTF-8")
}

/// A hand-written HTTP/1.1 SSE request read up to its welcome event: the open connection and
/// everything read so far (head included).
async fn raw_sse_welcome(
    gateway: &Gateway,
    token: &str,
    channels: &str,
) -> (tokio::net::TcpStream, Vec<u8>) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(gateway.addr)
        .await
        .expect("connect");
    stream
        .write_all(
            format!(
                "GET /v1/realtime/sse?channels={channels} HTTP/1.1\r\nHost: gw\r\n\
                 Authorization: Bearer {token}\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .expect("write the request");
    let mut read = Vec::new();
    while !String::from_utf8_lossy(&read).contains("event: welcome") {
        let mut buf = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
            .await
            .expect("the welcome in time")
            .expect("read");
        assert_ne!(n, 0, "closed before the welcome: {read:?}");
        read.extend_from_slice(&buf[..n]);
    }
    (stream, read)
}

type WsStream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn ws_connect(gateway: &Gateway) -> WsStream {
    let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/v1/realtime/ws", gateway.addr))
        .await
        .expect("WebSocket connects");
    ws
}

async fn ws_send(ws: &mut WsStream, frame: Value) {
    ws.send(WsMessage::text(frame.to_string()))
        .await
        .expect("send");
}

/// The next JSON frame (skipping pings).
async fn ws_next(ws: &mut WsStream) -> Option<Value> {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(20), ws.next())
            .await
            .ok()??
            .ok()?;
        match frame {
            WsMessage::Text(text) => return serde_json::from_str(text.as_str()).ok(),
            WsMessage::Close(_) => return None,
            _ => {}
        }
    }
}

/// Frames until one of type `kind`; returns it and the messages seen on the way.
async fn ws_until(ws: &mut WsStream, kind: &str) -> (Value, Vec<Value>) {
    let mut messages = Vec::new();
    loop {
        let frame = ws_next(ws)
            .await
            .unwrap_or_else(|| panic!("no {kind} frame"));
        if frame["type"] == kind {
            return (frame, messages);
        }
        if frame["type"] == "message" {
            messages.push(frame);
        }
    }
}

fn numbers(messages: &[Value]) -> Vec<u64> {
    messages
        .iter()
        .map(|m| m["data"]["n"].as_u64().expect("n"))
        .collect()
}

fn event_numbers(events: &[Event]) -> Vec<u64> {
    events
        .iter()
        .map(|e| e.data["data"]["n"].as_u64().expect("n"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_gateways_deliver_in_order_and_a_killed_ones_client_recovers_elsewhere() {
    let world = World::new().await;
    let (site, _) = world.site(None).await;
    let token = world.token(site, "u1", &["room:*"]).await;
    let a = world.gateway(&[]).await;
    let b = world.gateway(&[]).await;

    let mut sse = Sse::connect(&a, &token, "room:1", None).await.expect("SSE");
    let welcome = sse.next().await.expect("welcome");
    assert_eq!(welcome.event, "welcome");
    assert_eq!(welcome.data["user"], "u1");
    let mut ws = ws_connect(&b).await;
    ws_send(
        &mut ws,
        json!({"type": "auth", "token": token, "channels": ["room:1"]}),
    )
    .await;
    let (hello, _) = ws_until(&mut ws, "welcome").await;
    assert_eq!(hello["user"], "u1");
    ws_until(&mut ws, "subscribed").await; // user:u1
    let (joined, _) = ws_until(&mut ws, "subscribed").await;
    assert_eq!(joined["channel"], "room:1");

    for n in 0..20 {
        world.publish(site, "room:1", n).await;
    }
    let over_sse = sse.messages(20).await;
    assert_eq!(event_numbers(&over_sse), (0..20).collect::<Vec<_>>());
    let mut over_ws = Vec::new();
    while over_ws.len() < 20 {
        let frame = ws_next(&mut ws).await.expect("message");
        if frame["type"] == "message" {
            over_ws.push(frame);
        }
    }
    assert_eq!(numbers(&over_ws), (0..20).collect::<Vec<_>>());
    let last_id = over_sse.last().and_then(|e| e.id.clone()).expect("id");

    // Gateway A dies; ten messages are published while its client is away.
    a.task.abort();
    drop(sse);
    for n in 20..30 {
        world.publish(site, "room:1", n).await;
    }
    // B was running all along: its in-memory history has them.
    let mut sse = Sse::connect(&b, &token, "room:1", Some(&last_id))
        .await
        .expect("SSE on B");
    let welcome = sse.next().await.expect("welcome");
    assert_eq!(
        welcome.data["channels"][1]["recovered"], true,
        "{welcome:?}"
    );
    let recovered = sse.messages(10).await;
    assert_eq!(event_numbers(&recovered), (20..30).collect::<Vec<_>>());
    world.publish(site, "room:1", 30).await;
    let live = sse.messages(1).await;
    assert_eq!(event_numbers(&live), [30]);
    let resume_after_30 = live[0].id.clone().expect("id");
    drop(sse);

    // Five more while away; a gateway started after them recovers from MongoDB.
    for n in 31..36 {
        world.publish(site, "room:1", n).await;
    }
    let c = world.gateway(&[]).await;
    let mut sse = Sse::connect(&c, &token, "room:1", Some(&resume_after_30))
        .await
        .expect("SSE on C");
    let welcome = sse.next().await.expect("welcome");
    assert_eq!(
        welcome.data["channels"][1]["recovered"], true,
        "{welcome:?}"
    );
    world.publish(site, "room:1", 36).await;
    let recovered = sse.messages(6).await;
    // 31..=35 from the store, then 36 live: none lost, none twice at the seam.
    assert_eq!(event_numbers(&recovered), (31..37).collect::<Vec<_>>());

    // The WebSocket on B saw everything, in order, once.
    while over_ws.len() < 37 {
        let frame = ws_next(&mut ws).await.expect("message");
        if frame["type"] == "message" {
            over_ws.push(frame);
        }
    }
    assert_eq!(numbers(&over_ws), (0..37).collect::<Vec<_>>());

    b.stop.cancel();
    c.stop.cancel();
    let (frame, _) = ws_until(&mut ws, "reconnect").await;
    assert_eq!(frame["reason"], "shutdown");
    // The SSE client on C is told too, and then its response ends.
    let reconnect = sse.next().await.expect("a reconnect event");
    assert_eq!(
        (reconnect.event.as_str(), &reconnect.data["reason"]),
        ("reconnect", &json!("shutdown"))
    );
    let mut rest = Vec::new();
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(chunk) = sse.stream.next().await {
            rest.push(chunk.map(|c| c.len()));
        }
    })
    .await;
    assert!(ended.is_ok(), "the SSE response did not end at shutdown");
    assert!(
        rest.iter().all(Result::is_ok),
        "the SSE response ended cleanly (its last chunk), not cut: {rest:?}"
    );
    b.task.await.expect("join").expect("B stops cleanly");
    c.task.await.expect("join").expect("C stops cleanly");
    pushservice_testkit::remove_test_data(&world.store, &world.kafka, &world.topics).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn history_beyond_the_limit_is_not_recovered_and_tokens_and_sites_are_enforced() {
    let world = World::new().await;
    let (site, secret) = world.site(Some(3)).await;
    let (other_site, _) = world.site(None).await;
    let token = world.token(site, "u1", &["room:*"]).await;
    let gateway = world.gateway(&[]).await;

    // A client that saw message 0, then missed ten: the site keeps three, so no recovery.
    let mut sse = Sse::connect(&gateway, &token, "room:1", None)
        .await
        .expect("SSE");
    sse.next().await.expect("welcome");
    world.publish(site, "room:1", 0).await;
    let first = sse.messages(1).await;
    drop(sse);
    for n in 1..11 {
        world.publish(site, "room:1", n).await;
    }
    let mut sse = Sse::connect(&gateway, &token, "room:1", first[0].id.as_deref())
        .await
        .expect("SSE again");
    let welcome = sse.next().await.expect("welcome");
    assert_eq!(
        welcome.data["channels"][1]["recovered"], false,
        "{welcome:?}"
    );
    // Live messages still flow and nothing is replayed from before the reconnect (the
    // gateway may still have been dispatching the last of 1..=10 then: those come live).
    // Another site's message on a channel of the same name never arrives.
    world.publish(site, "room:1", 11).await;
    world.publish(other_site, "room:1", 99).await;
    world.publish(site, "room:1", 12).await;
    let mut live = Vec::new();
    while live.last() != Some(&12) {
        live.extend(event_numbers(&sse.messages(1).await));
    }
    assert!(
        live.windows(2).all(|w| w[0] < w[1]),
        "in order, once: {live:?}"
    );
    assert!(live.ends_with(&[11, 12]) && !live.contains(&99), "{live:?}");
    assert!(live.len() <= 12, "{live:?}");
    drop(sse);

    // Refusals name their reason.
    let answer = raw_sse(
        &gateway,
        "Authorization: Bearer garbage\r\n",
        Duration::from_secs(10),
    )
    .await;
    let (head, body) = answer.split_once("\r\n\r\n").expect("a head and a body");
    assert!(
        head.starts_with("HTTP/1.1 401 Unauthorized\r\n"),
        "{answer}"
    );
    assert!(
        head.contains(&format!("content-length: {}", body.len())),
        "{answer}"
    );
    assert_eq!(
        serde_json::from_str::<Value>(body).expect("JSON")["error"]["code"],
        "malformed"
    );
    let answer = raw_sse(&gateway, "", Duration::from_secs(10)).await;
    assert!(answer.contains("\"missing_token\""), "{answer}");
    // An accepted one is an event stream in chunks: the size line, then the events.
    {
        let (_stream, read) = raw_sse_welcome(&gateway, &token, "room:1").await;
        let text = String::from_utf8_lossy(&read);
        let (head, body) = text.split_once("\r\n\r\n").expect("a head");
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(head.contains("content-type: text/event-stream"), "{head}");
        assert!(head.contains("transfer-encoding: chunked"), "{head}");
        let (size, events) = body.split_once("\r\n").expect("a chunk size line");
        let size = usize::from_str_radix(size, 16).expect("a hex chunk size");
        assert!(
            events.len() >= size && events[..size].starts_with("retry: 1000\n"),
            "{body}"
        );
    }
    let (status, body) = Sse::connect(&gateway, "garbage", "", None)
        .await
        .err()
        .expect("refused");
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("malformed"))
    );
    let expired = pushservice_realtime::mint(
        &secret,
        &pushservice_realtime::Claims {
            site: site.to_hex(),
            sub: "u1".into(),
            channels: vec![],
            exp: 1_000_000,
            iat: None,
            nbf: None,
        },
    );
    let (status, body) = Sse::connect(&gateway, &expired, "", None)
        .await
        .err()
        .expect("refused");
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("expired"))
    );
    let forged = pushservice_realtime::mint(
        "not-the-secret",
        &pushservice_realtime::Claims {
            site: site.to_hex(),
            sub: "u1".into(),
            channels: vec!["*".into()],
            exp: u64::MAX / 2,
            iat: None,
            nbf: None,
        },
    );
    let (status, body) = Sse::connect(&gateway, &forged, "", None)
        .await
        .err()
        .expect("refused");
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("bad_signature"))
    );
    let (status, body) = Sse::connect(&gateway, &token, "secret:1", None)
        .await
        .err()
        .expect("refused");
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("channel_not_allowed"))
    );
    // Another user's channel, over WebSocket.
    let mut ws = ws_connect(&gateway).await;
    ws_send(&mut ws, json!({"type": "auth", "token": token})).await;
    ws_until(&mut ws, "subscribed").await;
    ws_send(&mut ws, json!({"type": "subscribe", "channel": "user:u2"})).await;
    let (error, _) = ws_until(&mut ws, "error").await;
    assert_eq!(error["code"], "channel_not_allowed");
    // A WebSocket that does not authenticate in time is closed with a reason.
    let quick = world.gateway(&["--gateway-auth-timeout-ms=300"]).await;
    let mut silent = ws_connect(&quick).await;
    let (error, _) = ws_until(&mut silent, "error").await;
    assert_eq!(error["code"], "auth_timeout");
    assert!(
        ws_next(&mut silent).await.is_none(),
        "closed after the reason"
    );

    gateway.stop.cancel();
    quick.stop.cancel();
    gateway.task.await.expect("join").expect("clean stop");
    quick.task.await.expect("join").expect("clean stop");
    pushservice_testkit::remove_test_data(&world.store, &world.kafka, &world.topics).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_session_cap_closes_the_oldest_and_a_slow_client_is_cut_alone() {
    let world = World::new().await;
    let (site, _) = world.site(None).await;
    let gateway = world
        .gateway(&[
            "--gateway-max-sessions-per-user=2",
            "--gateway-send-queue=32",
        ])
        .await;
    let token = world.token(site, "u1", &["room:*"]).await;

    let mut sessions = Vec::new();
    for _ in 0..3 {
        let mut ws = ws_connect(&gateway).await;
        ws_send(&mut ws, json!({"type": "auth", "token": token})).await;
        ws_until(&mut ws, "subscribed").await;
        sessions.push(ws);
    }
    let (kicked, _) = ws_until(&mut sessions[0], "error").await;
    assert_eq!(kicked["code"], "session_limit");
    assert!(ws_next(&mut sessions[0]).await.is_none());

    // A slow reader (never reads) and a fast one in the same channel; large messages fill the
    // slow one's socket buffers, then its queue of 32.
    let reader_token = world.token(site, "fast", &["room:*"]).await;
    let slow_token = world.token(site, "slow", &["room:*"]).await;
    let mut fast = ws_connect(&gateway).await;
    ws_send(
        &mut fast,
        json!({"type": "auth", "token": reader_token, "channels": ["room:big"]}),
    )
    .await;
    ws_until(&mut fast, "subscribed").await;
    ws_until(&mut fast, "subscribed").await;
    let mut slow = ws_connect(&gateway).await;
    ws_send(
        &mut slow,
        json!({"type": "auth", "token": slow_token, "channels": ["room:big"]}),
    )
    .await;
    ws_until(&mut slow, "subscribed").await;
    ws_until(&mut slow, "subscribed").await;
    // And an SSE client that stops reading after its welcome.
    let slow_sse_token = world.token(site, "slow-sse", &["room:*"]).await;
    let (mut slow_sse, _) = raw_sse_welcome(&gateway, &slow_sse_token, "room:big").await;
    let big = "x".repeat(60_000);
    let count = 400;
    // In lockstep with the fast reader (each message read before the next is published), so
    // only the reader that never reads can fall behind, however loaded the machine is.
    let mut got = Vec::new();
    for n in 0..count {
        let data =
            serde_json::value::RawValue::from_string(json!({"n": n, "pad": big}).to_string())
                .expect("raw");
        world
            .publisher
            .publish(site, "room:big", data, false, None)
            .await
            .expect("publish");
        loop {
            let frame = ws_next(&mut fast)
                .await
                .expect("the fast client keeps receiving");
            if frame["type"] == "message" {
                got.push(frame["data"]["n"].as_u64().expect("n"));
                break;
            }
        }
    }
    assert_eq!(got, (0..count as u64).collect::<Vec<_>>());
    let (cut, _) = ws_until(&mut slow, "error").await;
    assert_eq!(cut["code"], "too_slow");
    // The SSE one is cut too: what it has not read yet ends, and not with all the messages.
    let mut rest = Vec::new();
    tokio::time::timeout(
        Duration::from_secs(60),
        tokio::io::AsyncReadExt::read_to_end(&mut slow_sse, &mut rest),
    )
    .await
    .expect("the slow SSE client's connection was closed")
    .ok();
    let received = String::from_utf8_lossy(&rest)
        .matches("event: message")
        .count();
    assert!(
        received < count,
        "the slow SSE client got all {received} messages"
    );

    gateway.stop.cancel();
    gateway.task.await.expect("join").expect("clean stop");
    pushservice_testkit::remove_test_data(&world.store, &world.kafka, &world.topics).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_site_mints_tokens_and_publishes_through_pushapi() {
    let world = World::new().await;
    let (site, _) = world.site(None).await;
    let (key, base, stop_api, api_task) = world.pushapi(site).await;
    let gateway = world.gateway(&["--gateway-presence-interval-ms=200"]).await;
    let other = world.gateway(&["--gateway-presence-interval-ms=200"]).await;
    let http = reqwest::Client::new();

    let minted: Value = http
        .post(format!("{base}/v1/sites/{site}/realtime/tokens"))
        .bearer_auth(&key.secret)
        .json(&json!({"user": "u-42", "channels": ["room:*"], "ttlSeconds": 600}))
        .send()
        .await
        .expect("token request")
        .json()
        .await
        .expect("JSON");
    let token = minted["token"].as_str().expect("token").to_owned();
    assert!(
        minted["expiresAt"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    );

    let mut ws = ws_connect(&gateway).await;
    ws_send(
        &mut ws,
        json!({"type": "auth", "token": token, "channels": ["room:lobby"]}),
    )
    .await;
    ws_until(&mut ws, "subscribed").await;
    ws_until(&mut ws, "subscribed").await;
    for (channel, text) in [("room:lobby", "hello room"), ("user:u-42", "hello you")] {
        let answer = http
            .post(format!(
                "{base}/v1/sites/{site}/channels/{channel}/messages"
            ))
            .bearer_auth(&key.secret)
            .json(&json!({"data": {"text": text}, "ack": true}))
            .send()
            .await
            .expect("publish");
        assert_eq!(answer.status(), 202);
        let published: Value = answer.json().await.expect("JSON");
        let frame = loop {
            let frame = ws_next(&mut ws).await.expect("message");
            if frame["type"] == "message" {
                break frame;
            }
        };
        assert_eq!(frame["channel"], channel);
        assert_eq!(frame["data"]["text"], text);
        assert_eq!(frame["ack"], true);
        assert_eq!(frame["id"], published["id"]);
        ws_send(&mut ws, json!({"type": "ack", "ids": [frame["id"]]})).await;
        // The ack shows in the message's figures (written by the gateway every second).
        let path = format!(
            "{base}/v1/sites/{site}/realtime/messages/{}",
            published["id"].as_str().expect("id")
        );
        let mut figures = Value::Null;
        for _ in 0..100 {
            figures = http
                .get(&path)
                .bearer_auth(&key.secret)
                .send()
                .await
                .expect("figures")
                .json()
                .await
                .expect("JSON");
            if figures["acked"] == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(figures["written"], 1, "{figures}");
        assert_eq!(figures["acked"], 1, "{figures}");
    }
    let stats: Value = http
        .get(format!("{base}/v1/sites/{site}/realtime/stats?period=hour"))
        .bearer_auth(&key.secret)
        .send()
        .await
        .expect("stats")
        .json()
        .await
        .expect("JSON");
    let bucket = &stats["buckets"][0];
    assert_eq!(
        (bucket["messages"].as_u64(), bucket["acks"].as_u64()),
        (Some(2), Some(2)),
        "{stats}"
    );
    // Presence over both gateways: u-42 twice (one on each), u-7 once.
    let mut second = ws_connect(&other).await;
    ws_send(
        &mut second,
        json!({"type": "auth", "token": token, "channels": ["room:lobby"]}),
    )
    .await;
    ws_until(&mut second, "subscribed").await;
    ws_until(&mut second, "subscribed").await;
    let token_7 = world.token(site, "u-7", &["room:*"]).await;
    let mut third = ws_connect(&other).await;
    ws_send(
        &mut third,
        json!({"type": "auth", "token": token_7, "channels": ["room:other"]}),
    )
    .await;
    ws_until(&mut third, "subscribed").await;
    ws_until(&mut third, "subscribed").await;
    let get = |path: String| {
        let http = http.clone();
        let key = key.secret.clone();
        async move {
            http.get(path)
                .bearer_auth(key)
                .send()
                .await
                .expect("presence")
                .json::<Value>()
                .await
                .expect("JSON")
        }
    };
    let expected = json!({"connections": 3, "users": 2, "gateways": 2,
        "channel": {"name": "room:lobby", "connections": 2, "users": 1}});
    let mut presence = Value::Null;
    for _ in 0..100 {
        presence = get(format!(
            "{base}/v1/sites/{site}/presence?channel=room:lobby"
        ))
        .await;
        if presence == expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(presence, expected);
    let user = get(format!("{base}/v1/sites/{site}/users/u-42/presence")).await;
    assert_eq!(
        user,
        json!({"user": "u-42", "online": true, "connections": 2, "gateways": 2})
    );
    let nobody = get(format!("{base}/v1/sites/{site}/users/u-9/presence")).await;
    assert_eq!(nobody["online"], false);
    // A closed connection leaves the figures.
    drop(third);
    let mut presence = Value::Null;
    for _ in 0..100 {
        presence = get(format!("{base}/v1/sites/{site}/presence")).await;
        if presence["users"] == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        presence,
        json!({"connections": 2, "users": 1, "gateways": 2})
    );

    // A bad channel name and oversized data are refused with the field named.
    let answer = http
        .post(format!(
            "{base}/v1/sites/{site}/channels/bad%20name/messages"
        ))
        .bearer_auth(&key.secret)
        .json(&json!({"data": 1}))
        .send()
        .await
        .expect("publish");
    assert_eq!(answer.status(), 400);
    let error: Value = answer.json().await.expect("JSON");
    assert_eq!(error["error"]["field"], "channel");
    // A rotated secret keeps the token working; a second rotation retires it.
    for _ in 0..2 {
        let rotated = http
            .post(format!("{base}/v1/sites/{site}/realtime/secret"))
            .bearer_auth(&key.secret)
            .send()
            .await
            .expect("rotate");
        assert_eq!(rotated.status(), 201);
    }
    let stale = world.gateway(&["--gateway-site-cache-ms=0"]).await;
    let (status, body) = Sse::connect(&stale, &token, "", None)
        .await
        .err()
        .expect("refused after two rotations");
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("bad_signature"))
    );

    gateway.stop.cancel();
    other.stop.cancel();
    stale.stop.cancel();
    stop_api.cancel();
    gateway.task.await.expect("join").expect("clean stop");
    stale.task.await.expect("join").expect("clean stop");
    other.task.await.expect("join").expect("clean stop");
    api_task.await.expect("join").expect("API stops cleanly");
    pushservice_testkit::remove_test_data(&world.store, &world.kafka, &world.topics).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_offline_user_gets_the_fallback_push_once_and_an_online_one_who_acks_gets_none() {
    let world = World::new().await;
    let (site, _) = world.site(None).await;
    let (key, base, stop_api, api_task) = world.pushapi(site).await;
    // Two gateways: both decide fallbacks; the claim makes one push out of two candidates.
    let gateway = world.gateway(&[]).await;
    let other = world.gateway(&[]).await;
    let http = reqwest::Client::new();
    let publish = |user: &'static str| {
        let (http, base, key) = (http.clone(), base.clone(), key.secret.clone());
        async move {
            let answer = http
                .post(format!(
                    "{base}/v1/sites/{site}/channels/user:{user}/messages"
                ))
                .bearer_auth(key)
                .json(&json!({
                    "data": {"text": "your order is ready"},
                    "fallback": {"push": {"title": "Order ready"}, "ackTimeoutMs": 3000},
                }))
                .send()
                .await
                .expect("publish");
            assert_eq!(answer.status(), 202);
            let published: Value = answer.json().await.expect("JSON");
            let push_id = published["fallbackPushId"]
                .as_str()
                .expect("push id")
                .to_owned();
            (published, ObjectId::parse_str(push_id).expect("id"))
        }
    };

    // Online and acking: no push.
    let token = world.token(site, "online", &[]).await;
    let mut ws = ws_connect(&gateway).await;
    ws_send(&mut ws, json!({"type": "auth", "token": token})).await;
    ws_until(&mut ws, "subscribed").await;
    let (_, online_push) = publish("online").await;
    let frame = loop {
        let frame = ws_next(&mut ws).await.expect("message");
        if frame["type"] == "message" {
            break frame;
        }
    };
    assert_eq!(frame["ack"], true);
    ws_send(&mut ws, json!({"type": "ack", "ids": [frame["id"]]})).await;
    // Offline: nobody to ack.
    let (_, offline_push) = publish("offline").await;

    let status = |push: ObjectId| {
        let store = world.store.clone();
        async move {
            store
                .push(push)
                .await
                .expect("push")
                .expect("exists")
                .status
        }
    };
    let mut decided = (status(online_push).await, status(offline_push).await);
    for _ in 0..150 {
        decided = (status(online_push).await, status(offline_push).await);
        if decided.0 != pushservice_model::PushStatus::Pending
            && decided.1 != pushservice_model::PushStatus::Pending
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        decided,
        (
            pushservice_model::PushStatus::Canceled,
            pushservice_model::PushStatus::Processing
        )
    );
    // Exactly one trigger on the raw-push topic, for the offline user's push.
    let triggers = pushservice_kafka::read_topic(
        &world.kafka,
        &world.topics.raw_push.name,
        pushservice_kafka::ReadFrom::Beginning,
        100,
        Duration::from_secs(3),
    )
    .expect("read raw-push");
    let pushes: Vec<String> = triggers
        .iter()
        .filter_map(|m| m.payload.as_ref())
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect();
    assert_eq!(pushes.len(), 1, "{pushes:?}");
    assert!(pushes[0].contains(&offline_push.to_hex()), "{pushes:?}");

    gateway.stop.cancel();
    other.stop.cancel();
    stop_api.cancel();
    gateway.task.await.expect("join").expect("clean stop");
    other.task.await.expect("join").expect("clean stop");
    api_task.await.expect("join").expect("API stops cleanly");
    pushservice_testkit::remove_test_data(&world.store, &world.kafka, &world.topics).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lifetimes_end_with_a_reconnect_floods_are_cut_and_old_history_is_not_recovered() {
    let world = World::new().await;
    let (site, _) = world.site_with(None, Some(1)).await;
    let token = world.token(site, "u1", &["room:*"]).await;
    let short = world
        .gateway(&[
            "--gateway-max-lifetime-secs=1",
            "--gateway-client-rate-per-sec=1",
            "--gateway-client-burst=3",
        ])
        .await;

    // A connection past its lifetime is told to reconnect, then closed (1012).
    let mut ws = ws_connect(&short).await;
    ws_send(&mut ws, json!({"type": "auth", "token": token})).await;
    ws_until(&mut ws, "subscribed").await;
    let (reconnect, _) = ws_until(&mut ws, "reconnect").await;
    assert_eq!(reconnect["reason"], "lifetime");
    assert!(reconnect["afterMs"].as_u64().is_some_and(|ms| ms <= 2_000));
    let mut sse = Sse::connect(&short, &token, "", None).await.expect("SSE");
    loop {
        let event = sse.next().await.expect("an event before the end");
        if event.event == "reconnect" {
            assert_eq!(event.data["reason"], "lifetime");
            break;
        }
    }
    assert!(
        sse.next().await.is_none(),
        "the stream ends after reconnect"
    );

    // Frames beyond the burst: rate_limited, then closed.
    let mut flood = ws_connect(&short).await;
    ws_send(&mut flood, json!({"type": "auth", "token": token})).await;
    ws_until(&mut flood, "subscribed").await;
    for _ in 0..10 {
        let _ = flood
            .send(WsMessage::text(json!({"type": "ping"}).to_string()))
            .await;
    }
    let (error, _) = ws_until(&mut flood, "error").await;
    assert_eq!(error["code"], "rate_limited");

    // History older than the site's TTL (1 s) is not recovered, though still in memory.
    let gateway = world.gateway(&[]).await;
    let mut sse = Sse::connect(&gateway, &token, "room:1", None)
        .await
        .expect("SSE");
    sse.next().await.expect("welcome");
    world.publish(site, "room:1", 0).await;
    let seen = sse.messages(1).await;
    drop(sse);
    world.publish(site, "room:1", 1).await;
    tokio::time::sleep(Duration::from_millis(2_200)).await;
    let mut sse = Sse::connect(&gateway, &token, "room:1", seen[0].id.as_deref())
        .await
        .expect("SSE again");
    let welcome = sse.next().await.expect("welcome");
    assert_eq!(
        welcome.data["channels"][1]["recovered"], false,
        "{welcome:?}"
    );
    drop(sse);

    short.stop.cancel();
    gateway.stop.cancel();
    short.task.await.expect("join").expect("clean stop");
    gateway.task.await.expect("join").expect("clean stop");
    pushservice_testkit::remove_test_data(&world.store, &world.kafka, &world.topics).await;
}
