//! A parser that reports instead of wedging (issue 8, item 10), against the real Kafka broker
//! and MongoDB-protocol server: bad records are skipped, pushes that cannot be fanned out are
//! marked `failed` with the reason and the parser moves on, a MongoDB restart is ridden out,
//! and a partition that leaves and comes back keeps being read.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use bson::{Document, doc};
use common::{MongoProxy, World, start_parser};
use pushservice_kafka::rdkafka::consumer::{BaseConsumer, Consumer as _};
use pushservice_kafka::rdkafka::{Offset, TopicPartitionList};
use pushservice_model::{ObjectId, Platform, Push, PushStatus, RawPushMessage};
use pushservice_parser::RetryPolicy;
use pushservice_seed::{SubscriberSeed, seed_subscribers, subscriber_batch};
use pushservice_store::{PUSHES, SITES};

/// Every raw-push record here goes to this partition, in order: the parser must get past each.
const PARTITION: i32 = 0;

async fn audience(world: &World, push: &Push, count: usize) {
    world
        .store
        .insert_subscribers(&subscriber_batch(
            push.site_id,
            count,
            Platform::Web,
            "https://push.example/wp",
            b"s",
        ))
        .await
        .expect("audience");
}

async fn publish(world: &World, push: &Push, partition: i32) {
    world
        .publish_record(
            &push.id.to_hex(),
            Some(&World::raw_push(push)),
            Some(partition),
        )
        .await;
}

fn reason(push: &Push) -> &str {
    push.failure_reason.as_deref().unwrap_or_default()
}

/// The offset `group` committed on `partition` of the raw-push topic.
fn committed(world: &World, group: &str, partition: i32) -> Offset {
    let consumer: BaseConsumer = pushservice_kafka::client_config(&world.kafka)
        .set("group.id", group)
        .create()
        .expect("consumer");
    let mut list = TopicPartitionList::new();
    list.add_partition(&world.topics.raw_push.name, partition);
    let offsets = consumer
        .committed_offsets(list, Duration::from_secs(10))
        .expect("committed offsets");
    offsets
        .find_partition(&world.topics.raw_push.name, partition)
        .expect("partition listed")
        .offset()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_records_are_skipped_unusable_pushes_failed_and_the_parser_goes_on() {
    let world = World::new().await;
    let key = "same-partition";
    let records: [Option<&[u8]>; 5] = [
        Some(b"{ this is not json"),
        None, // a tombstone
        Some(b"\xff\xfe\x00\x01"),
        Some(br#"{"pushId": 5, "siteId": [], "triggeredAt": "yesterday"}"#),
        Some(br#"{"pushId": "not-an-id", "siteId": "x", "triggeredAt": 1}"#),
    ];
    for payload in records {
        world.publish_record(key, payload, Some(PARTITION)).await;
    }
    let unknown = RawPushMessage {
        push_id: ObjectId::new().to_hex(),
        site_id: ObjectId::new().to_hex(),
        triggered_at: 1,
    };
    world
        .publish_record(key, Some(&unknown.to_json()), Some(PARTITION))
        .await;

    let sites = world.store.database().collection::<Document>(SITES);
    let pushes = world.store.database().collection::<Document>(PUSHES);
    // Its site is gone.
    let orphan = world.triggered_push("Orphan").await;
    sites
        .delete_one(doc! { "_id": orphan.site_id })
        .await
        .expect("delete site");
    // Its site document does not fit the model.
    let broken_site = world.triggered_push("Broken site").await;
    sites
        .replace_one(
            doc! { "_id": broken_site.site_id },
            doc! { "_id": broken_site.site_id, "subject": "mailto:x@example.com" },
        )
        .await
        .expect("break site");
    audience(&world, &broken_site, 3).await;
    // The push document itself does not fit the model.
    let unreadable = world.triggered_push("Unreadable").await;
    pushes
        .update_one(
            doc! { "_id": unreadable.id },
            doc! { "$set": { "title": { "not": "a string" } } },
        )
        .await
        .expect("break push");
    // Every delivery message would exceed Kafka's message size limit.
    let huge = world.triggered_push(&"x".repeat(1_200_000)).await;
    audience(&world, &huge, 3).await;
    let good = world.triggered_push("Good").await;
    audience(&world, &good, 10).await;
    for push in [&orphan, &broken_site, &unreadable, &huge, &good] {
        publish(&world, push, PARTITION).await;
    }

    let started = Instant::now();
    let parser = start_parser(world.config(100));
    let done = world.wait_for_status(good.id, PushStatus::Done).await;
    assert_eq!(done.total_sent, 10);
    let failed = world.wait_for_status(orphan.id, PushStatus::Failed).await;
    assert_eq!(
        reason(&failed),
        format!("site {} does not exist", orphan.site_id)
    );
    let failed = world
        .wait_for_status(broken_site.id, PushStatus::Failed)
        .await;
    assert!(
        reason(&failed).contains("cannot be read") && reason(&failed).contains("publicKey"),
        "broken site: {:?}",
        failed.failure_reason
    );
    let failed = world.wait_for_status(huge.id, PushStatus::Failed).await;
    assert!(
        reason(&failed).contains("too large"),
        "huge push: {:?}",
        failed.failure_reason
    );
    // Read raw: the push does not fit the model, which is the point.
    let unreadable_doc = pushes
        .find_one(doc! { "_id": unreadable.id })
        .await
        .expect("query")
        .expect("push");
    assert_eq!(unreadable_doc.get_str("status"), Ok("failed"));
    let unreadable_reason = unreadable_doc.get_str("failureReason").unwrap_or_default();
    assert!(
        unreadable_reason.contains("cannot be read"),
        "unreadable push: {unreadable_reason:?}"
    );
    // None of these can pass, so none waited for the retry budget.
    for reason in [reason(&failed), unreadable_reason] {
        assert!(!reason.contains("times in a row"), "{reason}");
    }
    eprintln!(
        "bad records: all handled in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    parser.stop().await;
    assert_eq!(world.deliveries().await.len(), 10);
    world.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fan_out_that_keeps_failing_fails_its_push_commits_and_moves_on() {
    let world = World::new().await;
    // A real persistent failure: the push topic this parser is configured with does not
    // exist (and the broker does not create topics on demand). librdkafka fails the first
    // message after 30 s (`topic.metadata.propagation.max.ms`), later ones at once.
    let mut config = world.config(100);
    config.push_topic = pushservice_testkit::unique_name("no-such-topic");
    config.retry = RetryPolicy {
        first_delay: Duration::from_millis(200),
        max_delay: Duration::from_secs(1),
        attempts: 2,
        patience: Duration::from_secs(5),
    };
    let group = config.group.clone();
    let push = world.triggered_push("Nowhere to go").await;
    audience(&world, &push, 5).await;
    publish(&world, &push, PARTITION).await;
    // The next record of the partition: reached only once the parser has moved on.
    let unknown = RawPushMessage {
        push_id: ObjectId::new().to_hex(),
        site_id: ObjectId::new().to_hex(),
        triggered_at: 1,
    };
    world
        .publish_record("next", Some(&unknown.to_json()), Some(PARTITION))
        .await;

    let started = Instant::now();
    let parser = start_parser(config.clone());
    let failed = world
        .wait_for_status_within(push.id, PushStatus::Failed, Duration::from_secs(120))
        .await;
    let elapsed = started.elapsed();
    let reason = reason(&failed);
    assert!(
        reason.contains(&config.push_topic) && reason.contains("times in a row over"),
        "reason: {reason}"
    );
    eprintln!(
        "persistent failure: push failed after {:.1} s: {reason}",
        elapsed.as_secs_f64()
    );
    // Both records end up behind the group's committed offset: no parser does them again.
    let deadline = Instant::now() + Duration::from_secs(30);
    while committed(&world, &group, PARTITION) != Offset::Offset(2) {
        assert!(
            Instant::now() < deadline,
            "offsets not committed past both records"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    parser.stop().await;
    world.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mongodb_restart_mid_fan_out_does_not_fail_the_push() {
    const AUDIENCE: u64 = 20_000;
    const OUTAGE: Duration = Duration::from_secs(20);
    let world = World::new().await;
    let push = world.triggered_push("Through an outage").await;
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
    let proxy = MongoProxy::start(&world.mongo).await;
    let mut config = world.config(500);
    config.mongo = proxy.settings(&world.mongo);
    // What an operator gets without setting anything.
    config.retry = RetryPolicy::default();
    let parser = start_parser(config);
    world.trigger(&push).await;

    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let current = world
            .store
            .push(push.id)
            .await
            .expect("query")
            .expect("push");
        let produced = current.fanout.as_ref().map_or(0, |f| f.produced);
        assert_eq!(
            current.status,
            PushStatus::Processing,
            "finished before the outage"
        );
        if produced >= 1_000 {
            break;
        }
        assert!(Instant::now() < deadline, "parser made no progress");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    proxy.cut();
    tokio::time::sleep(OUTAGE).await;
    let during = world
        .store
        .push(push.id)
        .await
        .expect("query")
        .expect("push");
    proxy.restore();
    assert_eq!(during.status, PushStatus::Processing);

    let done = world.wait_for_status(push.id, PushStatus::Done).await;
    parser.stop().await;
    assert_eq!(done.total_sent, AUDIENCE as i64);
    assert_eq!(done.failure_reason, None);
    let deliveries = world.deliveries().await;
    let distinct: HashSet<&str> = deliveries
        .iter()
        .map(|d| d.subscriber_id.as_str())
        .collect();
    assert_eq!(
        distinct.len() as u64,
        AUDIENCE,
        "every subscriber has a message"
    );
    eprintln!(
        "MongoDB outage of {OUTAGE:?}: checkpoint at {} when cut; {} messages, {} duplicates",
        during.fanout.map_or(0, |f| f.produced),
        deliveries.len(),
        deliveries.len() as u64 - AUDIENCE
    );
    // The parser lived through the outage and Kafka did not fail: it resumes after what Kafka
    // acknowledged, not at the stored checkpoint, so nobody gets the push twice (each
    // duplicate here would also be counted twice in the push's totals).
    assert_eq!(
        deliveries.len() as u64,
        AUDIENCE,
        "no subscriber's message produced twice"
    );
    world.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_revoked_while_its_push_runs_and_assigned_back_keeps_working() {
    let world = World::new().await;
    assert_eq!(
        world.topics.raw_push.partitions, 2,
        "the test moves one of two"
    );
    let partitions = [0, 1];
    // Parser A reaches MongoDB through a proxy, so its fan-outs can be kept failing (and
    // retrying, with a budget that never runs out here) while the partition moves.
    let proxy = MongoProxy::start(&world.mongo).await;
    let mut a_config = world.config(100);
    a_config.mongo = proxy.settings(&world.mongo);
    a_config.mongo.timeout = Duration::from_secs(2);
    a_config.retry = RetryPolicy {
        first_delay: Duration::from_millis(200),
        max_delay: Duration::from_secs(1),
        attempts: 1_000,
        patience: Duration::from_secs(3_600),
    };
    let mut b_config = world.config(100);
    b_config.group = a_config.group.clone();
    let parser_a = start_parser(a_config);

    // A owns both partitions and works.
    for partition in partitions {
        let warm_up = world.triggered_push("Warm-up").await;
        audience(&world, &warm_up, 5).await;
        publish(&world, &warm_up, partition).await;
        world.wait_for_status(warm_up.id, PushStatus::Done).await;
    }

    // A push on each partition whose fan-out keeps failing on A: both partitions paused.
    proxy.cut();
    let mut stuck = Vec::new();
    for partition in partitions {
        let push = world.triggered_push("During the move").await;
        audience(&world, &push, 5).await;
        publish(&world, &push, partition).await;
        stuck.push((partition, push));
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    for (_, push) in &stuck {
        let current = world
            .store
            .push(push.id)
            .await
            .expect("query")
            .expect("push");
        assert_eq!(current.status, PushStatus::Processing, "A cannot finish it");
    }

    // B joins: one partition moves to it, A's fan-out there is cancelled, B finishes the push.
    let parser_b = start_parser(b_config);
    let deadline = Instant::now() + Duration::from_secs(90);
    let moved = 'moved: loop {
        for (partition, push) in &stuck {
            let current = world
                .store
                .push(push.id)
                .await
                .expect("query")
                .expect("push");
            if current.status == PushStatus::Done {
                break 'moved *partition;
            }
        }
        assert!(Instant::now() < deadline, "B never took a partition over");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    eprintln!("partition {moved} moved to B and back");

    // B leaves: the partition comes back to A, which must read it again.
    parser_b.stop().await;
    proxy.restore();
    for (_, push) in &stuck {
        world.wait_for_status(push.id, PushStatus::Done).await;
    }
    for partition in partitions {
        let after = world.triggered_push("After the move").await;
        audience(&world, &after, 5).await;
        publish(&world, &after, partition).await;
        let done = world.wait_for_status(after.id, PushStatus::Done).await;
        assert_eq!(done.total_sent, 5, "partition {partition}");
    }
    parser_a.stop().await;
    world.finish().await;
}
