//! A world for pipeline tests: a site with VAPID, APNs and FCM credentials, its audience,
//! a push, a verifying push-service simulator, and helpers that run `pushctl send`, a parser
//! and sender processes over real Kafka and the real MongoDB-protocol server.

#![allow(dead_code)] // Each test file uses a different part.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bson::doc;
use futures::TryStreamExt as _;
use pushservice_config::{KafkaSettings, MongoSettings, Topics};
use pushservice_kafka::rdkafka::consumer::{BaseConsumer, Consumer as _};
use pushservice_kafka::{GroupView, client_config, describe_group};
use pushservice_model::{
    ApnsCredentials, FcmCredentials, Platform, Push, PushStatus, Site, Subscriber,
};
use pushservice_parser::ParserConfig;
use pushservice_push_sink::{
    ApnsKey, Behaviour, FcmAccount, Latency, Protocol, Sink, SinkConfig, Verify,
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

pub const KEY_SEED: &[u8] = b"pipeline-test-seed";
pub const APNS_TEAM: &str = "PIPELINE01";
pub const APNS_TOPIC: &str = "com.example.pipeline";
pub const FCM_PROJECT: &str = "pipeline-project";

/// Every kind of push-service trouble at once: gone (410 and 404), a 429 with
/// `Retry-After`, a 500 and a reset on the first attempt; the rest accepted.
pub const EVERY_MISBEHAVIOUR: Behaviour = Behaviour {
    gone_per_mille: 60,
    not_found_per_mille: 20,
    throttle_per_mille: 60,
    retry_after_secs: 1,
    error_once_per_mille: 60,
    reset_per_mille: 20,
};

pub struct World {
    pub mongo: MongoSettings,
    pub kafka: KafkaSettings,
    pub topics: Topics,
    pub store: Store,
    pub sink: Sink,
    pub cert: PathBuf,
    pub site: Site,
    pub push: Push,
    pub group: String,
}

impl World {
    pub async fn new(audience: u64, behaviour: Behaviour, latency: Latency) -> World {
        World::with_audience(&[(Platform::Web, audience)], behaviour, latency).await
    }

    /// A site with VAPID, APNs and FCM credentials, `audience` subscribers per platform, and
    /// a verifying push service that knows the site's APNs key and FCM service account.
    pub async fn with_audience(
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
        // The sender fetches tokens only from SENDER_FCM_TOKEN_URL (the simulator's), and
        // only for accounts that name it as their token_uri, as a real key file names Google's.
        let mut account: serde_json::Value =
            serde_json::from_str(&service_account).expect("service account JSON");
        account["token_uri"] = format!("{}/token", sink.base_url()).into();
        site.fcm = Some(FcmCredentials {
            service_account: account.to_string(),
        });
        store.insert_site(&site).await.expect("site");
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

    pub fn parser(
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
            retry: pushservice_parser::RetryPolicy {
                first_delay: Duration::from_millis(200),
                ..pushservice_parser::RetryPolicy::default()
            },
            max_poll_interval: Duration::from_secs(300),
            metrics_addr: None,
        };
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let task = tokio::spawn(pushservice_parser::run(config, async {
            let _ = stop_rx.await;
        }));
        (stop_tx, task)
    }

    pub fn sender(&self) -> Daemon {
        Daemon(self.sender_command().spawn().expect("sender starts"))
    }

    /// The command that starts a sender for this world (add settings before spawning).
    pub fn sender_command(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_sender"));
        command
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
            .env("SENDER_RECORDER_GROUP", format!("{}-recorder", self.group))
            .env("SENDER_ALLOW_PRIVATE_ENDPOINTS", "true")
            // SENDER_TEST_LOG_LEVEL=info shows what the senders do when a test fails.
            .env(
                "LOG_LEVEL",
                std::env::var("SENDER_TEST_LOG_LEVEL").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        command
    }

    /// `pushctl send`, through the command's own code.
    pub async fn send(&self) {
        self.send_push(self.push.id).await;
    }

    /// `pushctl send <push_id>` for another push of this world's site.
    pub async fn send_push(&self, push_id: pushservice_model::ObjectId) {
        let args = pushservice_cli::cli::SendArgs {
            push_id: push_id.to_hex(),
            force: false,
            mongo: mongo_args(&self.mongo),
            kafka: kafka_args(&self.kafka),
            topics: topic_args(&self.topics),
        };
        pushservice_cli::commands::send::run(args)
            .await
            .expect("pushctl send");
    }

    pub async fn push_now(&self) -> Push {
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
    pub async fn wait_until_everyone_reached(&self, reachable: u64, gone: i64, limit: Duration) {
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

    pub async fn subscribers(&self) -> Vec<Subscriber> {
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

    pub async fn finish(self) {
        pushservice_testkit::remove_test_data(&self.store, &self.kafka, &self.topics).await;
        let _ = std::fs::remove_file(&self.cert);
        self.sink.shutdown().await;
    }
}

/// A daemon process of a test, killed when dropped, so a failing test leaves none behind.
pub struct Daemon(pub Child);

impl std::ops::Deref for Daemon {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Daemon {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

pub fn terminate(child: &mut Child) -> Option<i32> {
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

// ---- Outages, dead letters, replays and waiting (used by outage.rs and breaker.rs) ----

/// An outage of the push-service simulator: `status` to every push request (of `kind`:
/// `"webpush"`, `"apns"`, `"fcm"`; every kind when `None`) for `seconds`, with
/// `Retry-After: retry_after` when given. Built through the control endpoint's own parser.
pub fn outage(
    seconds: f64,
    status: u16,
    retry_after: Option<u32>,
    kind: Option<&str>,
) -> pushservice_push_sink::Outage {
    let body = serde_json::json!({
        "seconds": seconds,
        "status": status,
        "retryAfter": retry_after,
        "kind": kind,
    });
    pushservice_push_sink::Outage::from_json(body.to_string().as_bytes()).expect("valid outage")
}

/// What a wait looked at last, for its failure message.
fn progress(push: &Push, stats: &pushservice_push_sink::Stats) -> String {
    format!(
        "push {} (sent {}, accepted {}, unsubscribed {}, failed {}); sink: distinct accepted {}, \
         duplicates {}, requests {}, by status {:?}, outage answered {}",
        push.status,
        push.total_sent,
        push.total_accepted,
        push.total_unsubscribed,
        push.total_failed,
        stats.distinct_accepted,
        stats.duplicates,
        stats.requests,
        stats.by_status,
        stats.outage_answered,
    )
}

impl World {
    /// Every dead letter on this world's dead-letter topic (committed transactions only).
    pub async fn dead_letters(&self) -> Vec<pushservice_kafka::ReadMessage> {
        let (kafka, topic) = (self.kafka.clone(), self.topics.dead_letter.name.clone());
        tokio::task::spawn_blocking(move || {
            let mut letters = Vec::new();
            pushservice_kafka::scan_topic(
                &kafka,
                &topic,
                pushservice_kafka::ScanFrom::Beginning,
                false,
                |letter| {
                    letters.push(letter);
                    std::ops::ControlFlow::Continue(())
                },
            )
            .map(|_| letters)
        })
        .await
        .expect("reader task")
        .expect("read the dead-letter topic")
    }

    /// `pushctl dlq replay --push <this push>`, through the command's own code.
    pub async fn replay_dead_letters(&self) {
        let args = pushservice_cli::cli::DlqReplayArgs {
            push_id: Some(self.push.id.to_hex()),
            reason: None,
            dry_run: false,
            again: false,
            mongo: mongo_args(&self.mongo),
            kafka: pushservice_cli::cli::KafkaTopicArgs {
                kafka: kafka_args(&self.kafka),
                topics: topic_args(&self.topics),
            },
        };
        pushservice_cli::commands::dlq::replay::run(args)
            .await
            .expect("pushctl dlq replay");
    }

    /// The push with live totals and its failure reasons (what `pushctl status` shows).
    pub async fn push_live(&self) -> Push {
        self.store
            .push_with_live_totals(self.push.id)
            .await
            .expect("query")
            .expect("push")
    }

    /// Polls the push document and the simulator's counters until `reached` holds; after
    /// `limit` fails, saying what was `expected` and what was seen last.
    pub async fn wait_for(
        &self,
        limit: Duration,
        expected: &str,
        reached: impl Fn(&Push, &pushservice_push_sink::Stats) -> bool,
    ) -> Push {
        let deadline = Instant::now() + limit;
        loop {
            let push = self.push_now().await;
            let stats = self.sink.stats();
            if reached(&push, &stats) {
                return push;
            }
            assert!(
                Instant::now() < deadline,
                "not reached in {limit:?}: expected {expected}; actual: {}",
                progress(&push, &stats)
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

/// Every sample of `text` named `name` whose labels contain all of `labels`, summed.
pub fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (series_name, rest) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            if series_name != name {
                return None;
            }
            let found: HashMap<&str, &str> = rest
                .split(',')
                .filter_map(|pair| {
                    let (k, v) = pair.split_once('=')?;
                    Some((k, v.trim_matches('"')))
                })
                .collect();
            labels
                .iter()
                .all(|(k, v)| found.get(k) == Some(v))
                .then(|| value.parse::<f64>().ok())
                .flatten()
        })
        .sum()
}

/// Partitions each sender holds, by sender instance and topic, from the members' client ids
/// (`sender-<instance>-<role>`).
pub fn by_sender(view: &GroupView) -> BTreeMap<String, BTreeMap<String, usize>> {
    let mut held: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    for member in &view.members {
        let instance = member
            .client_id
            .strip_prefix("sender-")
            .and_then(|rest| rest.rsplit_once('-'))
            .map_or(member.client_id.as_str(), |(instance, _role)| instance);
        let topics = held.entry(instance.to_owned()).or_default();
        for (topic, partitions) in &member.assignment {
            *topics.entry(topic.clone()).or_default() += partitions.len();
        }
    }
    held
}

/// Waits until the group is stable with `senders` senders holding all `partitions` of the
/// push topic and the retry tiers.
pub async fn settled(world: &World, senders: usize, partitions: usize) -> GroupView {
    let client = client_config(&world.kafka)
        .create::<BaseConsumer>()
        .expect("Kafka client");
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let view = describe_group(client.client(), &world.group, Duration::from_secs(10))
            .ok()
            .flatten();
        if let Some(view) = &view
            && view.state == "Stable"
            && view.assigned() == partitions
            && by_sender(view).len() == senders
        {
            return view.clone();
        }
        assert!(
            Instant::now() < deadline,
            "group {} did not settle with {senders} senders holding {partitions} partitions: {view:?}",
            world.group
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
