//! The web console under `/console`: plain HTML, CSS and one script, embedded in the binary
//! at build time (from `crates/pushapi/console/`) like the SDK, so a deployed `pushapi`
//! serves it with nothing beside it.
//!
//! The files are public; everything they show comes from the API with the token the operator
//! typed (the admin token or a site key), kept in the tab's `sessionStorage` and sent as a
//! Bearer header, never a cookie or a URL. Every file goes out with a strict
//! Content-Security-Policy: scripts, styles and requests only from this origin, no inline
//! script or style, no form submissions, no framing.

use axum::extract::Path;
use axum::http::{HeaderName, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};

use crate::error::ApiError;

/// What the console may load and do: only its own files and the API of this origin.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// (name, content type, body) of every console file.
pub const FILES: &[(&str, &str, &str)] = &[
    (
        "index.html",
        "text/html; charset=utf-8",
        include_str!("../../console/index.html"),
    ),
    (
        "console.css",
        "text/css; charset=utf-8",
        include_str!("../../console/console.css"),
    ),
    (
        "console.js",
        "text/javascript; charset=utf-8",
        include_str!("../../console/console.js"),
    ),
    (
        "chart.js",
        "text/javascript; charset=utf-8",
        include_str!("../../console/chart.js"),
    ),
    (
        "favicon.svg",
        "image/svg+xml",
        include_str!("../../console/favicon.svg"),
    ),
];

/// `GET /console`: the console's page.
pub async fn index() -> Response {
    file_response("index.html")
}

/// `GET /console/`: to `/console`, the one address of the page.
pub async fn slash() -> Redirect {
    Redirect::permanent("/console")
}

/// `GET /console/{file}`.
pub async fn file(Path(file): Path<String>) -> Response {
    file_response(&file)
}

fn file_response(name: &str) -> Response {
    let Some((_, content_type, body)) = FILES.iter().find(|(n, _, _)| *n == name) else {
        let names: Vec<&str> = FILES.iter().map(|(n, _, _)| *n).collect();
        return ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no console file {name:?}; there are {}", names.join(", ")),
        )
        .into_response();
    };
    (
        [
            (header::CONTENT_TYPE, *content_type),
            (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::REFERRER_POLICY, "no-referrer"),
            // Revalidated on every load: a deploy changes the console at once, and the
            // files are small.
            (header::CACHE_CONTROL, "no-cache"),
            (
                HeaderName::from_static("cross-origin-opener-policy"),
                "same-origin",
            ),
        ],
        *body,
    )
        .into_response()
}
