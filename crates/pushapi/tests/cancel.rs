//! A 50,000-subscriber push canceled through the API while it is being fanned out stops:
//! status `canceled`, every subscriber accounted for (accepted + canceled = audience), and
//! the push service hears nothing more of it once the cancel has settled.

mod common;

use std::time::{Duration, Instant};

use common::{KEY_SEED, Options, World};
use pushservice_model::{ObjectId, Platform};
use pushservice_push_sink::Latency;
use pushservice_seed::{SubscriberSeed, seed_subscribers};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const AUDIENCE: i64 = 50_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_push_canceled_mid_fan_out_stops_and_counts_everyone() {
    let world = World::start(Options {
        senders: 2,
        latency: Latency::Uniform {
            min: Duration::from_millis(20),
            max: Duration::from_millis(60),
        },
        ..Options::default()
    })
    .await;
    let (site, key) = world.create_site(&[]).await;
    let sink = world.sink.as_ref().expect("simulator");
    seed_subscribers(
        &world.store,
        &SubscriberSeed {
            site_id: ObjectId::parse_str(&site).expect("id"),
            count: AUDIENCE as u64,
            platform: Platform::Web,
            endpoint_base: format!("{}/wp", sink.base_url()),
            key_seed: KEY_SEED.to_vec(),
            batch_size: 5_000,
        },
        |_| {},
    )
    .await
    .expect("audience seeded");

    let (status, push) = world
        .call(
            Method::POST,
            &format!("/v1/sites/{site}/pushes"),
            Some(&key),
            Some(json!({ "title": "Soon withdrawn", "send": true })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{push}");
    let push_id = push["id"].as_str().expect("id").to_owned();

    // Cancel once deliveries are flowing and the fan-out is far from finished.
    let flowing = world
        .wait_push(&push_id, &key, Duration::from_secs(120), |p| {
            p["totals"]["accepted"].as_i64().unwrap_or(0) >= 500
        })
        .await;
    let produced_before = flowing["fanout"]["produced"].as_i64().unwrap_or(0);
    assert!(
        produced_before < AUDIENCE,
        "fan-out already finished: {flowing:#}"
    );
    let (status, canceled) = world
        .call(
            Method::POST,
            &format!("/v1/pushes/{push_id}/cancel"),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{canceled}");
    assert_eq!(canceled["status"], json!("canceled"));
    let canceled_at = Instant::now();
    let requests_at_cancel = sink.stats().requests;

    // Canceling again is a conflict, not a second cancel.
    let (status, again) = world
        .call(
            Method::POST,
            &format!("/v1/pushes/{push_id}/cancel"),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{again}");

    let settled = world
        .wait_push(&push_id, &key, Duration::from_secs(120), |p| {
            p["final"] == json!(true)
        })
        .await;
    let totals = &settled["totals"];
    let count = |name: &str| totals[name].as_i64().unwrap_or(-1);
    assert_eq!(settled["status"], json!("canceled"), "{settled:#}");
    assert_eq!(
        count("accepted") + count("unsubscribed") + count("failed") + count("canceled"),
        AUDIENCE,
        "every subscriber accounted for: {settled:#}"
    );
    assert!(count("canceled") > 0, "{settled:#}");
    assert_eq!(count("failed"), 0, "{settled:#}");
    assert_eq!(
        count("accepted") as u64,
        sink.stats().distinct_accepted,
        "the push's count of acceptances is the simulator's"
    );

    // Give the cancel a few seconds to reach every sender, then nothing more may arrive.
    let settle = Duration::from_secs(5).saturating_sub(canceled_at.elapsed());
    tokio::time::sleep(settle).await;
    let quiet_from = sink.stats().requests;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let quiet_to = sink.stats().requests;
    assert_eq!(
        quiet_from, quiet_to,
        "deliveries went on after the cancel settled"
    );
    eprintln!(
        "cancel: fan-out had produced {produced_before} of {AUDIENCE}; {} requests reached the \
         push service after the cancel call; final totals {totals}",
        quiet_to - requests_at_cancel
    );
    let value: Value = settled;
    let _ = value;

    world.finish().await;
}
