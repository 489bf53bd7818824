//! No mass unsubscribe from a misconfiguration: when APNs answers `BadDeviceToken` for every
//! device of a site (its sandbox flag is wrong), the per-site breaker trips after a handful,
//! deliveries fail naming the setting, and subscribers stay subscribed; a few bad tokens among
//! successes are still unsubscribed. Over real Kafka and the real MongoDB-protocol server.

mod common;

use std::time::{Duration, Instant};

use common::{World, outage, terminate};
use pushservice_model::{Platform, PushStatus, Subscriber};
use pushservice_push_sink::{Behaviour, Fate, Latency, planned_fate};

/// Most subscribers a wrong APNs environment may cost before the breaker trips.
const HANDFUL: usize = 5;

fn token(subscriber: &Subscriber) -> String {
    subscriber
        .device_token
        .clone()
        .expect("iOS subscribers have a device token")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_apns_environment_unsubscribes_at_most_a_handful() {
    const AUDIENCE: u64 = 300;
    let started = Instant::now();
    let world = World::with_audience(
        &[(Platform::Ios, AUDIENCE)],
        Behaviour::default(),
        Latency::None,
    )
    .await;
    // What APNs answers every token of an app whose environment does not match.
    world
        .sink
        .start_outage(outage(600.0, 400, None, Some("apns")));
    let (stop_parser, parser) = world.parser();
    let mut senders = [world.sender(), world.sender()];
    world.send().await;

    let push = world
        .wait_for(
            Duration::from_secs(120),
            "push done, every delivery failed or unsubscribed (totalFailed + totalUnsubscribed == 300)",
            |push, _| {
                push.status == PushStatus::Done
                    && push.total_failed + push.total_unsubscribed >= AUDIENCE as i64
            },
        )
        .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let live = world.push_live().await;
    let codes: Vec<Option<i32>> = senders.iter_mut().map(|s| terminate(s)).collect();
    assert_eq!(codes, vec![Some(0), Some(0)], "senders exit 0 on SIGTERM");
    let _ = stop_parser.send(());
    parser.await.expect("join").expect("parser ran cleanly");

    let subscribers = world.subscribers().await;
    let unsubscribed = subscribers.iter().filter(|s| !s.subscribed).count();
    let stats = world.sink.stats();
    let dead_letters = world.dead_letters().await.len();
    eprintln!(
        "breaker test: {unsubscribed} of {AUDIENCE} unsubscribed; totals accepted {} \
         unsubscribed {} failed {}; deliveryFailures {:?}; {} APNs requests; {dead_letters} \
         dead letters; {:?}",
        push.total_accepted,
        push.total_unsubscribed,
        push.total_failed,
        live.delivery_failures,
        stats.requests,
        started.elapsed(),
    );
    assert_eq!(subscribers.len() as u64, AUDIENCE);
    assert!(
        unsubscribed <= HANDFUL,
        "expected at most {HANDFUL} subscribers unsubscribed by a wrong APNs environment; \
         actual {unsubscribed}"
    );
    assert_eq!(
        live.total_unsubscribed, unsubscribed as i64,
        "totalUnsubscribed counts the unsubscribed"
    );
    assert_eq!(
        live.total_failed + live.total_unsubscribed,
        AUDIENCE as i64,
        "every delivery has one outcome"
    );
    assert_eq!(live.total_accepted, 0);
    let named = live.delivery_failures.iter().find(|r| {
        let reason = r.reason.to_lowercase();
        reason.contains("apns") && reason.contains("sandbox")
    });
    let Some(named) = named else {
        panic!(
            "expected a failure reason naming the APNs sandbox setting; deliveryFailures {:?}",
            live.delivery_failures
        );
    };
    assert!(
        named.count >= AUDIENCE as i64 - 2 * HANDFUL as i64,
        "the breaker's reason covers nearly every failure: {:?}",
        live.delivery_failures
    );
    assert_eq!(
        dead_letters as i64, live.total_failed,
        "every failure is dead-lettered, to be replayed once the setting is fixed"
    );
    world.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_few_bad_tokens_among_successes_are_unsubscribed() {
    const AUDIENCE: u64 = 300;
    // 3% of tokens answer 400 BadDeviceToken every time; the rest are accepted.
    let behaviour = Behaviour {
        not_found_per_mille: 30,
        ..Behaviour::default()
    };
    let world = World::with_audience(&[(Platform::Ios, AUDIENCE)], behaviour, Latency::None).await;
    let subscribers = world.subscribers().await;
    let is_bad = |s: &Subscriber| planned_fate(&behaviour, &token(s)) == Fate::Gone(404);
    let bad = subscribers.iter().filter(|s| is_bad(s)).count();
    assert!(bad > 0, "the test needs a bad token among {AUDIENCE}");
    assert!(
        bad < AUDIENCE as usize / 4,
        "bad tokens must be a few among successes: {bad}"
    );
    let reachable = AUDIENCE - bad as u64;
    let (stop_parser, parser) = world.parser();
    let mut senders = [world.sender(), world.sender()];
    world.send().await;

    let push = world
        .wait_for(
            Duration::from_secs(120),
            &format!("push done, {reachable} accepted and {bad} unsubscribed"),
            |push, stats| {
                push.status == PushStatus::Done
                    && stats.distinct_accepted >= reachable
                    && push.total_accepted >= reachable as i64
                    && push.total_unsubscribed + push.total_failed >= bad as i64
            },
        )
        .await;
    let codes: Vec<Option<i32>> = senders.iter_mut().map(|s| terminate(s)).collect();
    assert_eq!(codes, vec![Some(0), Some(0)], "senders exit 0 on SIGTERM");
    let _ = stop_parser.send(());
    parser.await.expect("join").expect("parser ran cleanly");
    let live = world.push_live().await;
    eprintln!(
        "bad tokens test: {bad} bad tokens; totals accepted {} unsubscribed {} failed {}; \
         deliveryFailures {:?}",
        push.total_accepted, push.total_unsubscribed, push.total_failed, live.delivery_failures
    );

    for subscriber in world.subscribers().await {
        let key = token(&subscriber);
        if is_bad(&subscriber) {
            assert!(
                !subscriber.subscribed,
                "{key} answered BadDeviceToken among successes but is still subscribed"
            );
            assert!(world.sink.received_mobile(&key).is_empty(), "{key}");
        } else {
            assert!(subscriber.subscribed, "{key} was unsubscribed");
            assert!(
                !world.sink.received_mobile(&key).is_empty(),
                "{key} got nothing"
            );
        }
    }
    assert_eq!(
        (
            live.total_accepted,
            live.total_unsubscribed,
            live.total_failed
        ),
        (reachable as i64, bad as i64, 0),
        "(accepted, unsubscribed, failed)"
    );
    world.finish().await;
}
