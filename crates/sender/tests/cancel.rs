//! Canceling a push and narrowing its audience, end to end: `pushctl send`, a parser, sender
//! processes and a verifying push service over real Kafka and the real MongoDB-protocol
//! server.
//!
//! - A 50,000-subscriber push canceled in the middle of its fan-out: it ends `canceled`, its
//!   totals add up to the audience (accepted + unsubscribed + failed + canceled), and the
//!   push service hears nothing more of it a couple of seconds after the cancel.
//! - Pushes to `audience.externalIds` and to `audience.tags` reach exactly those
//!   subscribers.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bson::doc;
use common::{World, terminate};
use pushservice_model::{Audience, ObjectId, Push, PushStatus};
use pushservice_push_sink::{Behaviour, Latency};
use pushservice_store::{DELIVERY_STATS, PUSHES, SUBSCRIBERS, Transition};

fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn outcomes(push: &Push) -> i64 {
    push.total_accepted + push.total_unsubscribed + push.total_failed + push.total_canceled
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_canceled_mid_fan_out_stops_and_its_totals_add_up() {
    const AUDIENCE: u64 = 50_000;
    // Slow enough answers that delivery lags the fan-out, as with real push services.
    let latency = Latency::Uniform {
        min: Duration::from_millis(20),
        max: Duration::from_millis(60),
    };
    let world = World::new(AUDIENCE, Behaviour::default(), latency).await;
    let (stop_parser, parser) = world.parser();
    let mut senders = [world.sender(), world.sender()];
    // Both senders in the group before the push arrives: no rebalance mid-push.
    tokio::time::sleep(Duration::from_secs(5)).await;
    world.send().await;

    // Cancel in the middle of the fan-out: a few thousand fanned out, deliveries flowing.
    let deadline = Instant::now() + Duration::from_secs(180);
    let produced_at_cancel = loop {
        let push = world.push_now().await;
        let produced = push.fanout.as_ref().map_or(0, |f| f.produced);
        assert_eq!(
            push.status,
            PushStatus::Processing,
            "the fan-out ended before the cancel (produced {produced}): too fast to cancel mid-way"
        );
        if produced >= 5_000 && world.sink.stats().requests > 0 {
            break produced;
        }
        assert!(
            Instant::now() < deadline,
            "fan-out did not get going: produced {produced}, sink {:?}",
            world.sink.stats()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let at_cancel = world.sink.stats();
    let cancel_ms = unix_ms();
    let canceled_at = Instant::now();
    let transition = world
        .store
        .cancel_push(world.push.id)
        .await
        .expect("cancel");
    let cancel_call = canceled_at.elapsed();
    let Transition::Done(canceled) = transition else {
        panic!("a processing push cancels: {transition:?}");
    };
    assert_eq!(canceled.status, PushStatus::Canceled);

    // Once the cancel has settled, the push service hears nothing more of the push. (Margins
    // are generous: the parser checks twice a second, senders once a second.)
    tokio::time::sleep(Duration::from_secs(3).saturating_sub(canceled_at.elapsed())).await;
    let settled = world.sink.stats();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let later = world.sink.stats();
    assert_eq!(
        later.requests, settled.requests,
        "requests still reached the push service 3 to 7 s after the cancel: {} then {}",
        settled.requests, later.requests
    );

    // The totals settle on the audience: what was produced has an outcome (most of it
    // `canceled` by the senders), what was not is `canceled` by the parser.
    let push = world
        .wait_for(
            Duration::from_secs(120),
            "status canceled, accepted + unsubscribed + failed + canceled >= audience",
            |push, _| push.status == PushStatus::Canceled && outcomes(push) >= AUDIENCE as i64,
        )
        .await;
    // The recorders refresh totals for 5 s after their last change: stable by then.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let push = {
        let again = world.push_now().await;
        assert_eq!(
            outcomes(&again),
            outcomes(&push),
            "totals settled: {again:?}"
        );
        again
    };
    let codes: Vec<Option<i32>> = senders.iter_mut().map(|s| terminate(s)).collect();
    let _ = stop_parser.send(());
    parser.await.expect("join").expect("parser ran cleanly");

    let parser_counts = world
        .store
        .database()
        .collection::<bson::Document>(DELIVERY_STATS)
        .find_one(doc! { "_id": format!("{}:parser", world.push.id.to_hex()) })
        .await
        .expect("query")
        .expect("the parser recorded its canceled count");
    let never_fanned_out = parser_counts.get_i64("canceled").expect("canceled");
    let parser_counted_ms = parser_counts
        .get_datetime("updatedAt")
        .map_or(0, |at| at.timestamp_millis() - cancel_ms);
    let stats = world.sink.stats();
    let after_cancel = stats.requests - at_cancel.requests;
    let last_delivery_ms = stats
        .last_accepted_unix_ms
        .map_or(0, |ms| i64::try_from(ms).unwrap_or(i64::MAX) - cancel_ms);
    eprintln!(
        "cancel: call took {:.0} ms; fanned out {} of {AUDIENCE} (checkpoint at {produced_at_cancel} \
         when canceled; {never_fanned_out} never, counted by the parser {parser_counted_ms} ms after \
         the cancel); totals accepted {} unsubscribed {} failed {} canceled {} (senders dropped {}); \
         sink: {} requests before the cancel, {after_cancel} after, last accepted {last_delivery_ms} \
         ms after the cancel; {stats:?}",
        cancel_call.as_secs_f64() * 1e3,
        push.total_sent,
        push.total_accepted,
        push.total_unsubscribed,
        push.total_failed,
        push.total_canceled,
        push.total_canceled - never_fanned_out,
        at_cancel.requests,
    );
    assert_eq!(codes, vec![Some(0), Some(0)], "senders exit 0 on SIGTERM");
    assert_eq!(push.status, PushStatus::Canceled);
    assert!(push.canceled_at.is_some(), "canceledAt");
    assert_eq!(
        outcomes(&push),
        AUDIENCE as i64,
        "accepted + unsubscribed + failed + canceled is the audience: {push:?}"
    );
    assert!(
        push.total_sent < AUDIENCE as i64 && never_fanned_out > 0,
        "the fan-out stopped before its end (sent {})",
        push.total_sent
    );
    assert_eq!(
        push.total_sent + never_fanned_out,
        AUDIENCE as i64,
        "fanned out + never fanned out"
    );
    assert_eq!(push.total_failed, 0, "{:?}", push.delivery_failures);
    // A request already on the wire when the cancel arrives is never abandoned: what the push
    // service accepted is exactly what the push counts as accepted.
    assert_eq!(
        stats.distinct_accepted, push.total_accepted as u64,
        "accepted outcomes are the simulator's acceptances"
    );
    assert_eq!(stats.verify_failures(), 0, "{:?}", stats.verify_failed);
    world.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_to_external_ids_and_tags_reach_only_those_subscribers() {
    const AUDIENCE: u64 = 40;
    let world = World::new(AUDIENCE, Behaviour::default(), Latency::None).await;
    let mut subscribers = world.subscribers().await;
    subscribers.sort_by_key(|s| s.id);
    // The site's user ids on the first half; every third subscriber tagged `vip`, every
    // fifth `fr`.
    let collection = world
        .store
        .database()
        .collection::<bson::Document>(SUBSCRIBERS);
    let mut users = Vec::new();
    let mut vip = BTreeSet::new();
    for (i, subscriber) in subscribers.iter().enumerate() {
        let mut set = doc! {};
        if i < 20 {
            set.insert("externalId", format!("user-{i}"));
            users.push(subscriber.id);
        }
        let mut tags = Vec::new();
        if i % 3 == 0 {
            tags.push("vip");
            vip.insert(subscriber.id);
        }
        if i % 5 == 0 {
            tags.push("fr");
        }
        set.insert("tags", tags);
        collection
            .update_one(doc! { "_id": subscriber.id }, doc! { "$set": set })
            .await
            .expect("label subscriber");
    }
    // Push 1: three users, one of them unknown to the site.
    let by_user: BTreeSet<ObjectId> = [users[1], users[4], users[17]].into();
    let audience = Audience {
        external_ids: vec![
            "user-1".into(),
            "user-4".into(),
            "user-17".into(),
            "nobody".into(),
        ],
        tags: Vec::new(),
    };
    world
        .store
        .database()
        .collection::<bson::Document>(PUSHES)
        .update_one(
            doc! { "_id": world.push.id },
            doc! { "$set": { "audience": bson::to_bson(&audience).expect("bson") } },
        )
        .await
        .expect("push audience");
    // Push 2: a tag.
    let mut tagged = world.push.clone();
    tagged.id = ObjectId::new();
    tagged.audience = Some(Audience {
        external_ids: Vec::new(),
        tags: vec!["vip".into()],
    });
    world.store.insert_push(&tagged).await.expect("tagged push");

    let (stop_parser, parser) = world.parser();
    let mut sender = world.sender();
    for (push_id, expected) in [(world.push.id, &by_user), (tagged.id, &vip)] {
        world.send_push(push_id).await;
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let push = world
                .store
                .push(push_id)
                .await
                .expect("query")
                .expect("push");
            if push.status == PushStatus::Done && push.total_accepted == expected.len() as i64 {
                assert_eq!(push.total_sent, expected.len() as i64, "totalSent");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "push {push_id} not delivered to its {} subscribers: {push:?}",
                expected.len()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    assert_eq!(terminate(&mut sender), Some(0), "sender exits 0");
    let _ = stop_parser.send(());
    parser.await.expect("join").expect("parser ran cleanly");

    for subscriber in &subscribers {
        let id = subscriber.id.to_hex();
        let received: BTreeSet<String> = world
            .sink
            .received(&id)
            .iter()
            .map(|r| {
                let payload: serde_json::Value =
                    serde_json::from_slice(&r.plaintext).expect("JSON payload");
                payload["pushId"].as_str().expect("pushId").to_owned()
            })
            .collect();
        let mut expected = BTreeSet::new();
        if by_user.contains(&subscriber.id) {
            expected.insert(world.push.id.to_hex());
        }
        if vip.contains(&subscriber.id) {
            expected.insert(tagged.id.to_hex());
        }
        assert_eq!(received, expected, "subscriber {id}");
    }
    let stats = world.sink.stats();
    assert_eq!(
        stats.requests,
        (by_user.len() + vip.len()) as u64,
        "nobody else was sent anything: {stats:?}"
    );
    world.finish().await;
}

#[tokio::test]
async fn a_sender_learns_of_cancels_from_the_push_status() {
    use pushservice_model::Notification;
    use pushservice_sender::canceled::CanceledPushes;

    let store = pushservice_testkit::store(&pushservice_testkit::mongo_settings()).await;
    let new_push = || Push::new(ObjectId::new(), "Watched".into(), Notification::default());
    let (running, withdrawn) = (new_push(), new_push());
    for push in [&running, &withdrawn] {
        store.insert_push(push).await.expect("push");
        store
            .restart_push(push.id, PushStatus::Pending)
            .await
            .expect("send");
    }
    store.cancel_push(withdrawn.id).await.expect("cancel");
    let watch = CanceledPushes::new(store.clone());

    // First sight: looked up at once.
    let first = watch.check(&running.id.to_hex()).await;
    assert!(!first.canceled && !first.token.is_cancelled());
    assert!(watch.check(&withdrawn.id.to_hex()).await.canceled);
    assert!(
        !watch.check(&ObjectId::new().to_hex()).await.canceled,
        "unknown push"
    );
    assert!(!watch.check("not an id").await.canceled);

    // Canceled later: known after the next refresh, and deliveries in progress are told.
    store.cancel_push(running.id).await.expect("cancel");
    assert!(
        !watch.check(&running.id.to_hex()).await.canceled,
        "no read per delivery"
    );
    assert!(watch.refresh().await);
    assert!(first.token.is_cancelled(), "in-progress deliveries stop");
    assert!(watch.check(&running.id.to_hex()).await.canceled);

    // Sent again: delivered again after the next refresh.
    store
        .restart_push(running.id, PushStatus::Canceled)
        .await
        .expect("force send");
    assert!(watch.refresh().await);
    let again = watch.check(&running.id.to_hex()).await;
    assert!(!again.canceled && !again.token.is_cancelled());
    store.database().drop().await.expect("drop");
}
