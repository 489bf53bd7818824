//! The parser against the real Kafka broker and MongoDB-protocol server.

use std::collections::{HashMap, HashSet};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bson::doc;
use pushservice_config::{KafkaSettings, MongoSettings, Topics};
use pushservice_kafka::rdkafka::producer::FutureRecord;
use pushservice_kafka::{ProducerTuning, ReadFrom, producer, read_topic};
use pushservice_model::{
    DeliveryMessage, ObjectId, Platform, Push, PushStatus, RawPushMessage, Subscriber, Target,
    Urgency,
};
use pushservice_parser::ParserConfig;
use pushservice_seed::{
    PushTemplate, SubscriberSeed, new_push, new_site, seed_subscribers, subscriber_batch,
};
use pushservice_store::Store;
use pushservice_testkit::{create_topics, env_for, kafka_settings, mongo_settings, store, topics};
use tokio::sync::oneshot;

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
        store.ensure_indexes().await.expect("indexes");
        World {
            mongo,
            kafka,
            topics,
            store,
        }
    }

    fn config(&self, checkpoint_every: u32) -> ParserConfig {
        ParserConfig {
            mongo: self.mongo.clone(),
            kafka: self.kafka.clone(),
            raw_push_topic: self.topics.raw_push.name.clone(),
            push_topic: self.topics.push.name.clone(),
            group: pushservice_testkit::unique_name("parsers"),
            checkpoint_every,
            retry_delay: Duration::from_millis(200),
            max_poll_interval: Duration::from_secs(300),
            metrics_addr: None,
        }
    }

    /// A site and a push of it, already `processing` as `pushctl send` leaves it.
    async fn triggered_push(&self, title: &str) -> Push {
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

    async fn trigger(&self, push: &Push) {
        let message = RawPushMessage {
            push_id: push.id.to_hex(),
            site_id: push.site_id.to_hex(),
            triggered_at: 1,
        };
        self.publish_raw(&message.push_id, &message.to_json()).await;
    }

    async fn publish_raw(&self, key: &str, payload: &[u8]) {
        let producer = producer(
            &self.kafka,
            &ProducerTuning::command(Duration::from_secs(10)),
        )
        .expect("producer");
        producer
            .send(
                FutureRecord::to(&self.topics.raw_push.name)
                    .key(key)
                    .payload(payload),
                Duration::from_secs(10),
            )
            .await
            .expect("raw-push acknowledged");
    }

    async fn wait_for_status(&self, push_id: ObjectId, wanted: PushStatus) -> Push {
        let deadline = Instant::now() + Duration::from_secs(120);
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
                "push {push_id} stuck in {}",
                push.status
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn deliveries(&self) -> Vec<DeliveryMessage> {
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

    async fn finish(self) {
        pushservice_testkit::remove_test_data(&self.store, &self.kafka, &self.topics).await;
    }
}

/// Runs the parser in-process until the returned sender is used or dropped.
fn start_parser(
    config: ParserConfig,
) -> (
    oneshot::Sender<()>,
    tokio::task::JoinHandle<anyhow::Result<()>>,
) {
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let task = tokio::spawn(pushservice_parser::run(config, async {
        let _ = stop_rx.await;
    }));
    (stop_tx, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fans_out_one_message_per_subscribed_subscriber_and_skips_broken_ones() {
    let world = World::new().await;
    let push = world.triggered_push("Flash sale").await;
    let audience = subscriber_batch(
        push.site_id,
        1_200,
        Platform::Web,
        "https://push.example/wp",
        b"seed",
    );
    world
        .store
        .insert_subscribers(&audience)
        .await
        .expect("audience");
    // Not part of the audience: unsubscribed, or another site's.
    let mut gone = subscriber_batch(
        push.site_id,
        5,
        Platform::Web,
        "https://push.example/wp",
        b"seed",
    );
    gone.iter_mut().for_each(|s| s.subscribed = false);
    world.store.insert_subscribers(&gone).await.expect("gone");
    let others = subscriber_batch(
        ObjectId::new(),
        7,
        Platform::Web,
        "https://push.example/wp",
        b"seed",
    );
    world
        .store
        .insert_subscribers(&others)
        .await
        .expect("others");
    // Broken subscriptions: skipped, counted, the push goes on.
    let mut broken: Vec<Subscriber> = subscriber_batch(
        push.site_id,
        3,
        Platform::Web,
        "https://push.example/wp",
        b"seed",
    );
    broken[0].push_end_point = "not json".into();
    broken[1].push_end_point =
        r#"{"endpoint":"https://push.example/x","keys":{"p256dh":"AAAA","auth":"AAAA"}}"#.into();
    broken[2].push_end_point = String::new();
    world
        .store
        .insert_subscribers(&broken)
        .await
        .expect("broken");

    let (stop, parser) = start_parser(world.config(250));
    world.trigger(&push).await;
    let done = world.wait_for_status(push.id, PushStatus::Done).await;
    let _ = stop.send(());
    parser.await.expect("join").expect("parser ran cleanly");

    assert_eq!(done.total_sent, 1_200);
    let progress = done.fanout.expect("fan-out progress recorded");
    assert_eq!((progress.produced, progress.skipped), (1_200, 3));

    let deliveries = world.deliveries().await;
    assert_eq!(
        deliveries.len(),
        1_200,
        "exactly one message per subscribed subscriber"
    );
    let by_id: HashMap<String, &Subscriber> = audience.iter().map(|s| (s.id.to_hex(), s)).collect();
    for delivery in &deliveries {
        let subscriber = by_id
            .get(&delivery.subscriber_id)
            .expect("message for an audience member");
        let subscription = subscriber.subscription().expect("valid");
        assert_eq!(
            delivery.target,
            Target::Web {
                endpoint: subscription.endpoint.clone(),
                p256dh: subscription.keys.p256dh.clone(),
                auth: subscription.keys.auth.clone(),
            }
        );
        assert_eq!(
            (delivery.push_id.as_str(), delivery.site_id.as_str()),
            (push.id.to_hex().as_str(), push.site_id.to_hex().as_str())
        );
        assert_eq!(
            (delivery.ttl, delivery.urgency, delivery.attempt),
            (3_600, Urgency::High, 0)
        );
        let payload: serde_json::Value =
            serde_json::from_str(delivery.payload.get()).expect("json");
        assert_eq!(payload["title"], "Flash sale");
        assert_eq!(payload["pushId"], push.id.to_hex());
        assert_eq!(payload["launchUrl"], "https://shop.example/sale");
        assert_eq!(payload["options"]["icon"], "https://shop.example/icon.png");
        // No credentials in Kafka.
        assert!(!delivery.payload.get().contains("privateKey"));
    }
    let distinct: HashSet<&str> = deliveries
        .iter()
        .map(|d| d.subscriber_id.as_str())
        .collect();
    assert_eq!(distinct.len(), 1_200);
    world.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_triggers_are_skipped_or_failed_and_the_parser_goes_on() {
    let world = World::new().await;
    // All on one raw-push partition (same key), in order: the parser must get past each.
    let key = "same-partition";
    world.publish_raw(key, b"{ this is not json").await;
    let unknown = RawPushMessage {
        push_id: ObjectId::new().to_hex(),
        site_id: ObjectId::new().to_hex(),
        triggered_at: 1,
    };
    world.publish_raw(key, &unknown.to_json()).await;
    let orphan = world.triggered_push("Orphan").await;
    world
        .store
        .database()
        .collection::<bson::Document>(pushservice_store::SITES)
        .delete_one(doc! { "_id": orphan.site_id })
        .await
        .expect("delete site");
    let orphan_message = RawPushMessage {
        push_id: orphan.id.to_hex(),
        site_id: orphan.site_id.to_hex(),
        triggered_at: 1,
    };
    world.publish_raw(key, &orphan_message.to_json()).await;
    let good = world.triggered_push("Good").await;
    world
        .store
        .insert_subscribers(&subscriber_batch(
            good.site_id,
            10,
            Platform::Web,
            "https://push.example/wp",
            b"s",
        ))
        .await
        .expect("audience");
    let good_message = RawPushMessage {
        push_id: good.id.to_hex(),
        site_id: good.site_id.to_hex(),
        triggered_at: 1,
    };
    world.publish_raw(key, &good_message.to_json()).await;

    let (stop, parser) = start_parser(world.config(100));
    let done = world.wait_for_status(good.id, PushStatus::Done).await;
    assert_eq!(done.total_sent, 10);
    let failed = world.wait_for_status(orphan.id, PushStatus::Failed).await;
    assert_eq!(
        failed.failure_reason,
        Some(format!("site {} does not exist", orphan.site_id))
    );
    let _ = stop.send(());
    parser.await.expect("join").expect("parser ran cleanly");
    assert_eq!(world.deliveries().await.len(), 10);
    world.finish().await;
}

fn spawn_parser_process(world: &World, group: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_parser"))
        .envs(env_for(&world.mongo, &world.kafka, &world.topics))
        .env("PARSER_GROUP", group)
        .env("PARSER_CHECKPOINT_EVERY", "500")
        .env("QUERY_BATCH_SIZE", "500")
        .env("LOG_LEVEL", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("parser starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parser_killed_mid_push_resumes_from_its_checkpoint_and_misses_nobody() {
    const AUDIENCE: u64 = 20_000;
    let world = World::new().await;
    let push = world.triggered_push("Resumable").await;
    let seed = SubscriberSeed {
        site_id: push.site_id,
        count: AUDIENCE,
        platform: Platform::Web,
        endpoint_base: "https://push.example/wp".into(),
        key_seed: b"seed".to_vec(),
        batch_size: 1_000,
    };
    seed_subscribers(&world.store, &seed, |_| {})
        .await
        .expect("seeded");
    let group = pushservice_testkit::unique_name("parsers");

    let mut first = spawn_parser_process(&world, &group);
    world.trigger(&push).await;
    // Kill it hard once it has checkpointed part of the audience but not all of it.
    let deadline = Instant::now() + Duration::from_secs(120);
    let checkpointed = loop {
        let current = world
            .store
            .push(push.id)
            .await
            .expect("query")
            .expect("push");
        let produced = current.fanout.as_ref().map_or(0, |f| f.produced);
        if produced >= 1_000 || current.status == PushStatus::Done {
            break current;
        }
        assert!(Instant::now() < deadline, "parser made no progress");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    first.kill().expect("SIGKILL");
    let _ = first.wait();
    let after_kill = world
        .store
        .push(push.id)
        .await
        .expect("query")
        .expect("push");
    assert_eq!(
        after_kill.status,
        PushStatus::Processing,
        "killed before the end (checkpoint {:?})",
        checkpointed.fanout
    );
    let checkpoint = after_kill
        .fanout
        .expect("checkpoint written before the kill");
    assert!(checkpoint.last_subscriber_id.is_some());

    let mut second = spawn_parser_process(&world, &group);
    let done = world.wait_for_status(push.id, PushStatus::Done).await;
    second.kill().expect("stop second parser");
    let _ = second.wait();

    assert_eq!(done.total_sent, AUDIENCE as i64);
    let deliveries = world.deliveries().await;
    let distinct: HashSet<&str> = deliveries
        .iter()
        .map(|d| d.subscriber_id.as_str())
        .collect();
    assert_eq!(
        distinct.len() as u64,
        AUDIENCE,
        "every subscriber got a delivery message"
    );
    let duplicates = deliveries.len() as u64 - AUDIENCE;
    eprintln!(
        "parser kill test: killed after checkpoint at {} of {AUDIENCE}; {} messages, {duplicates} duplicates",
        checkpoint.produced,
        deliveries.len()
    );
    assert!(
        duplicates <= 2 * 500 + 1_000,
        "duplicates beyond the checkpoint window: {duplicates}"
    );
    world.finish().await;
}
