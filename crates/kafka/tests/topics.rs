//! Topic administration and produce/read against the real broker.

use std::time::Duration;

use pushservice_config::{KafkaSettings, TopicSpec};
use pushservice_kafka::rdkafka::producer::FutureRecord;
use pushservice_kafka::{
    KafkaError, ProducerTuning, ReadFrom, TopicOutcome, ensure_topics, producer, read_topic,
};
use pushservice_testkit::{kafka_settings, unique_name};

#[tokio::test]
async fn creates_topics_with_partition_counts_and_is_idempotent() {
    let kafka = kafka_settings();
    let specs = [
        TopicSpec {
            name: unique_name("raw-push"),
            partitions: 4,
            replication: 1,
        },
        TopicSpec {
            name: unique_name("push"),
            partitions: 200,
            replication: 1,
        },
    ];

    let first = ensure_topics(&kafka, &specs).await.expect("first run");
    assert_eq!(
        first,
        vec![
            TopicOutcome::Created {
                name: specs[0].name.clone(),
                partitions: 4
            },
            TopicOutcome::Created {
                name: specs[1].name.clone(),
                partitions: 200
            },
        ]
    );

    let second = ensure_topics(&kafka, &specs).await.expect("second run");
    assert_eq!(
        second,
        vec![
            TopicOutcome::Existed {
                name: specs[0].name.clone(),
                partitions: 4,
                requested: 4
            },
            TopicOutcome::Existed {
                name: specs[1].name.clone(),
                partitions: 200,
                requested: 200
            },
        ]
    );

    // Asking for another count leaves the topic alone and says so.
    let mut bigger = specs[0].clone();
    bigger.partitions = 8;
    let third = ensure_topics(&kafka, &[bigger]).await.expect("third run");
    let text = third[0].to_string();
    assert!(
        text.contains("with 4 partitions, not the 8 configured"),
        "{text}"
    );
}

#[tokio::test]
async fn produced_messages_are_read_back_with_keys() {
    let kafka = kafka_settings();
    let spec = TopicSpec {
        name: unique_name("roundtrip"),
        partitions: 3,
        replication: 1,
    };
    ensure_topics(&kafka, std::slice::from_ref(&spec))
        .await
        .expect("topic");

    let producer = producer(&kafka, &ProducerTuning::pipeline()).expect("producer");
    for i in 0..10 {
        let key = format!("key-{i}");
        let payload = format!("{{\"n\":{i}}}");
        producer
            .send(
                FutureRecord::to(&spec.name).key(&key).payload(&payload),
                Duration::from_secs(10),
            )
            .await
            .expect("acknowledged");
    }

    let topic = spec.name.clone();
    let read = tokio::task::spawn_blocking(move || {
        read_topic(
            &kafka,
            &topic,
            ReadFrom::Beginning,
            100,
            Duration::from_secs(3),
        )
    })
    .await
    .expect("task")
    .expect("read");
    let mut keys: Vec<String> = read
        .iter()
        .map(|m| String::from_utf8(m.key.clone().expect("key")).expect("utf-8"))
        .collect();
    keys.sort();
    let mut expected: Vec<String> = (0..10).map(|i| format!("key-{i}")).collect();
    expected.sort();
    assert_eq!(keys, expected);
    pushservice_testkit::delete_topics(&kafka_settings(), &[&spec.name]).await;
}

#[tokio::test]
async fn unreachable_broker_is_named_in_the_error() {
    // Port 1 on loopback: nothing listens there, connections are refused at once.
    let kafka = KafkaSettings {
        brokers: "127.0.0.1:1".into(),
        security: None,
        timeout: Duration::from_secs(2),
        session_timeout: Duration::from_millis(KafkaSettings::DEFAULT_SESSION_TIMEOUT_MS),
    };
    let spec = TopicSpec {
        name: unique_name("never"),
        partitions: 1,
        replication: 1,
    };
    let err = ensure_topics(&kafka, &[spec]).await.expect_err("no broker");
    assert!(matches!(err, KafkaError::Unreachable { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("could not reach Kafka at 127.0.0.1:1"),
        "{text}"
    );
}

#[tokio::test]
async fn reading_a_missing_topic_says_how_to_create_it() {
    let kafka = kafka_settings();
    let topic = unique_name("missing");
    let err = tokio::task::spawn_blocking(move || {
        read_topic(
            &kafka,
            &topic,
            ReadFrom::Beginning,
            1,
            Duration::from_millis(100),
        )
    })
    .await
    .expect("task")
    .expect_err("missing topic");
    assert!(err.to_string().contains("pushctl topics create"), "{err}");
}
