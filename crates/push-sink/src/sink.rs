//! A running sink: started from a [`SinkConfig`], queried for stats and deliveries, shut down.
//!
//! [`Sink::start`] binds before it returns, so a test can send to [`Sink::base_url`] at once;
//! the server runs on spawned tasks of the caller's tokio runtime. Dropping a `Sink` without
//! [`Sink::shutdown`] still stops it (the accept loop sees its shutdown sender go away).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::{Protocol, SinkConfig};
use crate::outage::{Outage, OutageStatus};
use crate::received::{MobileReceived, Received};
use crate::service::Shared;
use crate::stats::Stats;
use crate::tls::SelfSigned;

/// Why a sink could not start.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The configuration is inconsistent.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// Certificate generation or TLS set-up failed.
    #[error("TLS: {0}")]
    Tls(String),
    /// The certificate could not be written to `cert_out`.
    #[error("cannot write the certificate to {path}: {source}")]
    CertOut {
        /// The file asked for.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// A running push-service simulator.
pub struct Sink {
    local_addr: SocketAddr,
    base_url: String,
    cert_pem: Option<Vec<u8>>,
    shared: Arc<Shared>,
    /// Sending `true` (or dropping it) stops the accept loop, which then drains connections.
    shutdown_tx: watch::Sender<bool>,
    /// The accept loop; taken by [`Sink::shutdown`] to wait for the drain.
    server: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sink")
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

impl Sink {
    /// Validates `config`, binds, (for TLS) generates and writes the certificate, spawns the
    /// server and returns.
    pub async fn start(config: SinkConfig) -> Result<Sink, SinkError> {
        config.validate()?;
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| SinkError::Bind {
                    addr: config.listen,
                    source,
                })?;
        let local_addr = listener.local_addr().map_err(|source| SinkError::Bind {
            addr: config.listen,
            source,
        })?;
        let (tls, cert_pem) = match config.protocol {
            Protocol::Tls => {
                let tls = SelfSigned::generate(local_addr.ip())?;
                if let Some(path) = &config.cert_out {
                    std::fs::write(path, &tls.cert_pem).map_err(|source| SinkError::CertOut {
                        path: path.clone(),
                        source,
                    })?;
                }
                (Some(tls.acceptor), Some(tls.cert_pem))
            }
            Protocol::Http1 | Protocol::H2c => (None, None),
        };
        let base_url = base_url(config.protocol, local_addr);
        let shared = Arc::new(Shared::new(&config));
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let server = tokio::spawn(crate::server::run(
            listener,
            config.protocol,
            tls,
            shared.clone(),
            (config.streams, config.goaway_after),
            shutdown_rx,
        ));
        tracing::info!(
            %local_addr,
            %base_url,
            protocol = %config.protocol,
            verify = config.verify.is_some(),
            behaviour = ?config.behaviour,
            latency = ?config.latency,
            kind_latency = ?config.kind_latency,
            streams = ?config.streams,
            goaway_after = ?config.goaway_after,
            "push sink listening"
        );
        Ok(Sink {
            local_addr,
            base_url,
            cert_pem,
            shared,
            shutdown_tx,
            server: Some(server),
        })
    }

    /// The bound address (with the real port when port 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Where clients send: `https://localhost:PORT` for TLS on a loopback or wildcard
    /// address, otherwise `scheme://IP:PORT`. Web Push endpoints are `{base_url}/wp/{id}`,
    /// APNs requests go to `{base_url}/3/device/{token}`, FCM to
    /// `{base_url}/v1/projects/{project}/messages:send`, and service accounts' `token_uri` is
    /// `{base_url}/token`.
    pub fn base_url(&self) -> String {
        self.base_url.clone()
    }

    /// The self-signed certificate (PEM) in TLS mode, for clients to trust.
    pub fn cert_pem(&self) -> Option<&[u8]> {
        self.cert_pem.as_deref()
    }

    /// A snapshot of the counters, with the outage in force.
    pub fn stats(&self) -> Stats {
        self.shared.stats()
    }

    /// Starts `outage` now, replacing any in force (as `POST /__sink/outage` does).
    pub fn start_outage(&self, outage: Outage) -> OutageStatus {
        self.shared.outage.start(outage)
    }

    /// Ends the outage in force at once (as `DELETE /__sink/outage` does): what it was, or
    /// `None` when none was in force.
    pub fn end_outage(&self) -> Option<OutageStatus> {
        self.shared.outage.end()
    }

    /// A function that snapshots this sink's counters, for a task that reports them
    /// periodically while the sink runs.
    pub fn stats_source(&self) -> impl Fn() -> Stats + Send + Sync + 'static {
        let shared = self.shared.clone();
        move || shared.stats()
    }

    /// The deliveries accepted for `subscriber_id`, decrypted, oldest first. Always empty
    /// when verification is off (nothing is kept then).
    pub fn received(&self, subscriber_id: &str) -> Vec<Received> {
        self.shared
            .received
            .as_ref()
            .map(|log| log.of(subscriber_id))
            .unwrap_or_default()
    }

    /// The APNs and FCM deliveries accepted for device `token`, oldest first. Always empty
    /// when verification is off (nothing is kept then).
    pub fn received_mobile(&self, token: &str) -> Vec<MobileReceived> {
        self.shared
            .received_mobile
            .as_ref()
            .map(|log| log.of(token))
            .unwrap_or_default()
    }

    /// Stops accepting and waits (a few seconds at most) for open connections to finish.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown_tx.send(true);
        if let Some(server) = self.server.take()
            && let Err(error) = server.await
        {
            tracing::warn!(%error, "push sink server task failed");
        }
    }

    /// [`Sink::shutdown`], then the final counters (including requests that finished while
    /// connections drained).
    pub async fn finish(self) -> Stats {
        let shared = self.shared.clone();
        self.shutdown().await;
        shared.stats()
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.shutdown_tx.send(true);
    }
}

/// The URL clients should use for a sink bound to `addr`.
fn base_url(protocol: Protocol, addr: SocketAddr) -> String {
    let port = addr.port();
    let ip = addr.ip();
    let loopbackish = ip.is_loopback() || ip.is_unspecified();
    match (protocol, ip) {
        (Protocol::Tls, _) if loopbackish => format!("https://localhost:{port}"),
        (_, ip) if ip.is_unspecified() => {
            format!(
                "{}://{}",
                protocol.scheme(),
                SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)
            )
        }
        _ => format!("{}://{addr}", protocol.scheme()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_name_what_clients_can_reach_and_trust() {
        let at = |s: &str| s.parse::<SocketAddr>().expect("address");
        assert_eq!(
            base_url(Protocol::Tls, at("127.0.0.1:8443")),
            "https://localhost:8443"
        );
        assert_eq!(
            base_url(Protocol::H2c, at("0.0.0.0:9090")),
            "http://127.0.0.1:9090"
        );
        assert_eq!(
            base_url(Protocol::Http1, at("10.0.0.5:9090")),
            "http://10.0.0.5:9090"
        );
        assert_eq!(
            base_url(Protocol::Tls, at("10.0.0.5:9443")),
            "https://10.0.0.5:9443"
        );
        assert_eq!(
            base_url(Protocol::H2c, at("[::1]:9090")),
            "http://[::1]:9090"
        );
    }
}
