//! Two senders share a push evenly: the group spreads the push topic over them on its own and
//! the retry tiers on their own, whichever sender joined first. (With one group member per
//! sender reading every topic, the assignor balanced partition *counts* over all topics, and
//! the second sender to join took push partitions only, leaving the first with the retry
//! tiers and a quarter of the push.) Over real Kafka and the real MongoDB-protocol server.

mod common;

use std::time::{Duration, Instant};

use common::{Daemon, World, by_sender, sample, settled, terminate};
use pushservice_model::PushStatus;
use pushservice_push_sink::{Behaviour, Latency};

const AUDIENCE: u64 = 800;

/// A sender with instance id `name` and its telemetry on a free port; returns it and the
/// base URL of its telemetry.
fn sender(world: &World, name: &str) -> (Daemon, String) {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
        listener.local_addr().expect("addr").port()
    };
    let mut command = world.sender_command();
    command
        .env("SENDER_INSTANCE_ID", name)
        .env("METRICS_ADDR", format!("127.0.0.1:{port}"));
    (
        Daemon(command.spawn().expect("sender starts")),
        format!("http://127.0.0.1:{port}"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_senders_split_the_push_topic_and_the_retry_tiers_evenly() {
    let world = World::new(AUDIENCE, Behaviour::default(), Latency::None).await;
    let push_topic = world.topics.push.name.clone();
    let push_partitions = usize::try_from(world.topics.push.partitions).expect("count");
    let retry_partitions = world.topics.retry_tiers().len()
        * usize::try_from(world.topics.retry.partitions).expect("count");
    let partitions = push_partitions + retry_partitions;

    // The first sender holds everything until the second joins.
    let (mut first, first_url) = sender(&world, "first");
    settled(&world, 1, partitions).await;
    let (mut second, second_url) = sender(&world, "second");
    let view = settled(&world, 2, partitions).await;
    let held = by_sender(&view);
    eprintln!("assignment test: partitions held by topic: {held:?}");
    for (instance, topics) in &held {
        let push = topics.get(&push_topic).copied().unwrap_or(0);
        let retry: usize = topics
            .iter()
            .filter(|(topic, _)| **topic != push_topic)
            .map(|(_, n)| n)
            .sum();
        assert_eq!(
            push,
            push_partitions / 2,
            "sender {instance} holds half the push topic: {held:?}"
        );
        assert_eq!(
            retry,
            retry_partitions / 2,
            "sender {instance} holds half the retry partitions: {held:?}"
        );
    }

    // Both deliver their share of a push.
    let (stop_parser, parser) = world.parser();
    world.send().await;
    let client = reqwest::Client::new();
    let accepted = |text: &str| {
        sample(
            text,
            "pushservice_sender_attempts_total",
            &[("platform", "web"), ("result", "accepted")],
        )
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    let shares = loop {
        let mut shares = Vec::new();
        for url in [&first_url, &second_url] {
            let text = match client.get(format!("{url}/metrics")).send().await {
                Ok(response) => response.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            shares.push(accepted(&text));
        }
        let push = world.push_now().await;
        if push.status == PushStatus::Done
            && push.total_accepted == AUDIENCE as i64
            && shares.iter().sum::<f64>() == AUDIENCE as f64
        {
            break shares;
        }
        assert!(
            Instant::now() < deadline,
            "the push was not delivered in time: shares {shares:?}, push {push:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    eprintln!("assignment test: accepted by each sender {shares:?} of {AUDIENCE}");
    // Subscribers hash to partitions, so the halves are near, not equal: each sender's
    // quarter-of-the-audience floor only fails when one did the bulk of the push.
    for share in &shares {
        assert!(
            *share >= AUDIENCE as f64 / 4.0,
            "each sender delivers a fair share: {shares:?} of {AUDIENCE}"
        );
    }

    assert_eq!(
        [terminate(&mut first), terminate(&mut second)],
        [Some(0), Some(0)],
        "senders exit 0 on SIGTERM"
    );
    let _ = stop_parser.send(());
    parser.await.expect("join").expect("parser ran cleanly");
    world.finish().await;
}
