//! The audience stream's order against the real MongoDB-protocol server: subscribers come in
//! ascending `_id` order however they were inserted, a resume after any subscriber yields
//! exactly the rest, and documents whose `_id` is not an ObjectId never enter the stream.
//! On the local FerretDB this order comes from its SQLite `_id` index (see
//! scripts/ferretdb/sqlite-id-order.patch): a wrong order there would skip or repeat
//! subscribers on every resume.

use bson::doc;
use bson::oid::ObjectId;
use futures::TryStreamExt as _;
use pushservice_model::{PushSubscription, Subscriber};
use pushservice_store::{AudienceRow, Store};
use pushservice_testkit::{mongo_settings, store};

fn subscriber(id: ObjectId, site: ObjectId) -> Subscriber {
    let subscription =
        PushSubscription::new("https://push.example/wp/x".into(), &[4; 65], &[7; 16]);
    Subscriber::new_web(id, site, &subscription)
}

async fn streamed(store: &Store, site: ObjectId, after: Option<ObjectId>) -> Vec<ObjectId> {
    let rows: Vec<AudienceRow> = store
        .audience(site, after, None)
        .await
        .expect("stream")
        .try_collect()
        .await
        .expect("rows");
    rows.into_iter()
        .map(|row| match row {
            AudienceRow::Member(member) => member.id,
            AudienceRow::Unreadable { reason, .. } => panic!("unreadable: {reason}"),
        })
        .collect()
}

/// Ids spread over the whole ObjectId space (every leading hex digit, so text and byte order
/// would differ if the server compared anything but fixed-length lowercase hex), in a
/// scrambled order.
fn scrambled_ids(count: u32) -> Vec<ObjectId> {
    (0..count)
        .map(|i| {
            // A multiplicative step modulo 2^32 visits the space out of order.
            let spread = i.wrapping_mul(2_654_435_761);
            let mut bytes = [0u8; 12];
            bytes[..4].copy_from_slice(&spread.to_be_bytes());
            bytes[8..].copy_from_slice(&i.to_be_bytes());
            ObjectId::from_bytes(bytes)
        })
        .collect()
}

#[tokio::test]
async fn the_audience_streams_in_id_order_and_resumes_exactly() {
    let store = store(&mongo_settings()).await;
    store.ensure_indexes().await.expect("indexes");
    let (site, other_site) = (ObjectId::new(), ObjectId::new());

    let ids = scrambled_ids(300);
    // Inserted in scrambled order, another site's subscribers between them.
    let mut documents = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        documents.push(subscriber(*id, site));
        if i % 3 == 0 {
            documents.push(subscriber(ObjectId::new(), other_site));
        }
    }
    store.insert_subscribers(&documents).await.expect("insert");
    // Documents of the same site whose _id is not an ObjectId: never a subscriber here, and
    // never in the stream (as on MongoDB, an ObjectId bound matches ObjectIds only).
    let raw = store
        .database()
        .collection::<bson::Document>(pushservice_store::SUBSCRIBERS);
    raw.insert_many([
        doc! { "_id": "zzz-not-an-object-id", "siteId": site, "subscribed": true },
        doc! { "_id": 7_i64, "siteId": site, "subscribed": true },
    ])
    .await
    .expect("odd documents");

    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(
        streamed(&store, site, None).await,
        sorted,
        "every subscriber once, in ascending _id order"
    );
    for k in [0, 1, 150, 298, 299] {
        assert_eq!(
            streamed(&store, site, Some(sorted[k])).await,
            sorted[k + 1..],
            "a resume after the subscriber at {k} yields exactly the rest"
        );
    }
    store.database().drop().await.expect("drop");
}
