//! `pushctl stats` against the real Kafka broker and MongoDB-protocol server: a push in
//! progress with its live totals, the lag of a sender group that committed part of what is
//! on the push topic, outcomes by platform (records without one as "unknown") and reason,
//! dead letters by reason, and the cap on records read said in the output. Every figure is
//! exact: nothing here depends on timing.

use std::process::Output;
use std::time::Duration;

use pushservice_config::{KafkaSettings, MongoSettings, Topics};
use pushservice_kafka::rdkafka::consumer::{BaseConsumer, CommitMode, Consumer as _};
use pushservice_kafka::rdkafka::message::{Header, OwnedHeaders};
use pushservice_kafka::rdkafka::producer::{FutureProducer, FutureRecord};
use pushservice_kafka::rdkafka::{Offset, TopicPartitionList};
use pushservice_kafka::{ProducerTuning, client_config, producer};
use pushservice_model::{
    FanoutProgress, ObjectId, OutcomeRecord, OutcomeResult, Platform, PushStatus,
};
use pushservice_seed::{PushTemplate, new_push, new_site};
use pushservice_store::{DeliveryCounts, PartitionCounts, Store};
use pushservice_testkit::{
    create_topics, env_for, kafka_settings, mongo_settings, store, topics, unique_name,
};
use serde_json::Value;

struct World {
    mongo: MongoSettings,
    kafka: KafkaSettings,
    topics: Topics,
    store: Store,
    producer: FutureProducer,
    sender_group: String,
}

impl World {
    async fn new() -> World {
        let (mongo, kafka, topics) = (mongo_settings(), kafka_settings(), topics());
        create_topics(&kafka, &topics).await;
        let store = store(&mongo).await;
        let producer = producer(&kafka, &ProducerTuning::command(kafka.timeout)).expect("producer");
        World {
            mongo,
            kafka,
            topics,
            store,
            producer,
            sender_group: unique_name("SenderGroup"),
        }
    }

    fn pushctl(&self, args: &[&str]) -> Output {
        std::process::Command::new(env!("CARGO_BIN_EXE_pushctl"))
            .args(args)
            .env_remove("KAFKA_SECURITY_ENABLED")
            .envs(env_for(&self.mongo, &self.kafka, &self.topics))
            .env("SENDER_GROUP", &self.sender_group)
            .env("SENDER_RECORDER_GROUP", unique_name("OutcomeRecorderGroup"))
            .env("PARSER_GROUP", unique_name("ParserGroup"))
            .env("GATEWAY_HISTORY_GROUP", unique_name("GatewayHistory"))
            .output()
            .expect("pushctl runs")
    }

    #[track_caller]
    fn ok(&self, args: &[&str]) -> String {
        let out = self.pushctl(args);
        assert!(
            out.status.success(),
            "pushctl {args:?} failed ({:?}): {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    async fn send(&self, topic: &str, partition: i32, value: &[u8], headers: OwnedHeaders) {
        let record = FutureRecord::to(topic)
            .partition(partition)
            .key("k")
            .payload(value)
            .headers(headers);
        self.producer
            .send(record, Duration::from_secs(10))
            .await
            .unwrap_or_else(|(e, _)| panic!("producing to {topic}: {e}"));
    }

    /// Commits `offset` on `partition` of the push topic for the sender group, as a sender
    /// that read that far would (without joining the group).
    async fn commit_sender_offset(&self, partition: i32, offset: i64) {
        let (kafka, group, topic) = (
            self.kafka.clone(),
            self.sender_group.clone(),
            self.topics.push.name.clone(),
        );
        tokio::task::spawn_blocking(move || {
            let consumer: BaseConsumer = client_config(&kafka)
                .set("group.id", &group)
                .set("enable.auto.commit", "false")
                .create()
                .expect("consumer");
            let mut list = TopicPartitionList::new();
            list.add_partition_offset(&topic, partition, Offset::Offset(offset))
                .expect("offset");
            consumer.commit(&list, CommitMode::Sync).expect("commits");
        })
        .await
        .expect("commit task");
    }
}

fn outcome(
    push: ObjectId,
    result: OutcomeResult,
    reason: Option<&str>,
    platform: Option<Platform>,
) -> Vec<u8> {
    let mut record = OutcomeRecord::new(
        &push.to_hex(),
        &ObjectId::new().to_hex(),
        result,
        reason,
        1,
        false,
    );
    record.platform = platform;
    record.site_id = platform.map(|_| ObjectId::new().to_hex());
    record.to_json()
}

fn dead_letter_headers(reason: &str) -> OwnedHeaders {
    OwnedHeaders::new().insert(Header {
        key: "x-reason",
        value: Some(reason),
    })
}

#[tokio::test]
async fn stats_show_pushes_lag_outcomes_and_dead_letters() {
    let world = World::new().await;

    // A push being fanned out: 40 delivery messages so far, 3 accepted and 1 failed recorded.
    let site = new_site("mailto:ops@example.com").expect("site");
    world.store.insert_site(&site).await.expect("site");
    let template = PushTemplate {
        title: "Spring sale".into(),
        body: "30% off".into(),
        icon: None,
        launch_url: None,
        priority: Default::default(),
        time_to_live: 60,
    };
    let mut push = new_push(site.id, &template);
    push.status = PushStatus::Processing;
    push.fanout = Some(FanoutProgress {
        produced: 40,
        ..FanoutProgress::default()
    });
    world.store.insert_push(&push).await.expect("push");
    let counts = PartitionCounts {
        last_offset: 3,
        counts: DeliveryCounts {
            accepted: 3,
            failed: 1,
            ..DeliveryCounts::default()
        },
        reasons: Vec::new(),
    };
    assert!(
        world
            .store
            .write_partition_counts(push.id, 0, None, &counts)
            .await
            .expect("counts")
    );
    // A finished push is not in progress.
    let mut done = new_push(site.id, &template);
    done.status = PushStatus::Done;
    world.store.insert_push(&done).await.expect("push");

    // The push topic: 5 messages on partition 0 (the group committed 2) and 3 on
    // partition 1 (nothing committed): lag 3 + 3.
    let push_topic = world.topics.push.name.clone();
    for (partition, n) in [(0, 5), (1, 3)] {
        for _ in 0..n {
            world
                .send(&push_topic, partition, b"{}", OwnedHeaders::new())
                .await;
        }
    }
    world.commit_sender_offset(0, 2).await;

    // Outcomes: web 2 accepted, ios 1 failed (HTTP 400), 1 gone from an older sender.
    let outcomes = world.topics.outcomes.name.clone();
    let records = [
        (
            0,
            outcome(push.id, OutcomeResult::Accepted, None, Some(Platform::Web)),
        ),
        (
            1,
            outcome(push.id, OutcomeResult::Accepted, None, Some(Platform::Web)),
        ),
        (
            0,
            outcome(
                push.id,
                OutcomeResult::Failed,
                Some("HTTP 400: BadDeviceToken"),
                Some(Platform::Ios),
            ),
        ),
        (1, outcome(push.id, OutcomeResult::Gone, None, None)),
    ];
    for (partition, value) in &records {
        world
            .send(&outcomes, *partition, value, OwnedHeaders::new())
            .await;
    }
    // Dead letters: two of one reason, one of another.
    let dlq = world.topics.dead_letter.name.clone();
    for reason in [
        "HTTP 400: BadDeviceToken",
        "HTTP 400: BadDeviceToken",
        "HTTP 413",
    ] {
        world
            .send(&dlq, 0, b"raw", dead_letter_headers(reason))
            .await;
    }

    let json: Value = serde_json::from_str(&world.ok(&["stats", "--json"])).expect("JSON");

    let pushes = json["pushes"].as_array().expect("pushes");
    assert_eq!(pushes.len(), 1, "only the processing push: {json:#}");
    let p = &pushes[0];
    assert_eq!(p["pushId"], push.id.to_hex(), "{p:#}");
    assert_eq!(p["status"], "processing", "{p:#}");
    assert_eq!(p["fannedOut"], 40, "{p:#}");
    assert_eq!(p["outcomes"], 4, "{p:#}");
    assert_eq!(p["accepted"], 3, "{p:#}");
    assert_eq!(p["fanningOut"], true, "{p:#}");
    assert!(p["ratePerSec"].as_f64().is_some_and(|r| r > 0.0), "{p:#}");

    let lag = json["lag"].as_array().expect("lag");
    let sender_push = lag
        .iter()
        .find(|row| {
            row["group"] == world.sender_group.as_str() && row["topic"] == push_topic.as_str()
        })
        .unwrap_or_else(|| panic!("no sender lag row: {json:#}"));
    assert_eq!(sender_push["role"], "sender", "{sender_push:#}");
    assert_eq!(sender_push["setting"], "SENDER_GROUP", "{sender_push:#}");
    assert_eq!(sender_push["lag"], 6, "{sender_push:#}");
    assert_eq!(sender_push["committedPartitions"], 1, "{sender_push:#}");
    assert_eq!(sender_push["maxPartitionLag"], 3, "{sender_push:#}");
    assert_eq!(sender_push["partitions"], 8, "{sender_push:#}");
    for role in ["parser", "outcome recorder", "gateway history recorder"] {
        assert!(
            lag.iter()
                .any(|row| row["role"] == role && row["lag"].is_number()),
            "no {role} row: {json:#}"
        );
    }
    // The recorder group never committed: the whole outcome topic is its lag.
    let recorder = lag
        .iter()
        .find(|row| row["role"] == "outcome recorder")
        .expect("recorder row");
    assert_eq!(recorder["lag"], 4, "{recorder:#}");

    let window = &json["outcomes"];
    assert_eq!(window["recordsRead"], 4, "{window:#}");
    assert_eq!(window["capped"], false, "{window:#}");
    assert_eq!(window["byPlatform"]["web"]["accepted"], 2, "{window:#}");
    assert_eq!(window["byPlatform"]["ios"]["failed"], 1, "{window:#}");
    assert_eq!(window["byPlatform"]["unknown"]["gone"], 1, "{window:#}");
    assert_eq!(window["total"]["total"], 4, "{window:#}");
    assert_eq!(
        window["failures"],
        serde_json::json!([{"platform": "ios", "reason": "HTTP 400: BadDeviceToken", "count": 1}]),
        "{window:#}"
    );

    let dead = &json["deadLetters"];
    assert_eq!(dead["retained"], 3, "{dead:#}");
    assert_eq!(dead["byReason"]["HTTP 400: BadDeviceToken"], 2, "{dead:#}");
    assert_eq!(dead["byReason"]["HTTP 413"], 1, "{dead:#}");

    // The tables say the same.
    let text = world.ok(&["stats"]);
    for expected in [
        "PUSHES IN PROGRESS",
        &push.id.to_hex(),
        "(fan-out running)",
        "CONSUMER LAG",
        &format!("{} (sender)", world.sender_group),
        "OUTCOMES, last 5 min",
        "4 records read",
        "HTTP 400: BadDeviceToken",
        "DEAD LETTERS",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }

    // A cap below what the window holds reads the newest of each partition, and says so.
    let json: Value =
        serde_json::from_str(&world.ok(&["stats", "--json", "--max-records", "2"])).expect("JSON");
    assert_eq!(json["outcomes"]["capped"], true, "{json:#}");
    assert_eq!(json["outcomes"]["recordsRead"], 2, "{json:#}");
    let text = world.ok(&["stats", "--max-records", "2"]);
    assert!(text.contains("CAPPED at --max-records 2"), "{text}");

    pushservice_testkit::remove_test_data(&world.store, &world.kafka, &world.topics).await;
}

#[tokio::test]
async fn a_window_of_zero_minutes_is_refused_naming_the_flag() {
    let world = World::new().await;
    let out = world.pushctl(&["stats", "--window-mins", "0"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--window-mins"), "{stderr}");
    pushservice_testkit::remove_test_data(&world.store, &world.kafka, &world.topics).await;
}
