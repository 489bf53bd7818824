//! What an operator scrapes from a sender during a push: `/readyz` with its checks, the
//! delivery counters, the push services' response-time histogram, send-to-acceptance, and
//! the consumer lag of the push topic rising and draining.

mod common;

use std::time::{Duration, Instant};

use common::{World, sample, terminate};
use pushservice_model::PushStatus;
use pushservice_push_sink::{Behaviour, Latency};

const AUDIENCE: u64 = 1_500;

async fn get(client: &reqwest::Client, url: &str) -> Option<(u16, String)> {
    let response = client.get(url).send().await.ok()?;
    let status = response.status().as_u16();
    Some((status, response.text().await.ok()?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_readiness_follow_a_push() {
    // Answers take 40 ms and the sender keeps 8 requests in flight: draining 1,500 takes
    // several seconds, so the lag is there to be seen. Nothing is asserted about time.
    let world = World::new(
        AUDIENCE,
        Behaviour::default(),
        Latency::Fixed(Duration::from_millis(40)),
    )
    .await;
    let topic = world.topics.push.name.clone();

    // The whole push is on the topic before any sender reads it.
    let (stop_parser, parser) = world.parser();
    world.send().await;
    let deadline = Instant::now() + Duration::from_secs(120);
    while world.push_now().await.status != PushStatus::Done {
        assert!(
            Instant::now() < deadline,
            "the parser did not fan out in time"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
        listener.local_addr().expect("addr").port()
    };
    let base = format!("http://127.0.0.1:{port}");
    let mut sender = world
        .sender_command()
        .env("METRICS_ADDR", format!("127.0.0.1:{port}"))
        .env("SENDER_CONCURRENCY", "8")
        .spawn()
        .expect("sender starts");
    let client = reqwest::Client::new();

    // The lag of the push topic is seen above zero, then the push drains to the end.
    let lag_labels = [("group", world.group.as_str()), ("topic", topic.as_str())];
    let (mut max_lag, mut ready_seen, mut last) = (0.0_f64, None, String::new());
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        if let Some((status, body)) = get(&client, &format!("{base}/readyz")).await
            && status == 200
        {
            ready_seen.get_or_insert(body);
        }
        if let Some((_, text)) = get(&client, &format!("{base}/metrics")).await {
            let lag = sample(&text, "pushservice_consumer_lag_messages", &lag_labels);
            max_lag = max_lag.max(lag);
            let accepted = sample(
                &text,
                "pushservice_sender_attempts_total",
                &[("platform", "web"), ("result", "accepted")],
            );
            last = text;
            if accepted >= AUDIENCE as f64 && max_lag > 0.0 && lag == 0.0 && ready_seen.is_some() {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "metrics did not settle: max lag {max_lag}, ready {ready_seen:?}\n{last}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    eprintln!("metrics test: max lag seen {max_lag}; /readyz said:\n{ready_seen:?}");

    assert!(
        max_lag >= 1.0,
        "the lag of the push topic was seen while the push drained"
    );
    let ready = ready_seen.unwrap_or_default();
    for check in ["kafka: ok", "mongodb: ok", "partitions: ok", "ready"] {
        assert!(ready.contains(check), "/readyz names {check:?}: {ready}");
    }
    let accepted = sample(
        &last,
        "pushservice_sender_attempts_total",
        &[("platform", "web"), ("result", "accepted")],
    );
    assert_eq!(accepted, AUDIENCE as f64, "every delivery counted once");
    let answered = sample(
        &last,
        "pushservice_sender_response_seconds_count",
        &[("platform", "web"), ("result", "accepted")],
    );
    assert_eq!(answered, accepted, "every request's answer timed");
    let under_40ms = sample(
        &last,
        "pushservice_sender_response_seconds_bucket",
        &[("platform", "web"), ("result", "accepted"), ("le", "0.025")],
    );
    assert_eq!(
        under_40ms, 0.0,
        "the push service answers after 40 ms, so no answer is in the 25 ms bucket"
    );
    let since_send = sample(
        &last,
        "pushservice_sender_send_to_accept_seconds_count",
        &[("platform", "web")],
    );
    assert_eq!(since_send, accepted, "send to acceptance timed for each");
    for process in ["process_resident_memory_bytes", "process_open_fds"] {
        assert!(sample(&last, process, &[]) > 0.0, "{process}\n{last}");
    }

    assert_eq!(terminate(&mut sender), Some(0), "sender exits 0 on SIGTERM");
    let _ = stop_parser.send(());
    parser.await.expect("join").expect("parser ran cleanly");
    world.finish().await;
}
