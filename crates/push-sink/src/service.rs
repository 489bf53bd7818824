//! Per-request dispatch: the admin endpoints under `/__sink/`, then each push-service kind,
//! then 404; and the state every request shares.
//!
//! A kind (Web Push, APNs, FCM, and the OAuth token endpoint FCM senders use) is a module with
//! a `matches(path)` test and a `handle` function; adding one is a module and one line in
//! [`handle`]. Responses go through [`Shared::respond`] or [`Shared::respond_json`] so that
//! every answered request is counted, under its kind, in exactly one place.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};

use crate::config::{Behaviour, Latency, SinkConfig};
use crate::fate::SubscriberTable;
use crate::received::{DeliveryLog, MobileReceived, Received};
use crate::stats::{Counters, Kind};
use crate::{apns, fcm, webpush};

/// Response body type: small and in one piece.
pub(crate) type Body = Full<Bytes>;

/// The service's error: answer with a reset instead of a response. hyper turns it into an
/// HTTP/2 `RST_STREAM` (the connection and its other streams carry on) or, on HTTP/1.1, a
/// closed connection.
#[derive(Debug)]
pub(crate) struct ResetStream;

impl std::fmt::Display for ResetStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("push sink resets this stream on purpose")
    }
}

impl std::error::Error for ResetStream {}

/// State shared by every connection and request of one sink.
pub(crate) struct Shared {
    /// Misbehaviour bands.
    pub(crate) behaviour: Behaviour,
    /// Answer delay.
    pub(crate) latency: Latency,
    /// Counters behind [`crate::Stats`].
    pub(crate) counters: Counters,
    /// Attempts and acceptances per subscriber.
    pub(crate) subscribers: SubscriberTable,
    /// Web Push verification, when on.
    pub(crate) webpush_verifier: Option<webpush::Verifier>,
    /// APNs verification, when on.
    pub(crate) apns_verifier: Option<apns::Verifier>,
    /// FCM and OAuth verification (with the access tokens issued), when on.
    pub(crate) fcm_verifier: Option<fcm::Verifier>,
    /// Accepted Web Push deliveries, in verification mode only.
    pub(crate) received: Option<DeliveryLog<Received>>,
    /// Accepted APNs and FCM deliveries, in verification mode only.
    pub(crate) received_mobile: Option<DeliveryLog<MobileReceived>>,
    /// State of the latency jitter generator (splitmix64).
    random: AtomicU64,
}

impl Shared {
    pub(crate) fn new(config: &SinkConfig) -> Self {
        let scheme = config.protocol.scheme();
        Shared {
            behaviour: config.behaviour,
            latency: config.latency,
            counters: Counters::new(),
            subscribers: SubscriberTable::new(),
            webpush_verifier: config
                .verify
                .as_ref()
                .map(|verify| webpush::Verifier::new(verify, scheme)),
            apns_verifier: config.verify.as_ref().map(apns::Verifier::new),
            fcm_verifier: config
                .verify
                .as_ref()
                .map(|verify| fcm::Verifier::new(verify, scheme)),
            received: config.verify.as_ref().map(|_| DeliveryLog::new()),
            received_mobile: config.verify.as_ref().map(|_| DeliveryLog::new()),
            random: AtomicU64::new(crate::stats::unix_ms()),
        }
    }

    /// Waits the configured latency, if any.
    pub(crate) async fn delay(&self) {
        if let Some(delay) = self.latency.pick(self.random_u64()) {
            tokio::time::sleep(delay).await;
        }
    }

    /// A well-mixed 64-bit number, for jitter and generated ids (not for secrets).
    pub(crate) fn random_u64(&self) -> u64 {
        splitmix64(self.random.fetch_add(0x9e37_79b9_7f4a_7c15, Relaxed))
    }

    /// Counts the answer to a request of `kind` and builds it; `text` is a plain-text body
    /// (none when empty).
    pub(crate) fn respond(
        &self,
        kind: Kind,
        status: StatusCode,
        text: impl Into<Bytes>,
    ) -> Response<Body> {
        self.counters.status(Some(kind), status.as_u16());
        response(status, text.into())
    }

    /// [`Shared::respond`] with a JSON body (`application/json`), as APNs, FCM and OAuth
    /// answer.
    pub(crate) fn respond_json(
        &self,
        kind: Kind,
        status: StatusCode,
        json: impl Into<Bytes>,
    ) -> Response<Body> {
        let mut response = self.respond(kind, status, json);
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        response
    }

    /// Zeroes counters and forgets attempts and deliveries.
    fn reset(&self) {
        self.counters.reset();
        self.subscribers.clear();
        if let Some(received) = &self.received {
            received.clear();
        }
        if let Some(received) = &self.received_mobile {
            received.clear();
        }
    }
}

/// A response with a plain-text body (none when `text` is empty).
fn response(status: StatusCode, text: Bytes) -> Response<Body> {
    let has_text = !text.is_empty();
    let mut response = Response::new(Full::new(text));
    *response.status_mut() = status;
    if has_text {
        response.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
    }
    response
}

/// Answers one request.
pub(crate) async fn handle(
    shared: Arc<Shared>,
    request: Request<Incoming>,
) -> Result<Response<Body>, ResetStream> {
    let path = request.uri().path();
    if let Some(command) = path.strip_prefix("/__sink/") {
        return Ok(admin(&shared, request.method(), command));
    }
    // The specific prefixes first: Web Push takes any path ending in 24 hex digits, which an
    // APNs device token can be.
    if apns::matches(path) {
        return apns::handle(&shared, request).await;
    }
    if fcm::matches(path) {
        return fcm::handle(&shared, request).await;
    }
    if fcm::oauth::matches(path) {
        return fcm::oauth::handle(&shared, request).await;
    }
    if webpush::matches(path) {
        return webpush::handle(&shared, request).await;
    }
    shared.counters.request(None);
    shared.counters.status(None, StatusCode::NOT_FOUND.as_u16());
    Ok(response(
        StatusCode::NOT_FOUND,
        Bytes::from_static(
            b"no push endpoint here: POST to /wp/<24-hex subscriber id>, /3/device/<hex token>, \
              /v1/projects/<project>/messages:send or /token",
        ),
    ))
}

/// `GET /__sink/stats`: the stats as JSON. `POST /__sink/reset`: the stats as JSON, then
/// zero them and forget attempts and deliveries. Not counted as push requests.
fn admin(shared: &Shared, method: &Method, command: &str) -> Response<Body> {
    let stats_json = || {
        let stats = shared.counters.snapshot();
        // Plain integers, strings and maps always serialise.
        let json = serde_json::to_vec(&stats).unwrap_or_default();
        let mut response = response(StatusCode::OK, Bytes::from(json));
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        response
    };
    match (method, command) {
        (&Method::GET, "stats") => stats_json(),
        (&Method::POST, "reset") => {
            let response = stats_json();
            shared.reset();
            response
        }
        (_, "stats" | "reset") => response(
            StatusCode::METHOD_NOT_ALLOWED,
            Bytes::from_static(b"GET /__sink/stats or POST /__sink/reset"),
        ),
        _ => response(
            StatusCode::NOT_FOUND,
            Bytes::from_static(b"admin endpoints: GET /__sink/stats, POST /__sink/reset"),
        ),
    }
}

/// One step of splitmix64: a well-mixed 64-bit number from a counter.
fn splitmix64(state: u64) -> u64 {
    let mut z = state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
