//! The delivery client: several HTTP/2 connections per push service origin, straight on `h2`.
//!
//! Why not reqwest (which the providers used before): its pool keeps one HTTP/2 connection
//! per origin, so a sender's requests in flight to Google were capped by Google's
//! `SETTINGS_MAX_CONCURRENT_STREAMS` (100) whatever the settings said; at 100 ms an answer
//! that is 1,000 deliveries a second. Here an origin's requests go to the connection with the
//! most free streams, and a new connection is opened (one at a time) when every stream of
//! the existing ones is taken, up to [`PoolConfig::max_connections`]. Concurrency per origin
//! follows: connections × the streams each server allows.
//!
//! What each connection respects:
//!
//! - the server's stream limit as it changes: the limit is read from `h2` after every frame
//!   the connection task handles, and waiters are woken when it grows. A connection starts
//!   at one stream until the server's SETTINGS say otherwise, and while a connection still
//!   allows one stream and has not completed a request (APNs' rule: one stream until the
//!   first success, then 1,000), no further connection is opened for it: waiting for the
//!   first answer is what Apple asks for;
//! - GOAWAY: no new request goes to a connection that got one. A request the server did not
//!   process — refused with `REFUSED_STREAM`, above the GOAWAY's last stream id (h2 fails
//!   exactly those with the remote GOAWAY), or never sent because the GOAWAY came first — is
//!   sent again at once on another connection. Anything else that fails without an answer
//!   may have been processed, and becomes a transient outcome for the sender's retry rules.
//!
//! Kept from the reqwest client: the [`EndpointPolicy`] on resolved addresses (the provider
//! checks URLs; this client resolves with [`PolicyResolver`]), no redirects, no proxy, the
//! whole-request and connect timeouts, capped response reads, TLS on rustls (aws-lc-rs) with
//! the platform's roots plus extra ones. An origin whose server does not speak HTTP/2 (ALPN
//! picks HTTP/1.1, or `http://` without prior knowledge) is served by a reqwest client, as
//! before.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::task::{Context, Poll};

use bytes::Bytes;
use h2::client::SendRequest;
use http::header::{HeaderValue, RETRY_AFTER, USER_AGENT};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Uri};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::endpoint::{EndpointRefused, PolicyResolver};
use crate::http::{Answer, ClientError, HttpConfig, build_client, describe_error};
use crate::{DeliveryOutcome, EndpointPolicy};

/// Most origins kept; past it, origins without requests in flight are forgotten.
const MAX_ORIGINS: usize = 4096;
/// Times a request the server did not process is sent again on another connection. Such a
/// resend cannot duplicate anything, so the bound only stops a server that refuses every
/// stream; at 3, a push service sending GOAWAY every few requests (push-sink's
/// `goaway_after: 7` under load) refused one request four times in a row about once in a
/// hundred runs of 300, and that delivery failed as transient.
const MAX_RESENDS: u32 = 10;

/// How the pool behaves beyond [`HttpConfig`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolConfig {
    /// HTTP/2 connections per origin at most (default 16;
    /// `SENDER_ORIGIN_CONNECTIONS`).
    pub max_connections: usize,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            max_connections: 16,
        }
    }
}

/// Where requests go: scheme, authority and what to connect to. Build once per origin
/// ([`Origin::new`]) and reuse: requests then carry only their path.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Origin {
    scheme: Scheme,
    authority: Authority,
    host: Box<str>,
    port: u16,
    key: Box<str>,
}

impl Origin {
    /// The origin of `url` (already checked against the endpoint policy).
    pub fn new(url: &url::Url) -> Result<Origin, EndpointRefused> {
        let scheme = match url.scheme() {
            "https" => Scheme::HTTPS,
            "http" => Scheme::HTTP,
            other => return Err(EndpointRefused::Scheme(other.to_owned())),
        };
        let host = match url.host() {
            Some(url::Host::Domain(name)) => name.to_owned(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            None => return Err(EndpointRefused::NoHost),
        };
        let port = url.port_or_known_default().ok_or(EndpointRefused::NoHost)?;
        let serialized = url.origin().ascii_serialization();
        let authority_text = serialized
            .split_once("://")
            .map_or(serialized.as_str(), |(_, rest)| rest);
        let authority = Authority::try_from(authority_text)
            .map_err(|e| EndpointRefused::Invalid(e.to_string()))?;
        Ok(Origin {
            scheme,
            authority,
            host: host.into(),
            port,
            key: serialized.into(),
        })
    }

    /// `scheme://host[:port]`, what logs name.
    pub fn as_str(&self) -> &str {
        &self.key
    }

    /// A request URI on this origin for `path` (which starts with `/`).
    pub fn uri(&self, path: PathAndQuery) -> Uri {
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(self.scheme.clone());
        parts.authority = Some(self.authority.clone());
        parts.path_and_query = Some(path);
        // Scheme, authority and path are each valid: the parts always make a URI.
        Uri::from_parts(parts).unwrap_or_default()
    }
}

/// Why a request got no answer.
#[derive(Debug)]
pub enum SendError {
    /// The endpoint policy refused every address of the host: permanent.
    Refused(EndpointRefused),
    /// Withdrawn (its push canceled) while waiting for a stream: nothing was sent.
    Withdrawn,
    /// No answer: timeout, connection trouble, a reset. May have been processed.
    Failed(String),
}

impl SendError {
    /// The delivery outcome of this error for a request to `origin`.
    pub fn outcome(self) -> DeliveryOutcome {
        match self {
            SendError::Refused(refused) => DeliveryOutcome::permanent(refused.to_string()),
            SendError::Withdrawn => DeliveryOutcome::Withdrawn,
            SendError::Failed(reason) => DeliveryOutcome::transient(reason),
        }
    }
}

/// The pooled HTTP/2 client of one provider. Cheap to share (`Send + Sync`).
pub struct Http2Pool {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Http2Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Http2Pool")
            .field("max_connections", &self.inner.pool.max_connections)
            .finish_non_exhaustive()
    }
}

struct Inner {
    tls: tokio_rustls::TlsConnector,
    resolver: PolicyResolver,
    http: HttpConfig,
    pool: PoolConfig,
    user_agent: HeaderValue,
    origins: Mutex<HashMap<Origin, Arc<OriginPool>>>,
    /// HTTP/1.1 origins (and cleartext without prior knowledge).
    fallback: reqwest::Client,
}

impl Http2Pool {
    /// A pool for `config`; `user_agent` names the provider.
    pub fn new(
        config: &HttpConfig,
        pool: PoolConfig,
        user_agent: &'static str,
    ) -> Result<Self, ClientError> {
        if pool.max_connections == 0 {
            return Err(ClientError::InvalidConfig(
                "max_connections (SENDER_ORIGIN_CONNECTIONS) must be at least 1",
            ));
        }
        // Also validates timeouts, the response cap and the extra roots.
        let fallback = build_client(config, user_agent)?;
        let mut roots = Vec::new();
        for (index, pem) in config.extra_root_certificates.iter().enumerate() {
            let before = roots.len();
            for certificate in CertificateDer::pem_slice_iter(pem) {
                roots.push(certificate.map_err(|e| ClientError::Tls {
                    index,
                    reason: e.to_string(),
                })?);
            }
            if roots.len() == before {
                return Err(ClientError::InvalidConfig("empty extra root certificate"));
            }
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let verifier =
            rustls_platform_verifier::Verifier::new_with_extra_roots(roots, provider.clone())
                .map_err(|e| ClientError::Tls {
                    index: 0,
                    reason: e.to_string(),
                })?;
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| ClientError::Tls {
                index: 0,
                reason: e.to_string(),
            })?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth();
        tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Http2Pool {
            inner: Arc::new(Inner {
                tls: tokio_rustls::TlsConnector::from(Arc::new(tls)),
                resolver: PolicyResolver::new(config.endpoint_policy.clone()),
                http: config.clone(),
                pool,
                user_agent: HeaderValue::from_static(user_agent),
                origins: Mutex::new(HashMap::new()),
                fallback,
            }),
        })
    }

    /// The endpoint policy the pool's resolver enforces.
    pub fn policy(&self) -> &EndpointPolicy {
        &self.inner.http.endpoint_policy
    }

    /// Sends `request` (its URI from [`Origin::uri`]) to `origin` and reads the answer,
    /// within the request timeout. `withdrawn` cancels it while it waits for a stream
    /// (nothing sent); once sent, it always runs to its answer.
    pub async fn send(
        &self,
        origin: &Origin,
        mut request: Request<Bytes>,
        withdrawn: Option<&CancellationToken>,
    ) -> Result<Answer, SendError> {
        request
            .headers_mut()
            .insert(USER_AGENT, self.inner.user_agent.clone());
        let pool = self.origin(origin);
        let timeout = self.inner.http.request_timeout;
        match tokio::time::timeout(timeout, pool.send(&self.inner, request, withdrawn)).await {
            Ok(result) => result,
            Err(_) => Err(SendError::Failed(format!(
                "timed out talking to {} (after {timeout:?})",
                origin.as_str()
            ))),
        }
    }

    /// Connections open to `origin` now (tests and metrics).
    pub fn connections(&self, origin: &Origin) -> usize {
        let pool = self.origin(origin);
        let state = pool.state.lock().unwrap_or_else(PoisonError::into_inner);
        state
            .conns
            .iter()
            .filter(|c| !c.closed.load(Ordering::Acquire))
            .count()
    }

    fn origin(&self, origin: &Origin) -> Arc<OriginPool> {
        let mut origins = self
            .inner
            .origins
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(pool) = origins.get(origin) {
            return Arc::clone(pool);
        }
        if origins.len() >= MAX_ORIGINS {
            origins.retain(|_, pool| Arc::strong_count(pool) > 1 || pool.busy());
        }
        let h1 = origin.scheme == Scheme::HTTP && !self.inner.http.http2_prior_knowledge;
        let pool = Arc::new(OriginPool {
            origin: origin.clone(),
            state: Mutex::new(PoolState::default()),
            changed: Arc::new(Notify::new()),
            h1: AtomicBool::new(h1),
        });
        origins.insert(origin.clone(), Arc::clone(&pool));
        pool
    }
}

/// One origin's connections.
struct OriginPool {
    origin: Origin,
    state: Mutex<PoolState>,
    /// Woken when a stream frees, a connection opens, closes or widens, or a connect fails.
    changed: Arc<Notify>,
    /// The origin speaks HTTP/1.1 only: requests go through the fallback client.
    h1: AtomicBool,
}

#[derive(Default)]
struct PoolState {
    conns: Vec<Arc<Conn>>,
    connecting: bool,
    /// Connect attempts that failed, and why the last one did.
    connect_failures: u64,
    last_failure: Option<ConnectFailure>,
}

#[derive(Debug, Clone)]
enum ConnectFailure {
    Refused(EndpointRefused),
    Failed(String),
}

/// One HTTP/2 connection.
struct Conn {
    send: SendRequest<Bytes>,
    /// Streams of ours open on it (taken under the pool's lock).
    in_flight: AtomicUsize,
    /// The server's SETTINGS_MAX_CONCURRENT_STREAMS, as h2 last saw it.
    limit: Arc<AtomicUsize>,
    /// GOAWAY received, a request failed on it, or the connection ended: no new requests.
    closed: Arc<AtomicBool>,
    /// A request on it completed (with an answer).
    completed: AtomicBool,
}

impl Conn {
    fn free(&self) -> usize {
        self.limit
            .load(Ordering::Acquire)
            .saturating_sub(self.in_flight.load(Ordering::Relaxed))
    }

    /// Still in APNs' one-stream start: one stream allowed, none answered yet.
    fn warming(&self) -> bool {
        self.limit.load(Ordering::Acquire) <= 1 && !self.completed.load(Ordering::Acquire)
    }
}

/// A stream taken on a connection; given back on drop.
struct Lease<'a> {
    pool: &'a OriginPool,
    conn: Arc<Conn>,
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        self.conn.in_flight.fetch_sub(1, Ordering::Relaxed);
        // Every waiter wants the same thing (a stream of this origin): one is enough.
        self.pool.changed.notify_one();
    }
}

/// What the pool decided for one request.
enum Checkout<'a> {
    Stream(Lease<'a>),
    Http1,
    Wait,
    Failed(ConnectFailure),
}

/// How a request on a connection ended.
enum Attempt {
    Answered(Answer),
    /// Not processed by the server (never sent, refused, above the GOAWAY's last stream):
    /// safe to send again elsewhere.
    Unprocessed(String),
    Failed(String),
}

impl OriginPool {
    fn busy(&self) -> bool {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.connecting
            || state
                .conns
                .iter()
                .any(|c| c.in_flight.load(Ordering::Relaxed) > 0)
    }

    async fn send(
        self: &Arc<Self>,
        inner: &Arc<Inner>,
        request: Request<Bytes>,
        withdrawn: Option<&CancellationToken>,
    ) -> Result<Answer, SendError> {
        let mut resends = 0;
        loop {
            if self.h1.load(Ordering::Acquire) {
                return self.send_http1(inner, request).await;
            }
            let lease = match self.checkout(inner, withdrawn).await? {
                Some(lease) => lease,
                None => continue, // the origin turned out to speak HTTP/1.1
            };
            match attempt(&lease.conn, &request, inner.http.max_response_bytes).await {
                Attempt::Answered(answer) => {
                    lease.conn.completed.store(true, Ordering::Release);
                    return Ok(answer);
                }
                Attempt::Unprocessed(why) if resends < MAX_RESENDS => {
                    resends += 1;
                    lease.conn.closed.store(true, Ordering::Release);
                    tracing::debug!(origin = self.origin.as_str(), %why, "request not processed; sending it on another connection");
                }
                Attempt::Unprocessed(why) | Attempt::Failed(why) => {
                    lease.conn.closed.store(true, Ordering::Release);
                    return Err(SendError::Failed(format!(
                        "request failed talking to {}: {why}",
                        self.origin.as_str()
                    )));
                }
            }
        }
    }

    /// A stream on a connection of this origin (`None`: use HTTP/1.1), waiting as long as
    /// it takes (the caller bounds it) unless `withdrawn`.
    async fn checkout(
        self: &Arc<Self>,
        inner: &Arc<Inner>,
        withdrawn: Option<&CancellationToken>,
    ) -> Result<Option<Lease<'_>>, SendError> {
        let started_failures = {
            let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            state.connect_failures
        };
        loop {
            if withdrawn.is_some_and(CancellationToken::is_cancelled) {
                return Err(SendError::Withdrawn);
            }
            let notified = self.changed.notified();
            tokio::pin!(notified);
            // Registered before looking, so a change after the look wakes us.
            notified.as_mut().enable();
            match self.try_checkout(inner, started_failures) {
                Checkout::Stream(lease) => return Ok(Some(lease)),
                Checkout::Http1 => return Ok(None),
                Checkout::Failed(ConnectFailure::Refused(refused)) => {
                    return Err(SendError::Refused(refused));
                }
                Checkout::Failed(ConnectFailure::Failed(why)) => {
                    return Err(SendError::Failed(format!(
                        "connection failed talking to {}: {why}",
                        self.origin.as_str()
                    )));
                }
                Checkout::Wait => {}
            }
            match withdrawn {
                Some(token) => {
                    tokio::select! {
                        () = token.cancelled() => return Err(SendError::Withdrawn),
                        () = notified => {}
                    }
                }
                None => notified.await,
            }
        }
    }

    fn try_checkout(self: &Arc<Self>, inner: &Arc<Inner>, started_failures: u64) -> Checkout<'_> {
        if self.h1.load(Ordering::Acquire) {
            return Checkout::Http1;
        }
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.conns.retain(|c| !c.closed.load(Ordering::Acquire));
        let best = state
            .conns
            .iter()
            .filter(|c| c.free() > 0)
            .max_by_key(|c| c.free());
        if let Some(conn) = best {
            conn.in_flight.fetch_add(1, Ordering::Relaxed);
            return Checkout::Stream(Lease {
                pool: self,
                conn: Arc::clone(conn),
            });
        }
        // Every stream is taken. A connection still in its one-stream start is waited for;
        // otherwise another one is opened (one at a time, up to the bound).
        let warming = state.conns.iter().any(|c| c.warming());
        if !state.connecting && !warming && state.conns.len() < inner.pool.max_connections {
            if state.connect_failures > started_failures && state.conns.is_empty() {
                // Our connect failed (or one since we came): say so rather than retry blindly.
                if let Some(failure) = state.last_failure.clone() {
                    return Checkout::Failed(failure);
                }
            }
            state.connecting = true;
            tokio::spawn(connect_task(Arc::clone(inner), Arc::clone(self)));
        } else if state.conns.is_empty()
            && !state.connecting
            && state.connect_failures > started_failures
            && let Some(failure) = state.last_failure.clone()
        {
            return Checkout::Failed(failure);
        }
        Checkout::Wait
    }

    async fn send_http1(
        &self,
        inner: &Inner,
        request: Request<Bytes>,
    ) -> Result<Answer, SendError> {
        let origin = self.origin.as_str();
        let request = reqwest::Request::try_from(request)
            .map_err(|e| SendError::Failed(describe_error(&format!("talking to {origin}"), e)))?;
        match inner.fallback.execute(request).await {
            Ok(response) => {
                Ok(crate::http::read_answer(origin, response, inner.http.max_response_bytes).await)
            }
            Err(err) => match crate::endpoint::refusal_in(&err) {
                Some(refused) => Err(SendError::Refused(refused.clone())),
                None => Err(SendError::Failed(describe_error(
                    &format!("talking to {origin}"),
                    err,
                ))),
            },
        }
    }
}

/// Opens one connection for `pool` and adds it (or records why not), then wakes waiters.
async fn connect_task(inner: Arc<Inner>, pool: Arc<OriginPool>) {
    let result = tokio::time::timeout(inner.http.connect_timeout, connect(&inner, &pool)).await;
    let mut state = pool.state.lock().unwrap_or_else(PoisonError::into_inner);
    state.connecting = false;
    match result {
        Ok(Ok(Some(conn))) => state.conns.push(conn),
        Ok(Ok(None)) => {
            tracing::debug!(
                origin = pool.origin.as_str(),
                "origin speaks HTTP/1.1 only; using the HTTP/1.1 client"
            );
            pool.h1.store(true, Ordering::Release);
        }
        Ok(Err(failure)) => {
            state.connect_failures += 1;
            state.last_failure = Some(failure);
        }
        Err(_) => {
            state.connect_failures += 1;
            state.last_failure = Some(ConnectFailure::Failed(format!(
                "connect timed out (after {:?})",
                inner.http.connect_timeout
            )));
        }
    }
    drop(state);
    pool.changed.notify_waiters();
}

/// TCP (to an address the policy allows), TLS with ALPN, the HTTP/2 handshake; `None` when
/// the server picked HTTP/1.1.
async fn connect(
    inner: &Inner,
    pool: &Arc<OriginPool>,
) -> Result<Option<Arc<Conn>>, ConnectFailure> {
    let origin = &pool.origin;
    let addrs = inner
        .resolver
        .resolve_allowed(&origin.host)
        .await
        .map_err(|e| match crate::endpoint::refusal_in(e.as_ref()) {
            Some(refused) => ConnectFailure::Refused(refused.clone()),
            None => ConnectFailure::Failed(format!("resolving {}: {e}", origin.host)),
        })?;
    let mut last_error = None;
    let mut tcp = None;
    for addr in addrs {
        match TcpStream::connect(SocketAddr::new(addr.ip(), origin.port)).await {
            Ok(stream) => {
                tcp = Some(stream);
                break;
            }
            Err(e) => last_error = Some(e),
        }
    }
    let tcp = tcp.ok_or_else(|| {
        ConnectFailure::Failed(match last_error {
            Some(e) => format!("connecting: {e}"),
            None => format!("{} resolves to no address", origin.host),
        })
    })?;
    // Small requests and answers must not wait for Nagle's algorithm.
    let _ = tcp.set_nodelay(true);
    if origin.scheme == Scheme::HTTP {
        return handshake(tcp, pool).await.map(Some);
    }
    let name = ServerName::try_from(origin.host.to_string())
        .map_err(|e| ConnectFailure::Failed(format!("server name {}: {e}", origin.host)))?;
    let tls = inner
        .tls
        .connect(name, tcp)
        .await
        .map_err(|e| ConnectFailure::Failed(format!("TLS handshake: {e}")))?;
    if tls.get_ref().1.alpn_protocol() != Some(b"h2") {
        return Ok(None);
    }
    handshake(tls, pool).await.map(Some)
}

async fn handshake<T>(io: T, pool: &Arc<OriginPool>) -> Result<Arc<Conn>, ConnectFailure>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (send, connection) = h2::client::Builder::new()
        // One stream until the server's SETTINGS arrive: what APNs allows at first, and
        // every server allows at least that.
        .initial_max_send_streams(1)
        .initial_connection_window_size(1 << 20)
        .enable_push(false)
        .handshake::<_, Bytes>(io)
        .await
        .map_err(|e| ConnectFailure::Failed(format!("HTTP/2 handshake: {e}")))?;
    let limit = Arc::new(AtomicUsize::new(connection.max_concurrent_send_streams()));
    let closed = Arc::new(AtomicBool::new(false));
    tokio::spawn(Driver {
        connection,
        limit: Arc::clone(&limit),
        closed: Arc::clone(&closed),
        changed: Arc::downgrade(&pool.changed),
    });
    Ok(Arc::new(Conn {
        send,
        in_flight: AtomicUsize::new(0),
        limit,
        closed,
        completed: AtomicBool::new(false),
    }))
}

/// Runs one connection, publishing the server's stream limit after every step.
struct Driver<T: AsyncRead + AsyncWrite + Unpin> {
    connection: h2::client::Connection<T, Bytes>,
    limit: Arc<AtomicUsize>,
    closed: Arc<AtomicBool>,
    changed: Weak<Notify>,
}

impl<T: AsyncRead + AsyncWrite + Unpin> Future for Driver<T> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let polled = Pin::new(&mut self.connection).poll(cx);
        let limit = self.connection.max_concurrent_send_streams();
        if self.limit.swap(limit, Ordering::AcqRel) < limit
            && let Some(changed) = self.changed.upgrade()
        {
            changed.notify_waiters();
        }
        match polled {
            Poll::Pending => Poll::Pending,
            Poll::Ready(result) => {
                if let Err(error) = result {
                    tracing::debug!(%error, "HTTP/2 connection ended with an error");
                }
                self.closed.store(true, Ordering::Release);
                if let Some(changed) = self.changed.upgrade() {
                    changed.notify_waiters();
                }
                Poll::Ready(())
            }
        }
    }
}

/// One try of `request` on `conn`.
async fn attempt(conn: &Conn, request: &Request<Bytes>, max_bytes: usize) -> Attempt {
    let mut send = conn.send.clone();
    // Errors before the request is on the wire leave nothing for the server to process.
    send = match send.ready().await {
        Ok(send) => send,
        Err(e) => return Attempt::Unprocessed(e.to_string()),
    };
    let mut head = Request::new(());
    *head.method_mut() = request.method().clone();
    *head.uri_mut() = request.uri().clone();
    *head.headers_mut() = request.headers().clone();
    let body = request.body();
    let (response, mut stream) = match send.send_request(head, body.is_empty()) {
        Ok(sent) => sent,
        Err(e) => return Attempt::Unprocessed(e.to_string()),
    };
    if !body.is_empty()
        && let Err(e) = stream.send_data(body.clone(), true)
    {
        tracing::trace!(error = %e, "sending the body failed; the answer says more");
    }
    let response = match response.await {
        Ok(response) => response,
        Err(e) => return failure(&e),
    };
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut body = response.into_body();
    let mut kept = Vec::new();
    while let Some(chunk) = body.data().await {
        match chunk {
            Ok(chunk) => {
                let _ = body.flow_control().release_capacity(chunk.len());
                let room = max_bytes.saturating_sub(kept.len());
                kept.extend_from_slice(&chunk[..chunk.len().min(room)]);
                if chunk.len() >= room {
                    // Dropping the body resets the stream instead of reading an unbounded one.
                    break;
                }
            }
            // The status is what counts: a 200 whose body was cut off is still accepted.
            Err(e) => {
                tracing::debug!(status, error = %e, "reading push service response body failed");
                break;
            }
        }
    }
    Attempt::Answered(Answer {
        status,
        retry_after,
        body: kept,
    })
}

/// Whether an error without an answer means the server never processed the request.
fn failure(error: &h2::Error) -> Attempt {
    let unprocessed = (error.is_reset() && error.reason() == Some(h2::Reason::REFUSED_STREAM))
        // h2 fails with the remote GOAWAY exactly the streams above its last stream id
        // (streams at or below it end normally, or with an I/O error if the connection
        // breaks), and a request started after the GOAWAY.
        || (error.is_go_away() && error.is_remote());
    if unprocessed {
        Attempt::Unprocessed(error.to_string())
    } else {
        Attempt::Failed(error.to_string())
    }
}

/// A path for [`Origin::uri`]: `path` as given when it is a valid request target, else
/// percent-encoded as a URL parser would.
pub fn path_of(path: &str) -> Result<PathAndQuery, String> {
    if let Ok(path) = PathAndQuery::from_maybe_shared(Bytes::copy_from_slice(path.as_bytes())) {
        return Ok(path);
    }
    let url = url::Url::parse(&format!("http://x{path}")).map_err(|e| e.to_string())?;
    let mut encoded = url.path().to_owned();
    if let Some(query) = url.query() {
        encoded.push('?');
        encoded.push_str(query);
    }
    PathAndQuery::try_from(encoded).map_err(|e| e.to_string())
}
