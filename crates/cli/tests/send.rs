//! `pushctl` as a user runs it, against the real Kafka broker and MongoDB-protocol server.

use std::process::{Command, Output};
use std::time::Duration;

use pushservice_config::{KafkaSettings, MongoSettings, Topics};
use pushservice_kafka::{ReadFrom, ReadMessage, read_topic};
use pushservice_model::{ObjectId, PushStatus, RawPushMessage};
use pushservice_seed::{PushTemplate, new_push, new_site};
use pushservice_store::Store;
use pushservice_testkit::{create_topics, env_for, kafka_settings, mongo_settings, store, topics};

/// One test's world: its own database and topics.
struct World {
    mongo: MongoSettings,
    kafka: KafkaSettings,
    topics: Topics,
    store: Store,
}

impl World {
    async fn new() -> World {
        let (mongo, kafka, topics) = (mongo_settings(), kafka_settings(), topics());
        create_topics(&kafka, &topics).await;
        let store = store(&mongo).await;
        World {
            mongo,
            kafka,
            topics,
            store,
        }
    }

    fn pushctl(&self, args: &[&str]) -> Output {
        self.pushctl_with(args, &[])
    }

    fn pushctl_with(&self, args: &[&str], extra_env: &[(&str, &str)]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_pushctl"))
            .args(args)
            .env_remove("KAFKA_SECURITY_ENABLED")
            .envs(env_for(&self.mongo, &self.kafka, &self.topics))
            .envs(extra_env.iter().copied())
            .output()
            .expect("pushctl runs")
    }

    /// A site and a pending push of it.
    async fn pending_push(&self) -> (ObjectId, ObjectId) {
        let site = new_site("mailto:test@example.com").expect("keys");
        self.store.insert_site(&site).await.expect("site");
        let template = PushTemplate {
            title: "Test".into(),
            body: "Body".into(),
            icon: None,
            launch_url: None,
            priority: Default::default(),
            time_to_live: 60,
        };
        let push = new_push(site.id, &template);
        self.store.insert_push(&push).await.expect("push");
        (site.id, push.id)
    }

    async fn raw_push_messages(&self) -> Vec<ReadMessage> {
        let (kafka, topic) = (self.kafka.clone(), self.topics.raw_push.name.clone());
        tokio::task::spawn_blocking(move || {
            read_topic(
                &kafka,
                &topic,
                ReadFrom::Beginning,
                100,
                Duration::from_secs(2),
            )
        })
        .await
        .expect("task")
        .expect("read raw-push")
    }

    /// Drops the test's database and topics (not reached when a test fails, which keeps the
    /// evidence).
    async fn finish(self) {
        pushservice_testkit::remove_test_data(&self.store, &self.kafka, &self.topics).await;
    }

    async fn status(&self, push_id: ObjectId) -> PushStatus {
        self.store
            .push(push_id)
            .await
            .expect("query")
            .expect("push exists")
            .status
    }
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[track_caller]
fn assert_exit(output: &Output, code: i32, message: &str) {
    let err = stderr(output);
    assert_eq!(
        output.status.code(),
        Some(code),
        "expected exit {code}, stderr: {err}"
    );
    assert!(
        err.contains(message),
        "expected {message:?} in stderr: {err}"
    );
}

#[tokio::test]
async fn send_publishes_exactly_one_raw_push_message_and_marks_processing() {
    let world = World::new().await;
    let (site_id, push_id) = world.pending_push().await;

    let out = world.pushctl(&["send", &push_id.to_hex()]);
    assert!(out.status.success(), "send failed: {}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(&format!("push {push_id} sent")), "{stdout}");
    assert_eq!(world.status(push_id).await, PushStatus::Processing);

    let messages = world.raw_push_messages().await;
    assert_eq!(messages.len(), 1, "{messages:?}");
    let message = &messages[0];
    assert_eq!(message.key.as_deref(), Some(push_id.to_hex().as_bytes()));
    let body = RawPushMessage::from_json(message.payload.as_deref().expect("payload"))
        .expect("raw-push JSON");
    assert_eq!(body.push_id, push_id.to_hex());
    assert_eq!(body.site_id, site_id.to_hex());
    assert!(body.triggered_at > 1_700_000_000_000, "{body:?}");
    // Ids only: the site's keys never travel through Kafka.
    let text = String::from_utf8_lossy(message.payload.as_deref().expect("payload")).into_owned();
    let site = world
        .store
        .site(site_id)
        .await
        .expect("query")
        .expect("site");
    assert!(
        !text.contains(&site.private_key),
        "private key in raw-push: {text}"
    );

    // A second send is refused and publishes nothing; --force publishes again.
    let again = world.pushctl(&["send", &push_id.to_hex()]);
    assert_exit(&again, 4, "is processing, not pending; pass --force");
    assert_eq!(world.raw_push_messages().await.len(), 1);
    let forced = world.pushctl(&["send", "--force", &push_id.to_hex()]);
    assert!(
        forced.status.success(),
        "forced send failed: {}",
        stderr(&forced)
    );
    assert_eq!(world.raw_push_messages().await.len(), 2);
    world.finish().await;
}

#[tokio::test]
async fn refuses_bad_input_with_clear_errors_and_exit_codes() {
    let world = World::new().await;

    let malformed = world.pushctl(&["send", "12345"]);
    assert_exit(
        &malformed,
        2,
        "malformed push id \"12345\": expected 24 hexadecimal characters",
    );

    let unknown = ObjectId::new();
    let out = world.pushctl(&["send", &unknown.to_hex()]);
    assert_exit(&out, 3, &format!("push {unknown} does not exist"));

    // A push whose site was deleted.
    let (site_id, push_id) = world.pending_push().await;
    world
        .store
        .database()
        .collection::<bson::Document>(pushservice_store::SITES)
        .delete_one(bson::doc! { "_id": site_id })
        .await
        .expect("delete site");
    let out = world.pushctl(&["send", &push_id.to_hex()]);
    assert_exit(
        &out,
        3,
        &format!("belongs to site {site_id}, which does not exist"),
    );
    assert_eq!(world.status(push_id).await, PushStatus::Pending);

    // A push already done.
    let (_, done_id) = world.pending_push().await;
    world
        .store
        .transition_push(done_id, PushStatus::Pending, PushStatus::Done)
        .await
        .expect("done");
    let out = world.pushctl(&["send", &done_id.to_hex()]);
    assert_exit(&out, 4, "is done, not pending");

    assert!(
        world.raw_push_messages().await.is_empty(),
        "nothing may be published"
    );
    world.finish().await;
}

#[tokio::test]
async fn unreachable_broker_or_database_fails_in_bounded_time_and_keeps_push_pending() {
    let world = World::new().await;
    let (_, push_id) = world.pending_push().await;

    let started = std::time::Instant::now();
    let out = world.pushctl_with(
        &["send", &push_id.to_hex()],
        &[
            ("KAFKA_BROKERS", "127.0.0.1:1"),
            ("KAFKA_TIMEOUT_MS", "1500"),
        ],
    );
    assert_exit(&out, 5, "could not reach Kafka at 127.0.0.1:1");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "not bounded: {:?}",
        started.elapsed()
    );
    assert_eq!(
        world.status(push_id).await,
        PushStatus::Pending,
        "push must stay sendable"
    );

    let out = world.pushctl_with(
        &["send", &push_id.to_hex()],
        &[
            ("MONGODB_URL", "mongodb://127.0.0.1:1/x"),
            ("MONGODB_TIMEOUT_MS", "500"),
        ],
    );
    assert_exit(
        &out,
        5,
        "could not reach MongoDB at mongodb://127.0.0.1:1/x",
    );

    // The topic does not exist: the operator is told how to create it.
    let out = world.pushctl_with(
        &["send", &push_id.to_hex()],
        &[("TOPIC_RAW_PUSH", "no-such-topic-x")],
    );
    assert_exit(&out, 5, "topic \"no-such-topic-x\" does not exist");
    assert_eq!(world.status(push_id).await, PushStatus::Pending);
    world.finish().await;
}

#[tokio::test]
async fn wrong_settings_fail_at_start_naming_the_key() {
    let world = World::new().await;
    let id = ObjectId::new().to_hex();
    type Case<'a> = (&'a [(&'a str, &'a str)], i32, &'a str);
    let cases: [Case<'_>; 4] = [
        (
            &[("KAFKA_SECURITY_ENABLED", "true")],
            2,
            "KAFKA_USERNAME: is required",
        ),
        (
            &[("KAFKA_SECURITY_ENABLED", "perhaps")],
            2,
            "KAFKA_SECURITY_ENABLED",
        ),
        (
            &[("KAFKA_BROKERS", "localhost")],
            2,
            "KAFKA_BROKERS: \"localhost\" is not host:port",
        ),
        (&[("MONGODB_URL", "http://db")], 2, "MONGODB_URL"),
    ];
    for (env, code, message) in cases {
        let out = world.pushctl_with(&["send", &id], env);
        assert_exit(&out, code, message);
    }
    world.finish().await;
}

#[tokio::test]
async fn topics_create_is_safe_to_run_twice() {
    let world = World::new().await;
    let (raw, push) = (
        world.topics.raw_push.name.clone(),
        world.topics.push.name.clone(),
    );
    // Fresh names, so this run creates them.
    let fresh_raw = pushservice_testkit::unique_name("raw-push");
    let fresh_push = pushservice_testkit::unique_name("push");
    let fresh_dlq = pushservice_testkit::unique_name("push-dlq");
    let env = [
        ("TOPIC_RAW_PUSH", fresh_raw.as_str()),
        ("TOPIC_PUSH", fresh_push.as_str()),
        ("TOPIC_RAW_PUSH_PARTITIONS", "4"),
        ("TOPIC_PUSH_PARTITIONS", "200"),
        ("TOPIC_PUSH_DLQ", fresh_dlq.as_str()),
    ];
    let first = world.pushctl_with(&["topics", "create"], &env);
    assert!(first.status.success(), "{}", stderr(&first));
    let text = String::from_utf8_lossy(&first.stdout);
    assert!(
        text.contains(&format!("created topic {fresh_raw} with 4 partitions")),
        "{text}"
    );
    assert!(
        text.contains(&format!("created topic {fresh_push} with 200 partitions")),
        "{text}"
    );

    let second = world.pushctl_with(&["topics", "create"], &env);
    assert!(second.status.success(), "{}", stderr(&second));
    let text = String::from_utf8_lossy(&second.stdout);
    assert!(
        text.contains(&format!(
            "topic {fresh_push} already exists with 200 partitions"
        )),
        "{text}"
    );

    let described = world.pushctl_with(&["topics", "describe"], &env);
    let text = String::from_utf8_lossy(&described.stdout);
    assert!(
        text.contains(&format!("{fresh_push}: 200 partitions")),
        "{text}"
    );
    // The world's own topics are untouched.
    assert!(!text.contains(&raw) && !text.contains(&push));
    pushservice_testkit::delete_topics(&world.kafka, &[&fresh_raw, &fresh_push, &fresh_dlq]).await;
    world.finish().await;
}
