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
use pushservice_model::{
    ApnsCredentials, FcmCredentials, ObjectId, Platform, Push, PushStatus, Site, Subscriber,
};
use pushservice_parser::ParserConfig;
use pushservice_push_sink::{
    ApnsKey, Behaviour, Fate, FcmAccount, Latency, Protocol, Sink, SinkConfig, Verify, planned_fate,
};
use pushservice_seed::{
    PushTemplate, SubscriberSeed, apns_test_key, fcm_test_service_account, new_push, new_site,
    seed_subscribers,
};
use pushservice_store::{SUBSCRIBERS, Store};
use pushservice_testkit::{
    create_topics, env_for, kafka_args, kafka_settings, mongo_args, mongo_settings, store,
    topic_args, topics, unique_name,
};
use tokio::sync::oneshot;

const KEY_SEED: &[u8] = b"pipeline-test-seed";
const APNS_TEAM: &str = "PIPELINE01";
const APNS_TOPIC: &str = "com.example.pipeline";
const FCM_PROJECT: &str = "pipeline-project";

/// Every kind of push-service trouble at once: gone (410 and 404), a 429 with
/// `Retry-After`, a 500 and a reset on the first attempt; the rest accepted.
const EVERY_MISBEHAVIOUR: Behaviour = Behaviour {
    gone_per_mille: 60,
    not_found_per_mille: 20,
    throttle_per_mille: 60,
    retry_after_secs: 1,
    error_once_per_mille: 60,
    reset_per_mille: 20,
};

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
        World::with_audience(&[(Platform::Web, audience)], behaviour, latency).await
    }

    /// A site with VAPID, APNs and FCM credentials, `audience` subscribers per platform, and
    /// a verifying push service that knows the site's APNs key and FCM service account.
    async fn with_audience(
        audience: &[(Platform, u64)],
        behaviour: Behaviour,
        latency: Latency,
    ) -> World {
        pushservice_testkit::show_daemon_logs();
        let (mongo, kafka, topics) = (mongo_settings(), kafka_settings(), topics());
        create_topics(&kafka, &topics).await;
        let store = store(&mongo).await;
        store.ensure_indexes().await.expect("indexes");
        let mut site = new_site("mailto:pipeline@example.com").expect("keys");
        let apns_key = apns_test_key().expect("APNs key");
        // The sender is told where tokens come from (SENDER_FCM_TOKEN_URL); the file's own
        // token_uri is Google's, as in a real key file.
        let service_account =
            fcm_test_service_account(FCM_PROJECT, "https://oauth2.googleapis.com/token")
                .expect("service account");
        site.apns = Some(ApnsCredentials {
            team_id: APNS_TEAM.into(),
            key_id: apns_key.key_id.clone(),
            private_key: apns_key.p8.clone(),
            topic: APNS_TOPIC.into(),
            sandbox: false,
        });
        site.fcm = Some(FcmCredentials {
            service_account: service_account.clone(),
        });
        store.insert_site(&site).await.expect("site");
        let cert = std::env::temp_dir().join(format!("{}.pem", unique_name("sink-cert")));
        let sink = Sink::start(SinkConfig {
            protocol: Protocol::Tls,
            cert_out: Some(cert.clone()),
            behaviour,
            verify: Some(Verify {
                key_seed: KEY_SEED.to_vec(),
                expected_subject: Some(site.subject.clone()),
                apns_keys: vec![
                    ApnsKey::from_p8(APNS_TEAM, &apns_key.key_id, &apns_key.p8)
                        .expect("trusted APNs key"),
                ],
                fcm_accounts: vec![
                    FcmAccount::from_service_account_json(&service_account)
                        .expect("trusted service account"),
                ],
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
        for &(platform, count) in audience {
            let seed = SubscriberSeed {
                site_id: site.id,
                count,
                platform,
                endpoint_base: format!("{}/wp", sink.base_url()),
                key_seed: KEY_SEED.to_vec(),
                batch_size: 1_000,
            };
            seed_subscribers(&store, &seed, |_| {})
                .await
                .expect("audience seeded");
        }
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
            .env("SENDER_APNS_URL", self.sink.base_url())
            .env("SENDER_FCM_URL", self.sink.base_url())
            .env(
                "SENDER_FCM_TOKEN_URL",
                format!("{}/token", self.sink.base_url()),
            )
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
    let behaviour = EVERY_MISBEHAVIOUR;
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

/// What the push service keys a subscriber's fate by: the endpoint's id for Web Push, the
/// device token for APNs and FCM.
fn sink_key(subscriber: &Subscriber) -> String {
    subscriber
        .device_token
        .clone()
        .unwrap_or_else(|| subscriber.id.to_hex())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ios_and_android_subscribers_get_it_through_apns_and_fcm() {
    const PER_PLATFORM: u64 = 400;
    let behaviour = EVERY_MISBEHAVIOUR;
    let audience = [
        (Platform::Web, PER_PLATFORM),
        (Platform::Ios, PER_PLATFORM),
        (Platform::Android, PER_PLATFORM),
    ];
    let world = World::with_audience(&audience, behaviour, Latency::None).await;
    let subscribers = world.subscribers().await;
    assert_eq!(subscribers.len() as u64, 3 * PER_PLATFORM);
    let is_gone = |s: &Subscriber| matches!(planned_fate(&behaviour, &sink_key(s)), Fate::Gone(_));
    let expected_gone = subscribers.iter().filter(|s| is_gone(s)).count() as i64;
    let reachable = subscribers.len() as u64 - expected_gone as u64;
    let (stop_parser, parser) = world.parser();
    let mut sender = world.sender();
    world.send().await;

    world
        .wait_until_everyone_reached(reachable, expected_gone, Duration::from_secs(180))
        .await;
    assert_eq!(terminate(&mut sender), Some(0), "sender exits 0 on SIGTERM");
    let _ = stop_parser.send(());
    parser.await.expect("join").expect("parser ran cleanly");

    let stats = world.sink.stats();
    let push = world.push_now().await;
    eprintln!(
        "mobile pipeline: totals accepted {} unsubscribed {} failed {}; sink {stats:?}",
        push.total_accepted, push.total_unsubscribed, push.total_failed
    );
    assert_eq!(stats.verify_failures(), 0, "{:?}", stats.verify_failed);
    assert_eq!(push.total_failed, 0, "no failure beyond the injected ones");
    for kind in ["webpush", "apns", "fcm"] {
        let kind_stats = stats
            .by_kind
            .get(kind)
            .unwrap_or_else(|| panic!("no {kind} traffic"));
        assert!(kind_stats.accepted > 0, "{kind}: {kind_stats:?}");
    }
    // One access token serves the whole push: the sender caches it.
    let oauth = stats.by_kind.get("oauth").map_or(0, |k| k.requests);
    assert!((1..=2).contains(&oauth), "{oauth} token requests");

    let subscribers = world.subscribers().await;
    for subscriber in &subscribers {
        let key = sink_key(subscriber);
        let gone = is_gone(subscriber);
        assert_eq!(subscriber.subscribed, !gone, "{key}: subscribed");
        match subscriber.platform.unwrap_or_default() {
            Platform::Web => assert_eq!(world.sink.received(&key).is_empty(), gone, "{key}"),
            Platform::Ios => {
                let received = world.sink.received_mobile(&key);
                if gone {
                    assert!(received.is_empty(), "{key} is gone yet received something");
                    continue;
                }
                let first = received
                    .first()
                    .unwrap_or_else(|| panic!("{key} got nothing"));
                assert_eq!(first.body["aps"]["alert"]["title"], "Pipeline");
                assert_eq!(
                    first.body["aps"]["alert"]["body"],
                    "Every subscriber gets this"
                );
                assert_eq!(first.body["pushId"], world.push.id.to_hex());
                assert_eq!(first.body["launchUrl"], "https://shop.example/pipeline");
                assert_eq!(first.apns_topic.as_deref(), Some(APNS_TOPIC));
                assert_eq!(first.apns_push_type.as_deref(), Some("alert"));
                assert_eq!(first.apns_priority, Some(10));
                assert_eq!(first.issuer, APNS_TEAM);
                assert!(first.apns_expiration.is_some_and(|e| e > 0));
            }
            Platform::Android => {
                let received = world.sink.received_mobile(&key);
                if gone {
                    assert!(received.is_empty(), "{key} is gone yet received something");
                    continue;
                }
                let first = received
                    .first()
                    .unwrap_or_else(|| panic!("{key} got nothing"));
                assert_eq!(first.body["token"], key.as_str());
                assert_eq!(first.body["notification"]["title"], "Pipeline");
                assert_eq!(first.body["data"]["pushId"], world.push.id.to_hex());
                assert_eq!(first.body["android"]["ttl"], "600s");
                assert_eq!(first.project_id.as_deref(), Some(FCM_PROJECT));
            }
        }
    }
    assert_eq!(push.status, PushStatus::Done);
    assert_eq!(push.total_sent, 3 * PER_PLATFORM as i64);
    assert_eq!(stats.distinct_accepted, reachable);
    world.finish().await;
}
