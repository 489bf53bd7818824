//! Gone and throttled subscriptions at scale: a 20,000-subscriber Web Push with 5% of
//! subscriptions gone, 2% throttled once (`Retry-After: 1`) and 1% failing once with a 500,
//! delivered by two senders over real Kafka and the real MongoDB-protocol server. Everyone
//! reachable gets it, exactly the gone ones are unsubscribed, and the push's totals equal the
//! simulator's distinct counts (outcomes count once per delivery message).

mod common;

use std::time::{Duration, Instant};

use bson::doc;
use common::{World, terminate};
use pushservice_model::{PushStatus, Subscriber};
use pushservice_push_sink::{Behaviour, Fate, Latency, planned_fate};
use pushservice_store::SUBSCRIBERS;

const AUDIENCE: u64 = 20_000;

const BEHAVIOUR: Behaviour = Behaviour {
    gone_per_mille: 50,
    not_found_per_mille: 0,
    throttle_per_mille: 20,
    retry_after_secs: 1,
    error_once_per_mille: 10,
    reset_per_mille: 0,
};

/// Subscribers of the world's site set `subscribed: false`.
async fn unsubscribed_count(world: &World) -> u64 {
    world
        .store
        .database()
        .collection::<bson::Document>(SUBSCRIBERS)
        .count_documents(doc! { "siteId": world.site.id, "subscribed": false })
        .await
        .expect("count unsubscribed")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gone_and_throttled_subscribers_at_scale_are_counted_exactly() {
    let world = World::new(AUDIENCE, BEHAVIOUR, Latency::None).await;
    let subscribers = world.subscribers().await;
    assert_eq!(subscribers.len() as u64, AUDIENCE, "audience seeded");
    let is_gone =
        |s: &Subscriber| matches!(planned_fate(&BEHAVIOUR, &s.id.to_hex()), Fate::Gone(_));
    let gone = subscribers.iter().filter(|s| is_gone(s)).count() as u64;
    let throttled = subscribers
        .iter()
        .filter(|s| planned_fate(&BEHAVIOUR, &s.id.to_hex()) == Fate::ThrottleOnce)
        .count();
    let erroring = subscribers
        .iter()
        .filter(|s| planned_fate(&BEHAVIOUR, &s.id.to_hex()) == Fate::ErrorOnce)
        .count();
    assert!(
        gone > 0 && throttled > 0 && erroring > 0,
        "every band exercised"
    );
    let reachable = AUDIENCE - gone;
    eprintln!(
        "scale: {AUDIENCE} subscribers, {gone} gone, {throttled} throttled once, \
         {erroring} erroring once, {reachable} reachable"
    );

    let (stop_parser, parser) = world.parser();
    let mut senders = [world.sender(), world.sender()];
    // Let both senders join the group and share the partitions before the push arrives, so
    // that no rebalance happens mid-push.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let started = Instant::now();
    world.send().await;

    // Settled: the push is done, everyone reachable was reached, the totals on the push are
    // the exact figures and every gone subscriber is unsubscribed.
    let limit = Duration::from_secs(200);
    let deadline = started + limit;
    let mut unsubscribed = 0;
    loop {
        let push = world.push_now().await;
        let stats = world.sink.stats();
        let totals_settled = push.status == PushStatus::Done
            && stats.distinct_accepted == reachable
            && push.total_accepted == reachable as i64
            && push.total_unsubscribed == gone as i64;
        if totals_settled {
            unsubscribed = unsubscribed_count(&world).await;
            if unsubscribed == gone {
                break;
            }
        }
        if Instant::now() >= deadline {
            panic!(
                "not settled in {limit:?}: expected status done, sink distinct_accepted \
                 {reachable}, totalAccepted {reachable}, totalUnsubscribed {gone}, \
                 totalFailed 0, {gone} subscribers unsubscribed; actual status {}, \
                 distinct_accepted {}, totalAccepted {}, totalUnsubscribed {}, totalFailed {} \
                 (deliveryFailures {:?}), unsubscribed {unsubscribed} (counted once the \
                 totals matched); sink {stats:?}",
                push.status,
                stats.distinct_accepted,
                push.total_accepted,
                push.total_unsubscribed,
                push.total_failed,
                push.delivery_failures,
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let wall = started.elapsed();

    let codes: Vec<Option<i32>> = senders.iter_mut().map(|s| terminate(s)).collect();
    let _ = stop_parser.send(());
    parser.await.expect("join").expect("parser ran cleanly");

    let push = world.push_now().await;
    let stats = world.sink.stats();
    eprintln!(
        "scale: settled in {:.1} s; duplicates {}; totals accepted {} unsubscribed {} \
         failed {} (expected {reachable} / {gone} / 0); sink {stats:?}",
        wall.as_secs_f64(),
        stats.duplicates,
        push.total_accepted,
        push.total_unsubscribed,
        push.total_failed,
    );
    assert_eq!(codes, vec![Some(0), Some(0)], "senders exit 0 on SIGTERM");
    assert_eq!(
        stats.verify_failures(),
        0,
        "every request verified: {:?}",
        stats.verify_failed
    );

    let subscribers = world.subscribers().await;
    assert_eq!(subscribers.len() as u64, AUDIENCE);
    let wrongly_kept: Vec<String> = subscribers
        .iter()
        .filter(|s| is_gone(s) && s.subscribed)
        .map(|s| s.id.to_hex())
        .collect();
    let wrongly_dropped: Vec<String> = subscribers
        .iter()
        .filter(|s| !is_gone(s) && !s.subscribed)
        .map(|s| s.id.to_hex())
        .collect();
    assert!(
        wrongly_kept.is_empty(),
        "{} gone subscribers are still subscribed, e.g. {:?}",
        wrongly_kept.len(),
        wrongly_kept.first()
    );
    assert!(
        wrongly_dropped.is_empty(),
        "{} reachable subscribers were unsubscribed, e.g. {:?}",
        wrongly_dropped.len(),
        wrongly_dropped.first()
    );
    let missed: Vec<String> = subscribers
        .iter()
        .filter(|s| !is_gone(s) && world.sink.received(&s.id.to_hex()).is_empty())
        .map(|s| s.id.to_hex())
        .collect();
    assert!(
        missed.is_empty(),
        "{} reachable subscribers received nothing, e.g. {:?}",
        missed.len(),
        missed.first()
    );

    assert_eq!(push.status, PushStatus::Done);
    assert_eq!(push.total_sent, AUDIENCE as i64, "totalSent");
    assert_eq!(stats.distinct_accepted, reachable, "distinct accepted");
    assert_eq!(push.total_accepted, reachable as i64, "totalAccepted");
    assert_eq!(push.total_unsubscribed, gone as i64, "totalUnsubscribed");
    assert_eq!(
        push.total_failed, 0,
        "totalFailed (deliveryFailures {:?})",
        push.delivery_failures
    );
    assert!(
        stats.duplicates <= AUDIENCE / 1_000,
        "expected at most {} duplicates (0.1%), got {}",
        AUDIENCE / 1_000,
        stats.duplicates
    );
    world.finish().await;
}
