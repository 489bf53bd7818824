//! Registering subscribers from the API is idempotent, even when the same browser or app
//! registers through several API instances at once.

use bson::oid::ObjectId;
use pushservice_model::{Platform, PushSubscription};
use pushservice_store::{Registration, Target};
use pushservice_testkit::{mongo_settings, store};

fn web(endpoint: &str) -> Target {
    Target::Web(PushSubscription::new(
        endpoint.to_owned(),
        &[4; 65],
        &[7; 16],
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_target_registered_concurrently_is_one_subscriber() {
    let store = store(&mongo_settings()).await;
    let site_id = ObjectId::new();
    let registration = Registration {
        site_id,
        target: web(&format!(
            "https://push.example/{}",
            ObjectId::new().to_hex()
        )),
        external_id: Some("user-1".into()),
        tags: Some(vec!["news".into()]),
    };
    let attempts: Vec<_> = (0..16)
        .map(|_| {
            let (store, registration) = (store.clone(), registration.clone());
            tokio::spawn(async move { store.register_subscriber(&registration).await })
        })
        .collect();
    let mut outcomes = Vec::new();
    for attempt in attempts {
        outcomes.push(attempt.await.expect("task").expect("registered"));
    }
    let first = outcomes[0].id;
    assert!(outcomes.iter().all(|o| o.id == first), "{outcomes:?}");
    assert_eq!(
        outcomes.iter().filter(|o| o.created).count(),
        1,
        "{outcomes:?}"
    );
    assert_eq!(
        store
            .count_subscribers(site_id, false)
            .await
            .expect("count"),
        1
    );
    let subscriber = store
        .subscriber(first)
        .await
        .expect("query")
        .expect("stored");
    assert_eq!(subscriber.external_id.as_deref(), Some("user-1"));
    assert_eq!(subscriber.tags, vec!["news".to_owned()]);
    subscriber
        .subscription()
        .expect("original schema: pushEndPoint is the JSON string");

    // Unsubscribed, then registered again: the same subscriber, subscribed again, its
    // externalId kept when the new registration does not say.
    assert!(store.unsubscribe_one(first).await.expect("unsubscribe"));
    let again = store
        .register_subscriber(&Registration {
            external_id: None,
            tags: None,
            ..registration.clone()
        })
        .await
        .expect("registered again");
    assert_eq!((again.id, again.created), (first, false));
    let subscriber = store
        .subscriber(first)
        .await
        .expect("query")
        .expect("stored");
    assert!(subscriber.subscribed);
    assert_eq!(subscriber.external_id.as_deref(), Some("user-1"));

    // The same token on two platforms, or on another site, is another subscriber.
    let token = "ab".repeat(32);
    let ios = Registration {
        site_id,
        target: Target::Device {
            platform: Platform::Ios,
            token: token.clone(),
        },
        external_id: None,
        tags: None,
    };
    let android = Registration {
        target: Target::Device {
            platform: Platform::Android,
            token,
        },
        ..ios.clone()
    };
    let other_site = Registration {
        site_id: ObjectId::new(),
        ..ios.clone()
    };
    let ids = [
        store.register_subscriber(&ios).await.expect("ios").id,
        store
            .register_subscriber(&android)
            .await
            .expect("android")
            .id,
        store
            .register_subscriber(&other_site)
            .await
            .expect("other site")
            .id,
    ];
    assert!(
        ids[0] != ids[1] && ids[1] != ids[2] && ids[0] != ids[2],
        "{ids:?}"
    );

    // Deleted: its registration goes with it, so registering again creates a new one.
    assert!(
        store
            .delete_subscriber(site_id, first)
            .await
            .expect("delete")
    );
    assert!(
        !store
            .delete_subscriber(site_id, first)
            .await
            .expect("delete twice")
    );
    let fresh = store
        .register_subscriber(&registration)
        .await
        .expect("registered");
    assert!(fresh.created && fresh.id != first, "{fresh:?}");
}
