//! The store against the real MongoDB-protocol server, and compatibility with documents the
//! original Node.js service wrote.

use std::time::Duration;

use bson::oid::ObjectId;
use bson::{Bson, DateTime, Document, doc};
use pushservice_config::MongoSettings;
use pushservice_model::{Notification, Push, PushStatus, PushSubscription, Site, Subscriber};
use pushservice_store::{
    DeliveryCounts, DeliverySummary, PUSHES, SITES, SUBSCRIBERS, Store, StoreError, Transition,
};
use pushservice_testkit::{mongo_settings, store};

const P256DH: &str =
    "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4";
const AUTH: &str = "BTBZMqHH6r4Tts7J_aSIgg";

/// Documents shaped exactly like mongoose wrote them, inserted with the driver.
async fn insert_original_documents(store: &Store) -> (ObjectId, ObjectId, ObjectId) {
    let (site_id, push_id, subscriber_id) = (ObjectId::new(), ObjectId::new(), ObjectId::new());
    let now = DateTime::now();
    let db = store.database();
    db.collection::<Document>(SITES)
        .insert_one(doc! {
            "_id": site_id, "subject": "mailto:ops@shop.example",
            "publicKey": P256DH, "privateKey": "q1dXpw3UpT5VOmu_cf_v6ih07Aems3njxI-JWgLcM94",
            "createdAt": now, "updatedAt": now, "__v": 0,
        })
        .await
        .expect("insert site");
    db.collection::<Document>(PUSHES)
        .insert_one(doc! {
            "_id": push_id, "siteId": site_id, "status": "pending", "title": "Flash sale",
            "options": {
                "body": "Everything 50% off", "icon": "https://shop.example/i.png",
                "vibration": [200, 100, 200], "requireInteraction": true, "tag": "sale",
                "actions": [{ "action": "open", "title": "Open", "url": "https://shop.example" }],
            },
            "launchUrl": "https://shop.example/sale", "priority": "high",
            "timeToLive": 259200, "totalSent": 0, "totalDeliver": 0.0, "totalClick": 0_i64,
            "totalClose": 0, "createdAt": now, "updatedAt": now, "__v": 0,
        })
        .await
        .expect("insert push");
    let endpoint = format!(
        r#"{{"endpoint":"https://fcm.googleapis.com/fcm/send/abc:def","expirationTime":null,"keys":{{"p256dh":"{P256DH}","auth":"{AUTH}"}}}}"#
    );
    db.collection::<Document>(SUBSCRIBERS)
        .insert_one(doc! {
            "_id": subscriber_id, "siteId": site_id, "subscribed": true,
            "pushEndPoint": endpoint, "createdAt": now, "updatedAt": now, "__v": 0,
        })
        .await
        .expect("insert subscriber");
    (site_id, push_id, subscriber_id)
}

#[tokio::test]
async fn loads_documents_written_by_the_original_service() {
    let store = store(&mongo_settings()).await;
    let (site_id, push_id, subscriber_id) = insert_original_documents(&store).await;

    let site = store
        .site(site_id)
        .await
        .expect("query")
        .expect("site found");
    assert_eq!(site.subject, "mailto:ops@shop.example");
    assert_eq!(site.public_key, P256DH);

    let push = store
        .push(push_id)
        .await
        .expect("query")
        .expect("push found");
    assert_eq!(push.site_id, site_id);
    assert_eq!(push.status, PushStatus::Pending);
    assert_eq!(push.time_to_live, 259_200);
    assert_eq!(push.options.require_interaction, Some(true));
    assert_eq!(push.options.actions.len(), 1);
    assert_eq!(
        push.launch_url.as_deref(),
        Some("https://shop.example/sale")
    );

    let raw = store
        .database()
        .collection::<Subscriber>(SUBSCRIBERS)
        .find_one(doc! { "_id": subscriber_id })
        .await
        .expect("query")
        .expect("subscriber found");
    let subscription = raw.subscription().expect("pushEndPoint parses");
    assert_eq!(
        subscription.endpoint,
        "https://fcm.googleapis.com/fcm/send/abc:def"
    );
}

#[tokio::test]
async fn documents_we_write_have_the_original_shape() {
    let store = store(&mongo_settings()).await;
    let site = Site::new("mailto:a@b.example".into(), P256DH.into(), "priv".into());
    store.insert_site(&site).await.expect("site");
    let push = Push::new(site.id, "Hello".into(), Notification::default());
    store.insert_push(&push).await.expect("push");
    let subscription = PushSubscription::new("https://push.example/1".into(), &[4; 65], &[1; 16]);
    let subscriber = Subscriber::new_web(ObjectId::new(), site.id, &subscription);
    assert_eq!(
        store
            .insert_subscribers(std::slice::from_ref(&subscriber))
            .await
            .expect("insert"),
        1
    );

    let db = store.database();
    let raw_push = db
        .collection::<Document>(PUSHES)
        .find_one(doc! { "_id": push.id })
        .await
        .expect("query")
        .expect("found");
    assert!(matches!(raw_push.get("siteId"), Some(Bson::ObjectId(id)) if *id == site.id));
    assert_eq!(raw_push.get_str("status").expect("status"), "pending");
    assert!(matches!(raw_push.get("createdAt"), Some(Bson::DateTime(_))));

    let raw_subscriber = db
        .collection::<Document>(SUBSCRIBERS)
        .find_one(doc! { "_id": subscriber.id })
        .await
        .expect("query")
        .expect("found");
    // pushEndPoint is a JSON *string*, exactly what JSON.stringify(subscription) gives.
    let text = raw_subscriber
        .get_str("pushEndPoint")
        .expect("string pushEndPoint");
    let json: serde_json::Value = serde_json::from_str(text).expect("JSON");
    assert_eq!(json["endpoint"], "https://push.example/1");
    assert!(json["keys"]["p256dh"].is_string() && json["keys"]["auth"].is_string());
    assert_eq!(raw_subscriber.get_bool("subscribed"), Ok(true));
    assert_eq!(
        store.count_subscribers(site.id, true).await.expect("count"),
        1
    );
}

#[tokio::test]
async fn creates_the_audience_index() {
    let store = store(&mongo_settings()).await;
    store.ensure_indexes().await.expect("indexes");
    store.ensure_indexes().await.expect("indexes again");
    let names = store
        .database()
        .collection::<Document>(SUBSCRIBERS)
        .list_index_names()
        .await
        .expect("list indexes");
    assert!(
        names.contains(&"siteId_1_subscribed_1__id_1".to_owned()),
        "{names:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_one_of_two_racing_triggers_wins() {
    // Two `pushctl send` at the same moment, from two connections, twenty times over.
    let settings = mongo_settings();
    let (first, second) = (store(&settings).await, store(&settings).await);
    for _ in 0..20 {
        let push = Push::new(ObjectId::new(), "Race".into(), Notification::default());
        first.insert_push(&push).await.expect("push");
        let (a, b) = tokio::join!(
            first.restart_push(push.id, PushStatus::Pending),
            second.restart_push(push.id, PushStatus::Pending),
        );
        let outcomes = [a.expect("a"), b.expect("b")];
        let wins = outcomes
            .iter()
            .filter(|o| matches!(o, Transition::Done(_)))
            .count();
        assert_eq!(wins, 1, "{outcomes:?}");
        let stored = first.push(push.id).await.expect("query").expect("push");
        assert_eq!(
            (stored.status, stored.trigger_count),
            (PushStatus::Processing, 1)
        );
    }
}

#[tokio::test]
async fn unreadable_document_names_collection_and_id() {
    let store = store(&mongo_settings()).await;
    let id = ObjectId::new();
    store
        .database()
        .collection::<Document>(PUSHES)
        .insert_one(
            doc! { "_id": id, "siteId": ObjectId::new(), "status": "exploded", "title": "x" },
        )
        .await
        .expect("insert");
    let err = store.push(id).await.expect_err("bad status");
    let text = err.to_string();
    assert!(
        text.contains(&format!("pushes document {id} cannot be read")),
        "{text}"
    );
}

#[tokio::test]
async fn unreachable_server_is_named_in_the_error() {
    let settings = MongoSettings {
        url: "mongodb://app:secret@127.0.0.1:1/pushservice".into(),
        timeout: Duration::from_millis(500),
        batch_size: 10,
    };
    let err = Store::connect(&settings)
        .await
        .expect_err("nothing listens on port 1");
    assert!(matches!(err, StoreError::Unreachable { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("could not reach MongoDB at mongodb://app:***@127.0.0.1:1"),
        "{text}"
    );
    assert!(!text.contains("secret"), "password leaked: {text}");
}

/// The push's `totalAccepted` and `totalUnsubscribed` as stored.
async fn accepted_and_unsubscribed(store: &Store, push_id: ObjectId) -> (i64, i64) {
    let stored = store.push(push_id).await.expect("query").expect("push");
    (stored.total_accepted, stored.total_unsubscribed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_from_concurrent_senders_add_up_exactly() {
    // Three senders flush counters for the same push at the same moments. (A plain $inc on
    // the push document loses increments on FerretDB; per-sender documents must not.)
    let settings = mongo_settings();
    let store = store(&settings).await;
    store.ensure_indexes().await.expect("indexes");
    let push = Push::new(ObjectId::new(), "Counted".into(), Notification::default());
    store.insert_push(&push).await.expect("push");
    let bump = |store: Store, sender: &'static str| async move {
        for _ in 0..100 {
            let counts = DeliveryCounts {
                accepted: 2,
                unsubscribed: 1,
                failed: 0,
                canceled: 1,
            };
            store
                .add_sender_counts(push.id, sender, counts)
                .await
                .expect("inc");
        }
    };
    let (a, b, c) = tokio::join!(
        tokio::spawn(bump(store.clone(), "a")),
        tokio::spawn(bump(store.clone(), "b")),
        tokio::spawn(bump(store.clone(), "c")),
    );
    for joined in [a, b, c] {
        joined.expect("sender task");
    }
    let total = store.delivery_counts(push.id).await.expect("sum");
    assert_eq!(
        total,
        DeliveryCounts {
            accepted: 600,
            unsubscribed: 300,
            failed: 0,
            canceled: 300,
        }
    );
    assert!(
        !store
            .set_delivery_totals(
                push.id,
                &DeliverySummary {
                    counts: total,
                    failures: Vec::new(),
                },
            )
            .await
            .expect("set"),
        "a pending push belongs to its parser; senders leave it alone"
    );
    store
        .transition_push(push.id, PushStatus::Pending, PushStatus::Processing)
        .await
        .expect("processing");
    store
        .checkpoint_fanout(push.id, ObjectId::new(), 450, 0)
        .await
        .expect("checkpoint");
    assert_eq!(
        accepted_and_unsubscribed(&store, push.id).await,
        (600, 300),
        "a checkpoint carries the senders' sum"
    );
    let more = DeliveryCounts {
        accepted: 1,
        ..DeliveryCounts::default()
    };
    store
        .add_sender_counts(push.id, "a", more)
        .await
        .expect("inc");
    assert!(store.finish_fanout(push.id, 900, 0).await.expect("done"));
    assert_eq!(
        accepted_and_unsubscribed(&store, push.id).await,
        (601, 300),
        "done carries the senders' sum"
    );
    let later = DeliveryCounts {
        accepted: 602,
        ..total
    };
    assert!(
        store
            .set_delivery_totals(
                push.id,
                &DeliverySummary {
                    counts: later,
                    failures: Vec::new(),
                },
            )
            .await
            .expect("set")
    );
    let stored = store.push(push.id).await.expect("query").expect("push");
    assert_eq!(
        (stored.status, stored.total_accepted),
        (PushStatus::Done, 602)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sender_totals_never_undo_the_parsers_done() {
    // FerretDB applies an update as read-modify-write of the whole document: a sender setting
    // totals while the parser marks the push done used to write `processing` back.
    let settings = mongo_settings();
    let store = store(&settings).await;
    for round in 0..20 {
        let push = Push::new(
            ObjectId::new(),
            format!("Race {round}"),
            Notification::default(),
        );
        store.insert_push(&push).await.expect("push");
        store
            .transition_push(push.id, PushStatus::Pending, PushStatus::Processing)
            .await
            .expect("processing");
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flusher = {
            let (store, stop) = (store.clone(), std::sync::Arc::clone(&stop));
            tokio::spawn(async move {
                let mut n = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    n += 1;
                    let counts = DeliveryCounts {
                        accepted: n,
                        ..DeliveryCounts::default()
                    };
                    store
                        .set_delivery_totals(
                            push.id,
                            &DeliverySummary {
                                counts,
                                failures: Vec::new(),
                            },
                        )
                        .await
                        .expect("set");
                }
            })
        };
        let last = ObjectId::new();
        for produced in 1..=5 {
            store
                .checkpoint_fanout(push.id, last, produced * 100, 0)
                .await
                .expect("checkpoint");
        }
        assert!(store.finish_fanout(push.id, 500, 0).await.expect("done"));
        tokio::time::sleep(Duration::from_millis(20)).await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        flusher.await.expect("flusher");
        let stored = store.push(push.id).await.expect("query").expect("push");
        assert_eq!(stored.status, PushStatus::Done, "round {round}");
        assert_eq!(stored.total_sent, 500, "round {round}");
        let fanout = stored.fanout.expect("checkpoint kept");
        assert_eq!(
            (fanout.last_subscriber_id, fanout.produced),
            (Some(last), 500),
            "round {round}"
        );
    }
}
