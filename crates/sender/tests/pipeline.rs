//! The whole pipeline as a user runs it: `pushctl send`, a parser, sender processes, and a
//! push service that verifies and decrypts everything it receives, over real Kafka and the
//! real MongoDB-protocol server.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::{APNS_TEAM, APNS_TOPIC, EVERY_MISBEHAVIOUR, FCM_PROJECT, World, terminate};
use pushservice_model::{ObjectId, Platform, PushStatus, Subscriber};
use pushservice_push_sink::{Behaviour, Fate, Latency, planned_fate};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_subscriber_gets_its_notification_and_gone_ones_are_unsubscribed() {
    const AUDIENCE: u64 = 2_000;
    let behaviour = EVERY_MISBEHAVIOUR;
    let world = World::new(AUDIENCE, behaviour, Latency::None).await;
    let expected_gone = world
        .subscribers()
        .await
        .iter()
        .filter(|s| matches!(planned_fate(&behaviour, &s.id.to_hex()), Fate::Gone(_)))
        .count() as i64;
    assert!(expected_gone > 0, "the test must exercise unsubscribes");
    let reachable = AUDIENCE - expected_gone as u64;
    let (stop_parser, parser) = world.parser();
    let mut senders = [world.sender(), world.sender()];
    world.send().await;

    world
        .wait_until_everyone_reached(reachable, expected_gone, Duration::from_secs(180))
        .await;
    let codes: Vec<Option<i32>> = senders.iter_mut().map(|s| terminate(s)).collect();
    assert_eq!(codes, vec![Some(0), Some(0)], "senders exit 0 on SIGTERM");
    let _ = stop_parser.send(());
    parser.await.expect("join").expect("parser ran cleanly");

    let push = world.push_now().await;
    let subscribers = world.subscribers().await;
    assert_eq!(subscribers.len() as u64, AUDIENCE);
    let stats = world.sink.stats();
    eprintln!(
        "pipeline: totals accepted {} unsubscribed {} failed {}; sink {stats:?}",
        push.total_accepted, push.total_unsubscribed, push.total_failed
    );
    assert_eq!(
        stats.verify_failures(),
        0,
        "every request verified: {:?}",
        stats.verify_failed
    );

    for subscriber in &subscribers {
        let id = subscriber.id.to_hex();
        let received = world.sink.received(&id);
        match planned_fate(&behaviour, &id) {
            Fate::Gone(status) => {
                assert!(
                    received.is_empty(),
                    "{id} answered {status} yet received something"
                );
                assert!(
                    !subscriber.subscribed,
                    "{id} answered {status} but is still subscribed"
                );
            }
            fate => {
                assert!(subscriber.subscribed, "{id} ({fate:?}) was unsubscribed");
                let first = received
                    .first()
                    .unwrap_or_else(|| panic!("{id} ({fate:?}) received nothing"));
                let payload: serde_json::Value =
                    serde_json::from_slice(&first.plaintext).expect("JSON payload");
                assert_eq!(payload["title"], "Pipeline", "{id}");
                assert_eq!(payload["pushId"], world.push.id.to_hex());
                assert_eq!(payload["options"]["body"], "Every subscriber gets this");
                assert_eq!(payload["launchUrl"], "https://shop.example/pipeline");
                // A retried delivery sends what is left of the TTL.
                assert!((500..=600).contains(&first.ttl), "ttl {}", first.ttl);
                assert_eq!(first.vapid_sub, world.site.subject);
            }
        }
    }
    assert_eq!(push.status, PushStatus::Done);
    assert_eq!(push.total_sent, AUDIENCE as i64);
    assert_eq!(
        stats.distinct_accepted, reachable,
        "exactly the reachable ones got it"
    );
    assert_eq!(
        push.total_failed, 0,
        "no failure beyond what the simulator injected"
    );
    // Outcomes are counted once per delivery message (recorded in the transaction that
    // commits the message), whatever the push service saw twice.
    assert_eq!(push.total_accepted, reachable as i64, "accepted");
    assert_eq!(push.total_unsubscribed, expected_gone, "unsubscribed");
    world.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_killed_mid_push_loses_nobody() {
    const AUDIENCE: u64 = 20_000;
    let latency = Latency::Uniform {
        min: Duration::from_millis(1),
        max: Duration::from_millis(20),
    };
    let world = World::new(AUDIENCE, Behaviour::default(), latency).await;
    let (stop_parser, parser) = world.parser();
    let mut first = world.sender();
    world.send().await;

    let deadline = Instant::now() + Duration::from_secs(120);
    while world.sink.stats().distinct_accepted < 3_000 {
        assert!(
            Instant::now() < deadline,
            "first sender made no progress: {:?}",
            world.sink.stats()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.kill().expect("SIGKILL");
    let _ = first.wait();
    let at_kill = world.sink.stats().distinct_accepted;
    let mut second = world.sender();

    let deadline = Instant::now() + Duration::from_secs(240);
    while world.sink.stats().distinct_accepted < AUDIENCE {
        assert!(
            Instant::now() < deadline,
            "not everyone received it: {:?}",
            world.sink.stats()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(terminate(&mut second), Some(0));
    let _ = stop_parser.send(());
    parser.await.expect("join").expect("parser ran cleanly");

    let subscribers = world.subscribers().await;
    let missing: Vec<ObjectId> = subscribers
        .iter()
        .filter(|s| world.sink.received(&s.id.to_hex()).is_empty())
        .map(|s| s.id)
        .collect();
    assert!(
        missing.is_empty(),
        "{} subscribers missed, e.g. {:?}",
        missing.len(),
        missing.first()
    );
    let stats = world.sink.stats();
    let distinct: HashSet<String> = subscribers.iter().map(|s| s.id.to_hex()).collect();
    assert_eq!(distinct.len() as u64, AUDIENCE);
    assert_eq!(stats.verify_failures(), 0);
    eprintln!(
        "sender kill test: killed at {at_kill} of {AUDIENCE} accepted; {} duplicates afterwards",
        stats.duplicates
    );
    world.finish().await;
}

/// What the push service keys a subscriber's fate by: the endpoint's id for Web Push, the
/// device token for APNs and FCM.
fn sink_key(subscriber: &Subscriber) -> String {
    subscriber
        .device_token
        .clone()
        .unwrap_or_else(|| subscriber.id.to_hex())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ios_and_android_subscribers_get_it_through_apns_and_fcm() {
    const PER_PLATFORM: u64 = 400;
    let behaviour = EVERY_MISBEHAVIOUR;
    let audience = [
        (Platform::Web, PER_PLATFORM),
        (Platform::Ios, PER_PLATFORM),
        (Platform::Android, PER_PLATFORM),
    ];
    let world = World::with_audience(&audience, behaviour, Latency::None).await;
    let subscribers = world.subscribers().await;
    assert_eq!(subscribers.len() as u64, 3 * PER_PLATFORM);
    let is_gone = |s: &Subscriber| matches!(planned_fate(&behaviour, &sink_key(s)), Fate::Gone(_));
    let expected_gone = subscribers.iter().filter(|s| is_gone(s)).count() as i64;
    let reachable = subscribers.len() as u64 - expected_gone as u64;
    let (stop_parser, parser) = world.parser();
    let mut sender = world.sender();
    let sent = Instant::now();
    world.send().await;

    world
        .wait_until_everyone_reached(reachable, expected_gone, Duration::from_secs(180))
        .await;
    assert_eq!(terminate(&mut sender), Some(0), "sender exits 0 on SIGTERM");
    let _ = stop_parser.send(());
    parser.await.expect("join").expect("parser ran cleanly");

    let stats = world.sink.stats();
    let push = world.push_now().await;
    eprintln!(
        "mobile pipeline: totals accepted {} unsubscribed {} failed {}; sink {stats:?}",
        push.total_accepted, push.total_unsubscribed, push.total_failed
    );
    assert_eq!(stats.verify_failures(), 0, "{:?}", stats.verify_failed);
    assert_eq!(push.total_failed, 0, "no failure beyond the injected ones");
    for kind in ["webpush", "apns", "fcm"] {
        let kind_stats = stats
            .by_kind
            .get(kind)
            .unwrap_or_else(|| panic!("no {kind} traffic"));
        assert!(kind_stats.accepted > 0, "{kind}: {kind_stats:?}");
    }
    // One access token serves the whole push: the sender caches it.
    let oauth = stats.by_kind.get("oauth").map_or(0, |k| k.requests);
    assert!((1..=2).contains(&oauth), "{oauth} token requests");

    let subscribers = world.subscribers().await;
    for subscriber in &subscribers {
        let key = sink_key(subscriber);
        let gone = is_gone(subscriber);
        assert_eq!(subscriber.subscribed, !gone, "{key}: subscribed");
        match subscriber.platform.unwrap_or_default() {
            Platform::Web => assert_eq!(world.sink.received(&key).is_empty(), gone, "{key}"),
            Platform::Ios => {
                let received = world.sink.received_mobile(&key);
                if gone {
                    assert!(received.is_empty(), "{key} is gone yet received something");
                    continue;
                }
                let first = received
                    .first()
                    .unwrap_or_else(|| panic!("{key} got nothing"));
                assert_eq!(first.body["aps"]["alert"]["title"], "Pipeline");
                assert_eq!(
                    first.body["aps"]["alert"]["body"],
                    "Every subscriber gets this"
                );
                assert_eq!(first.body["pushId"], world.push.id.to_hex());
                assert_eq!(first.body["launchUrl"], "https://shop.example/pipeline");
                assert_eq!(first.apns_topic.as_deref(), Some(APNS_TOPIC));
                assert_eq!(first.apns_push_type.as_deref(), Some("alert"));
                assert_eq!(first.apns_priority, Some(10));
                assert_eq!(first.issuer, APNS_TEAM);
                assert!(first.apns_expiration.is_some_and(|e| e > 0));
            }
            Platform::Android => {
                let received = world.sink.received_mobile(&key);
                if gone {
                    assert!(received.is_empty(), "{key} is gone yet received something");
                    continue;
                }
                let first = received
                    .first()
                    .unwrap_or_else(|| panic!("{key} got nothing"));
                assert_eq!(first.body["token"], key.as_str());
                assert_eq!(first.body["notification"]["title"], "Pipeline");
                assert_eq!(first.body["data"]["pushId"], world.push.id.to_hex());
                // What is left of 600 s at the first attempt that reached the sink: a retry
                // (the sink throttles some) carries less, by at most the time since sending.
                let ttl = first.body["android"]["ttl"].as_str().unwrap_or_default();
                let seconds: u64 = ttl
                    .strip_suffix('s')
                    .and_then(|s| s.parse().ok())
                    .unwrap_or_else(|| panic!("ttl {ttl:?} is not whole seconds"));
                let at_least = 600 - sent.elapsed().as_secs().min(599) - 1;
                assert!(
                    (at_least..=600).contains(&seconds),
                    "ttl {ttl}: what is left of 600 s, at least {at_least}s"
                );
                assert_eq!(first.project_id.as_deref(), Some(FCM_PROJECT));
            }
        }
    }
    assert_eq!(push.status, PushStatus::Done);
    assert_eq!(push.total_sent, 3 * PER_PLATFORM as i64);
    assert_eq!(stats.distinct_accepted, reachable);
    world.finish().await;
}
