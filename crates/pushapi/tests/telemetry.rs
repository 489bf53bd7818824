//! Where pushapi's metrics are served: on the API's port when it has no `METRICS_ADDR`, and
//! only on `METRICS_ADDR` when it has one (the API's port then says where they are).

mod common;

use common::{Options, World};
use reqwest::{Method, StatusCode};

async fn text(url: String) -> (StatusCode, String) {
    let response = reqwest::get(&url).await.expect("request");
    let status = response.status();
    (status, response.text().await.expect("body"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_public_only_without_a_metrics_addr() {
    let world = World::start(Options::default()).await;
    let (status, body) = text(format!("{}/metrics", world.base)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("pushapi_"), "{body}");
    world.finish().await;

    let addr = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        probe.local_addr().expect("addr")
    };
    let world = World::start(Options {
        api_metrics_addr: Some(addr),
        ..Options::default()
    })
    .await;
    // A request, so the API's counters have something to show.
    let (status, _) = world.call(Method::GET, "/healthz", None, None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = text(format!("{}/metrics", world.base)).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(body.contains("METRICS_ADDR"), "{body}");
    let (status, body) = text(format!("http://{addr}/metrics")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("pushapi_"), "{body}");
    world.finish().await;
}
