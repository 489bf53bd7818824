//! `Store::unsubscribe` against the real MongoDB-protocol server.
//!
//! `unsubscribe_forms_on_200k_subscribers` is ignored by default (it seeds 200,000 documents);
//! run it with `cargo test -p pushservice-store --test unsubscribe -- --ignored --nocapture`.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use bson::oid::ObjectId;
use bson::{DateTime, Document, doc};
use futures::TryStreamExt;
use pushservice_model::{PushSubscription, Subscriber};
use pushservice_store::{SUBSCRIBERS, Store};
use pushservice_testkit::{mongo_settings, store};

/// Inserts `count` subscribed web subscribers of `site`, stamped `updatedAt` one hour ago.
async fn seed(store: &Store, site: ObjectId, count: usize) -> Vec<ObjectId> {
    let subscription = PushSubscription::new("https://push.example/1".into(), &[4; 65], &[1; 16]);
    let mut ids = Vec::with_capacity(count);
    let mut batch = Vec::with_capacity(1000);
    for _ in 0..count {
        let id = ObjectId::new();
        ids.push(id);
        batch.push(Subscriber::new_web(id, site, &subscription));
        if batch.len() == 1000 {
            store.insert_subscribers(&batch).await.expect("insert");
            batch.clear();
        }
    }
    store.insert_subscribers(&batch).await.expect("insert");
    let an_hour_ago = DateTime::from_millis(DateTime::now().timestamp_millis() - 3_600_000);
    store
        .database()
        .collection::<Document>(SUBSCRIBERS)
        .update_many(
            doc! { "siteId": site },
            doc! { "$set": { "updatedAt": an_hour_ago } },
        )
        .await
        .expect("stamp updatedAt");
    ids
}

/// `_id` → (`subscribed`, `updatedAt`) of every subscriber of `site`.
async fn states(store: &Store, site: ObjectId) -> Vec<(ObjectId, bool, DateTime)> {
    store
        .database()
        .collection::<Document>(SUBSCRIBERS)
        .find(doc! { "siteId": site })
        .await
        .expect("find")
        .try_collect::<Vec<_>>()
        .await
        .expect("read")
        .into_iter()
        .map(|d| {
            (
                d.get_object_id("_id").expect("_id"),
                d.get_bool("subscribed").expect("subscribed"),
                *d.get_datetime("updatedAt").expect("updatedAt"),
            )
        })
        .collect()
}

#[tokio::test]
async fn unsubscribes_exactly_the_batch() {
    let store = store(&mongo_settings()).await;
    let site = ObjectId::new();
    // More ids than one update command carries, and more than FerretDB 1.x's connection pool
    // (a 100-statement command hung an unpatched FerretDB).
    let ids = seed(&store, site, 400).await;
    let before = DateTime::now();

    // Every other subscriber, plus two ids that are not in the collection.
    let mut batch: Vec<ObjectId> = ids.iter().copied().step_by(2).collect();
    let gone: HashSet<ObjectId> = batch.iter().copied().collect();
    batch.push(ObjectId::new());
    batch.insert(7, ObjectId::new());
    assert_eq!(store.unsubscribe(&batch).await.expect("unsubscribe"), 200);

    let states = states(&store, site).await;
    assert_eq!(states.len(), 400, "no subscriber created or lost");
    for (id, subscribed, updated_at) in states {
        if gone.contains(&id) {
            assert!(!subscribed, "{id} is in the batch but still subscribed");
            assert!(
                updated_at >= before,
                "{id} unsubscribed without a new updatedAt"
            );
        } else {
            assert!(subscribed, "{id} is not in the batch but was unsubscribed");
            assert!(
                updated_at < before,
                "{id} is not in the batch but was touched"
            );
        }
    }
    assert_eq!(
        store.count_subscribers(site, true).await.expect("count"),
        200
    );

    // Nothing to do, and a batch that only names unknown subscribers: no writes, no error.
    assert_eq!(store.unsubscribe(&[]).await.expect("empty batch"), 0);
    assert_eq!(
        store
            .unsubscribe(&[ObjectId::new(), ObjectId::new()])
            .await
            .expect("unknown ids"),
        0
    );
}

#[tokio::test]
async fn concurrent_unsubscribes_and_reads_all_land() {
    let store = store(&mongo_settings()).await;
    let site = ObjectId::new();
    let ids = seed(&store, site, 600).await;
    // Three writers at once with overlapping batches (the same subscriber gone for two senders)
    // while the audience is read: nothing hangs, nothing is refused.
    let batches: Vec<Vec<ObjectId>> = (0..3)
        .map(|k| ids[k * 150..k * 150 + 250].to_vec())
        .collect();
    let writes = batches.iter().map(|batch| store.unsubscribe(batch));
    let read = async {
        store
            .database()
            .collection::<Document>(SUBSCRIBERS)
            .find(doc! { "siteId": site, "subscribed": true })
            .sort(doc! { "_id": 1 })
            .batch_size(100)
            .await
            .expect("find")
            .try_collect::<Vec<_>>()
            .await
            .expect("read")
            .len()
    };
    let (results, _) = tokio::time::timeout(
        Duration::from_secs(120),
        futures::future::join(futures::future::join_all(writes), read),
    )
    .await
    .expect("three concurrent unsubscribe batches finish within 2 minutes");
    for result in results {
        result.expect("unsubscribe");
    }
    // ids[0..550] were in at least one batch.
    assert_eq!(
        store.count_subscribers(site, true).await.expect("count"),
        50
    );
}

/// The two unsubscribe forms against each other on 200,000 subscribers, alternately, in the
/// same run: `Store::unsubscribe` (one `_id` statement per id) and the `updateMany` with
/// `_id: {$in: [...]}` it replaced.
///
/// Ignored in CI on purpose: it is a measurement, not a check (it prints both forms'
/// timings and asserts no time), and seeding 200,000 documents would add minutes to every
/// run. What CI must hold is checked above and runs there: `unsubscribes_exactly_the_batch`
/// (exactly the given subscribers change) and `concurrent_unsubscribes_and_reads_all_land`
/// (overlapping batches and reads all finish). The figures are in the issue 8 note.
#[tokio::test]
#[ignore = "seeds 200,000 subscribers; run with --ignored --nocapture"]
async fn unsubscribe_forms_on_200k_subscribers() {
    const SUBSCRIBERS_COUNT: usize = 200_000;
    const BATCH: usize = 500;
    const ROUNDS: usize = 4;
    let mut settings = mongo_settings();
    settings.timeout = Duration::from_secs(30);
    let store = store(&settings).await;
    store.ensure_indexes().await.expect("indexes");
    let site = ObjectId::new();
    let started = Instant::now();
    let ids = seed(&store, site, SUBSCRIBERS_COUNT).await;
    println!(
        "seeded {SUBSCRIBERS_COUNT} subscribers in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    let collection = store.database().collection::<Document>(SUBSCRIBERS);
    let (mut by_id, mut by_in) = (Vec::new(), Vec::new());
    let mut chunks = ids.chunks(BATCH);
    for round in 0..ROUNDS {
        for form in if round % 2 == 0 { [0, 1] } else { [1, 0] } {
            let batch = chunks.next().expect("enough ids");
            let started = Instant::now();
            let modified = if form == 0 {
                store.unsubscribe(batch).await.expect("by _id")
            } else {
                collection
                    .update_many(
                        doc! { "_id": { "$in": batch }, "subscribed": true },
                        doc! { "$set": { "subscribed": false, "updatedAt": DateTime::now() } },
                    )
                    .await
                    .expect("$in")
                    .modified_count
            };
            let seconds = started.elapsed().as_secs_f64();
            assert_eq!(modified, BATCH as u64);
            if form == 0 { &mut by_id } else { &mut by_in }.push(seconds);
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (id_s, in_s) = (median(&mut by_id), median(&mut by_in));
    println!(
        "{BATCH} ids a batch, {ROUNDS} batches each: by _id median {id_s:.3}s ({:.0} ids/s), \
         $in median {in_s:.3}s ({:.0} ids/s); $in takes {:.1}x as long. by _id {by_id:.3?}, $in {by_in:.3?}",
        BATCH as f64 / id_s,
        BATCH as f64 / in_s,
        in_s / id_s
    );
    store.database().drop().await.expect("drop test database");
}
