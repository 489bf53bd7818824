//! What protects the public routes browsers call: CORS only for the site's allowed origins,
//! and a per-client rate limit.

mod common;

use common::{Options, World};
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_answers_only_the_sites_allowed_origins() {
    let world = World::start(Options::default()).await;
    let (site, key) = world.create_site(&["https://shop.example"]).await;
    let (other, _) = world.create_site(&["https://other.example"]).await;
    let preflight = |site: String, origin: &'static str| {
        let world = &world;
        async move {
            let response = world
                .http
                .request(
                    Method::OPTIONS,
                    format!("{}/v1/sites/{site}/subscribers", world.base),
                )
                .header("Origin", origin)
                .header("Access-Control-Request-Method", "POST")
                .header("Access-Control-Request-Headers", "content-type")
                .send()
                .await
                .expect("preflight");
            response
                .headers()
                .get("access-control-allow-origin")
                .map(|v| v.to_str().unwrap_or_default().to_owned())
        }
    };
    assert_eq!(
        preflight(site.clone(), "https://shop.example")
            .await
            .as_deref(),
        Some("https://shop.example")
    );
    assert_eq!(preflight(site.clone(), "https://evil.example").await, None);
    // One site's origin is nothing to another site.
    assert_eq!(preflight(other.clone(), "https://shop.example").await, None);
    // A changed list applies at once on this instance.
    let (status, _) = world
        .call(
            Method::PATCH,
            &format!("/v1/sites/{site}"),
            Some(&key),
            Some(json!({ "allowedOrigins": ["https://new.example"] })),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(preflight(site.clone(), "https://shop.example").await, None);
    assert_eq!(
        preflight(site.clone(), "https://new.example")
            .await
            .as_deref(),
        Some("https://new.example")
    );
    // Service workers report events from every site's origin.
    let response = world
        .http
        .request(Method::OPTIONS, format!("{}/v1/events", world.base))
        .header("Origin", "https://anything.example")
        .header("Access-Control-Request-Method", "POST")
        .send()
        .await
        .expect("preflight");
    assert_eq!(
        response.headers()["access-control-allow-origin"],
        "https://anything.example"
    );
    // Key routes have no CORS at all: browsers of other origins cannot use a leaked key.
    let response = world
        .http
        .request(
            Method::OPTIONS,
            format!("{}/v1/sites/{site}/pushes", world.base),
        )
        .header("Origin", "https://new.example")
        .header("Access-Control-Request-Method", "POST")
        .send()
        .await
        .expect("preflight");
    assert!(
        response
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
    world.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_routes_are_rate_limited_per_client() {
    let world = World::start(Options {
        public_rate: (1, 3),
        ..Options::default()
    })
    .await;
    let (site, key) = world.create_site(&[]).await;
    let path = format!("/v1/sites/{site}/vapid-public-key");
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(world.call(Method::GET, &path, None, None).await.0);
    }
    assert_eq!(&statuses[..3], &[StatusCode::OK; 3], "{statuses:?}");
    assert!(
        statuses[3..].contains(&StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
    let response = world
        .http
        .get(format!("{}{path}", world.base))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(response.headers().contains_key("retry-after"));
    // Routes for sites' backends are not limited this way.
    for _ in 0..10 {
        let (status, _) = world
            .call(Method::GET, &format!("/v1/sites/{site}"), Some(&key), None)
            .await;
        assert_eq!(status, StatusCode::OK);
    }
    world.finish().await;
}
