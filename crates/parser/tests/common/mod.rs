//! What the parser's integration tests share: a world of their own (database, topics), pushes
//! to trigger, an in-process parser, and a TCP proxy that can play a MongoDB restart.

#![allow(dead_code)] // Each test file uses its own part of this module.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pushservice_config::{KafkaSettings, MongoSettings, Topics};
use pushservice_kafka::rdkafka::producer::FutureRecord;
use pushservice_kafka::{ProducerTuning, ReadFrom, producer, read_topic};
use pushservice_model::{DeliveryMessage, ObjectId, Push, PushStatus, RawPushMessage};
use pushservice_parser::{ParserConfig, RetryPolicy};
use pushservice_seed::{PushTemplate, new_push, new_site};
use pushservice_store::Store;
use pushservice_testkit::{create_topics, kafka_settings, mongo_settings, store, topics};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

pub struct World {
    pub mongo: MongoSettings,
    pub kafka: KafkaSettings,
    pub topics: Topics,
    pub store: Store,
}

impl World {
    pub async fn new() -> World {
        pushservice_testkit::show_daemon_logs();
        let (mongo, kafka, topics) = (mongo_settings(), kafka_settings(), topics());
        create_topics(&kafka, &topics).await;
        let store = store(&mongo).await;
        store.ensure_indexes().await.expect("indexes");
        World {
            mongo,
            kafka,
            topics,
            store,
        }
    }

    /// A parser of its own group, retrying quickly and giving up after 3 tries over 2 s.
    pub fn config(&self, checkpoint_every: u32) -> ParserConfig {
        ParserConfig {
            mongo: self.mongo.clone(),
            kafka: self.kafka.clone(),
            raw_push_topic: self.topics.raw_push.name.clone(),
            push_topic: self.topics.push.name.clone(),
            group: pushservice_testkit::unique_name("parsers"),
            checkpoint_every,
            retry: RetryPolicy {
                first_delay: Duration::from_millis(200),
                max_delay: Duration::from_secs(1),
                attempts: 3,
                patience: Duration::from_secs(2),
            },
            max_poll_interval: Duration::from_secs(300),
            metrics_addr: None,
        }
    }

    /// A site and a push of it, already `processing` as `pushctl send` leaves it.
    pub async fn triggered_push(&self, title: &str) -> Push {
        let site = new_site("mailto:parser@example.com").expect("keys");
        self.store.insert_site(&site).await.expect("site");
        let template = PushTemplate {
            title: title.into(),
            body: "body".into(),
            icon: Some("https://shop.example/icon.png".into()),
            launch_url: Some("https://shop.example/sale".into()),
            priority: pushservice_model::Priority::High,
            time_to_live: 3_600,
        };
        let push = new_push(site.id, &template);
        self.store.insert_push(&push).await.expect("push");
        self.store
            .restart_push(push.id, PushStatus::Pending)
            .await
            .expect("processing");
        push
    }

    /// The raw-push message `pushctl send` publishes for `push`.
    pub fn raw_push(push: &Push) -> Vec<u8> {
        RawPushMessage {
            push_id: push.id.to_hex(),
            site_id: push.site_id.to_hex(),
            triggered_at: 1,
        }
        .to_json()
    }

    pub async fn trigger(&self, push: &Push) {
        self.publish_raw(&push.id.to_hex(), &World::raw_push(push))
            .await;
    }

    pub async fn publish_raw(&self, key: &str, payload: &[u8]) {
        self.publish_record(key, Some(payload), None).await;
    }

    /// Publishes one raw-push record, to `partition` if given (else by key), with or without
    /// a payload.
    pub async fn publish_record(&self, key: &str, payload: Option<&[u8]>, partition: Option<i32>) {
        let producer = producer(
            &self.kafka,
            &ProducerTuning::command(Duration::from_secs(10)),
        )
        .expect("producer");
        let mut record = FutureRecord::<str, [u8]>::to(&self.topics.raw_push.name).key(key);
        if let Some(payload) = payload {
            record = record.payload(payload);
        }
        if let Some(partition) = partition {
            record = record.partition(partition);
        }
        producer
            .send(record, Duration::from_secs(10))
            .await
            .expect("raw-push acknowledged");
    }

    pub async fn wait_for_status(&self, push_id: ObjectId, wanted: PushStatus) -> Push {
        self.wait_for_status_within(push_id, wanted, Duration::from_secs(120))
            .await
    }

    pub async fn wait_for_status_within(
        &self,
        push_id: ObjectId,
        wanted: PushStatus,
        within: Duration,
    ) -> Push {
        let deadline = Instant::now() + within;
        loop {
            let push = self
                .store
                .push(push_id)
                .await
                .expect("query")
                .expect("push");
            if push.status == wanted {
                return push;
            }
            assert!(
                Instant::now() < deadline,
                "push {push_id} is {} after {within:?}, expected {wanted} (failure reason {:?})",
                push.status,
                push.failure_reason
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub async fn deliveries(&self) -> Vec<DeliveryMessage> {
        let (kafka, topic) = (self.kafka.clone(), self.topics.push.name.clone());
        let messages = tokio::task::spawn_blocking(move || {
            read_topic(
                &kafka,
                &topic,
                ReadFrom::Beginning,
                usize::MAX,
                Duration::from_secs(3),
            )
        })
        .await
        .expect("task")
        .expect("read push topic");
        messages
            .iter()
            .map(|m| {
                let message = DeliveryMessage::from_json(m.payload.as_deref().expect("payload"))
                    .expect("delivery message parses");
                assert_eq!(
                    m.key.as_deref(),
                    Some(message.subscriber_id.as_bytes()),
                    "keyed by subscriber"
                );
                message
            })
            .collect()
    }

    pub async fn finish(self) {
        pushservice_testkit::remove_test_data(&self.store, &self.kafka, &self.topics).await;
    }
}

/// A parser running in-process until its `stop` is used or dropped.
pub struct RunningParser {
    pub stop: oneshot::Sender<()>,
    pub task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl RunningParser {
    /// Stops the parser and checks it ended cleanly.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        self.task
            .await
            .expect("parser task joins")
            .expect("parser ran cleanly");
    }
}

/// Runs the parser in-process.
pub fn start_parser(config: ParserConfig) -> RunningParser {
    let (stop, stop_rx) = oneshot::channel::<()>();
    let task = tokio::spawn(pushservice_parser::run(config, async {
        let _ = stop_rx.await;
    }));
    RunningParser { stop, task }
}

/// A loopback TCP proxy to a MongoDB-protocol server that can play its restart: [`cut`]
/// drops every connection and refuses new ones (accepted and closed at once, as a server that
/// is starting answers) until [`restore`].
///
/// [`cut`]: MongoProxy::cut
/// [`restore`]: MongoProxy::restore
pub struct MongoProxy {
    pub addr: SocketAddr,
    /// Cancelled on `cut`; connections opened while it is live are forwarded until then.
    up: Arc<Mutex<Option<CancellationToken>>>,
    stop: CancellationToken,
}

impl MongoProxy {
    /// Starts a proxy to the server of `mongo` on 127.0.0.1, port 0.
    pub async fn start(mongo: &MongoSettings) -> MongoProxy {
        let upstream = upstream_of(&mongo.url);
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let up = Arc::new(Mutex::new(Some(CancellationToken::new())));
        let stop = CancellationToken::new();
        let (state, stopped) = (Arc::clone(&up), stop.clone());
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    accepted = listener.accept() => accepted,
                    () = stopped.cancelled() => return,
                };
                let Ok((mut client, _)) = accepted else {
                    continue;
                };
                let Some(live) = state.lock().expect("proxy state").clone() else {
                    drop(client); // Down: close at once.
                    continue;
                };
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        () = live.cancelled() => {}
                    }
                });
            }
        });
        MongoProxy { addr, up, stop }
    }

    /// `mongo` with its address replaced by the proxy's.
    pub fn settings(&self, mongo: &MongoSettings) -> MongoSettings {
        let upstream = upstream_of(&mongo.url);
        MongoSettings {
            url: mongo.url.replacen(&upstream, &self.addr.to_string(), 1),
            ..mongo.clone()
        }
    }

    /// The server "stops": open connections drop, new ones are closed at once.
    pub fn cut(&self) {
        if let Some(live) = self.up.lock().expect("proxy state").take() {
            live.cancel();
        }
    }

    /// The server is back.
    pub fn restore(&self) {
        let mut up = self.up.lock().expect("proxy state");
        if up.is_none() {
            *up = Some(CancellationToken::new());
        }
    }
}

impl Drop for MongoProxy {
    fn drop(&mut self) {
        self.cut();
        self.stop.cancel();
    }
}

/// `host:port` of a `mongodb://host:port/...` URL with one host.
fn upstream_of(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?']).next().unwrap_or(rest);
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    assert!(
        !host.contains(','),
        "the proxy serves a single MongoDB host, not {host}"
    );
    if host.contains(':') {
        host.to_owned()
    } else {
        format!("{host}:27017")
    }
}
