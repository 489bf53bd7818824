//! Fair sharing between push services: one that answers in 5 s slows only its own
//! subscribers. The same audience of a fast push service is delivered twice by the same
//! sender, once alone and once beside subscribers of a slow one; the fast one's rate must
//! keep at least 80% of what it had alone (a ratio measured in one run, so the machine's
//! speed of the day cancels out).

mod common;

use std::time::{Duration, Instant};

use common::{KEY_SEED, World, terminate};
use pushservice_model::Platform;
use pushservice_push_sink::{Behaviour, Latency, Protocol, Sink, SinkConfig};
use pushservice_seed::{PushTemplate, SubscriberSeed, new_push, seed_subscribers};
use pushservice_testkit::{kafka_args, mongo_args, topic_args};

const FAST_AUDIENCE: u64 = 4_000;
const SLOW_AUDIENCE: u64 = 1_500;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_push_service_slows_only_its_own_subscribers() {
    let world = World::new(FAST_AUDIENCE, Behaviour::default(), Latency::None).await;
    // The slow push service: plain HTTP/2 (h2c) on another port, so another origin.
    let slow = Sink::start(SinkConfig {
        protocol: Protocol::H2c,
        latency: Latency::Fixed(Duration::from_secs(5)),
        ..SinkConfig::default()
    })
    .await
    .expect("slow push service starts");
    let (stop_parser, parser) = world.parser();
    let mut sender = world.sender_command();
    sender.env("SENDER_HTTP2_PRIOR_KNOWLEDGE", "true");
    let mut sender = common::Daemon(sender.spawn().expect("sender starts"));

    // Alone: the fast push service's audience only.
    world.send().await;
    let alone = fast_rate(&world, 0).await;

    // Beside the slow one: the same fast audience plus subscribers of the slow service.
    seed_subscribers(
        &world.store,
        &SubscriberSeed {
            site_id: world.site.id,
            count: SLOW_AUDIENCE,
            platform: Platform::Web,
            endpoint_base: format!("{}/wp", slow.base_url()),
            key_seed: KEY_SEED.to_vec(),
            batch_size: 1_000,
        },
        |_| {},
    )
    .await
    .expect("slow audience seeded");
    let second = new_push(
        world.site.id,
        &PushTemplate {
            title: "Second".into(),
            body: "beside a slow push service".into(),
            icon: None,
            launch_url: None,
            priority: pushservice_model::Priority::Normal,
            time_to_live: 600,
        },
    );
    world.store.insert_push(&second).await.expect("push");
    pushservice_cli::commands::send::run(pushservice_cli::cli::SendArgs {
        push_id: second.id.to_hex(),
        force: false,
        mongo: mongo_args(&world.mongo),
        kafka: kafka_args(&world.kafka),
        topics: topic_args(&world.topics),
    })
    .await
    .expect("pushctl send");
    let beside = fast_rate(&world, FAST_AUDIENCE).await;
    let slow_accepted = slow.stats().accepted;

    let ratio = beside / alone;
    eprintln!(
        "slow origin: fast push service alone {alone:.0}/s, beside one answering in 5 s \
         {beside:.0}/s (ratio {ratio:.2}); the slow one accepted {slow_accepted} meanwhile"
    );
    assert!(
        slow_accepted > 0,
        "the slow push service was being delivered to at the same time"
    );
    assert!(
        ratio >= 0.8,
        "the fast push service kept {ratio:.2} of its rate (expected at least 0.80): \
         alone {alone:.0}/s, beside the slow one {beside:.0}/s"
    );
    assert_eq!(terminate(&mut sender), Some(0));
    let _ = stop_parser.send(());
    parser.await.expect("join").expect("parser ran cleanly");
    slow.shutdown().await;
    world.finish().await;
}

/// Deliveries per second the fast push service accepted, from its first new acceptance
/// after `before` to its `before + FAST_AUDIENCE`th.
async fn fast_rate(world: &World, before: u64) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut started = None;
    loop {
        let accepted = world.sink.stats().accepted;
        if started.is_none() && accepted > before {
            started = Some((Instant::now(), accepted));
        }
        if accepted >= before + FAST_AUDIENCE {
            let (at, from) = started.unwrap_or((Instant::now(), accepted));
            let elapsed = at.elapsed().as_secs_f64().max(0.001);
            return (accepted - from) as f64 / elapsed;
        }
        assert!(
            Instant::now() < deadline,
            "the fast push service accepted {} of {}",
            accepted - before,
            FAST_AUDIENCE
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
