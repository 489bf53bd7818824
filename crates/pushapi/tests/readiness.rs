//! `/readyz` follows Kafka: stopping the local broker turns it unready, naming Kafka, and
//! starting it again turns it ready.
//!
//! This stops the broker every test shares, so it is the only test of its binary (cargo
//! runs test binaries one after another) and it starts the broker again however it ends.
//! It needs the broker `scripts/services` manages; with `KAFKA_BROKERS` naming another
//! cluster it fails and says so rather than pass without checking.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Options, World};

fn services(action: &str) {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/services");
    let status = Command::new(&script)
        .args([action, "kafka"])
        // A broker that has hosted many test groups and topics can take over the default
        // 120 s to load them again after a restart.
        .env("PUSHSERVICE_UP_TIMEOUT", "300")
        .status()
        .unwrap_or_else(|e| panic!("running {} {action} kafka: {e}", script.display()));
    assert!(status.success(), "scripts/services {action} kafka failed");
}

/// Starts the broker again when the test ends, passed or not.
struct RestartKafka;

impl Drop for RestartKafka {
    fn drop(&mut self) {
        services("up");
    }
}

async fn wait_readyz(world: &World, want: u16, must_say: &str, limit: Duration) -> String {
    let deadline = Instant::now() + limit;
    let mut last = String::new();
    loop {
        if let Ok(response) = world
            .http
            .get(format!("{}/readyz", world.base))
            .send()
            .await
        {
            let status = response.status().as_u16();
            last = format!("{status}: {}", response.text().await.unwrap_or_default());
            if status == want && last.contains(must_say) {
                return last;
            }
        }
        assert!(
            Instant::now() < deadline,
            "/readyz did not answer {want} with {must_say:?} within {limit:?}; last: {last}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_turns_unready_without_kafka_and_ready_when_it_is_back() {
    let brokers = std::env::var("KAFKA_BROKERS").unwrap_or_default();
    assert!(
        brokers.is_empty() || brokers == "127.0.0.1:9092" || brokers == "localhost:9092",
        "this test stops and starts the local broker of scripts/services; KAFKA_BROKERS={brokers} is another cluster"
    );
    let world = World::start(Options {
        senders: 0,
        ..Options::default()
    })
    .await;
    let ready = wait_readyz(&world, 200, "kafka: ok", Duration::from_secs(60)).await;
    assert!(ready.contains("mongodb: ok"), "{ready}");

    let restart = RestartKafka;
    services("down");
    let unready = wait_readyz(&world, 503, "kafka: FAILING", Duration::from_secs(120)).await;
    eprintln!("without Kafka, /readyz answered {unready}");
    assert!(
        unready.contains("mongodb: ok"),
        "only Kafka is named: {unready}"
    );

    drop(restart);
    let back = wait_readyz(&world, 200, "kafka: ok", Duration::from_secs(180)).await;
    eprintln!("with Kafka back, /readyz answered {back}");
    world.finish().await;
}
