//! The telemetry endpoint: `/metrics`, `/healthz`, `/readyz`.
//!
//! Plain HTTP/1.1 on its own address (`METRICS_ADDR`), off unless configured, so several
//! instances on one host each get their own port. Readiness is the daemon's own flag (set once
//! it started, cleared when it stops) and the checks it registers ([`Health::report`], fed
//! by [`crate::probes`]): `/readyz` lists each with its latest result.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
///
/// Ready means: the daemon said so ([`Health::set_ready`]: started, not stopping), and every
/// check it registered (Kafka, MongoDB, partitions assigned, ...) passed at its latest run,
/// and that run is recent (a probe that hangs is a failure too).
#[derive(Debug, Default)]
pub struct Health {
    ready: AtomicBool,
    checks: Mutex<Vec<Check>>,
}

#[derive(Debug)]
struct Check {
    name: &'static str,
    /// The latest result, when it came, and what it said.
    passed: bool,
    at: Instant,
    detail: String,
    /// Since when it has been failing.
    failing_since: Option<Instant>,
    /// A result older than this counts as failed.
    stale_after: Duration,
}

impl Health {
    /// Marks the daemon ready (or not).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    /// Records the result of check `name`; `stale_after` is how long it stands.
    pub fn report(
        &self,
        name: &'static str,
        result: Result<String, String>,
        stale_after: Duration,
    ) {
        let now = Instant::now();
        let mut checks = self.checks.lock().unwrap_or_else(|p| p.into_inner());
        let passed = result.is_ok();
        let detail = match result {
            Ok(detail) | Err(detail) => detail,
        };
        match checks.iter_mut().find(|c| c.name == name) {
            Some(check) => {
                if passed {
                    check.failing_since = None;
                } else if check.passed {
                    check.failing_since = Some(now);
                }
                check.passed = passed;
                check.at = now;
                check.detail = detail;
                check.stale_after = stale_after;
            }
            None => checks.push(Check {
                name,
                passed,
                at: now,
                detail,
                failing_since: (!passed).then_some(now),
                stale_after,
            }),
        }
    }

    /// Whether the daemon is ready.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
            && self
                .checks
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .all(|c| c.passed && c.at.elapsed() <= c.stale_after)
    }

    /// What `/readyz` answers: one line per check, then the verdict.
    pub fn describe(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        if !self.ready.load(Ordering::Relaxed) {
            out.push_str("daemon: starting or stopping\n");
        }
        for check in self.checks.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            let age = check.at.elapsed();
            let _ = if age > check.stale_after {
                writeln!(
                    out,
                    "{}: no answer for {:.0} s (last: {})",
                    check.name,
                    age.as_secs_f64(),
                    check.detail
                )
            } else if check.passed {
                writeln!(out, "{}: ok, {}", check.name, check.detail)
            } else {
                let failing = check
                    .failing_since
                    .map_or(0.0, |s| s.elapsed().as_secs_f64());
                writeln!(
                    out,
                    "{}: FAILING for {failing:.0} s: {}",
                    check.name, check.detail
                )
            };
        }
        out.push_str(if self.is_ready() {
            "ready\n"
        } else {
            "not ready\n"
        });
        out
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
        "/readyz" if health.is_ready() => (StatusCode::OK, "text/plain", health.describe()),
        "/readyz" => (
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            health.describe(),
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
        health.report(
            "kafka",
            Err("no broker answered".into()),
            Duration::from_secs(15),
        );
        assert_eq!(
            respond("/readyz", &registry, &health).status(),
            StatusCode::SERVICE_UNAVAILABLE,
            "a failing check makes it unready"
        );
        assert!(
            health.describe().contains("kafka: FAILING"),
            "{}",
            health.describe()
        );
        health.report("kafka", Ok("3 brokers".into()), Duration::from_secs(15));
        assert_eq!(
            respond("/readyz", &registry, &health).status(),
            StatusCode::OK
        );
        health.report("mongodb", Ok("ping".into()), Duration::ZERO);
        std::thread::sleep(Duration::from_millis(5));
        assert!(
            !health.is_ready(),
            "a result older than its bound counts as failed"
        );
        assert!(
            health.describe().contains("mongodb: no answer"),
            "{}",
            health.describe()
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
