//! Helpers for integration tests against the real Kafka and MongoDB-protocol server.
//!
//! Tests use the services `scripts/services up` starts on loopback, or the ones
//! `KAFKA_BROKERS` and `MONGODB_URL` point at. Every test gets its own database and topic
//! names, so tests run in parallel and never see each other's data.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pushservice_config::{KafkaSettings, MongoSettings, TopicSpec, Topics};

/// Shows what daemons running inside the test process log (warnings and errors by default,
/// `TEST_LOG` sets another filter), through the test harness's capture, so a failing test's
/// output says what the parser or sender saw. Safe to call from every test.
pub fn show_daemon_logs() {
    let filter = std::env::var("TEST_LOG").unwrap_or_else(|_| "warn".to_owned());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_test_writer()
        .try_init();
}

/// A name no other test run uses: `prefix`, the process id, a counter and the time.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    format!(
        "{prefix}_{}_{n}_{}",
        std::process::id(),
        millis % 100_000_000
    )
}

/// `MONGODB_URL` (default `mongodb://127.0.0.1:27017`) with its database replaced by `database`.
pub fn mongo_url(database: &str) -> String {
    let base = std::env::var("MONGODB_URL").unwrap_or_else(|_| "mongodb://127.0.0.1:27017".into());
    let (scheme, rest) = base.split_once("://").unwrap_or(("mongodb", base.as_str()));
    let (authority, query) = match rest.split_once('/') {
        Some((authority, path)) => (authority, path.split_once('?').map(|(_, q)| q)),
        None => (rest, None),
    };
    match query {
        Some(query) => format!("{scheme}://{authority}/{database}?{query}"),
        None => format!("{scheme}://{authority}/{database}"),
    }
}

/// Settings for a fresh, uniquely named database.
pub fn mongo_settings() -> MongoSettings {
    MongoSettings {
        url: mongo_url(&unique_name("test")),
        timeout: Duration::from_secs(10),
        batch_size: 500,
    }
}

/// `KAFKA_BROKERS` (default `127.0.0.1:9092`).
pub fn brokers() -> String {
    std::env::var("KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

/// Settings for the test broker.
pub fn kafka_settings() -> KafkaSettings {
    KafkaSettings {
        brokers: brokers(),
        security: None,
        timeout: Duration::from_secs(15),
        session_timeout: Duration::from_millis(KafkaSettings::DEFAULT_SESSION_TIMEOUT_MS),
    }
}

/// Uniquely named topics with small partition counts (tests do not need 200).
pub fn topics() -> Topics {
    Topics {
        raw_push: TopicSpec {
            name: unique_name("raw-push"),
            partitions: 2,
            replication: 1,
        },
        push: TopicSpec {
            name: unique_name("push"),
            partitions: 8,
            replication: 1,
        },
        dead_letter: TopicSpec {
            name: unique_name("push-dlq"),
            partitions: 1,
            replication: 1,
        },
        retry: TopicSpec {
            name: unique_name("push-retry"),
            partitions: 2,
            replication: 1,
        },
        outcomes: TopicSpec {
            name: unique_name("push-outcomes"),
            partitions: 2,
            replication: 1,
        },
        realtime: TopicSpec {
            name: unique_name("realtime"),
            partitions: 4,
            replication: 1,
        },
    }
}

/// The environment a spawned binary needs to use `mongo` and `kafka` with `topics`.
pub fn env_for(
    mongo: &MongoSettings,
    kafka: &KafkaSettings,
    topics: &Topics,
) -> Vec<(String, String)> {
    vec![
        ("MONGODB_URL".into(), mongo.url.clone()),
        ("KAFKA_BROKERS".into(), kafka.brokers.clone()),
        ("TOPIC_RAW_PUSH".into(), topics.raw_push.name.clone()),
        ("TOPIC_PUSH".into(), topics.push.name.clone()),
        (
            "TOPIC_RAW_PUSH_PARTITIONS".into(),
            topics.raw_push.partitions.to_string(),
        ),
        (
            "TOPIC_PUSH_PARTITIONS".into(),
            topics.push.partitions.to_string(),
        ),
        ("TOPIC_PUSH_DLQ".into(), topics.dead_letter.name.clone()),
        (
            "TOPIC_PUSH_DLQ_PARTITIONS".into(),
            topics.dead_letter.partitions.to_string(),
        ),
        ("TOPIC_PUSH_RETRY".into(), topics.retry.name.clone()),
        (
            "TOPIC_PUSH_RETRY_PARTITIONS".into(),
            topics.retry.partitions.to_string(),
        ),
        ("TOPIC_PUSH_OUTCOMES".into(), topics.outcomes.name.clone()),
        (
            "TOPIC_PUSH_OUTCOMES_PARTITIONS".into(),
            topics.outcomes.partitions.to_string(),
        ),
        ("TOPIC_REALTIME".into(), topics.realtime.name.clone()),
        (
            "TOPIC_REALTIME_PARTITIONS".into(),
            topics.realtime.partitions.to_string(),
        ),
        // Keep a developer's .env out of the tests.
        ("PUSHSERVICE_ENV_FILE".into(), "/dev/null".into()),
    ]
}

/// Creates `topics` on the test broker.
pub async fn create_topics(kafka: &KafkaSettings, topics: &Topics) {
    pushservice_kafka::ensure_topics(kafka, &topics.all())
        .await
        .unwrap_or_else(|e| panic!("creating test topics: {e}"));
}

/// Connects to a fresh database.
pub async fn store(mongo: &MongoSettings) -> pushservice_store::Store {
    pushservice_store::Store::connect(mongo)
        .await
        .unwrap_or_else(|e| panic!("MongoDB for tests: {e} (start it with `scripts/services up`)"))
}

/// Deletes test topics so a long-lived development broker does not pile up partitions.
pub async fn delete_topics(kafka: &KafkaSettings, names: &[&str]) {
    use pushservice_kafka::rdkafka::admin::{AdminClient, AdminOptions};
    use pushservice_kafka::rdkafka::client::DefaultClientContext;
    let admin: AdminClient<DefaultClientContext> =
        match pushservice_kafka::client_config(kafka).create() {
            Ok(admin) => admin,
            Err(_) => return, // Best effort: a leftover topic only costs disk.
        };
    let _ = admin.delete_topics(names, &AdminOptions::new()).await;
}

/// The flags form of `mongo`, for calling a command's library entry point directly.
pub fn mongo_args(mongo: &MongoSettings) -> pushservice_config::MongoArgs {
    pushservice_config::MongoArgs {
        mongodb_url: mongo.url.clone(),
        mongodb_timeout_ms: u64::try_from(mongo.timeout.as_millis()).unwrap_or(10_000),
        query_batch_size: mongo.batch_size,
    }
}

/// The flags form of `kafka` (plaintext).
pub fn kafka_args(kafka: &KafkaSettings) -> pushservice_config::KafkaArgs {
    pushservice_config::KafkaArgs {
        kafka_brokers: kafka.brokers.clone(),
        kafka_security_enabled: false,
        kafka_username: None,
        kafka_password: None,
        kafka_sasl_mechanism: "SCRAM-SHA-256".into(),
        kafka_ca_location: None,
        kafka_timeout_ms: u64::try_from(kafka.timeout.as_millis()).unwrap_or(10_000),
        kafka_session_timeout_ms: u64::try_from(kafka.session_timeout.as_millis())
            .unwrap_or(KafkaSettings::DEFAULT_SESSION_TIMEOUT_MS),
    }
}

/// The flags form of `topics`.
pub fn topic_args(topics: &Topics) -> pushservice_config::TopicArgs {
    pushservice_config::TopicArgs {
        topic_raw_push: topics.raw_push.name.clone(),
        topic_push: topics.push.name.clone(),
        topic_raw_push_partitions: topics.raw_push.partitions,
        topic_push_partitions: topics.push.partitions,
        topic_push_dlq: topics.dead_letter.name.clone(),
        topic_push_dlq_partitions: topics.dead_letter.partitions,
        topic_push_retry: topics.retry.name.clone(),
        topic_push_retry_partitions: topics.retry.partitions,
        topic_push_outcomes: topics.outcomes.name.clone(),
        topic_push_outcomes_partitions: topics.outcomes.partitions,
        topic_realtime: topics.realtime.name.clone(),
        topic_realtime_partitions: topics.realtime.partitions,
        topic_replication_factor: 1,
    }
}

/// Drops a test's database and deletes its topics (best effort: leftovers only cost disk).
pub async fn remove_test_data(
    store: &pushservice_store::Store,
    kafka: &KafkaSettings,
    topics: &Topics,
) {
    let _ = store.database().drop().await;
    let names: Vec<String> = topics.all().into_iter().map(|t| t.name).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    delete_topics(kafka, &names).await;
}
