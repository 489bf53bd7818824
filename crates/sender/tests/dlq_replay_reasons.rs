//! After `pushctl dlq replay` delivers every dead letter of a push, its `deliveryFailures`
//! no longer list the failures the replay replaced (regression: the recorder took a replayed
//! outcome's failure back from `totalFailed` but not from the reasons).

mod common;

use std::time::Duration;

use common::{World, outage, terminate};
use pushservice_model::PushStatus;
use pushservice_push_sink::{Behaviour, Latency};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_push_no_longer_lists_the_failures_it_replaced() {
    const AUDIENCE: u64 = 50;
    let world = World::new(AUDIENCE, Behaviour::default(), Latency::None).await;
    world
        .sink
        .start_outage(outage(600.0, 400, None, Some("webpush")));
    let (stop_parser, parser) = world.parser();
    let mut sender = world.sender();
    world.send().await;
    world
        .wait_for(
            Duration::from_secs(90),
            "every delivery failed",
            |push, _| push.status == PushStatus::Done && push.total_failed >= AUDIENCE as i64,
        )
        .await;
    world.sink.end_outage();
    world.replay_dead_letters().await;
    world
        .wait_for(
            Duration::from_secs(90),
            "every delivery accepted after the replay",
            |push, stats| {
                stats.distinct_accepted >= AUDIENCE
                    && push.total_accepted >= AUDIENCE as i64
                    && push.total_failed == 0
            },
        )
        .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let live = world.push_live().await;
    assert_eq!(terminate(&mut sender), Some(0));
    let _ = stop_parser.send(());
    parser.await.expect("join").expect("parser ran cleanly");
    assert_eq!(live.total_failed, 0);
    let listed: i64 = live.delivery_failures.iter().map(|r| r.count).sum();
    assert_eq!(
        listed, live.total_failed,
        "expected deliveryFailures to account for totalFailed ({}) after the replay; actual {:?}",
        live.total_failed, live.delivery_failures
    );
    world.finish().await;
}
