//! The telemetry endpoint: `/metrics`, `/healthz`, `/readyz`.
//!
//! Plain HTTP/1.1 on its own address (`METRICS_ADDR`), off unless configured, so several
//! instances on one host each get their own port. Readiness is a flag the daemon sets once it
//! is connected to MongoDB and Kafka and has subscribed, and clears when it stops.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::metrics::Registry;

/// Telemetry flags and environment keys.
#[derive(Debug, Clone, clap::Args)]
pub struct TelemetryArgs {
    /// Serve Prometheus metrics and health checks on this address (for example
    /// 127.0.0.1:9101); off when empty.
    #[arg(long = "metrics-addr", env = "METRICS_ADDR", value_parser = parse_addr)]
    pub metrics_addr: Option<MetricsAddr>,
}

/// A parsed `METRICS_ADDR`: an address, or off when the value is empty.
///
/// A newtype because clap reads `Option<Option<T>>` as "a flag with an optional value", not
/// as "a value that may say off" (that mismatch made the daemons panic at start).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricsAddr(pub Option<SocketAddr>);

fn parse_addr(text: &str) -> Result<MetricsAddr, String> {
    if text.trim().is_empty() {
        return Ok(MetricsAddr(None));
    }
    text.trim()
        .parse()
        .map(|addr| MetricsAddr(Some(addr)))
        .map_err(|e| format!("{text:?} is not host:port ({e}), e.g. 127.0.0.1:9101"))
}

impl TelemetryArgs {
    /// The address to serve on, if any.
    pub fn addr(&self) -> Option<SocketAddr> {
        self.metrics_addr.and_then(|a| a.0)
    }
}

/// Liveness and readiness of a daemon.
#[derive(Debug, Default)]
pub struct Health {
    ready: AtomicBool,
}

impl Health {
    /// Marks the daemon ready (or not).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    /// Whether the daemon is ready.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }
}

/// Binds `addr` and serves the endpoints until the process ends. Returns the bound address
/// (useful with port 0).
pub async fn serve_telemetry(
    addr: SocketAddr,
    registry: Arc<Registry>,
    health: Arc<Health>,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tracing::info!(addr = %bound, "serving /metrics, /healthz, /readyz");
    tokio::spawn(async move {
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::debug!(error = %e, "telemetry accept");
                    continue;
                }
            };
            let (registry, health) = (Arc::clone(&registry), Arc::clone(&health));
            tokio::spawn(async move {
                let service = service_fn(move |request: Request<Incoming>| {
                    let response = respond(request.uri().path(), &registry, &health);
                    async move { Ok::<_, Infallible>(response) }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(bound)
}

fn respond(path: &str, registry: &Registry, health: &Health) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match path {
        "/metrics" => (
            StatusCode::OK,
            "text/plain; version=0.0.4",
            registry.render(),
        ),
        "/healthz" => (StatusCode::OK, "text/plain", "ok\n".to_owned()),
        "/readyz" if health.is_ready() => (StatusCode::OK, "text/plain", "ready\n".to_owned()),
        "/readyz" => (
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            "not ready\n".to_owned(),
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain",
            "try /metrics, /healthz or /readyz\n".to_owned(),
        ),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Ok(value) = hyper::header::HeaderValue::from_str(content_type) {
        response
            .headers_mut()
            .insert(hyper::header::CONTENT_TYPE, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_follows_the_flag() {
        let (registry, health) = (Registry::default(), Health::default());
        assert_eq!(
            respond("/readyz", &registry, &health).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        health.set_ready(true);
        assert_eq!(
            respond("/readyz", &registry, &health).status(),
            StatusCode::OK
        );
        assert_eq!(
            respond("/healthz", &registry, &health).status(),
            StatusCode::OK
        );
        assert_eq!(
            respond("/nope", &registry, &health).status(),
            StatusCode::NOT_FOUND
        );
    }

    #[test]
    fn empty_address_means_off() {
        assert_eq!(parse_addr(" "), Ok(MetricsAddr(None)));
        assert!(parse_addr("localhost").is_err());
        let parsed = parse_addr("127.0.0.1:9101").map(|a| a.0.map(|a| a.port()));
        assert_eq!(parsed, Ok(Some(9101)));
    }

    #[test]
    fn clap_accepts_the_flag_and_the_empty_value() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            telemetry: TelemetryArgs,
        }
        let cli = Cli::try_parse_from(["t", "--metrics-addr", "127.0.0.1:9101"]).expect("parses");
        assert_eq!(cli.telemetry.addr().map(|a| a.port()), Some(9101));
        let cli = Cli::try_parse_from(["t", "--metrics-addr", ""]).expect("parses");
        assert_eq!(cli.telemetry.addr(), None);
        let cli = Cli::try_parse_from(["t"]).expect("parses");
        assert_eq!(cli.telemetry.addr(), None);
    }
}
