//! The router: every route of the API, with its middleware.
//!
//! Three groups: public site routes (CORS for the site's `allowedOrigins`, rate limited per
//! client), the public events route (CORS for any origin: service workers report from every
//! site's origin, and the events are checked against MongoDB instead), and key routes (no
//! CORS: called by sites' backends, or same-origin by the console). The OpenAPI document
//! (`openapi.json`) lists the same routes; a test checks both agree. The web console
//! (`/console`, [`console`]) is static files that call the key routes with the operator's
//! token.

pub mod channels;
pub mod console;
pub mod dead_letters;
pub mod events;
pub mod notifications;
pub mod pushes;
pub mod realtime;
pub mod site_list;
pub mod sites;
pub mod static_files;
pub mod subscribers;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::error::ApiError;
use crate::ratelimit::{self, PublicLimiter};
use crate::state::AppState;

/// Every route as (method, path template), as the router has them; `openapi.json` must list
/// exactly these (checked by a test).
pub const ROUTES: &[(&str, &str)] = &[
    ("POST", "/v1/sites"),
    ("GET", "/v1/sites"),
    ("GET", "/v1/sites/{siteId}"),
    ("PATCH", "/v1/sites/{siteId}"),
    ("POST", "/v1/sites/{siteId}/keys"),
    ("DELETE", "/v1/sites/{siteId}/keys/{keyId}"),
    ("PUT", "/v1/sites/{siteId}/apns"),
    ("PUT", "/v1/sites/{siteId}/fcm"),
    ("GET", "/v1/sites/{siteId}/vapid-public-key"),
    ("POST", "/v1/sites/{siteId}/subscribers"),
    ("POST", "/v1/sites/{siteId}/subscribers/unsubscribe"),
    ("DELETE", "/v1/sites/{siteId}/subscribers/{subscriberId}"),
    ("POST", "/v1/sites/{siteId}/pushes"),
    ("GET", "/v1/sites/{siteId}/pushes"),
    ("GET", "/v1/pushes/{pushId}"),
    ("POST", "/v1/pushes/{pushId}/send"),
    ("POST", "/v1/pushes/{pushId}/cancel"),
    ("GET", "/v1/pushes/{pushId}/progress"),
    ("POST", "/v1/sites/{siteId}/notifications"),
    ("POST", "/v1/sites/{siteId}/realtime/tokens"),
    ("POST", "/v1/sites/{siteId}/realtime/secret"),
    ("POST", "/v1/sites/{siteId}/channels/{channel}/messages"),
    ("GET", "/v1/sites/{siteId}/presence"),
    ("GET", "/v1/sites/{siteId}/realtime/messages/{messageId}"),
    ("GET", "/v1/sites/{siteId}/realtime/stats"),
    ("GET", "/v1/sites/{siteId}/users/{externalId}/presence"),
    ("GET", "/v1/sites/{siteId}/realtime/channels"),
    ("GET", "/v1/sites/{siteId}/dead-letters"),
    ("POST", "/v1/sites/{siteId}/dead-letters/replay"),
    ("GET", "/v1/dead-letters"),
    ("POST", "/v1/dead-letters/replay"),
    ("POST", "/v1/events"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/openapi.json"),
    ("GET", "/sdk/{file}"),
    ("GET", "/console"),
    ("GET", "/console/"),
    ("GET", "/console/{file}"),
];

/// The whole API.
pub fn router(
    state: AppState,
    limiter: Arc<PublicLimiter>,
    body_limit: usize,
    timeout: Duration,
) -> Router {
    let rate_limited = middleware::from_fn_with_state((state.clone(), limiter), ratelimit::limit);

    let site_cors = {
        let state = state.clone();
        CorsLayer::new()
            .allow_origin(AllowOrigin::async_predicate(move |origin, parts| {
                let state = state.clone();
                let path = parts.uri.path().to_owned();
                async move { origin_allowed(&state, &path, &origin).await }
            }))
            .allow_methods([Method::GET, Method::POST])
            .allow_headers([header::CONTENT_TYPE])
            .max_age(Duration::from_secs(600))
    };
    let public_site = Router::new()
        .route(
            "/v1/sites/{siteId}/vapid-public-key",
            get(sites::vapid_public_key),
        )
        .route(
            "/v1/sites/{siteId}/subscribers",
            post(subscribers::subscribe),
        )
        .route(
            "/v1/sites/{siteId}/subscribers/unsubscribe",
            post(subscribers::unsubscribe),
        )
        .layer(site_cors)
        .layer(rate_limited.clone());

    let any_origin = CorsLayer::new()
        .allow_origin(AllowOrigin::mirror_request())
        .allow_methods([Method::POST])
        .allow_headers([header::CONTENT_TYPE])
        .max_age(Duration::from_secs(600));
    let public_events = Router::new()
        .route("/v1/events", post(events::record))
        .layer(any_origin)
        .layer(rate_limited);

    let keyed = Router::new()
        .route("/v1/sites", post(sites::create).get(site_list::list))
        .route("/v1/sites/{siteId}", get(sites::get).patch(sites::update))
        .route("/v1/sites/{siteId}/keys", post(sites::create_key))
        .route("/v1/sites/{siteId}/keys/{keyId}", delete(sites::delete_key))
        .route("/v1/sites/{siteId}/apns", put(sites::put_apns))
        .route("/v1/sites/{siteId}/fcm", put(sites::put_fcm))
        .route(
            "/v1/sites/{siteId}/subscribers/{subscriberId}",
            delete(subscribers::delete),
        )
        .route(
            "/v1/sites/{siteId}/pushes",
            post(pushes::create).get(pushes::list),
        )
        .route(
            "/v1/sites/{siteId}/notifications",
            post(notifications::send),
        )
        .route("/v1/sites/{siteId}/realtime/tokens", post(realtime::token))
        .route(
            "/v1/sites/{siteId}/realtime/secret",
            post(realtime::rotate_secret),
        )
        .route(
            "/v1/sites/{siteId}/channels/{channel}/messages",
            post(realtime::publish),
        )
        .route("/v1/sites/{siteId}/presence", get(realtime::presence))
        .route(
            "/v1/sites/{siteId}/realtime/messages/{messageId}",
            get(realtime::message_figures),
        )
        .route("/v1/sites/{siteId}/realtime/stats", get(realtime::stats))
        .route(
            "/v1/sites/{siteId}/users/{externalId}/presence",
            get(realtime::user_presence),
        )
        .route("/v1/sites/{siteId}/realtime/channels", get(channels::list))
        .route("/v1/sites/{siteId}/dead-letters", get(dead_letters::list))
        .route(
            "/v1/sites/{siteId}/dead-letters/replay",
            post(dead_letters::replay_site),
        )
        .route("/v1/dead-letters", get(dead_letters::list_all))
        .route("/v1/dead-letters/replay", post(dead_letters::replay_all))
        .route("/v1/pushes/{pushId}", get(pushes::get))
        .route("/v1/pushes/{pushId}/send", post(pushes::send))
        .route("/v1/pushes/{pushId}/cancel", post(pushes::cancel))
        .route("/v1/pushes/{pushId}/progress", get(pushes::progress));

    let operations = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(static_files::openapi))
        .route("/sdk/{file}", get(static_files::sdk))
        .route("/console", get(console::index))
        .route("/console/", get(console::slash))
        .route("/console/{file}", get(console::file));

    Router::new()
        .merge(public_site)
        .merge(public_events)
        .merge(keyed)
        .merge(operations)
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            count_requests,
        ))
        .layer(
            tower::ServiceBuilder::new()
                .layer(tower_http::trace::TraceLayer::new_for_http())
                // Gzip when the client asks; never event streams (their events must not
                // wait in a compressor's buffer), small bodies or images.
                .layer(tower_http::compression::CompressionLayer::new())
                .layer(tower_http::timeout::TimeoutLayer::with_status_code(
                    StatusCode::REQUEST_TIMEOUT,
                    timeout,
                ))
                .layer(axum::extract::DefaultBodyLimit::max(body_limit)),
        )
        .with_state(state)
}

/// Whether `origin` may call the public route at `path` (of `/v1/sites/{siteId}/...`).
async fn origin_allowed(state: &AppState, path: &str, origin: &HeaderValue) -> bool {
    let Some(site) = path
        .strip_prefix("/v1/sites/")
        .and_then(|rest| rest.split('/').next())
        .and_then(|id| pushservice_model::ObjectId::parse_str(id).ok())
    else {
        return false;
    };
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    match state.sites.get(site).await {
        Ok(Some(site)) => site
            .allowed_origins
            .iter()
            .any(|o| o.eq_ignore_ascii_case(origin)),
        _ => false,
    }
}

async fn readyz(State(state): State<AppState>) -> Response {
    let status = if state.health.is_ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, state.health.describe()).into_response()
}

async fn metrics(State(state): State<AppState>) -> Response {
    if !state.public_metrics {
        return ApiError::new(
            StatusCode::NOT_FOUND,
            "no_such_route",
            "metrics are served on METRICS_ADDR, not on the API's port".to_owned(),
        )
        .into_response();
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.registry.render(),
    )
        .into_response()
}

async fn not_found(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no_such_route",
        format!(
            "there is no route {method} {}; see /openapi.json",
            uri.path()
        ),
    )
}

/// axum answers a known path with an unknown method 405 with an empty body; say it as JSON
/// like every other error. (A router-wide method-not-allowed fallback would also catch CORS
/// preflights before the CORS layers of the public routes could answer them.)
fn method_not_allowed(method: &Method, path: &str, allow: Option<HeaderValue>) -> Response {
    let mut response = ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{path} does not take {method}; see /openapi.json"),
    )
    .into_response();
    if let Some(allow) = allow {
        response.headers_mut().insert(header::ALLOW, allow);
    }
    response
}

/// Counts every request by route template (never by id) and status.
async fn count_requests(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let mut response = next.run(request).await;
    if response.status() == StatusCode::METHOD_NOT_ALLOWED {
        let allow = response.headers().get(header::ALLOW).cloned();
        response = method_not_allowed(&method, &path, allow);
    }
    state
        .metrics
        .request(&route, method.as_str(), response.status().as_u16());
    response
}
