//! The broker and the store restarted in the middle of a push: nothing is lost and the
//! push's totals are right.
//!
//! This test stops and starts the local services with `scripts/services`, so it is one test
//! in a file of its own (test binaries run one after the other) and only runs against the
//! services that script manages; a guard brings them back up whatever happens.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{World, settled, terminate};
use pushservice_model::PushStatus;
use pushservice_push_sink::{Behaviour, Latency};

const AUDIENCE: u64 = 10_000;

fn services(args: &[&str]) -> bool {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/services");
    Command::new(script)
        .args(args)
        .status()
        .is_ok_and(|s| s.success())
}

/// Brings both services back up when dropped, so a failing test leaves them running.
struct ServicesBackUp;

impl Drop for ServicesBackUp {
    fn drop(&mut self) {
        let _ = services(&["up"]);
    }
}

/// True when the tests use the services `scripts/services` runs on this machine.
fn local_services() -> bool {
    let local = |var: &str, defaults: &[&str]| {
        std::env::var(var).map_or(true, |v| {
            v.trim().is_empty() || defaults.iter().any(|d| v.contains(d))
        })
    };
    local("KAFKA_BROKERS", &["127.0.0.1:9092", "localhost:9092"])
        && local("MONGODB_URL", &["127.0.0.1:27017", "localhost:27017"])
}

async fn wait_for_accepted(world: &World, at_least: u64, limit: Duration) {
    let deadline = Instant::now() + limit;
    while world.sink.stats().distinct_accepted < at_least {
        assert!(
            Instant::now() < deadline,
            "{} of {at_least} accepted after {limit:?}: {:?}",
            world.sink.stats().distinct_accepted,
            world.sink.stats()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_and_mongodb_restarted_mid_push_lose_nothing() {
    if !local_services() {
        eprintln!(
            "restarts: KAFKA_BROKERS / MONGODB_URL point elsewhere; this test restarts only the \
             services scripts/services runs, so it checks nothing here"
        );
        return;
    }
    let _guard = ServicesBackUp;
    // Slow enough that the push is still going while each service restarts.
    let latency = Latency::Uniform {
        min: Duration::from_millis(20),
        max: Duration::from_millis(60),
    };
    let world = World::new(AUDIENCE, Behaviour::default(), latency).await;
    let (stop_parser, parser) = world.parser();
    let mut senders = [world.sender(), world.sender()];
    // The push starts once both senders hold their share, so the restart below is what the
    // test sees, not the second sender's first rebalance falling on Kafka's shutdown.
    let partitions = usize::try_from(
        world.topics.push.partitions
            + world.topics.retry.partitions * world.topics.retry_tiers().len() as i32,
    )
    .expect("count");
    settled(&world, 2, partitions).await;
    world.send().await;

    wait_for_accepted(&world, AUDIENCE / 5, Duration::from_secs(120)).await;
    let restart = Instant::now();
    assert!(services(&["down", "kafka"]), "stopping Kafka");
    assert!(services(&["up", "kafka"]), "starting Kafka");
    eprintln!(
        "restarts: Kafka restarted at {} accepted in {:?}",
        world.sink.stats().distinct_accepted,
        restart.elapsed()
    );

    let at_mongo = (world.sink.stats().distinct_accepted + AUDIENCE / 10).min(AUDIENCE * 3 / 4);
    wait_for_accepted(&world, at_mongo, Duration::from_secs(180)).await;
    let restart = Instant::now();
    assert!(services(&["down", "mongo"]), "stopping MongoDB");
    assert!(services(&["up", "mongo"]), "starting MongoDB");
    eprintln!(
        "restarts: MongoDB restarted at {} accepted in {:?}",
        world.sink.stats().distinct_accepted,
        restart.elapsed()
    );

    wait_for_accepted(&world, AUDIENCE, Duration::from_secs(300)).await;
    let deadline = Instant::now() + Duration::from_secs(120);
    let push = loop {
        let push = world.push_now().await;
        if push.status == PushStatus::Done && push.total_accepted >= AUDIENCE as i64 {
            break push;
        }
        assert!(
            Instant::now() < deadline,
            "totals never settled: status {}, accepted {}, failed {}",
            push.status,
            push.total_accepted,
            push.total_failed
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    for sender in &mut senders {
        assert_eq!(terminate(sender), Some(0), "senders exit 0 on SIGTERM");
    }
    let _ = stop_parser.send(());
    parser.await.expect("join").expect("parser ran cleanly");
    let stats = world.sink.stats();
    eprintln!(
        "restarts: accepted {} (distinct {}), {} duplicates; push totals accepted {} failed {}",
        stats.accepted,
        stats.distinct_accepted,
        stats.duplicates,
        push.total_accepted,
        push.total_failed
    );
    assert_eq!(stats.distinct_accepted, AUDIENCE, "everyone received it");
    assert_eq!(
        push.total_accepted, AUDIENCE as i64,
        "counted once per subscriber"
    );
    assert_eq!(push.total_failed, 0);
    assert_eq!(push.total_sent, AUDIENCE as i64);
    world.finish().await;
}
