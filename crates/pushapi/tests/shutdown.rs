//! Stopping the API while a client follows a push's progress: the progress stream ends and
//! the API stops, instead of the graceful shutdown waiting for a stream that only ends when
//! its push does (a pending push: never).

mod common;

use std::time::Duration;

use common::{Options, World};
use futures::StreamExt as _;
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_ends_progress_streams_and_the_api_stops() {
    let world = World::start(Options::default()).await;
    let (site, key) = world.create_site(&[]).await;
    // Created, not sent: it stays pending, so its progress stream has no end of its own.
    let (status, push) = world
        .call(
            Method::POST,
            &format!("/v1/sites/{site}/pushes"),
            Some(&key),
            Some(json!({ "title": "Never sent", "launchUrl": "https://shop.example/" })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{push}");
    let push_id = push["id"].as_str().expect("push id").to_owned();

    let response = world.progress_stream(&push_id, &key).await;
    let mut stream = response.bytes_stream();
    let mut text = String::new();
    while !text.contains("event: progress") {
        let chunk = tokio::time::timeout(Duration::from_secs(20), stream.next())
            .await
            .expect("a progress event in time")
            .expect("the stream is open")
            .expect("a chunk");
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(text.contains("\"status\":\"pending\""), "{text}");

    // finish() stops the API and panics when it has not stopped within its limit.
    world.finish().await;
    let rest = tokio::time::timeout(Duration::from_secs(10), async {
        let mut rest = String::new();
        while let Some(Ok(chunk)) = stream.next().await {
            rest.push_str(&String::from_utf8_lossy(&chunk));
        }
        rest
    })
    .await
    .expect("the progress stream ended when the API stopped");
    assert!(
        !rest.contains("event: end"),
        "no end event for a push still pending: {rest}"
    );
}
