//! The router, CORS for browser pages, error answers and the SSE ack endpoint.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;

use crate::auth::{Identity, authenticate, origin_allowed, request_token};
use crate::session::Shared;
use crate::{sse, ws};

/// The gateway's routes.
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/realtime/sse", get(sse::connect).options(preflight))
        .route("/v1/realtime/ws", get(ws::upgrade))
        .route("/v1/realtime/ack", post(ack).options(preflight))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(shared)
}

/// Authenticates an HTTP request (SSE, acks): its token from the `Authorization` header, the
/// cookie or `?token=`, and the page's origin against the site's. Returns the identity and the
/// origin, or the refusal to answer.
pub async fn authenticate_request(
    shared: &Shared,
    headers: &HeaderMap,
    query_token: Option<&str>,
) -> Result<(Identity, Option<String>), Box<Response>> {
    let origin = headers
        .get(header::ORIGIN)
        .and_then(|o| o.to_str().ok())
        .map(str::to_owned);
    let Some((token, from_cookie)) = request_token(headers, query_token) else {
        shared.metrics.auth_failures.inc();
        return Err(Box::new(error_response(
            StatusCode::UNAUTHORIZED,
            "missing_token",
            "send a connection token: Authorization: Bearer, the pushservice_rt cookie, or ?token=",
            origin.as_deref(),
        )));
    };
    let identity = match authenticate(&shared.sites, &token, from_cookie).await {
        Ok(identity) => identity,
        Err(e) => {
            shared.metrics.auth_failures.inc();
            return Err(Box::new(error_response(
                StatusCode::UNAUTHORIZED,
                e.code,
                &e.message,
                origin.as_deref(),
            )));
        }
    };
    if !origin_allowed(&identity, origin.as_deref()) {
        return Err(Box::new(error_response(
            StatusCode::FORBIDDEN,
            "origin_not_allowed",
            "this page's origin is not one of the site's allowedOrigins",
            None,
        )));
    }
    Ok((identity, origin))
}

/// CORS headers for a page at `origin`, when the site allows it.
pub fn cors_headers(identity: &Identity, origin: Option<&str>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    if let Some(origin) = origin
        && origin_allowed(identity, Some(origin))
        && let Ok(value) = HeaderValue::from_str(origin)
    {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
        headers.insert(header::VARY, HeaderValue::from_static("origin"));
    }
    headers
}

/// A JSON error. Browsers may read it (the origin is echoed) so that the SDK can tell an
/// expired token from a network failure.
pub fn error_response(
    status: StatusCode,
    code: &str,
    message: &str,
    origin: Option<&str>,
) -> Response {
    let mut response = (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        json!({"error": {"code": code, "message": message}}).to_string(),
    )
        .into_response();
    if let Some(origin) = origin
        && let Ok(value) = HeaderValue::from_str(origin)
    {
        response
            .headers_mut()
            .insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
    }
    response
}

/// Preflight for the SSE and ack routes: the origin is checked on the real request, which
/// carries the token.
async fn preflight(headers: HeaderMap) -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    if let Some(origin) = headers.get(header::ORIGIN) {
        let out = response.headers_mut();
        out.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        out.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, POST"),
        );
        out.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("authorization, content-type, last-event-id"),
        );
        out.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
        out.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("600"),
        );
    }
    response
}

#[derive(Debug, Deserialize)]
struct TokenQuery {
    #[serde(default)]
    token: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AckBody {
    ids: Vec<String>,
}

/// `POST /v1/realtime/ack`: acknowledgements of SSE clients.
async fn ack(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<TokenQuery>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let (identity, origin) =
        match authenticate_request(&shared, &headers, query.token.as_deref()).await {
            Ok(found) => found,
            Err(refused) => return *refused,
        };
    let body: AckBody = match serde_json::from_slice(&body) {
        Ok(body) => body,
        Err(e) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                "invalid_body",
                &format!("expected {{\"ids\": [\"<partition>-<offset>\", ...]}}: {e}"),
                origin.as_deref(),
            );
        }
    };
    let valid = body
        .ids
        .iter()
        .filter(|id| pushservice_realtime::record::parse_message_id(id).is_some())
        .count();
    if valid != body.ids.len() || body.ids.len() > 1000 {
        return error_response(
            StatusCode::BAD_REQUEST,
            "invalid_ids",
            "ids are message ids like \"7-1234\", at most 1000 at once",
            origin.as_deref(),
        );
    }
    let counted = shared.acks.acked(&identity.site, &body.ids);
    shared.metrics.acks.add(counted);
    let mut response = StatusCode::NO_CONTENT.into_response();
    response
        .headers_mut()
        .extend(cors_headers(&identity, origin.as_deref()));
    response
}
