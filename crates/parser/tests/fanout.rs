//! The parser against the real Kafka broker and MongoDB-protocol server.

mod common;

use std::collections::{HashMap, HashSet};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{World, start_parser};
use pushservice_model::{ObjectId, Platform, PushStatus, Subscriber, Target, Urgency};
use pushservice_seed::{SubscriberSeed, seed_subscribers, subscriber_batch};
use pushservice_testkit::env_for;

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

    let parser = start_parser(world.config(250));
    world.trigger(&push).await;
    let done = world.wait_for_status(push.id, PushStatus::Done).await;
    parser.stop().await;

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
