//! Planned fates: their distribution over many ids matches the configured per-mille bands,
//! they never change for an id, and over HTTP each fate answers as documented on the first
//! attempt and (for the "once" fates) 201 on the next.

mod common;

use std::collections::HashMap;

use common::{Client, client, endpoint};
use pushservice_model::ObjectId;
use pushservice_push_sink::{Behaviour, Fate, Protocol, Sink, SinkConfig, planned_fate};

fn behaviour() -> Behaviour {
    Behaviour {
        gone_per_mille: 100,
        not_found_per_mille: 50,
        throttle_per_mille: 100,
        retry_after_secs: 2,
        error_once_per_mille: 50,
        reset_per_mille: 100,
    }
}

fn random_id() -> ObjectId {
    let mut bytes = [0u8; 12];
    aws_lc_rs::rand::fill(&mut bytes).expect("system RNG");
    ObjectId::from_bytes(bytes)
}

fn assert_distribution(ids: &[ObjectId], what: &str) {
    let behaviour = behaviour();
    let mut counts: HashMap<Fate, usize> = HashMap::new();
    for id in ids {
        let fate = planned_fate(&behaviour, &id.to_hex());
        assert_eq!(
            fate,
            planned_fate(&behaviour, &id.to_hex()),
            "deterministic"
        );
        *counts.entry(fate).or_default() += 1;
    }
    let expected = [
        (Fate::Gone(410), 100),
        (Fate::Gone(404), 50),
        (Fate::ThrottleOnce, 100),
        (Fate::ErrorOnce, 50),
        (Fate::ResetOnce, 100),
        (Fate::Accept, 600),
    ];
    for (fate, per_mille) in expected {
        let observed = counts.get(&fate).copied().unwrap_or(0) as f64 * 1000.0 / ids.len() as f64;
        assert!(
            (observed - f64::from(per_mille)).abs() <= 20.0,
            "{what}: {} expected {per_mille}‰ ± 20, observed {observed:.1}‰",
            fate.label()
        );
    }
}

#[test]
fn random_ids_are_spread_as_the_bands_say() {
    let ids: Vec<ObjectId> = (0..10_000).map(|_| random_id()).collect();
    assert_distribution(&ids, "random ids");
}

#[test]
fn sequential_ids_from_one_process_are_spread_as_the_bands_say() {
    // ObjectId::new() in one process differs only in its counter: the hard case for a hash.
    let ids: Vec<ObjectId> = (0..10_000).map(|_| ObjectId::new()).collect();
    assert_distribution(&ids, "sequential ids");
}

/// A subscriber id with the given planned fate.
fn id_with(behaviour: &Behaviour, fate: Fate) -> ObjectId {
    (0..100_000)
        .map(|_| random_id())
        .find(|id| planned_fate(behaviour, &id.to_hex()) == fate)
        .unwrap_or_else(|| panic!("no id with fate {fate:?} in 100k tries"))
}

/// Status of one POST, or `None` when the sink reset instead of answering.
async fn post(client: &reqwest::Client, url: &str) -> Option<(u16, Option<String>)> {
    let response = client.post(url).body(vec![1u8; 100]).send().await.ok()?;
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    Some((response.status().as_u16(), retry_after))
}

async fn fates_over_http(protocol: Protocol, kind: Client) {
    let behaviour = Behaviour {
        gone_per_mille: 150,
        not_found_per_mille: 150,
        throttle_per_mille: 150,
        retry_after_secs: 2,
        error_once_per_mille: 150,
        reset_per_mille: 150,
    };
    let sink = Sink::start(SinkConfig {
        protocol,
        behaviour,
        ..SinkConfig::default()
    })
    .await
    .expect("sink starts");
    let client = client(&sink, kind);
    let ok = Some((201, None));
    let cases = [
        (Fate::Accept, [ok.clone(), ok.clone()]),
        (Fate::Gone(410), [Some((410, None)), Some((410, None))]),
        (Fate::Gone(404), [Some((404, None)), Some((404, None))]),
        (
            Fate::ThrottleOnce,
            [Some((429, Some("2".to_owned()))), ok.clone()],
        ),
        (Fate::ErrorOnce, [Some((500, None)), ok.clone()]),
        (Fate::ResetOnce, [None, ok.clone()]),
    ];
    for (fate, expected) in cases {
        let url = endpoint(&sink, &id_with(&behaviour, fate));
        let first = post(&client, &url).await;
        let second = post(&client, &url).await;
        assert_eq!([first, second], expected, "{fate:?} over {kind:?}");
    }
    let stats = sink.stats();
    assert_eq!(stats.requests, 12, "{stats:?}");
    assert_eq!(stats.resets, 1, "{stats:?}");
    assert_eq!(stats.accepted, 5, "{stats:?}");
    assert_eq!(
        (stats.distinct_accepted, stats.duplicates),
        (4, 1),
        "{stats:?}"
    );
    let by_status: Vec<(u16, u64)> = stats.by_status.into_iter().collect();
    assert_eq!(
        by_status,
        vec![(201, 5), (404, 2), (410, 2), (429, 1), (500, 1)]
    );
    sink.shutdown().await;
}

#[tokio::test]
async fn fates_over_h2c() {
    fates_over_http(Protocol::H2c, Client::H2c).await;
}

#[tokio::test]
async fn fates_over_http1() {
    fates_over_http(Protocol::Http1, Client::Http1).await;
}

#[tokio::test]
async fn fates_over_tls() {
    fates_over_http(Protocol::Tls, Client::Tls).await;
}
