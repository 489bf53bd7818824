//! Canceled pushes and audiences in the parser, against the real Kafka broker and
//! MongoDB-protocol server (no senders: what the parser produces stays on the push topic).

mod common;

use std::time::{Duration, Instant};

use bson::doc;
use common::{World, start_parser};
use pushservice_model::{Audience, Platform, Push, PushStatus};
use pushservice_seed::{SubscriberSeed, seed_subscribers, subscriber_batch};
use pushservice_store::{PUSHES, Transition};

/// The parser's canceled count of `push`, once written.
async fn parser_canceled(world: &World, push: &Push) -> Option<i64> {
    world.store.parser_canceled(push.id).await.expect("query")
}

/// Waits until `push` is `canceled` with `totalCanceled` at least `at_least`.
async fn wait_until_canceled(world: &World, push: &Push, at_least: i64) -> Push {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let now = world
            .store
            .push(push.id)
            .await
            .expect("query")
            .expect("push");
        if now.status == PushStatus::Canceled && now.total_canceled >= at_least {
            return now;
        }
        assert!(
            Instant::now() < deadline,
            "push not settled as canceled: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_canceled_before_its_fan_out_is_skipped_with_its_audience_counted() {
    let world = World::new().await;
    let push = world.triggered_push("Too late").await;
    let mut audience = subscriber_batch(
        push.site_id,
        300,
        Platform::Web,
        "https://push.example/wp",
        b"seed",
    );
    // Only the tagged third is the push's audience.
    for subscriber in audience.iter_mut().step_by(3) {
        subscriber.tags = vec!["vip".into()];
    }
    world
        .store
        .insert_subscribers(&audience)
        .await
        .expect("audience");
    let narrowed = Audience {
        external_ids: Vec::new(),
        tags: vec!["vip".into()],
    };
    world
        .store
        .database()
        .collection::<bson::Document>(PUSHES)
        .update_one(
            doc! { "_id": push.id },
            doc! { "$set": { "audience": bson::to_bson(&narrowed).expect("bson") } },
        )
        .await
        .expect("audience set");
    assert!(matches!(
        world.store.cancel_push(push.id).await.expect("cancel"),
        Transition::Done(_)
    ));

    let parser = start_parser(world.config(100));
    world.trigger(&push).await;
    let canceled = wait_until_canceled(&world, &push, 100).await;
    parser.stop().await;

    assert_eq!(parser_canceled(&world, &push).await, Some(100));
    assert_eq!(canceled.total_canceled, 100, "every tagged subscriber");
    assert_eq!(canceled.total_sent, 0);
    assert!(world.deliveries().await.is_empty(), "nothing produced");
    world.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fan_out_stops_soon_after_its_push_is_canceled() {
    const AUDIENCE: u64 = 30_000;
    let world = World::new().await;
    let push = world.triggered_push("Canceled mid-way").await;
    let seed = SubscriberSeed {
        site_id: push.site_id,
        count: AUDIENCE,
        platform: Platform::Ios,
        endpoint_base: String::new(),
        key_seed: b"seed".to_vec(),
        batch_size: 1_000,
    };
    seed_subscribers(&world.store, &seed, |_| {})
        .await
        .expect("audience");

    let parser = start_parser(world.config(1_000));
    world.trigger(&push).await;
    let deadline = Instant::now() + Duration::from_secs(120);
    let produced_at_cancel = loop {
        let now = world
            .store
            .push(push.id)
            .await
            .expect("query")
            .expect("push");
        let produced = now.fanout.as_ref().map_or(0, |f| f.produced);
        assert_eq!(
            now.status,
            PushStatus::Processing,
            "fan-out ended (produced {produced}) before the cancel"
        );
        if produced >= 2_000 {
            break produced;
        }
        assert!(Instant::now() < deadline, "fan-out did not start: {now:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let canceled_at = Instant::now();
    assert!(matches!(
        world.store.cancel_push(push.id).await.expect("cancel"),
        Transition::Done(_)
    ));
    let canceled = wait_until_canceled(&world, &push, 1).await;
    let settled_in = canceled_at.elapsed();
    parser.stop().await;

    let never = parser_canceled(&world, &push)
        .await
        .expect("parser's count");
    let deliveries = world.deliveries().await;
    eprintln!(
        "parser cancel: {produced_at_cancel} checkpointed when canceled, {} produced in all, \
         {never} never fanned out; canceled push settled {:.0} ms after the cancel",
        canceled.total_sent,
        settled_in.as_secs_f64() * 1e3
    );
    assert!(
        canceled.total_sent < AUDIENCE as i64,
        "stopped early: {canceled:?}"
    );
    assert_eq!(
        deliveries.len() as i64,
        canceled.total_sent,
        "totalSent is what reached the push topic"
    );
    assert_eq!(canceled.total_sent + never, AUDIENCE as i64);
    assert_eq!(
        canceled.total_canceled, never,
        "no sender ran: only the parser's count"
    );
    let distinct: std::collections::HashSet<&str> = deliveries
        .iter()
        .map(|d| d.subscriber_id.as_str())
        .collect();
    assert_eq!(distinct.len(), deliveries.len(), "no duplicate");
    assert!(canceled.canceled_at.is_some());
    world.finish().await;
}
