//! Push services that go down: a 60-second outage in the middle of a push (with a sender
//! SIGKILLed and restarted during it) loses nothing and dead-letters nothing; a permanent
//! refusal dead-letters every delivery, and `pushctl dlq replay` delivers them once the
//! cause is fixed. Over real Kafka and the real MongoDB-protocol server.

mod common;

use std::time::{Duration, Instant};

use common::{Daemon, World, outage, terminate};
use pushservice_model::{ObjectId, PushStatus};
use pushservice_push_sink::{Behaviour, Latency};

/// A sender with a stable instance id (its Kafka transactional id), as a supervisor restarts
/// it: a restarted sender of the same name fences what its previous run left open.
fn sender_named(world: &World, name: &str) -> Daemon {
    let mut command = world.sender_command();
    command.env("SENDER_INSTANCE_ID", format!("{}-{name}", world.group));
    Daemon(command.spawn().expect("sender starts"))
}

/// Subscribers the simulator never accepted a notification for.
async fn missing(world: &World) -> Vec<ObjectId> {
    world
        .subscribers()
        .await
        .iter()
        .filter(|s| world.sink.received(&s.id.to_hex()).is_empty())
        .map(|s| s.id)
        .collect()
}

/// When subscribers accepted more than once were accepted, in seconds from the outage's
/// start (negative: before it): "first acceptances a..b, second c..d (n)", or "-" without
/// any. Tells a duplicate of the kill's uncommitted work (first acceptance before the kill)
/// from one of a later rebalance or retry.
async fn duplicate_times(world: &World, outage_started: Instant) -> String {
    let since = |at: Instant| {
        if at >= outage_started {
            at.duration_since(outage_started).as_secs_f64()
        } else {
            -outage_started.duration_since(at).as_secs_f64()
        }
    };
    let (mut first, mut second): (Vec<f64>, Vec<f64>) = world
        .subscribers()
        .await
        .iter()
        .filter_map(|s| {
            let received = world.sink.received(&s.id.to_hex());
            Some((since(received.first()?.at), since(received.get(1)?.at)))
        })
        .unzip();
    let span = |times: &mut Vec<f64>| {
        times.sort_by(f64::total_cmp);
        match (times.first(), times.last()) {
            (Some(a), Some(b)) => format!("{a:.1} s..{b:.1} s"),
            _ => "-".to_owned(),
        }
    };
    if first.is_empty() {
        return "-".to_owned();
    }
    format!(
        "first acceptances {}, second {} ({})",
        span(&mut first),
        span(&mut second),
        second.len()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_with_a_sender_killed_during_it_loses_nothing() {
    const AUDIENCE: u64 = 4_000;
    const OUTAGE: Duration = Duration::from_secs(60);
    let started = Instant::now();
    let latency = Latency::Uniform {
        min: Duration::from_millis(1),
        max: Duration::from_millis(20),
    };
    let world = World::new(AUDIENCE, Behaviour::default(), latency).await;
    let (stop_parser, parser) = world.parser();
    let mut victim = sender_named(&world, "a");
    let mut survivor = sender_named(&world, "b");
    world.send().await;

    world
        .wait_for(
            Duration::from_secs(90),
            "about 1,000 subscribers accepted before the outage",
            |_, stats| stats.distinct_accepted >= 1_000,
        )
        .await;
    world
        .sink
        .start_outage(outage(OUTAGE.as_secs_f64(), 503, Some(5), None));
    let outage_started = Instant::now();
    let at_outage = world.sink.stats().distinct_accepted;

    // A third of the way in, with retries waiting on the retry topics: SIGKILL, restart.
    tokio::time::sleep(Duration::from_secs(20)).await;
    victim.kill().expect("SIGKILL");
    let _ = victim.wait();
    let mut restarted = sender_named(&world, "a");
    let during = world.sink.stats();
    assert!(
        during.outage.is_some() && during.outage_answered > 0,
        "the outage is in force and answering when the sender is killed: {during:?}"
    );

    // Everyone reached, the push done, and its totals settled on exactly the audience.
    let push = world
        .wait_for(
            OUTAGE + Duration::from_secs(90),
            "every subscriber accepted, push done with totalAccepted 4000",
            |push, stats| {
                stats.distinct_accepted >= AUDIENCE
                    && push.status == PushStatus::Done
                    && push.total_accepted >= AUDIENCE as i64
            },
        )
        .await;
    let after_outage = outage_started.elapsed();
    // Totals move for a few seconds after the last outcome: give them time to overshoot,
    // should they.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let push = {
        let again = world.push_now().await;
        assert_eq!(
            (again.total_accepted, again.total_failed),
            (push.total_accepted, push.total_failed),
            "totals settled"
        );
        again
    };
    let codes = [terminate(&mut restarted), terminate(&mut survivor)];
    assert_eq!(codes, [Some(0), Some(0)], "senders exit 0 on SIGTERM");
    let _ = stop_parser.send(());
    parser.await.expect("join").expect("parser ran cleanly");

    let missing = missing(&world).await;
    assert!(
        missing.is_empty(),
        "expected every subscriber to receive it; {} did not, e.g. {:?}",
        missing.len(),
        missing.first()
    );
    let stats = world.sink.stats();
    assert_eq!(stats.verify_failures(), 0, "{:?}", stats.verify_failed);
    let duplicates_at = duplicate_times(&world, outage_started).await;
    assert!(
        stats.outage_answered > 0,
        "the outage answered requests: {stats:?}"
    );
    let dead_letters = world.dead_letters().await;
    let reasons: Vec<Option<&str>> = dead_letters
        .iter()
        .take(5)
        .map(|l| l.header("x-reason"))
        .collect();
    assert!(
        dead_letters.is_empty(),
        "expected no dead letters; got {}, e.g. reasons {reasons:?}",
        dead_letters.len()
    );
    eprintln!(
        "outage test: {at_outage} of {AUDIENCE} accepted when the 60 s outage began; \
         {} requests answered by it; everyone reached {after_outage:?} after it began \
         ({:?} in all); duplicates {} ({duplicates_at}); totals accepted {} \
         unsubscribed {} failed {}; dead letters {}",
        stats.outage_answered,
        started.elapsed(),
        stats.duplicates,
        push.total_accepted,
        push.total_unsubscribed,
        push.total_failed,
        dead_letters.len(),
    );
    assert_eq!(push.status, PushStatus::Done);
    assert_eq!(push.total_sent, AUDIENCE as i64);
    assert_eq!(
        push.total_accepted, AUDIENCE as i64,
        "totalAccepted: each delivery counted once"
    );
    assert_eq!(push.total_failed, 0, "totalFailed: nothing failed");
    assert_eq!(push.total_unsubscribed, 0, "totalUnsubscribed");
    world.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_delivered_by_a_replay_once_the_cause_is_fixed() {
    const AUDIENCE: u64 = 300;
    let started = Instant::now();
    let world = World::new(AUDIENCE, Behaviour::default(), Latency::None).await;
    // The push service refuses everything, for good, for the whole push.
    world
        .sink
        .start_outage(outage(600.0, 400, None, Some("webpush")));
    let (stop_parser, parser) = world.parser();
    let mut senders = [world.sender(), world.sender()];
    world.send().await;

    let failed = world
        .wait_for(
            Duration::from_secs(90),
            "push done with totalFailed 300",
            |push, _| push.status == PushStatus::Done && push.total_failed >= AUDIENCE as i64,
        )
        .await;
    let live = world.push_live().await;
    let dead_letters = world.dead_letters().await;
    eprintln!(
        "replay test, before: totals accepted {} unsubscribed {} failed {}; \
         deliveryFailures {:?}; {} dead letters",
        failed.total_accepted,
        failed.total_unsubscribed,
        failed.total_failed,
        live.delivery_failures,
        dead_letters.len()
    );
    assert_eq!(
        (failed.total_accepted, failed.total_failed),
        (0, AUDIENCE as i64),
        "every delivery failed"
    );
    assert!(
        !live.delivery_failures.is_empty(),
        "expected the push to say why deliveries failed; deliveryFailures is empty"
    );
    let reasons_total: i64 = live.delivery_failures.iter().map(|r| r.count).sum();
    assert_eq!(
        reasons_total, AUDIENCE as i64,
        "failure reasons account for every failure: {:?}",
        live.delivery_failures
    );
    assert_eq!(
        dead_letters.len() as u64,
        AUDIENCE,
        "one dead letter per subscriber"
    );
    let push_id = world.push.id.to_hex();
    for letter in &dead_letters {
        assert_eq!(letter.header("x-push-id"), Some(push_id.as_str()));
        assert_eq!(
            letter.header("x-site-id"),
            Some(world.site.id.to_hex().as_str())
        );
        assert_eq!(
            letter.header("x-attempts"),
            Some("1"),
            "a 400 is not retried"
        );
        assert!(
            letter.header("x-reason").is_some_and(|r| !r.is_empty()),
            "a reason: {:?}",
            letter.headers
        );
        for header in ["x-first-attempt-at", "x-failed-at", "x-source-offset"] {
            assert!(
                letter
                    .header(header)
                    .and_then(|v| v.parse::<u64>().ok())
                    .is_some(),
                "{header}: {:?}",
                letter.headers
            );
        }
    }
    assert_eq!(world.sink.stats().distinct_accepted, 0, "nobody got it yet");

    // The cause is fixed; the operator replays the push's dead letters.
    world.sink.end_outage();
    world.replay_dead_letters().await;

    let push = world
        .wait_for(
            Duration::from_secs(90),
            "every subscriber accepted after the replay, totals accepted 300 failed 0",
            |push, stats| {
                stats.distinct_accepted >= AUDIENCE
                    && push.total_accepted >= AUDIENCE as i64
                    && push.total_failed == 0
            },
        )
        .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let push = {
        let again = world.push_now().await;
        assert_eq!(
            (again.total_accepted, again.total_failed),
            (push.total_accepted, push.total_failed),
            "totals settled"
        );
        again
    };
    let codes: Vec<Option<i32>> = senders.iter_mut().map(|s| terminate(s)).collect();
    assert_eq!(codes, vec![Some(0), Some(0)], "senders exit 0 on SIGTERM");
    let _ = stop_parser.send(());
    parser.await.expect("join").expect("parser ran cleanly");

    let missing = missing(&world).await;
    assert!(
        missing.is_empty(),
        "expected every subscriber to receive it after the replay; {} did not, e.g. {:?}",
        missing.len(),
        missing.first()
    );
    let stats = world.sink.stats();
    let live = world.push_live().await;
    let dead_letters_after = world.dead_letters().await.len();
    eprintln!(
        "replay test, after: totals accepted {} unsubscribed {} failed {}; deliveryFailures {:?}; \
         duplicates {}; dead letters {dead_letters_after}; {:?} in all",
        push.total_accepted,
        push.total_unsubscribed,
        push.total_failed,
        live.delivery_failures,
        stats.duplicates,
        started.elapsed(),
    );
    assert_eq!(stats.verify_failures(), 0, "{:?}", stats.verify_failed);
    assert_eq!(
        (
            push.total_accepted,
            push.total_unsubscribed,
            push.total_failed
        ),
        (AUDIENCE as i64, 0, 0),
        "the replayed outcomes replace the failures: (accepted, unsubscribed, failed)"
    );
    assert_eq!(
        dead_letters_after as u64, AUDIENCE,
        "nothing failed again after the replay"
    );
    world.finish().await;
}
