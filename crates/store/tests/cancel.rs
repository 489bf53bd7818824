//! Canceling pushes and narrowing audiences, against the real MongoDB-protocol server: which
//! states a cancel moves, that a cancel and a racing finish or send never both win, the
//! parser's canceled count, audiences by external id and tag, and the audience stream's
//! `_id` order and resumes.

use bson::doc;
use bson::oid::ObjectId;
use futures::TryStreamExt as _;
use pushservice_model::{Audience, Notification, Push, PushStatus, PushSubscription, Subscriber};
use pushservice_store::pushes::FanoutEnd;
use pushservice_store::{AudienceRow, Store, Transition};
use pushservice_testkit::{mongo_settings, store};

async fn new_push(store: &Store) -> Push {
    let push = Push::new(ObjectId::new(), "Cancel me".into(), Notification::default());
    store.insert_push(&push).await.expect("push");
    push
}

async fn status(store: &Store, id: ObjectId) -> PushStatus {
    store.push(id).await.expect("query").expect("push").status
}

#[tokio::test]
async fn cancel_moves_pending_and_processing_pushes_only() {
    let store = store(&mongo_settings()).await;

    // Pending: canceled, and a later send loses to it.
    let pending = new_push(&store).await;
    let Transition::Done(canceled) = store.cancel_push(pending.id).await.expect("cancel") else {
        panic!("a pending push cancels");
    };
    assert_eq!(canceled.status, PushStatus::Canceled);
    assert!(canceled.canceled_at.is_some(), "canceledAt");
    assert!(canceled.updated_at >= pending.updated_at, "updatedAt");
    assert_eq!(
        store
            .restart_push(pending.id, PushStatus::Pending)
            .await
            .expect("send"),
        Transition::Conflict(Some(PushStatus::Canceled))
    );
    assert_eq!(
        store.cancel_push(pending.id).await.expect("cancel again"),
        Transition::Conflict(Some(PushStatus::Canceled))
    );
    // A forced send of a canceled push still works (a fresh trigger).
    assert!(matches!(
        store
            .restart_push(pending.id, PushStatus::Canceled)
            .await
            .expect("force"),
        Transition::Done(_)
    ));

    // Processing: canceled, the parser sees it, and its finish loses.
    let processing = new_push(&store).await;
    let Transition::Done(started) = store
        .restart_push(processing.id, PushStatus::Pending)
        .await
        .expect("send")
    else {
        panic!("sent");
    };
    assert!(
        !store
            .cancel_requested(processing.id, started.trigger_count)
            .await
            .expect("ask")
    );
    assert!(matches!(
        store.cancel_push(processing.id).await.expect("cancel"),
        Transition::Done(_)
    ));
    assert!(
        store
            .cancel_requested(processing.id, started.trigger_count)
            .await
            .expect("ask")
    );
    assert!(
        !store
            .finish_fanout(processing.id, 10, 0)
            .await
            .expect("finish")
    );
    assert_eq!(status(&store, processing.id).await, PushStatus::Canceled);

    // Done, failed, missing: conflicts naming the state.
    let done = new_push(&store).await;
    store
        .restart_push(done.id, PushStatus::Pending)
        .await
        .expect("send");
    assert!(store.finish_fanout(done.id, 10, 0).await.expect("finish"));
    assert_eq!(
        store.cancel_push(done.id).await.expect("cancel"),
        Transition::Conflict(Some(PushStatus::Done))
    );
    let failed = new_push(&store).await;
    assert!(store.fail_push(failed.id, "broken").await.expect("fail"));
    assert_eq!(
        store.cancel_push(failed.id).await.expect("cancel"),
        Transition::Conflict(Some(PushStatus::Failed))
    );
    assert_eq!(
        store.cancel_push(ObjectId::new()).await.expect("cancel"),
        Transition::Conflict(None)
    );
    store.database().drop().await.expect("drop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_and_a_racing_finish_never_both_win() {
    // The parser checkpoints and finishes while a cancel comes in, from two connections;
    // FerretDB applies both conditional updates as read-modify-write, the claims decide.
    let settings = mongo_settings();
    let (parser, api) = (store(&settings).await, store(&settings).await);
    let mut canceled_wins = 0;
    for round in 0..40_u64 {
        let push = new_push(&parser).await;
        let Transition::Done(started) = parser
            .restart_push(push.id, PushStatus::Pending)
            .await
            .expect("send")
        else {
            panic!("sent");
        };
        let trigger = started.trigger_count;
        let last = ObjectId::new();
        // Both orders happen: fewer checkpoints let the finish come first, a later cancel too.
        let checkpoints = i64::try_from(round % 4).expect("small");
        let cancel_after = std::time::Duration::from_millis((round % 5) * 3);
        let fan_out = async {
            for produced in 1..=checkpoints {
                parser
                    .checkpoint_fanout(push.id, last, produced * 100, 0)
                    .await
                    .expect("checkpoint");
            }
            parser.finish_fanout(push.id, 300, 0).await.expect("finish")
        };
        let cancel = async {
            tokio::time::sleep(cancel_after).await;
            api.cancel_push(push.id).await
        };
        let (finished, canceled) = tokio::join!(fan_out, cancel);
        let canceled = matches!(canceled.expect("cancel"), Transition::Done(_));
        assert!(
            finished != canceled,
            "round {round}: finished {finished}, canceled {canceled}"
        );
        if canceled {
            canceled_wins += 1;
            assert!(
                parser
                    .cancel_requested(push.id, trigger)
                    .await
                    .expect("ask"),
                "round {round}: the parser sees the cancel"
            );
            // What the parser does once it stops: the status is `canceled` whatever a
            // checkpoint wrote back.
            let end = FanoutEnd {
                produced: 300,
                skipped: 0,
                last_subscriber_id: Some(last),
                canceled: 0,
            };
            assert!(
                parser
                    .settle_canceled_push(push.id, trigger, end, true)
                    .await
                    .expect("settle")
            );
            let stored = parser.push(push.id).await.expect("query").expect("push");
            assert_eq!(stored.status, PushStatus::Canceled, "round {round}");
            assert!(stored.canceled_at.is_some(), "round {round}");
            assert_eq!(stored.total_sent, 300, "round {round}");
        } else {
            assert_eq!(
                status(&parser, push.id).await,
                PushStatus::Done,
                "round {round}"
            );
        }
    }
    eprintln!("cancel won {canceled_wins} of 40 races");
    parser.database().drop().await.expect("drop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_racing_a_cancel_of_a_pending_push_is_canceled() {
    let settings = mongo_settings();
    let (cli, api) = (store(&settings).await, store(&settings).await);
    for round in 0..20 {
        let push = new_push(&cli).await;
        let (sent, canceled) = tokio::join!(
            cli.restart_push(push.id, PushStatus::Pending),
            api.cancel_push(push.id)
        );
        let (sent, canceled) = (sent.expect("send"), canceled.expect("cancel"));
        assert!(
            matches!(canceled, Transition::Done(_)),
            "round {round}: a cancel of a pending push wins ({sent:?}, {canceled:?})"
        );
        // Whichever way it went, the trigger that is current is canceled: either the send
        // lost, or the parser that picks its fan-out up is told to stop.
        let stored = cli.push(push.id).await.expect("query").expect("push");
        assert!(
            cli.cancel_requested(push.id, stored.trigger_count)
                .await
                .expect("ask"),
            "round {round}: {stored:?} after {sent:?}"
        );
    }
    cli.database().drop().await.expect("drop");
}

#[tokio::test]
async fn the_parsers_canceled_count_adds_to_the_totals() {
    let store = store(&mongo_settings()).await;
    let push = new_push(&store).await;
    let after = ObjectId::new();
    assert!(
        store
            .write_parser_canceled(push.id, 40, Some(after), false)
            .await
            .expect("estimate")
    );
    assert!(
        !store
            .write_parser_canceled(push.id, 45, None, false)
            .await
            .expect("estimate kept out"),
        "an estimate never replaces a count"
    );
    assert_eq!(
        store.delivery_counts(push.id).await.expect("sum").canceled,
        40
    );
    assert!(
        store
            .write_parser_canceled(push.id, 30, Some(after), true)
            .await
            .expect("count")
    );
    store
        .add_sender_counts(
            push.id,
            "sender-a",
            pushservice_store::DeliveryCounts {
                accepted: 5,
                canceled: 2,
                ..Default::default()
            },
        )
        .await
        .expect("sender counts");
    let counts = store.delivery_counts(push.id).await.expect("sum");
    assert_eq!((counts.accepted, counts.canceled), (5, 32));
    store.database().drop().await.expect("drop");
}

fn subscriber(site: ObjectId, external_id: Option<&str>, tags: &[&str]) -> Subscriber {
    let subscription =
        PushSubscription::new("https://push.example/wp/x".into(), &[4; 65], &[7; 16]);
    let mut subscriber = Subscriber::new_web(ObjectId::new(), site, &subscription);
    subscriber.external_id = external_id.map(str::to_owned);
    subscriber.tags = tags.iter().map(|t| (*t).to_owned()).collect();
    subscriber
}

async fn streamed(
    store: &Store,
    site: ObjectId,
    after: Option<ObjectId>,
    audience: Option<&Audience>,
) -> Vec<ObjectId> {
    let rows: Vec<AudienceRow> = store
        .audience(site, after, audience)
        .await
        .expect("stream")
        .try_collect()
        .await
        .expect("rows");
    let ids: Vec<ObjectId> = rows
        .into_iter()
        .map(|row| match row {
            AudienceRow::Member(member) => member.id,
            AudienceRow::Unreadable { reason, .. } => panic!("unreadable: {reason}"),
        })
        .collect();
    let counted = store
        .count_audience(site, after, audience)
        .await
        .expect("count");
    assert_eq!(counted, ids.len() as u64, "count and stream agree");
    ids
}

#[tokio::test]
async fn audiences_by_external_id_and_tag() {
    let store = store(&mongo_settings()).await;
    store.ensure_indexes().await.expect("indexes");
    let (site, other_site) = (ObjectId::new(), ObjectId::new());
    let mut all = vec![
        subscriber(site, Some("alice"), &["vip", "fr"]),
        subscriber(site, Some("bob"), &["fr"]),
        subscriber(site, Some("carol"), &[]),
        subscriber(site, None, &["vip"]),
        subscriber(site, None, &[]),
    ];
    let mut gone = subscriber(site, Some("alice"), &["vip"]);
    gone.subscribed = false;
    all.push(gone);
    all.push(subscriber(other_site, Some("alice"), &["vip"]));
    store.insert_subscribers(&all).await.expect("insert");
    let id = |i: usize| all[i].id;

    assert_eq!(
        streamed(&store, site, None, None).await,
        [id(0), id(1), id(2), id(3), id(4)],
        "everyone subscribed, in _id order"
    );
    let users = Audience {
        external_ids: vec!["alice".into(), "carol".into(), "nobody".into()],
        tags: Vec::new(),
    };
    assert_eq!(
        streamed(&store, site, None, Some(&users)).await,
        [id(0), id(2)]
    );
    let tags = Audience {
        external_ids: Vec::new(),
        tags: vec!["vip".into(), "es".into()],
    };
    assert_eq!(
        streamed(&store, site, None, Some(&tags)).await,
        [id(0), id(3)]
    );
    let both = Audience {
        external_ids: vec!["alice".into(), "bob".into()],
        tags: vec!["vip".into()],
    };
    assert_eq!(streamed(&store, site, None, Some(&both)).await, [id(0)]);
    assert_eq!(
        streamed(&store, site, Some(id(0)), Some(&users)).await,
        [id(2)],
        "resumes after a checkpoint"
    );
    assert_eq!(
        streamed(&store, site, None, Some(&Audience::default()))
            .await
            .len(),
        5,
        "an empty audience is everyone"
    );
    store.database().drop().await.expect("drop");
}

// The audience stream's order: subscribers come in ascending `_id` order however they were
// inserted, a resume after any subscriber yields exactly the rest, and documents whose `_id`
// is not an ObjectId never enter the stream. On the local FerretDB this order comes from
// its SQLite `_id` index (scripts/ferretdb/sqlite-id-order.patch): a wrong order there
// would skip or repeat subscribers on every resume.

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
        let mut member = subscriber(site, None, &[]);
        member.id = *id;
        documents.push(member);
        if i % 3 == 0 {
            documents.push(subscriber(other_site, None, &[]));
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
        streamed(&store, site, None, None).await,
        sorted,
        "every subscriber once, in ascending _id order"
    );
    for k in [0, 1, 150, 298, 299] {
        assert_eq!(
            streamed(&store, site, Some(sorted[k]), None).await,
            sorted[k + 1..],
            "a resume after the subscriber at {k} yields exactly the rest"
        );
    }
    store.database().drop().await.expect("drop");
}
