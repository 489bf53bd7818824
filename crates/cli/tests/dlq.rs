//! `pushctl dlq stats|tail|replay` as an operator runs them, against the real Kafka broker and
//! MongoDB-protocol server, on dead letters written the way senders write them (value, key,
//! headers; some in committed transactions, one in an aborted transaction that must stay
//! invisible, and one malformed).

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use bson::doc;
use pushservice_config::{KafkaSettings, MongoSettings, Topics};
use pushservice_kafka::rdkafka::message::{Header, OwnedHeaders};
use pushservice_kafka::rdkafka::producer::{BaseRecord, FutureProducer, FutureRecord, Producer};
use pushservice_kafka::{
    ProducerTuning, ReadFrom, ReadMessage, producer, read_topic, transactional_producer,
};
use pushservice_model::{DELIVERY_VERSION, DeliveryMessage, ObjectId, Target, Urgency};
use pushservice_store::Store;
use pushservice_testkit::{create_topics, env_for, kafka_settings, mongo_settings, store, topics};
use serde_json::Value;
use serde_json::value::RawValue;

/// When the first test dead letter failed (ms since the epoch); each next one a second later.
const FAILED_FROM: u64 = 1_780_000_000_000;
const REASON_503: &str = "retry budget spent: HTTP 503 Service Unavailable";
const REASON_400: &str = "HTTP 400: invalid request";
const REASON_MALFORMED: &str = "malformed delivery message: expected value at line 1";

/// One test's world: its own database and topics, the dead-letter topic with 3 partitions.
struct World {
    mongo: MongoSettings,
    kafka: KafkaSettings,
    topics: Topics,
    store: Store,
    producer: FutureProducer,
    /// Dead letters written so far (numbering their failure times).
    written: u64,
}

/// A dead letter as the test writes it.
struct Letter {
    push_id: String,
    subscriber_id: String,
    reason: &'static str,
    /// The value: a delivery message, or these raw bytes.
    raw: Option<&'static [u8]>,
}

impl Letter {
    fn of(push: ObjectId, reason: &'static str) -> Letter {
        Letter {
            push_id: push.to_hex(),
            subscriber_id: ObjectId::new().to_hex(),
            reason,
            raw: None,
        }
    }

    fn malformed() -> Letter {
        Letter {
            push_id: String::new(),
            subscriber_id: String::new(),
            reason: REASON_MALFORMED,
            raw: Some(b"{\"v\":1,\"pushId\":"),
        }
    }

    /// The delivery message as last attempted: 9 attempts, retries timed.
    fn message(&self, failed_at: u64) -> DeliveryMessage {
        DeliveryMessage {
            v: DELIVERY_VERSION,
            push_id: self.push_id.clone(),
            site_id: ObjectId::new().to_hex(),
            subscriber_id: self.subscriber_id.clone(),
            target: Target::Android {
                token: format!("token-{}", self.subscriber_id),
            },
            ttl: 3_600,
            urgency: Urgency::High,
            topic: None,
            attempt: 9,
            first_attempt_at: Some(failed_at - 600_000),
            due_at: Some(failed_at),
            replayed: false,
            replaced_failure: None,
            payload: RawValue::from_string(r#"{"title":"Sale"}"#.into()).expect("JSON"),
        }
    }

    /// Value, key and headers as a sender writes them.
    fn record(&self, failed_at: u64, source_offset: u64) -> (Vec<u8>, String, OwnedHeaders) {
        let value = match self.raw {
            Some(raw) => raw.to_vec(),
            None => self.message(failed_at).to_json(),
        };
        let site = if self.raw.is_some() {
            ""
        } else {
            "65a1b2c3d4e5f60718293a4b"
        };
        let (attempts, first, source_offset, failed_at) = (
            "9".to_owned(),
            (failed_at - 600_000).to_string(),
            source_offset.to_string(),
            failed_at.to_string(),
        );
        let headers = [
            ("x-reason", self.reason),
            ("x-attempts", &attempts),
            ("x-push-id", &self.push_id),
            ("x-site-id", site),
            ("x-source-topic", "push"),
            ("x-source-partition", "3"),
            ("x-source-offset", &source_offset),
            ("x-first-attempt-at", &first),
            ("x-failed-at", &failed_at),
        ]
        .into_iter()
        .fold(OwnedHeaders::new(), |headers, (key, value)| {
            headers.insert(Header {
                key,
                value: Some(value),
            })
        });
        (value, self.subscriber_id.clone(), headers)
    }
}

impl World {
    async fn new() -> World {
        let (mongo, kafka, mut topics) = (mongo_settings(), kafka_settings(), topics());
        topics.dead_letter.partitions = 3;
        create_topics(&kafka, &topics).await;
        let store = store(&mongo).await;
        let producer = producer(&kafka, &ProducerTuning::command(kafka.timeout)).expect("producer");
        World {
            mongo,
            kafka,
            topics,
            store,
            producer,
            written: 0,
        }
    }

    fn next_failure(&mut self) -> u64 {
        self.written += 1;
        FAILED_FROM + self.written * 1_000
    }

    /// Writes `letters` with a plain idempotent producer.
    async fn write(&mut self, letters: &[Letter]) {
        for letter in letters {
            let failed_at = self.next_failure();
            let (value, key, headers) = letter.record(failed_at, self.written);
            let record = FutureRecord::to(&self.topics.dead_letter.name)
                .key(&key)
                .payload(&value)
                .headers(headers);
            self.producer
                .send(record, Duration::from_secs(10))
                .await
                .unwrap_or_else(|(e, _)| panic!("writing a dead letter: {e}"));
        }
    }

    /// Writes `letters` in one transaction, as senders do; aborted instead when `commit` is
    /// false (those must never be seen).
    async fn write_transaction(&mut self, letters: &[Letter], commit: bool) {
        let records: Vec<_> = letters
            .iter()
            .map(|letter| {
                let failed_at = self.next_failure();
                letter.record(failed_at, self.written)
            })
            .collect();
        let (kafka, topic) = (self.kafka.clone(), self.topics.dead_letter.name.clone());
        let id = format!("dlq-test-{}", ObjectId::new().to_hex());
        tokio::task::spawn_blocking(move || {
            let timeout = Duration::from_secs(10);
            let producer = transactional_producer(
                &kafka,
                &ProducerTuning::command(timeout),
                &id,
                Duration::from_secs(30),
            )
            .expect("transactional producer");
            producer.begin_transaction().expect("begins");
            for (value, key, headers) in &records {
                let record = BaseRecord::to(&topic)
                    .key(key)
                    .payload(value)
                    .headers(headers.clone());
                producer
                    .send(record)
                    .unwrap_or_else(|(e, _)| panic!("sending: {e}"));
            }
            if commit {
                producer.commit_transaction(timeout).expect("commits");
            } else {
                producer.flush(timeout).expect("flushes");
                producer.abort_transaction(timeout).expect("aborts");
            }
        })
        .await
        .expect("transaction task");
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_pushctl"));
        command
            .args(args)
            .env_remove("KAFKA_SECURITY_ENABLED")
            .envs(env_for(&self.mongo, &self.kafka, &self.topics));
        command
    }

    fn pushctl(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("pushctl runs")
    }

    /// Runs a command that must succeed; its stdout.
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

    async fn push_topic(&self) -> Vec<ReadMessage> {
        let (kafka, topic) = (self.kafka.clone(), self.topics.push.name.clone());
        tokio::task::spawn_blocking(move || {
            read_topic(
                &kafka,
                &topic,
                ReadFrom::Beginning,
                1_000,
                Duration::from_secs(2),
            )
        })
        .await
        .expect("task")
        .expect("read the push topic")
    }

    /// Drops the test's database and topics (not reached when a test fails, which keeps the
    /// evidence).
    async fn finish(self) {
        pushservice_testkit::remove_test_data(&self.store, &self.kafka, &self.topics).await;
    }
}

/// `name: n` lines of `replay`'s summary.
fn summary(stdout: &str) -> BTreeMap<String, u64> {
    stdout
        .lines()
        .filter_map(|line| {
            let (name, n) = line.rsplit_once(": ")?;
            let name = name.split(" onto ").next().unwrap_or(name);
            let name = name.split(" from ").next().unwrap_or(name);
            Some((name.to_owned(), n.trim().parse().ok()?))
        })
        .collect()
}

fn json_lines(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect()
}

/// The standard set: push A 5×503 (3 in a committed transaction) and 2×400, push B 3×503,
/// one malformed, and one of push A in an aborted transaction. 11 visible.
async fn standard(world: &mut World) -> (ObjectId, ObjectId) {
    let (a, b) = (ObjectId::new(), ObjectId::new());
    world
        .write(&[Letter::of(a, REASON_503), Letter::of(a, REASON_503)])
        .await;
    world
        .write_transaction(&[Letter::of(a, REASON_400)], false)
        .await;
    world
        .write_transaction(
            &[
                Letter::of(a, REASON_503),
                Letter::of(a, REASON_503),
                Letter::of(a, REASON_503),
            ],
            true,
        )
        .await;
    world
        .write(&[
            Letter::of(a, REASON_400),
            Letter::of(a, REASON_400),
            Letter::of(b, REASON_503),
            Letter::of(b, REASON_503),
            Letter::malformed(),
        ])
        .await;
    // Ends with a committed transaction: its marker is the partition's last offset.
    world
        .write_transaction(&[Letter::of(b, REASON_503)], true)
        .await;
    (a, b)
}

#[tokio::test]
async fn stats_counts_by_push_and_reason_and_ends_at_the_topic_end() {
    let mut world = World::new().await;
    let (a, b) = standard(&mut world).await;

    let json: Value = serde_json::from_str(&world.ok(&["dlq", "stats", "--json"])).expect("JSON");
    assert_eq!(json["total"], 11, "{json}");
    assert_eq!(json["unreadable"], 1, "{json}");
    assert_eq!(json["byPush"][a.to_hex()], 7, "{json}");
    assert_eq!(json["byPush"][b.to_hex()], 3, "{json}");
    assert_eq!(json["byPush"]["(unknown)"], 1, "{json}");
    assert_eq!(json["byReason"][REASON_503], 8, "{json}");
    assert_eq!(json["byReason"][REASON_400], 2, "{json}");
    assert_eq!(json["byReason"][REASON_MALFORMED], 1, "{json}");
    // The aborted one was the third written.
    assert_eq!(json["oldestFailedAt"], FAILED_FROM + 1_000, "{json}");
    assert_eq!(json["newestFailedAt"], FAILED_FROM + 12_000, "{json}");

    let json: Value =
        serde_json::from_str(&world.ok(&["dlq", "stats", "--push", &a.to_hex(), "--json"]))
            .expect("JSON");
    assert_eq!(
        (json["total"].as_u64(), json["unreadable"].as_u64()),
        (Some(7), Some(0))
    );
    assert_eq!(json["byReason"][REASON_400], 2, "{json}");

    let text = world.ok(&["dlq", "stats"]);
    assert!(text.contains("11 dead letters (1 unreadable"), "{text}");
    assert!(text.contains(&format!("  8  {REASON_503}")), "{text}");
    assert!(text.contains(&format!("  7  {}", a.to_hex())), "{text}");

    let bad = world.pushctl(&["dlq", "stats", "--push", "nope"]);
    assert_eq!(
        bad.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
    world.finish().await;
}

#[tokio::test]
async fn tail_prints_one_json_line_per_dead_letter_and_follows() {
    let mut world = World::new().await;
    let (a, b) = standard(&mut world).await;

    let all = json_lines(&world.ok(&["dlq", "tail", "--from-beginning"]));
    assert_eq!(all.len(), 11);
    let line = all
        .iter()
        .find(|l| l["pushId"] == b.to_hex())
        .expect("a dead letter of push B");
    assert_eq!(
        line["topic"],
        world.topics.dead_letter.name.as_str(),
        "{line}"
    );
    assert!(
        line["partition"].is_i64() && line["offset"].is_i64(),
        "{line}"
    );
    assert_eq!(line["reason"], REASON_503, "{line}");
    assert_eq!(line["attempts"], 9, "{line}");
    assert_eq!(line["sourceTopic"], "push", "{line}");
    assert_eq!(line["sourcePartition"], 3, "{line}");
    assert_eq!(line["key"], line["message"]["subscriberId"], "{line}");
    assert_eq!(line["message"]["attempt"], 9, "{line}");
    assert!(line.get("unreadable").is_none(), "{line}");
    let malformed = all
        .iter()
        .find(|l| l["reason"] == REASON_MALFORMED)
        .expect("the malformed one");
    assert_eq!(malformed["message"], "{\"v\":1,\"pushId\":", "{malformed}");
    assert!(malformed["unreadable"].is_string(), "{malformed}");

    // The last 3 by failure time, oldest first.
    let last = json_lines(&world.ok(&["dlq", "tail", "--last", "3"]));
    let failed: Vec<u64> = last.iter().filter_map(|l| l["failedAt"].as_u64()).collect();
    let newest = FAILED_FROM + 12_000;
    assert_eq!(
        failed,
        vec![newest - 2_000, newest - 1_000, newest],
        "{last:?}"
    );
    let of_a = json_lines(&world.ok(&["dlq", "tail", "--push", &a.to_hex(), "--last", "100"]));
    assert_eq!(of_a.len(), 7);

    // --follow prints the last ones, then what arrives later, until stopped.
    let mut child: Child = world
        .command(&["dlq", "tail", "--last", "1", "--follow"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawns");
    let stdout = child.stdout.take().expect("stdout");
    let (lines_tx, lines_rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let first = lines_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the last dead letter");
    assert!(first.contains(&format!("\"failedAt\":{newest}")), "{first}");
    let later = ObjectId::new();
    world.write(&[Letter::of(later, REASON_400)]).await;
    let next = lines_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the new dead letter");
    assert!(next.contains(&later.to_hex()), "{next}");
    child.kill().expect("stops");
    let _ = child.wait();
    world.finish().await;
}

#[tokio::test]
async fn replay_puts_dead_letters_back_once_with_a_fresh_budget() {
    let mut world = World::new().await;
    let (a, b) = standard(&mut world).await;

    let dry = summary(&world.ok(&["dlq", "replay", "--dry-run"]));
    assert_eq!(dry.get("would replay"), Some(&10), "{dry:?}");
    assert_eq!(dry.get("unreadable, never replayed"), Some(&1), "{dry:?}");
    assert!(
        world.push_topic().await.is_empty(),
        "a dry run writes nothing"
    );

    // Push A's 503s only (case-insensitive reason).
    let first = summary(&world.ok(&[
        "dlq",
        "replay",
        "--push",
        &a.to_hex(),
        "--reason",
        "http 503",
    ]));
    assert_eq!(first.get("dead letters read"), Some(&11), "{first:?}");
    assert_eq!(first.get("replayed"), Some(&5), "{first:?}");
    assert_eq!(
        first.get("skipped, already replayed"),
        Some(&0),
        "{first:?}"
    );
    assert_eq!(first.get("not matching"), Some(&6), "{first:?}");
    let replayed = world.push_topic().await;
    assert_eq!(replayed.len(), 5);
    for record in &replayed {
        let value = record.payload.as_deref().expect("value");
        let message = DeliveryMessage::from_json(value).expect("a delivery message");
        assert_eq!(message.push_id, a.to_hex());
        assert_eq!(
            record.key.as_deref(),
            Some(message.subscriber_id.as_bytes())
        );
        assert_eq!((message.attempt, message.replayed), (0, true));
        assert_eq!((message.first_attempt_at, message.due_at), (None, None));
        let json: Value = serde_json::from_slice(value).expect("JSON");
        assert!(json.get("firstAttemptAt").is_none() && json.get("dueAt").is_none());
    }

    // Again: nothing new.
    let second = summary(&world.ok(&["dlq", "replay", "--push", &a.to_hex()]));
    assert_eq!(
        second.get("replayed"),
        Some(&2),
        "push A's 400s only: {second:?}"
    );
    assert_eq!(
        second.get("skipped, already replayed"),
        Some(&5),
        "{second:?}"
    );
    let third = summary(&world.ok(&["dlq", "replay", "--push", &a.to_hex()]));
    assert_eq!(third.get("replayed"), Some(&0), "{third:?}");
    assert_eq!(
        third.get("skipped, already replayed"),
        Some(&7),
        "{third:?}"
    );

    // Everything else: push B's 3; the malformed one is reported, not replayed.
    let out = world.pushctl(&["dlq", "replay"]);
    assert!(out.status.success());
    let rest = summary(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(rest.get("replayed"), Some(&3), "{rest:?}");
    assert_eq!(rest.get("skipped, already replayed"), Some(&7), "{rest:?}");
    assert_eq!(rest.get("unreadable, never replayed"), Some(&1), "{rest:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unreadable dead letter"), "{stderr}");

    let subscribers: HashSet<String> = world
        .push_topic()
        .await
        .iter()
        .filter_map(|r| {
            r.key
                .as_deref()
                .map(|k| String::from_utf8_lossy(k).into_owned())
        })
        .collect();
    assert_eq!(subscribers.len(), 10, "each replayed once");

    // --again replays what was replayed before.
    let again = summary(&world.ok(&["dlq", "replay", "--push", &b.to_hex(), "--again"]));
    assert_eq!(again.get("replayed"), Some(&3), "{again:?}");
    assert_eq!(world.push_topic().await.len(), 13);

    let replays = world
        .store
        .database()
        .collection::<bson::Document>("deadLetterReplays");
    let done = replays
        .count_documents(doc! { "state": "replayed" })
        .await
        .expect("count");
    assert_eq!(done, 10);
    let again_marked = replays
        .count_documents(doc! { "replays": 2 })
        .await
        .expect("count");
    assert_eq!(again_marked, 3);
    world.finish().await;
}

#[tokio::test]
async fn a_missing_topic_or_a_bad_id_fails_with_the_documented_exit_code() {
    let world = World::new().await;
    let out = world
        .command(&["dlq", "stats"])
        .env("TOPIC_PUSH_DLQ", "no-such-dlq-topic")
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(5));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no-such-dlq-topic") && stderr.contains("does not exist"),
        "{stderr}"
    );

    let out = world.pushctl(&["dlq", "replay", "--push", "12345"]);
    assert_eq!(out.status.code(), Some(2));
    // An empty topic is no error.
    let text = world.ok(&["dlq", "stats"]);
    assert!(text.contains(": 0 dead letters"), "{text}");
    world.finish().await;
}

#[tokio::test]
async fn a_claim_left_by_a_run_that_died_is_taken_over_and_a_live_one_is_left_alone() {
    let mut world = World::new().await;
    let push = ObjectId::new();
    world
        .write(&[Letter::of(push, REASON_503), Letter::of(push, REASON_503)])
        .await;
    let lines = json_lines(&world.ok(&["dlq", "tail", "--from-beginning"]));
    let ids: Vec<String> = lines
        .iter()
        .map(|l| {
            format!(
                "{}:{}:{}",
                l["topic"].as_str().unwrap_or(""),
                l["partition"],
                l["offset"]
            )
        })
        .collect();
    // One claim from a run that died an hour ago mid-replay, one from a run still going.
    let replays = world
        .store
        .database()
        .collection::<bson::Document>("deadLetterReplays");
    let hour_ago =
        bson::DateTime::from_millis(bson::DateTime::now().timestamp_millis() - 3_600_000);
    for (id, claimed_at) in [(&ids[0], hour_ago), (&ids[1], bson::DateTime::now())] {
        replays
            .insert_one(
                doc! { "_id": id, "state": "producing", "claimedAt": claimed_at, "replays": 1 },
            )
            .await
            .expect("marker");
    }

    let run = summary(&world.ok(&["dlq", "replay"]));
    assert_eq!(run.get("replayed"), Some(&1), "{run:?}");
    assert_eq!(run.get("skipped, already replayed"), Some(&1), "{run:?}");
    let records = world.push_topic().await;
    assert_eq!(records.len(), 1);
    assert_eq!(
        records[0].key.as_deref(),
        lines[0]["key"].as_str().map(str::as_bytes),
        "the abandoned one"
    );
    let taken = replays
        .find_one(doc! { "_id": &ids[0] })
        .await
        .expect("query")
        .expect("marker");
    assert_eq!(taken.get_str("state"), Ok("replayed"), "{taken}");
    assert_eq!(taken.get_i32("replays"), Ok(2), "{taken}");
    world.finish().await;
}
