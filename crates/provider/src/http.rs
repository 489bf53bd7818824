//! Settings every provider's client shares ([`HttpConfig`]), the reqwest client, and the
//! reading of push service answers.
//!
//! Deliveries go through [`crate::Http2Pool`]; the reqwest client built here serves what
//! is not a delivery to an HTTP/2 push service: HTTP/1.1-only origins (the pool hands them
//! over) and FCM's OAuth token requests. It keeps one connection per origin. TLS is
//! rustls on aws-lc-rs, verifying against the platform's roots plus any configured extra
//! roots (a simulator's self-signed certificate). Answers are read with a size cap, and a
//! request that got no answer becomes a transient outcome whose reason never contains the URL
//! (Web Push endpoints and device tokens in paths are capabilities).
//!
//! Every client resolves names through a [`PolicyResolver`] enforcing the configured
//! [`EndpointPolicy`], follows no redirects and uses no proxy (a proxy would resolve and
//! connect on our behalf, out of the policy's reach). A request the policy stopped becomes a
//! permanent outcome ([`outcome_from_error`]), since asking again changes nothing.

use std::time::Duration;

use crate::DeliveryOutcome;
use crate::endpoint::{EndpointPolicy, PolicyResolver, refusal_in};

/// How a provider's client talks to its push service. `Default` suits production.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Whole-request limit: connect, send, and read the response (default 30 s).
    pub request_timeout: Duration,
    /// TCP + TLS connect limit (default 10 s).
    pub connect_timeout: Duration,
    /// Response bytes read at most (default 64 KiB): push services answer with empty or
    /// short bodies, so anything past this is not read.
    pub max_response_bytes: usize,
    /// Idle pooled connections are closed after this (default 90 s).
    pub pool_idle_timeout: Duration,
    /// Extra trusted roots, PEM (one or more certificates each), added to the platform's.
    pub extra_root_certificates: Vec<Vec<u8>>,
    /// Speak HTTP/2 without TLS (h2c) from the first byte: for cleartext simulators only.
    pub http2_prior_knowledge: bool,
    /// Which endpoints and resolved addresses may be connected to (default: public `https`
    /// only). The client's resolver enforces its address rule; each provider also checks
    /// URLs with it before sending, since IP-literal hosts are never resolved.
    pub endpoint_policy: EndpointPolicy,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            max_response_bytes: 64 * 1024,
            pool_idle_timeout: Duration::from_secs(90),
            extra_root_certificates: Vec::new(),
            http2_prior_knowledge: false,
            endpoint_policy: EndpointPolicy::default(),
        }
    }
}

/// Why a client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// A setting is out of range.
    #[error("invalid client configuration: {0}")]
    InvalidConfig(&'static str),
    /// An entry of `extra_root_certificates` is not PEM certificates.
    #[error("extra root certificate #{index} is not a PEM certificate: {source}")]
    InvalidCertificate {
        /// Position in `extra_root_certificates`.
        index: usize,
        /// The parse error.
        source: reqwest::Error,
    },
    /// TLS could not be set up: an extra root that does not parse (`index`), or no usable
    /// platform roots.
    #[error("TLS setup failed (extra root certificate #{index} or the platform's roots): {reason}")]
    Tls {
        /// Position in `extra_root_certificates` (0 when not about one).
        index: usize,
        /// Why.
        reason: String,
    },
    /// The HTTP client could not be built (for example, no usable TLS roots).
    #[error("building the HTTP client failed: {0}")]
    Http(#[source] reqwest::Error),
    /// A configured URL (APNs or FCM base, OAuth token endpoint) is refused by the endpoint
    /// policy; `setting` names where it came from.
    #[error("{setting}: {refused}")]
    Endpoint {
        /// Which URL: the config field or setting.
        setting: &'static str,
        /// Why.
        refused: crate::EndpointRefused,
    },
}

/// Builds the pooled HTTP/2 client `config` describes; `user_agent` names the provider.
pub fn build_client(config: &HttpConfig, user_agent: &str) -> Result<reqwest::Client, ClientError> {
    if config.request_timeout.is_zero() || config.connect_timeout.is_zero() {
        return Err(ClientError::InvalidConfig(
            "timeouts must be greater than zero",
        ));
    }
    if config.max_response_bytes == 0 {
        return Err(ClientError::InvalidConfig(
            "max_response_bytes must be at least 1",
        ));
    }
    let mut roots = Vec::new();
    for (index, pem) in config.extra_root_certificates.iter().enumerate() {
        let certificates = reqwest::Certificate::from_pem_bundle(pem)
            .map_err(|source| ClientError::InvalidCertificate { index, source })?;
        if certificates.is_empty() {
            let source = reqwest::Certificate::from_pem(pem)
                .err()
                .ok_or(ClientError::InvalidConfig("empty extra root certificate"))?;
            return Err(ClientError::InvalidCertificate { index, source });
        }
        roots.extend(certificates);
    }
    let mut builder = reqwest::Client::builder()
        .user_agent(user_agent)
        .timeout(config.request_timeout)
        .connect_timeout(config.connect_timeout)
        .pool_idle_timeout(config.pool_idle_timeout)
        .tcp_nodelay(true)
        // Push services do not redirect; following one would send a payload (and, for Web
        // Push, a capability URL's message) somewhere we did not choose.
        .redirect(reqwest::redirect::Policy::none())
        // Names resolve to the addresses the policy allows, or to an error naming it.
        .dns_resolver(PolicyResolver::new(config.endpoint_policy.clone()))
        .no_proxy()
        // Windows sized for many small concurrent streams rather than one bulk download.
        .http2_adaptive_window(true)
        // Detects a dead pooled connection before requests pile up on it.
        .http2_keep_alive_interval(Duration::from_secs(30))
        .http2_keep_alive_timeout(Duration::from_secs(10))
        .tls_certs_merge(roots);
    if config.http2_prior_knowledge {
        builder = builder.http2_prior_knowledge();
    }
    builder.build().map_err(ClientError::Http)
}

/// A push service's answer: status, `Retry-After` (when sent) and the first bytes of the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// The `Retry-After` header, when it was valid text.
    pub retry_after: Option<String>,
    /// At most `max_bytes` of the body.
    pub body: Vec<u8>,
}

/// Reads `response` into an [`Answer`], keeping at most `max_bytes` of its body. `origin`
/// only labels the debug log of a body that broke off.
pub async fn read_answer(
    origin: &str,
    mut response: reqwest::Response,
    max_bytes: usize,
) -> Answer {
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let room = max_bytes.saturating_sub(body.len());
                body.extend_from_slice(&chunk[..chunk.len().min(room)]);
                if chunk.len() >= room {
                    // Dropping the response resets the stream (h2) or the connection (h1)
                    // instead of reading an unbounded body.
                    break;
                }
            }
            Ok(None) => break,
            // The status is what counts: a 200 whose body was cut off is still accepted.
            Err(err) => {
                tracing::debug!(origin, status, error = %err.without_url(), "reading push service response body failed");
                break;
            }
        }
    }
    Answer {
        status,
        retry_after,
        body,
    }
}

/// A request that got no response. Permanent when the endpoint policy refused every address
/// of the host (`endpoint not allowed: ...`; no connection was made), otherwise transient
/// (worth retrying). The reason names `origin` and the cause chain, never the URL (reqwest
/// puts it in its errors; it is stripped).
pub fn outcome_from_error(origin: &str, err: reqwest::Error) -> DeliveryOutcome {
    if let Some(refused) = refusal_in(&err) {
        return DeliveryOutcome::permanent(refused.to_string());
    }
    DeliveryOutcome::transient(describe_error(&format!("talking to {origin}"), err))
}

/// `"<what went wrong> <context>: <cause>: <cause>…"` for a reqwest error, without its URL.
pub fn describe_error(context: &str, err: reqwest::Error) -> String {
    let what = if err.is_timeout() {
        "timed out"
    } else if err.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    let err = err.without_url();
    let mut reason = format!("{what} {context}");
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(&err);
    while let Some(cause) = source {
        reason.push_str(": ");
        reason.push_str(&cause.to_string());
        source = cause.source();
    }
    reason
}
