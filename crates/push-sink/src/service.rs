//! Per-request dispatch: the admin endpoints under `/__sink/`, then each push-service kind
//! (answered by the outage in force, if any, instead of its own handler), then 404; and the
//! state every request shares.
//!
//! A kind (Web Push, APNs, FCM, and the OAuth token endpoint FCM senders use) is a module with
//! a `matches(path)` test, a `handle` function and (push kinds) an `unavailable` answer for
//! outages; adding one is a module and a line in [`handle`] and in `unavailable`. Responses go through [`Shared::respond`] or [`Shared::respond_json`] so that
//! every answered request is counted, under its kind, in exactly one place.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use hyper::{Method, Request, Response, StatusCode};

use crate::body::{BodyError, read_body};
use crate::config::{Behaviour, KindLatency, Latency, SinkConfig};
use crate::fate::SubscriberTable;
use crate::outage::{Active, Outage, OutageSwitch};
use crate::received::{DeliveryLog, MobileReceived, Received};
use crate::stats::{Counters, Kind, Stats};
use crate::streams::ConnState;
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
    /// Answer delay, and per kind.
    pub(crate) latency: Latency,
    kind_latency: KindLatency,
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
    /// The outage in force, if any.
    pub(crate) outage: OutageSwitch,
    /// State of the latency jitter generator (splitmix64).
    random: AtomicU64,
}

impl Shared {
    pub(crate) fn new(config: &SinkConfig) -> Self {
        let scheme = config.protocol.scheme();
        Shared {
            behaviour: config.behaviour,
            latency: config.latency,
            kind_latency: config.kind_latency,
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
            outage: OutageSwitch::new(),
            random: AtomicU64::new(crate::stats::unix_ms()),
        }
    }

    /// A snapshot of the counters, with the outage in force.
    pub(crate) fn stats(&self) -> Stats {
        Stats {
            outage: self.outage.status(),
            ..self.counters.snapshot()
        }
    }

    /// Waits the latency configured for `kind`, if any.
    pub(crate) async fn delay(&self, kind: Kind) {
        let latency = match kind {
            Kind::WebPush => self.kind_latency.web_push,
            Kind::Apns => self.kind_latency.apns,
            Kind::Fcm => self.kind_latency.fcm,
            Kind::Oauth => None,
        }
        .unwrap_or(self.latency);
        if let Some(delay) = latency.pick(self.random_u64()) {
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

    /// Zeroes counters and forgets attempts and deliveries (an outage in force stays).
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
    conn: Arc<ConnState>,
    request: Request<Incoming>,
) -> Result<Response<Body>, ResetStream> {
    let path = request.uri().path();
    if let Some(command) = path.strip_prefix("/__sink/") {
        let command = command.to_owned();
        return Ok(admin(&shared, request, &command).await);
    }
    // The specific prefixes first: Web Push takes any path ending in 24 hex digits, which an
    // APNs device token can be.
    let kind = if apns::matches(path) {
        Kind::Apns
    } else if fcm::matches(path) {
        Kind::Fcm
    } else if fcm::oauth::matches(path) {
        Kind::Oauth
    } else if webpush::matches(path) {
        Kind::WebPush
    } else {
        shared.counters.request(None);
        shared.counters.status(None, StatusCode::NOT_FOUND.as_u16());
        return Ok(response(
            StatusCode::NOT_FOUND,
            Bytes::from_static(
                b"no push endpoint here: POST to /wp/<24-hex subscriber id>, /3/device/<hex token>, \
                  /v1/projects/<project>/messages:send or /token",
            ),
        ));
    };
    let _stream = conn.on_request(kind, &shared.counters);
    let answered = if let Some(outage) = shared.outage.in_force(kind) {
        unavailable(&shared, kind, &outage, request).await
    } else {
        match kind {
            Kind::Apns => apns::handle(&shared, request).await,
            Kind::Fcm => fcm::handle(&shared, request).await,
            Kind::Oauth => fcm::oauth::handle(&shared, request).await,
            Kind::WebPush => webpush::handle(&shared, request).await,
        }
    };
    if let Ok(response) = &answered {
        conn.on_answer(response.status().as_u16());
    }
    answered
}

/// Largest body read (and dropped) from a request an outage answers; past it the answer goes
/// out without the rest.
const OUTAGE_BODY_LIMIT: usize = 64 * 1024;

/// Answers a push request of `kind` on behalf of `outage`: the body is read and dropped (so
/// the connection stays usable), the configured latency is waited as for any answer, then
/// the kind's own error shape with the outage's status and `Retry-After`. The attempt table
/// is not touched (see [`crate::outage`]).
async fn unavailable(
    shared: &Shared,
    kind: Kind,
    outage: &Active,
    request: Request<Incoming>,
) -> Result<Response<Body>, ResetStream> {
    shared.counters.request(Some(kind));
    match read_body(request.into_body(), false, OUTAGE_BODY_LIMIT).await {
        Ok((length, _)) | Err(BodyError::TooLarge(length)) => shared.counters.bytes_in(length),
        // The client went away mid-body: nobody to answer.
        Err(BodyError::Aborted) => return Err(ResetStream),
    }
    shared.delay(kind).await;
    shared.counters.outage_answered(kind);
    outage.answered_one();
    let status = outage.outage.status;
    let mut response = match kind {
        Kind::WebPush => webpush::unavailable(shared, status),
        Kind::Apns => apns::unavailable(shared, status),
        Kind::Fcm | Kind::Oauth => fcm::unavailable(shared, status),
    };
    if let Some(seconds) = outage.outage.retry_after_secs {
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(seconds));
    }
    Ok(response)
}

/// What the admin endpoints take.
const ADMIN_USAGE: &[u8] = b"admin endpoints: GET /__sink/stats, POST /__sink/reset, \
    POST /__sink/outage {\"seconds\": 60, \"status\": 503, \"retryAfter\": 5, \"kind\": \"webpush|apns|fcm\"}, \
    GET or DELETE /__sink/outage";

/// Largest admin request body read.
const ADMIN_BODY_LIMIT: usize = 4096;

/// The admin endpoints, not counted as push requests:
///
/// - `GET /__sink/stats`: the stats as JSON (with the outage in force, if any);
/// - `POST /__sink/reset`: the stats as JSON, then zero them and forget attempts and
///   deliveries;
/// - `POST /__sink/outage` with `{"seconds", "status", "retryAfter", "kind"}`: start an
///   outage (replacing any in force); answers its [`crate::outage::OutageStatus`], or 400
///   saying what is wrong with the body;
/// - `GET /__sink/outage`: the outage in force, or `null`;
/// - `DELETE /__sink/outage`: end it at once; answers what it was, or `null`.
async fn admin(shared: &Shared, request: Request<Incoming>, command: &str) -> Response<Body> {
    let method = request.method().clone();
    match (&method, command) {
        (&Method::GET, "stats") => json_response(StatusCode::OK, &shared.stats()),
        (&Method::POST, "reset") => {
            let response = json_response(StatusCode::OK, &shared.stats());
            shared.reset();
            response
        }
        (&Method::POST, "outage") => {
            let body = match read_body(request.into_body(), true, ADMIN_BODY_LIMIT).await {
                Ok((_, body)) => body.unwrap_or_default(),
                Err(BodyError::TooLarge(_)) | Err(BodyError::Aborted) => {
                    return response(
                        StatusCode::BAD_REQUEST,
                        Bytes::from_static(b"outage body: not a small JSON object"),
                    );
                }
            };
            match Outage::from_json(&body) {
                Ok(outage) => {
                    let status = shared.outage.start(outage);
                    tracing::info!(?outage, "outage started");
                    json_response(StatusCode::OK, &status)
                }
                Err(message) => response(StatusCode::BAD_REQUEST, Bytes::from(message)),
            }
        }
        (&Method::GET, "outage") => json_response(StatusCode::OK, &shared.outage.status()),
        (&Method::DELETE, "outage") => {
            let ended = shared.outage.end();
            tracing::info!(?ended, "outage ended");
            json_response(StatusCode::OK, &ended)
        }
        (_, "stats" | "reset" | "outage") => response(
            StatusCode::METHOD_NOT_ALLOWED,
            Bytes::from_static(ADMIN_USAGE),
        ),
        _ => response(StatusCode::NOT_FOUND, Bytes::from_static(ADMIN_USAGE)),
    }
}

/// `value` as an `application/json` response.
fn json_response(status: StatusCode, value: &impl serde::Serialize) -> Response<Body> {
    // Stats and outage reports are plain integers, strings and maps: they always serialise.
    let json = serde_json::to_vec(value).unwrap_or_default();
    let mut response = response(status, Bytes::from(json));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// One step of splitmix64: a well-mixed 64-bit number from a counter.
fn splitmix64(state: u64) -> u64 {
    let mut z = state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
