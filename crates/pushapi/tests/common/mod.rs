//! A world for API tests: the real Kafka broker and MongoDB-protocol server, `pushapi`
//! serving over real HTTP on a loopback port, and (when asked) a verifying push-service
//! simulator with a parser and senders, so a push created through the API really arrives.

#![allow(dead_code)] // Each test file uses a different part.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser as _;
use pushservice_config::{KafkaSettings, MongoSettings, Topics};
use pushservice_model::{ObjectId, Platform};
use pushservice_push_sink::{
    ApnsKey, Behaviour, FcmAccount, Latency, Protocol, Sink, SinkConfig, Verify,
};
use pushservice_seed::{
    ApnsTestKey, apns_test_key, device_token, fcm_test_service_account, subscriber_keys,
};
use pushservice_store::Store;
use pushservice_testkit::{
    create_topics, env_for, kafka_settings, mongo_settings, store, topics, unique_name,
};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::sync::oneshot;

pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789abcdef";
pub const KEY_SEED: &[u8] = b"api-test-seed";
pub const SUBJECT: &str = "mailto:api-test@example.com";
pub const APNS_TEAM: &str = "APITEST001";
pub const APNS_TOPIC: &str = "com.example.apitest";
pub const FCM_PROJECT: &str = "api-test-project";

/// What a world runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// A push-service simulator, a parser and this many senders (0: no delivery at all).
    pub senders: usize,
    /// `SENDER_ALLOW_PRIVATE_ENDPOINTS` for the API (the simulator is on loopback).
    pub allow_private: bool,
    /// `API_BODY_LIMIT_BYTES`.
    pub body_limit: usize,
    /// Simulator latency.
    pub latency: Latency,
    /// `API_PUBLIC_RATE_PER_SEC` and `API_PUBLIC_BURST`.
    pub public_rate: (u32, u32),
    /// The parser's `QUERY_BATCH_SIZE` (1: one subscriber per MongoDB round trip, a fan-out
    /// that lasts); the shared default when `None`.
    pub parser_query_batch_size: Option<u32>,
    /// `METRICS_ADDR` for the API (its own telemetry address).
    pub api_metrics_addr: Option<std::net::SocketAddr>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            senders: 0,
            allow_private: true,
            body_limit: 256 * 1024,
            latency: Latency::default(),
            public_rate: (100_000, 100_000),
            parser_query_batch_size: None,
            api_metrics_addr: None,
        }
    }
}

/// Everything a test talks to.
pub struct World {
    pub mongo: MongoSettings,
    pub kafka: KafkaSettings,
    pub topics: Topics,
    pub store: Store,
    pub sink: Option<Sink>,
    pub cert: PathBuf,
    pub base: String,
    pub http: reqwest::Client,
    pub apns_key: ApnsTestKey,
    pub service_account: String,
    stops: Vec<oneshot::Sender<()>>,
    tasks: Vec<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

/// The flags form of the test environment (in-process daemons parse flags, not the
/// process environment shared by every test).
fn flags(mongo: &MongoSettings, kafka: &KafkaSettings, topics: &Topics) -> Vec<String> {
    env_for(mongo, kafka, topics)
        .into_iter()
        .filter(|(key, _)| key != "PUSHSERVICE_ENV_FILE")
        .map(|(key, value)| format!("--{}={value}", key.to_lowercase().replace('_', "-")))
        .collect()
}

impl World {
    pub async fn start(options: Options) -> World {
        pushservice_testkit::show_daemon_logs();
        let (mongo, kafka, topics) = (mongo_settings(), kafka_settings(), topics());
        create_topics(&kafka, &topics).await;
        let store = store(&mongo).await;
        store.ensure_indexes().await.expect("indexes");
        let apns_key = apns_test_key().expect("APNs key");
        let service_account =
            fcm_test_service_account(FCM_PROJECT, "https://oauth2.googleapis.com/token")
                .expect("service account");
        let cert = std::env::temp_dir().join(format!("{}.pem", unique_name("api-sink-cert")));
        let mut stops = Vec::new();
        let mut tasks = Vec::new();
        let base_flags = flags(&mongo, &kafka, &topics);

        let sink = if options.senders > 0 {
            let sink = Sink::start(SinkConfig {
                protocol: Protocol::Tls,
                cert_out: Some(cert.clone()),
                behaviour: Behaviour::default(),
                verify: Some(Verify {
                    key_seed: KEY_SEED.to_vec(),
                    expected_subject: Some(SUBJECT.to_owned()),
                    apns_keys: vec![
                        ApnsKey::from_p8(APNS_TEAM, &apns_key.key_id, &apns_key.p8)
                            .expect("trusted APNs key"),
                    ],
                    fcm_accounts: vec![
                        FcmAccount::from_service_account_json(&service_account)
                            .expect("trusted service account"),
                    ],
                }),
                latency: options.latency,
                ..SinkConfig::default()
            })
            .await
            .expect("push service simulator starts");
            let parser = pushservice_parser::ParserArgs::try_parse_from(
                [
                    "parser".to_owned(),
                    format!("--parser-group={}", unique_name("api-parsers")),
                    "--parser-checkpoint-every=1000".to_owned(),
                    "--parser-retry-delay-ms=200".to_owned(),
                ]
                .into_iter()
                .chain(base_flags.iter().cloned())
                .chain(
                    options
                        .parser_query_batch_size
                        .map(|size| format!("--query-batch-size={size}")),
                ),
            )
            .expect("parser flags")
            .settings()
            .expect("parser settings");
            let (stop, stopped) = oneshot::channel::<()>();
            stops.push(stop);
            tasks.push(tokio::spawn(pushservice_parser::run(parser, async {
                let _ = stopped.await;
            })));
            let group = unique_name("api-senders");
            for i in 0..options.senders {
                let sender = pushservice_sender::SenderArgs::try_parse_from(
                    [
                        "sender".to_owned(),
                        format!("--sender-group={group}"),
                        format!("--sender-recorder-group={group}-recorder"),
                        format!("--sender-instance-id={group}-{i}"),
                        format!("--sender-extra-ca-file={}", cert.display()),
                        format!("--sender-apns-url={}", sink.base_url()),
                        format!("--sender-fcm-url={}", sink.base_url()),
                        format!("--sender-fcm-token-url={}/token", sink.base_url()),
                        "--sender-allow-private-endpoints=true".to_owned(),
                        "--sender-retry-base-ms=100".to_owned(),
                        "--sender-retry-max-ms=2000".to_owned(),
                    ]
                    .into_iter()
                    .chain(base_flags.iter().cloned()),
                )
                .expect("sender flags")
                .settings()
                .expect("sender settings");
                let (stop, stopped) = oneshot::channel::<()>();
                stops.push(stop);
                tasks.push(tokio::spawn(pushservice_sender::run(sender, async {
                    let _ = stopped.await;
                })));
            }
            Some(sink)
        } else {
            None
        };

        let api = pushservice_pushapi::ApiArgs::try_parse_from(
            [
                "pushapi".to_owned(),
                format!("--api-admin-token={ADMIN_TOKEN}"),
                format!("--api-body-limit-bytes={}", options.body_limit),
                format!("--sender-allow-private-endpoints={}", options.allow_private),
                format!("--api-public-rate-per-sec={}", options.public_rate.0),
                format!("--api-public-burst={}", options.public_rate.1),
                "--api-events-flush-ms=100".to_owned(),
            ]
            .into_iter()
            .chain(
                options
                    .api_metrics_addr
                    .map(|addr| format!("--metrics-addr={addr}")),
            )
            .chain(base_flags.iter().cloned()),
        )
        .expect("pushapi flags")
        .settings()
        .expect("pushapi settings");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let (stop, stopped) = oneshot::channel::<()>();
        stops.push(stop);
        tasks.push(tokio::spawn(pushservice_pushapi::serve(
            api,
            listener,
            async {
                let _ = stopped.await;
            },
        )));
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client");
        let world = World {
            mongo,
            kafka,
            topics,
            store,
            sink,
            cert,
            base,
            http,
            apns_key,
            service_account,
            stops,
            tasks,
        };
        world.wait_ready().await;
        world
    }

    async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(response) = self.http.get(format!("{}/readyz", self.base)).send().await
                && response.status() == StatusCode::OK
            {
                return;
            }
            assert!(Instant::now() < deadline, "pushapi not ready within 60 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A request with an optional bearer token and JSON body: the status and the JSON
    /// answer (`Value::Null` when the body is not JSON).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request reaches pushapi");
        let status = response.status();
        let text = response.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Creates a site through the API: (site id, API key).
    pub async fn create_site(&self, origins: &[&str]) -> (String, String) {
        let (status, body) = self
            .call(
                Method::POST,
                "/v1/sites",
                Some(ADMIN_TOKEN),
                Some(json!({ "subject": SUBJECT, "allowedOrigins": origins })),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        (
            body["site"]["id"].as_str().expect("id").to_owned(),
            body["apiKey"]["key"].as_str().expect("key").to_owned(),
        )
    }

    /// A browser subscription at the simulator whose keys it can decrypt with: the
    /// endpoint's last segment names the keys (`subscriber_keys(KEY_SEED, id)`).
    pub fn web_subscription(&self) -> (ObjectId, Value) {
        let sink = self
            .sink
            .as_ref()
            .expect("a world with senders has a simulator");
        let id = ObjectId::new();
        let keys = subscriber_keys(KEY_SEED, &id);
        let b64 =
            |b: &[u8]| base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, b);
        (
            id,
            json!({
                "endpoint": format!("{}/wp/{}", sink.base_url(), id.to_hex()),
                "expirationTime": null,
                "keys": { "p256dh": b64(&keys.public_key), "auth": b64(&keys.auth) },
            }),
        )
    }

    /// A device token shaped like the platform's.
    pub fn device_token(&self, platform: Platform) -> String {
        device_token(platform, &ObjectId::new())
    }

    /// Sets the site's APNs and FCM credentials through the API (the ones the simulator
    /// trusts; FCM tokens are fetched from the simulator).
    pub async fn set_credentials(&self, site: &str, key: &str) {
        let (status, body) = self
            .call(
                Method::PUT,
                &format!("/v1/sites/{site}/apns"),
                Some(key),
                Some(json!({
                    "teamId": APNS_TEAM,
                    "keyId": self.apns_key.key_id,
                    "privateKey": self.apns_key.p8,
                    "topic": APNS_TOPIC,
                })),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let sink = self.sink.as_ref().expect("simulator");
        let mut account: Value = serde_json::from_str(&self.service_account).expect("JSON");
        account["token_uri"] = format!("{}/token", sink.base_url()).into();
        let (status, body) = self
            .call(
                Method::PUT,
                &format!("/v1/sites/{site}/fcm"),
                Some(key),
                Some(json!({ "serviceAccount": account })),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }

    /// Opens `GET /v1/pushes/{id}/progress` and checks it is an event stream.
    pub async fn progress_stream(&self, push_id: &str, key: &str) -> reqwest::Response {
        let response = self
            .http
            .get(format!("{}/v1/pushes/{push_id}/progress", self.base))
            .bearer_auth(key)
            .send()
            .await
            .expect("progress stream");
        assert_eq!(response.status(), reqwest::StatusCode::OK);
        assert!(
            response.headers()["content-type"]
                .to_str()
                .expect("type")
                .starts_with("text/event-stream")
        );
        response
    }

    /// Polls `GET /v1/pushes/{id}` until `done(push)` or the limit.
    pub async fn wait_push(
        &self,
        push: &str,
        key: &str,
        limit: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let (status, body) = self
                .call(Method::GET, &format!("/v1/pushes/{push}"), Some(key), None)
                .await;
            assert_eq!(status, StatusCode::OK, "{body}");
            if done(&body) {
                return body;
            }
            assert!(
                Instant::now() < deadline,
                "push not there within {limit:?}: {body:#}\nsimulator: {:?}",
                self.sink.as_ref().map(Sink::stats)
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    pub async fn finish(self) {
        for stop in self.stops {
            let _ = stop.send(());
        }
        for task in self.tasks {
            match tokio::time::timeout(Duration::from_secs(60), task).await {
                Ok(Ok(Ok(()))) => {}
                other => panic!("a daemon did not stop cleanly: {other:?}"),
            }
        }
        pushservice_testkit::remove_test_data(&self.store, &self.kafka, &self.topics).await;
        let _ = std::fs::remove_file(&self.cert);
        if let Some(sink) = self.sink {
            sink.shutdown().await;
        }
    }
}
