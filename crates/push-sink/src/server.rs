//! Accepting connections and serving HTTP/1.1 and HTTP/2 on them.
//!
//! One task accepts; each connection gets a task that (for TLS) handshakes, then serves with
//! hyper-util's auto builder, which tells HTTP/2 from HTTP/1.1 by the connection preface, so
//! one port serves both (cleartext h2c with prior knowledge, or whatever ALPN picked). HTTP/2
//! is tuned for senders that multiplex many streams on few connections.
//!
//! Each connection's socket goes through [`LimitIo`], which advertises the configured
//! per-kind HTTP/2 stream limits as they change (see [`crate::streams`]); a connection that
//! has carried `goaway_after` push requests is closed gracefully (GOAWAY, its requests in
//! progress answered), as Google's front ends do.
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
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::config::{Protocol, Streams};
use crate::service::{self, Shared};
use crate::streams::{ConnState, LimitIo};

/// What every connection task needs besides its socket.
struct ConnSetup {
    builder: auto::Builder<TokioExecutor>,
    shared: Arc<Shared>,
    streams: Streams,
    goaway_after: Option<u64>,
    shutdown_rx: watch::Receiver<bool>,
}
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
    (streams, goaway_after): (Streams, Option<u64>),
    mut shutdown_rx: watch::Receiver<bool>,
) {
    let setup = Arc::new(ConnSetup {
        builder: http_builder(protocol, streams.most()),
        shared,
        streams,
        goaway_after,
        shutdown_rx: shutdown_rx.clone(),
    });
    // Every connection task holds a receiver; `closed` resolves when the last one ends.
    let (drain_tx, _) = watch::channel(());
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
        setup.shared.counters.connection();
        let drain = drain_tx.subscribe();
        tokio::spawn(connection(stream, tls.clone(), setup.clone(), drain));
        tracing::trace!(%peer, "connection accepted");
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, drain_tx.closed())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the drain timeout; leaving them");
    }
}

/// The HTTP server settings for `protocol`.
/// `max_streams` is what h2 enforces: the most any kind allows (what a connection advertises
/// is [`LimitIo`]'s business).
fn http_builder(protocol: Protocol, max_streams: u32) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .keep_alive(true)
        .header_read_timeout(Duration::from_secs(30));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(max_streams)
        // Room for a thousand streams' small bodies without waiting on window updates.
        .initial_stream_window_size(256 * 1024)
        .initial_connection_window_size(16 * 1024 * 1024)
        // Resets are part of the act (ResetOnce); they must not make h2 give up on the peer.
        .max_local_error_reset_streams(None)
        .max_pending_accept_reset_streams(Some(max_streams as usize))
        .keep_alive_interval(Some(Duration::from_secs(30)));
    match protocol {
        Protocol::Http1 => builder.http1_only(),
        Protocol::H2c | Protocol::Tls => builder,
    }
}

/// Serves one accepted connection to its end; `_drain` is dropped when it is over.
async fn connection(
    stream: TcpStream,
    tls: Option<TlsAcceptor>,
    setup: Arc<ConnSetup>,
    _drain: watch::Receiver<()>,
) {
    match tls {
        None => serve(stream, &setup).await,
        Some(acceptor) => {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(stream)) => serve(stream, &setup).await,
                Ok(Err(error)) => tracing::debug!(%error, "TLS handshake failed"),
                Err(_) => tracing::debug!("TLS handshake timed out"),
            }
        }
    }
}

/// Runs HTTP on an established (plain or TLS) stream, until the client leaves or the
/// connection was closed gracefully (after `goaway_after` requests, or at shutdown).
async fn serve<S>(stream: S, setup: &ConnSetup)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let state = Arc::new(ConnState::new(setup.streams, setup.goaway_after));
    let shared = setup.shared.clone();
    let service_state = state.clone();
    let service = service_fn(move |request: hyper::Request<Incoming>| {
        service::handle(shared.clone(), service_state.clone(), request)
    });
    let io = TokioIo::new(LimitIo::new(stream, state.clone()));
    let connection = setup.builder.serve_connection(io, service);
    tokio::pin!(connection);
    let mut shutdown_rx = setup.shutdown_rx.clone();
    let mut closing = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    // Includes our own HTTP/1.1 resets and clients that hang up; never fatal.
                    tracing::debug!(error = %error, "connection ended with an error");
                }
                return;
            }
            () = state.goaway.notified(), if !closing => {
                setup.shared.counters.goaway();
                connection.as_mut().graceful_shutdown();
                closing = true;
            }
            _ = shutdown_rx.wait_for(|stop| *stop), if !closing => {
                // Also reached when the sink is dropped (the sender is gone).
                connection.as_mut().graceful_shutdown();
                closing = true;
            }
        }
    }
}
