//! Files the API serves from its binary: the browser SDK under `/sdk/` and the OpenAPI
//! document. Embedded at build time, so a deployed `pushapi` needs nothing beside it.

use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

/// The OpenAPI 3.1 document of the API.
pub const OPENAPI: &str = include_str!("../../openapi.json");

const SDK: &[(&str, &str, &str)] = &[
    (
        "pushservice.js",
        "text/javascript; charset=utf-8",
        include_str!("../../../../sdk/pushservice.js"),
    ),
    (
        "sw.js",
        "text/javascript; charset=utf-8",
        include_str!("../../../../sdk/sw.js"),
    ),
    (
        "demo.html",
        "text/html; charset=utf-8",
        include_str!("../../../../sdk/demo.html"),
    ),
    (
        "realtime.js",
        "text/javascript; charset=utf-8",
        include_str!("../../../../sdk/realtime.js"),
    ),
    (
        "realtime-demo.html",
        "text/html; charset=utf-8",
        include_str!("../../../../sdk/realtime-demo.html"),
    ),
];

/// `GET /openapi.json`.
pub async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

/// `GET /sdk/{file}`.
pub async fn sdk(Path(file): Path<String>) -> Response {
    match SDK.iter().find(|(name, _, _)| *name == file) {
        Some((_, content_type, body)) => (
            [
                (header::CONTENT_TYPE, *content_type),
                // Short: a fixed SDK reaches browsers within minutes of a deploy.
                (header::CACHE_CONTROL, "public, max-age=300"),
                // A service worker served from /sdk/ may control the whole origin only when
                // the server says so (the demo registers it with scope /sdk/).
                (
                    header::HeaderName::from_static("service-worker-allowed"),
                    "/",
                ),
            ],
            *body,
        )
            .into_response(),
        None => ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no SDK file {file:?}; there are pushservice.js, sw.js and demo.html"),
        )
        .into_response(),
    }
}
