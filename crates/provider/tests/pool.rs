//! The delivery client against a real HTTP/2 server (the push-service simulator on
//! loopback): more connections when the streams of the open ones are full, GOAWAY without a
//! delivery lost or made twice, and APNs' one-stream start.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request};
use pushservice_provider::{
    EndpointPolicy, Http2Pool, HttpConfig, Origin, PoolConfig, SendError, path_of,
};
use pushservice_push_sink::{Latency, Sink, SinkConfig, Stats, StreamRule, Streams};

async fn sink(config: SinkConfig) -> Sink {
    Sink::start(config).await.expect("simulator starts")
}

fn pool(max_connections: usize) -> Http2Pool {
    let http = HttpConfig {
        http2_prior_knowledge: true,
        endpoint_policy: EndpointPolicy {
            allow_private: true,
            allowed_hosts: Vec::new(),
        },
        ..HttpConfig::default()
    };
    Http2Pool::new(&http, PoolConfig { max_connections }, "pool-test").expect("client")
}

fn origin(sink: &Sink) -> Origin {
    Origin::new(&url::Url::parse(&sink.base_url()).expect("base URL")).expect("origin")
}

/// Sends one POST per path, `concurrency` at a time at most, and returns the statuses.
async fn send_all(
    pool: &Arc<Http2Pool>,
    origin: &Origin,
    paths: Vec<String>,
) -> Vec<Result<u16, String>> {
    let mut tasks = tokio::task::JoinSet::new();
    for path in paths {
        let (pool, origin) = (Arc::clone(pool), origin.clone());
        tasks.spawn(async move {
            let mut request = Request::new(Bytes::from_static(b"{}"));
            *request.method_mut() = Method::POST;
            *request.uri_mut() = origin.uri(path_of(&path).expect("path"));
            pool.send(&origin, request, None)
                .await
                .map(|answer| answer.status)
                .map_err(|e| match e {
                    SendError::Failed(why) => why,
                    other => format!("{other:?}"),
                })
        });
    }
    let mut statuses = Vec::new();
    while let Some(result) = tasks.join_next().await {
        statuses.push(result.expect("task"));
    }
    statuses
}

fn web_push_paths(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("/wp/{i:024x}")).collect()
}

fn assert_all(statuses: &[Result<u16, String>], expected: u16) {
    let wrong: Vec<_> = statuses.iter().filter(|s| **s != Ok(expected)).collect();
    assert!(wrong.is_empty(), "not all {expected}: {wrong:?}");
}

fn assert_within_limits(stats: &Stats) {
    assert_eq!(
        stats.streams_over_limit, 0,
        "the client opened more streams than the server advertised: {stats:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opens_more_connections_when_the_streams_of_the_open_ones_are_full() {
    let sink = sink(SinkConfig {
        streams: Streams::all(5),
        latency: Latency::Fixed(Duration::from_millis(300)),
        ..SinkConfig::default()
    })
    .await;
    let origin = origin(&sink);
    let pool = Arc::new(pool(4));
    let statuses = send_all(&pool, &origin, web_push_paths(20)).await;
    assert_all(&statuses, 201);
    let stats = sink.stats();
    assert_within_limits(&stats);
    assert_eq!(stats.accepted, 20);
    // 20 requests held 300 ms each, 5 streams a connection: all 4 connections were needed.
    assert_eq!(stats.connections, 4, "{stats:?}");
    assert_eq!(
        stats.peak_streams, 5,
        "every connection was used to its limit"
    );
    assert_eq!(pool.connections(&origin), 4);

    // The bound holds: 40 more with room for 4 × 5 in flight queue instead of connecting.
    let statuses = send_all(&pool, &origin, web_push_paths(40)).await;
    assert_all(&statuses, 201);
    let stats = sink.stats();
    assert_within_limits(&stats);
    assert_eq!(stats.connections, 4, "no fifth connection: {stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn goaway_mid_load_loses_and_duplicates_nothing() {
    let sink = sink(SinkConfig {
        streams: Streams::all(8),
        goaway_after: Some(7),
        latency: "5-40".parse().expect("latency"),
        ..SinkConfig::default()
    })
    .await;
    let origin = origin(&sink);
    let pool = Arc::new(pool(4));
    let statuses = send_all(&pool, &origin, web_push_paths(300)).await;
    assert_all(&statuses, 201);
    let stats = sink.stats();
    assert_within_limits(&stats);
    assert!(
        stats.goaways >= 30,
        "each connection carries 7 requests before its GOAWAY: {stats:?}"
    );
    assert_eq!(stats.accepted, 300, "{stats:?}");
    assert_eq!(stats.distinct_accepted, 300, "nobody lost: {stats:?}");
    assert_eq!(stats.duplicates, 0, "nobody twice: {stats:?}");
}

#[tokio::test(flavor = "current_thread")]
async fn apns_one_stream_start_waits_for_the_first_success_then_widens() {
    let sink = sink(SinkConfig {
        // Apple's rule (the default): one stream until a request succeeds, then 1,000.
        streams: Streams {
            apns: StreamRule {
                initial: 1,
                after_success: Some(1000),
            },
            ..Streams::default()
        },
        latency: Latency::Fixed(Duration::from_millis(100)),
        ..SinkConfig::default()
    })
    .await;
    let origin = origin(&sink);
    let pool = Arc::new(pool(4));
    let paths: Vec<String> = (0..50).map(|i| format!("/3/device/{i:064x}")).collect();
    let statuses = send_all(&pool, &origin, paths).await;
    assert_all(&statuses, 200);
    let stats = sink.stats();
    assert_within_limits(&stats);
    assert_eq!(stats.accepted, 50);
    assert_eq!(
        stats.connections, 1,
        "no extra connection while the first waited for its first answer: {stats:?}"
    );
    assert!(
        stats.peak_streams >= 40,
        "after the first success the other 49 went out together: {stats:?}"
    );
}

#[tokio::test]
async fn refused_addresses_and_dead_servers_are_errors_not_hangs() {
    let http = HttpConfig {
        http2_prior_knowledge: true,
        connect_timeout: Duration::from_secs(2),
        ..HttpConfig::default()
    };
    // The production policy: loopback is refused at connection time, by name too.
    let strict = Http2Pool::new(&http, PoolConfig::default(), "pool-test").expect("client");
    let url = url::Url::parse("http://localhost:1/x").expect("url");
    let origin = Origin::new(&url).expect("origin");
    let mut request = Request::new(Bytes::new());
    *request.uri_mut() = origin.uri(path_of("/x").expect("path"));
    match strict.send(&origin, request, None).await {
        Err(SendError::Refused(refused)) => {
            assert!(refused.to_string().contains("loopback"), "{refused}")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    // Nothing listens on port 1: a failure naming the origin.
    let open = pool(2);
    let mut request = Request::new(Bytes::new());
    *request.uri_mut() = origin.uri(path_of("/x").expect("path"));
    match open.send(&origin, request, None).await {
        Err(SendError::Failed(why)) => assert!(why.contains("http://localhost:1"), "{why}"),
        other => panic!("expected a connection failure, got {other:?}"),
    }
}
