//! Accepting connections and serving HTTP/1.1 and HTTP/2 on them.
//!
//! One task accepts; each connection gets a task that (for TLS) handshakes, then serves with
//! hyper-util's auto builder, which tells HTTP/2 from HTTP/1.1 by the connection preface, so
//! one port serves both (cleartext h2c with prior knowledge, or whatever ALPN picked). HTTP/2
//! is tuned for senders that multiplex many streams on few connections.
//!
//! Nothing a client does stops the server: accept errors (such as running out of file
//! descriptors) are logged and retried after a pause, and connection errors end only that
//! connection. Shutdown stops accepting, asks every connection to finish gracefully (HTTP/2
//! GOAWAY, HTTP/1.1 close after the current response) and waits a bounded time for them.

use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::config::Protocol;
use crate::service::{self, Shared};

/// Most concurrent HTTP/2 streams a client may open on one connection.
const MAX_CONCURRENT_STREAMS: u32 = 1000;
/// How long a TLS handshake may take before the connection is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long shutdown waits for open connections to finish.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs the accept loop until `shutdown_rx` sees `true` (or its sender is dropped), then
/// drains connections.
pub(crate) async fn run(
    listener: TcpListener,
    protocol: Protocol,
    tls: Option<TlsAcceptor>,
    shared: Arc<Shared>,
    mut shutdown_rx: watch::Receiver<bool>,
) {
    let builder = Arc::new(http_builder(protocol));
    let graceful = GracefulShutdown::new();
    loop {
        let accepted = tokio::select! {
            biased;
            changed = shutdown_rx.changed() => {
                if changed.is_err() || *shutdown_rx.borrow() {
                    break;
                }
                continue;
            }
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "accept failed; pausing before the next accept");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // Small responses must not wait for Nagle's algorithm.
        let _ = stream.set_nodelay(true);
        tokio::spawn(connection(
            stream,
            tls.clone(),
            builder.clone(),
            shared.clone(),
            graceful.watcher(),
        ));
        tracing::trace!(%peer, "connection accepted");
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the drain timeout; leaving them");
    }
}

/// The HTTP server settings for `protocol`.
fn http_builder(protocol: Protocol) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .keep_alive(true)
        .header_read_timeout(Duration::from_secs(30));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
        // Room for a thousand streams' small bodies without waiting on window updates.
        .initial_stream_window_size(256 * 1024)
        .initial_connection_window_size(16 * 1024 * 1024)
        // Resets are part of the act (ResetOnce); they must not make h2 give up on the peer.
        .max_local_error_reset_streams(None)
        .max_pending_accept_reset_streams(Some(MAX_CONCURRENT_STREAMS as usize))
        .keep_alive_interval(Some(Duration::from_secs(30)));
    match protocol {
        Protocol::Http1 => builder.http1_only(),
        Protocol::H2c | Protocol::Tls => builder,
    }
}

/// Serves one accepted connection to its end.
async fn connection(
    stream: TcpStream,
    tls: Option<TlsAcceptor>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    shared: Arc<Shared>,
    watcher: Watcher,
) {
    match tls {
        None => serve(stream, &builder, shared, watcher).await,
        Some(acceptor) => {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(stream)) => serve(stream, &builder, shared, watcher).await,
                Ok(Err(error)) => tracing::debug!(%error, "TLS handshake failed"),
                Err(_) => tracing::debug!("TLS handshake timed out"),
            }
        }
    }
}

/// Runs HTTP on an established (plain or TLS) stream.
async fn serve<S>(
    stream: S,
    builder: &auto::Builder<TokioExecutor>,
    shared: Arc<Shared>,
    watcher: Watcher,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |request: hyper::Request<Incoming>| {
        service::handle(shared.clone(), request)
    });
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    if let Err(error) = watcher.watch(connection).await {
        // Includes our own HTTP/1.1 resets and clients that hang up; never fatal.
        tracing::debug!(error = %error, "connection ended with an error");
    }
}
