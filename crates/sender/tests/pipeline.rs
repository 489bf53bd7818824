//! The whole pipeline as a user runs it: `pushctl send`, a parser, sender processes, and a
//! push service that verifies and decrypts everything it receives, over real Kafka and the
//! real MongoDB-protocol server.

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bson::doc;
use futures::TryStreamExt as _;
use pushservice_config::{KafkaSettings, MongoSettings, Topics};
use pushservice_model::{ObjectId, Platform, Push, PushStatus, Site, Subscriber};
use pushservice_parser::ParserConfig;
use pushservice_push_sink::{
    Behaviour, Fate, Latency, Protocol, Sink, SinkConfig, Verify, planned_fate,
};
use pushservice_seed::{PushTemplate, SubscriberSeed, new_push, new_site, seed_subscribers};
use pushservice_store::{SUBSCRIBERS, Store};
use pushservice_testkit::{
    create_topics, env_for, kafka_args, kafka_settings, mongo_args, mongo_settings, store,
    topic_args, topics, unique_name,
};
use tokio::sync::oneshot;

const KEY_SEED: &[u8] = b"pipeline-test-seed";

struct World {
    mongo: MongoSettings,
    kafka: KafkaSettings,
    topics: Topics,
    store: Store,
    sink: Sink,
    cert: PathBuf,
    site: Site,
    push: Push,
    group: String,
}

impl World {
    async fn new(audience: u64, behaviour: Behaviour, latency: Latency) -> World {
        pushservice_testkit::show_daemon_logs();
        let (mongo, kafka, topics) = (mongo_settings(), kafka_settings(), topics());
        create_topics(&kafka, &topics).await;
        let store = store(&mongo).await;
        store.ensure_indexes().await.expect("indexes");
        let site = new_site("mailto:pipeline@example.com").expect("keys");
        store.insert_site(&site).await.expect("site");
        let cert = std::env::temp_dir().join(format!("{}.pem", unique_name("sink-cert")));
        let sink = Sink::start(SinkConfig {
            protocol: Protocol::Tls,
            cert_out: Some(cert.clone()),
            behaviour,
            verify: Some(Verify {
                key_seed: KEY_SEED.to_vec(),
                expected_subject: Some(site.subject.clone()),
                apns_keys: Vec::new(),
                fcm_accounts: Vec::new(),
            }),
            latency,
            ..SinkConfig::default()
        })
        .await
        .expect("push service simulator starts");
        let template = PushTemplate {
            title: "Pipeline".into(),
            body: "Every subscriber gets this".into(),
            icon: None,
            launch_url: Some("https://shop.example/pipeline".into()),
            priority: pushservice_model::Priority::Normal,
            time_to_live: 600,
        };
        let push = new_push(site.id, &template);
        store.insert_push(&push).await.expect("push");
        let seed = SubscriberSeed {
            site_id: site.id,
            count: audience,
            platform: Platform::Web,
            endpoint_base: format!("{}/wp", sink.base_url()),
            key_seed: KEY_SEED.to_vec(),
            batch_size: 1_000,
        };
        seed_subscribers(&store, &seed, |_| {})
            .await
            .expect("audience seeded");
        World {
            mongo,
            kafka,
            topics,
            store,
            sink,
            cert,
            site,
            push,
            group: unique_name("senders"),
        }
    }

    fn parser(
        &self,
    ) -> (
        oneshot::Sender<()>,
        tokio::task::JoinHandle<anyhow::Result<()>>,
    ) {
        let config = ParserConfig {
            mongo: self.mongo.clone(),
            kafka: self.kafka.clone(),
            raw_push_topic: self.topics.raw_push.name.clone(),
            push_topic: self.topics.push.name.clone(),
            group: unique_name("parsers"),
            checkpoint_every: 1_000,
            retry_delay: Duration::from_millis(200),
            max_poll_interval: Duration::from_secs(300),
            metrics_addr: None,
        };
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let task = tokio::spawn(pushservice_parser::run(config, async {
            let _ = stop_rx.await;
        }));
        (stop_tx, task)
    }

    fn sender(&self) -> Child {
        Command::new(env!("CARGO_BIN_EXE_sender"))
            .envs(env_for(&self.mongo, &self.kafka, &self.topics))
            .env("SENDER_GROUP", &self.group)
            .env("SENDER_EXTRA_CA_FILE", &self.cert)
            .env("SENDER_RETRY_BASE_MS", "100")
            .env("SENDER_RETRY_MAX_MS", "2000")
            .env("SENDER_MAX_ATTEMPTS", "5")
            .env("SENDER_COUNTER_FLUSH_MS", "200")
            .env("LOG_LEVEL", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("sender starts")
    }

    /// `pushctl send`, through the command's own code.
    async fn send(&self) {
        let args = pushservice_cli::cli::SendArgs {
            push_id: self.push.id.to_hex(),
            force: false,
            mongo: mongo_args(&self.mongo),
            kafka: kafka_args(&self.kafka),
            topics: topic_args(&self.topics),
        };
        pushservice_cli::commands::send::run(args)
            .await
            .expect("pushctl send");
    }

    async fn push_now(&self) -> Push {
        self.store
            .push(self.push.id)
            .await
            .expect("query")
            .expect("push")
    }

    /// Waits until the push is done, the push service accepted a notification for each of
    /// `reachable` subscribers, and the senders' counters account for them and for the
    /// `gone` ones. Counters may exceed those figures: a partition that moves between senders
    /// mid-push is redelivered from its last committed offset (at least once).
    async fn wait_until_everyone_reached(&self, reachable: u64, gone: i64, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let push = self.push_now().await;
            let stats = self.sink.stats();
            if push.status == PushStatus::Done
                && stats.distinct_accepted >= reachable
                && push.total_accepted >= reachable as i64
                && push.total_unsubscribed >= gone
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "not done in {limit:?}: status {}, accepted {}, unsubscribed {}, failed {}, sink {stats:?}",
                push.status,
                push.total_accepted,
                push.total_unsubscribed,
                push.total_failed,
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    async fn subscribers(&self) -> Vec<Subscriber> {
        self.store
            .database()
            .collection::<Subscriber>(SUBSCRIBERS)
            .find(doc! { "siteId": self.site.id })
            .await
            .expect("find")
            .try_collect()
            .await
            .expect("read")
    }

    async fn finish(self) {
        pushservice_testkit::remove_test_data(&self.store, &self.kafka, &self.topics).await;
        let _ = std::fs::remove_file(&self.cert);
        self.sink.shutdown().await;
    }
}

fn terminate(child: &mut Child) -> Option<i32> {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return status.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_subscriber_gets_its_notification_and_gone_ones_are_unsubscribed() {
    const AUDIENCE: u64 = 2_000;
    let behaviour = Behaviour {
        gone_per_mille: 60,
        not_found_per_mille: 20,
        throttle_per_mille: 60,
        retry_after_secs: 1,
        error_once_per_mille: 60,
        reset_per_mille: 20,
    };
    let world = World::new(AUDIENCE, behaviour, Latency::None).await;
    let expected_gone = world
        .subscribers()
        .await
        .iter()
        .filter(|s| matches!(planned_fate(&behaviour, &s.id.to_hex()), Fate::Gone(_)))
        .count() as i64;
    assert!(expected_gone > 0, "the test must exercise unsubscribes");
    let reachable = AUDIENCE - expected_gone as u64;
    let (stop_parser, parser) = world.parser();
    let mut senders = [world.sender(), world.sender()];
    world.send().await;

    world
        .wait_until_everyone_reached(reachable, expected_gone, Duration::from_secs(180))
        .await;
    // One after the other: each flushes its last counts and sets the totals on its way out.
    let codes: Vec<Option<i32>> = senders.iter_mut().map(terminate).collect();
    assert_eq!(codes, vec![Some(0), Some(0)], "senders exit 0 on SIGTERM");
    let _ = stop_parser.send(());
    parser.await.expect("join").expect("parser ran cleanly");

    let push = world.push_now().await;
    let subscribers = world.subscribers().await;
    assert_eq!(subscribers.len() as u64, AUDIENCE);
    let stats = world.sink.stats();
    eprintln!(
        "pipeline: totals accepted {} unsubscribed {} failed {}; sink {stats:?}",
        push.total_accepted, push.total_unsubscribed, push.total_failed
    );
    assert_eq!(
        stats.verify_failures(),
        0,
        "every request verified: {:?}",
        stats.verify_failed
    );

    for subscriber in &subscribers {
        let id = subscriber.id.to_hex();
        let received = world.sink.received(&id);
        match planned_fate(&behaviour, &id) {
            Fate::Gone(status) => {
                assert!(
                    received.is_empty(),
                    "{id} answered {status} yet received something"
                );
                assert!(
                    !subscriber.subscribed,
                    "{id} answered {status} but is still subscribed"
                );
            }
            fate => {
                assert!(subscriber.subscribed, "{id} ({fate:?}) was unsubscribed");
                let first = received
                    .first()
                    .unwrap_or_else(|| panic!("{id} ({fate:?}) received nothing"));
                let payload: serde_json::Value =
                    serde_json::from_slice(&first.plaintext).expect("JSON payload");
                assert_eq!(payload["title"], "Pipeline", "{id}");
                assert_eq!(payload["pushId"], world.push.id.to_hex());
                assert_eq!(payload["options"]["body"], "Every subscriber gets this");
                assert_eq!(payload["launchUrl"], "https://shop.example/pipeline");
                assert_eq!(first.ttl, 600);
                assert_eq!(first.vapid_sub, world.site.subject);
            }
        }
    }
    assert_eq!(push.status, PushStatus::Done);
    assert_eq!(push.total_sent, AUDIENCE as i64);
    assert_eq!(
        stats.distinct_accepted, reachable,
        "exactly the reachable ones got it"
    );
    assert_eq!(
        push.total_failed, 0,
        "no failure beyond what the simulator injected"
    );
    // Each delivery a sender saw through to its end is counted once: at least one per
    // subscriber, at most one per answer the push service gave (redeliveries after a
    // rebalance are counted; requests dropped when a partition moved are not).
    let answered = |codes: &[u16]| -> i64 {
        codes
            .iter()
            .map(|c| stats.by_status.get(c).copied().unwrap_or(0) as i64)
            .sum()
    };
    assert!(
        (reachable as i64..=answered(&[201])).contains(&push.total_accepted),
        "accepted {} outside {reachable}..={}",
        push.total_accepted,
        answered(&[201])
    );
    assert!(
        (expected_gone..=answered(&[404, 410])).contains(&push.total_unsubscribed),
        "unsubscribed {} outside {expected_gone}..={}",
        push.total_unsubscribed,
        answered(&[404, 410])
    );
    world.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_killed_mid_push_loses_nobody() {
    const AUDIENCE: u64 = 20_000;
    let latency = Latency::Uniform {
        min: Duration::from_millis(1),
        max: Duration::from_millis(20),
    };
    let world = World::new(AUDIENCE, Behaviour::default(), latency).await;
    let (stop_parser, parser) = world.parser();
    let mut first = world.sender();
    world.send().await;

    let deadline = Instant::now() + Duration::from_secs(120);
    while world.sink.stats().distinct_accepted < 3_000 {
        assert!(
            Instant::now() < deadline,
            "first sender made no progress: {:?}",
            world.sink.stats()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.kill().expect("SIGKILL");
    let _ = first.wait();
    let at_kill = world.sink.stats().distinct_accepted;
    let mut second = world.sender();

    let deadline = Instant::now() + Duration::from_secs(240);
    while world.sink.stats().distinct_accepted < AUDIENCE {
        assert!(
            Instant::now() < deadline,
            "not everyone received it: {:?}",
            world.sink.stats()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(terminate(&mut second), Some(0));
    let _ = stop_parser.send(());
    parser.await.expect("join").expect("parser ran cleanly");

    let subscribers = world.subscribers().await;
    let missing: Vec<ObjectId> = subscribers
        .iter()
        .filter(|s| world.sink.received(&s.id.to_hex()).is_empty())
        .map(|s| s.id)
        .collect();
    assert!(
        missing.is_empty(),
        "{} subscribers missed, e.g. {:?}",
        missing.len(),
        missing.first()
    );
    let stats = world.sink.stats();
    let distinct: HashSet<String> = subscribers.iter().map(|s| s.id.to_hex()).collect();
    assert_eq!(distinct.len() as u64, AUDIENCE);
    assert_eq!(stats.verify_failures(), 0);
    eprintln!(
        "sender kill test: killed at {at_kill} of {AUDIENCE} accepted; {} duplicates afterwards",
        stats.duplicates
    );
    world.finish().await;
}
