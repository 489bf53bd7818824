//! A sender whose transactional producer is fenced in the middle of a push (as when a
//! transaction outlives a broker restart, or another process takes its transactional id)
//! renews its producer and goes on: everyone is reached, the counts are exact, and the
//! sender still exits 0 on SIGTERM.

mod common;

use std::time::{Duration, Instant};

use common::{World, terminate};
use pushservice_kafka::ProducerTuning;
use pushservice_push_sink::{Behaviour, Latency};

const AUDIENCE: u64 = 3_000;
const INSTANCE: &str = "fenced-1";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fenced_sender_renews_its_producer_and_loses_nothing() {
    // Slow enough that the push is still going when the producer is fenced.
    let latency = Latency::Uniform {
        min: Duration::from_millis(20),
        max: Duration::from_millis(60),
    };
    let world = World::new(AUDIENCE, Behaviour::default(), latency).await;
    let (stop_parser, parser) = world.parser();
    let mut sender = common::Daemon(
        world
            .sender_command()
            .env("SENDER_INSTANCE_ID", INSTANCE)
            .spawn()
            .expect("sender starts"),
    );
    world.send().await;

    let deadline = Instant::now() + Duration::from_secs(120);
    while world.sink.stats().distinct_accepted < AUDIENCE / 5 {
        assert!(Instant::now() < deadline, "{:?}", world.sink.stats());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Another producer with the sender's transactional id: the broker fences the sender's.
    let fencing = {
        let (kafka, id) = (world.kafka.clone(), format!("{}-{INSTANCE}", world.group));
        tokio::task::spawn_blocking(move || {
            pushservice_kafka::transactional_producer(
                &kafka,
                &ProducerTuning::pipeline(),
                &id,
                Duration::from_secs(15),
            )
        })
        .await
        .expect("task")
        .expect("a producer with the sender's transactional id")
    };
    let fenced_at = world.sink.stats().distinct_accepted;

    world
        .wait_until_everyone_reached(AUDIENCE, 0, Duration::from_secs(180))
        .await;
    drop(fencing);
    assert!(
        sender.0.try_wait().expect("status").is_none(),
        "the sender stopped instead of renewing its producer"
    );
    let push = world.push_now().await;
    assert_eq!(push.total_accepted, AUDIENCE as i64, "exact once settled");
    assert_eq!(push.total_failed, 0);
    assert_eq!(terminate(&mut sender), Some(0), "exits 0 on SIGTERM");
    let _ = stop_parser.send(());
    parser.await.expect("join").expect("parser ran cleanly");
    let stats = world.sink.stats();
    eprintln!(
        "fenced: at {fenced_at} accepted; accepted {} (distinct {}), {} duplicates",
        stats.accepted, stats.distinct_accepted, stats.duplicates
    );
    world.finish().await;
}
