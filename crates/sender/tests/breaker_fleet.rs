//! Breaker evidence shared between senders through a real MongoDB-protocol server.
//!
//! The end-to-end breaker tests (`tests/breaker.rs`) run two senders and depend on how the
//! group happens to split a push; this test pins down the case they can only sometimes hit:
//! a sender that delivered nothing of a site receives retried dead tokens that another sender
//! left undecided.

use pushservice_sender::breaker::{Breakers, Verdict, sync_once};

const SITE: &str = "6b108fdf1a689cfac69e6110";
const SETTING: &str = "the site's APNs sandbox flag";

#[tokio::test]
async fn a_sender_without_evidence_judges_a_retried_token_on_the_fleets() {
    let mongo = pushservice_testkit::mongo_settings();
    let store = pushservice_testkit::store(&mongo).await;
    let (busy, idle) = (Breakers::default(), Breakers::default());

    // The busy sender delivered most of the push; its first answers were dead tokens, which
    // it could not judge yet, so they went to a retry topic.
    assert_eq!(
        busy.suspect(SITE, "APNs", "BadDeviceToken", SETTING),
        Verdict::Undecided
    );
    for _ in 0..140 {
        busy.success(SITE, "APNs");
    }
    sync_once(&busy, &store, "sender-busy").await.expect("sync");

    // The retry reaches the idle sender, which saw nothing of the site.
    assert_eq!(
        idle.suspect(SITE, "APNs", "BadDeviceToken", SETTING),
        Verdict::Undecided,
        "no evidence of its own, none read yet"
    );
    sync_once(&idle, &store, "sender-idle").await.expect("sync");
    assert_eq!(
        idle.suspect(SITE, "APNs", "BadDeviceToken", SETTING),
        Verdict::Gone,
        "the fleet saw 140 successes: one dead token"
    );
    // The fleet's evidence is per platform: FCM of the same site is still undecided.
    assert_eq!(
        idle.suspect(SITE, "FCM", "404", SETTING),
        Verdict::Undecided
    );

    store
        .database()
        .drop()
        .await
        .expect("dropping the test database");
}

#[tokio::test]
async fn a_misconfigured_site_trips_a_sender_that_saw_little() {
    let mongo = pushservice_testkit::mongo_settings();
    let store = pushservice_testkit::store(&mongo).await;
    let (first, second) = (Breakers::default(), Breakers::default());

    // Every token of the site answers BadDeviceToken on the first sender: it tripped.
    for _ in 0..30 {
        let _ = first.suspect(SITE, "APNs", "BadDeviceToken", SETTING);
    }
    sync_once(&first, &store, "sender-1").await.expect("sync");

    // The second sender's first suspect answer: on its own it would wait for four more
    // (each a delivery retried later) before failing them with the reason to fix.
    assert_eq!(
        second.suspect(SITE, "APNs", "BadDeviceToken", SETTING),
        Verdict::Undecided
    );
    sync_once(&second, &store, "sender-2").await.expect("sync");
    assert!(
        matches!(
            second.suspect(SITE, "APNs", "BadDeviceToken", SETTING),
            Verdict::Misconfigured(_)
        ),
        "the fleet's 30 suspect answers trip it"
    );

    store
        .database()
        .drop()
        .await
        .expect("dropping the test database");
}
