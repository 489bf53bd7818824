//! The front door: one accept loop for every connection. An SSE request is served straight on
//! its socket; everything else (WebSocket upgrades, acks, preflights, health) goes to hyper.
//!
//! Why not hyper for SSE too: an HTTP/1.1 connection in hyper keeps an 8 KiB read buffer and
//! an 8 KiB header buffer for as long as it lives, and an SSE response lives as long as the
//! connection. That was 15 of an SSE connection's 27.5 KiB, the gateway's largest memory cost
//! at 20,000 connections. Here the request head is read into a small buffer and parsed with
//! `httparse` (hyper's own parser); the response is the same axum handler's
//! ([`crate::sse::connect`]), written as a status line, its headers and a chunked body, and
//! the buffer is gone once the head is parsed. Requests this path does not take (other routes,
//! HTTP/1.0, heads too large or malformed) are handed to hyper with the bytes already read, so
//! hyper answers them exactly as before.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Uri};
use axum::response::IntoResponse;
use bytes::{Buf, BufMut as _, Bytes, BytesMut};
use http_body_util::BodyExt as _;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::task::TaskTracker;

use crate::session::Shared;
use crate::sse;

/// The SSE route.
const SSE_PATH: &str = "/v1/realtime/sse";

/// A request head must arrive within this long (slow-loris clients hold nothing for longer).
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// Larger heads are left to hyper, which answers them (or refuses them) as before.
const MAX_HEAD_BYTES: usize = 16 * 1024;

/// Headers an SSE request may have on this path; more go to hyper.
const MAX_HEADERS: usize = 64;

/// A write of one chunk that takes longer ends the connection: a client that stopped reading
/// must not hold its socket until TCP gives up, minutes later.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves connections from `listener` until `shutdown` resolves; then stops accepting, lets
/// hyper's connections finish what they are doing (for up to `drain`), and returns. SSE
/// connections are tracked by [`Shared::tracker`], which the caller waits for.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shared: Arc<Shared>,
    shutdown: impl Future<Output = ()> + Send + 'static,
    drain: Duration,
) {
    // hyper's connections; SSE ones are in `shared.tracker`.
    let connections = TaskTracker::new();
    let mut http1 = hyper::server::conn::http1::Builder::new();
    http1
        .timer(TokioTimer::new())
        .header_read_timeout(HEAD_TIMEOUT);
    let http1 = Arc::new(http1);
    tokio::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, most likely: wait instead of spinning.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // Realtime frames are small and must go out at once, not wait for an ACK (Nagle).
        let _ = stream.set_nodelay(true);
        let shared = Arc::clone(&shared);
        let router = router.clone();
        let http1 = Arc::clone(&http1);
        connections.spawn(async move {
            let (stream, head) = match read_head(stream).await {
                Ok(read) => read,
                Err(_) => return,
            };
            match sse_request(&head) {
                Some((uri, headers)) => {
                    // The connection may last hours: keep nothing of its request it no
                    // longer needs.
                    drop(head);
                    let tracker = shared.tracker.clone();
                    tracker
                        .track_future(serve_sse(stream, shared, uri, headers))
                        .await;
                }
                None => {
                    let io = TokioIo::new(Prefixed {
                        prefix: head.freeze(),
                        io: stream,
                    });
                    let service = TowerToHyperService::new(router);
                    let connection = http1.serve_connection(io, service).with_upgrades();
                    tokio::pin!(connection);
                    // Errors here are clients going away or sending garbage; hyper has
                    // answered what could be answered.
                    tokio::select! {
                        _ = connection.as_mut() => {}
                        () = shared.shutdown.cancelled() => {
                            // Finish the request under way, then close (idle ones at once).
                            connection.as_mut().graceful_shutdown();
                            let _ = connection.await;
                        }
                    }
                }
            }
        });
    }
    drop(listener);
    connections.close();
    if tokio::time::timeout(drain, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            ?drain,
            "HTTP connections still open at shutdown; closing them"
        );
    }
}

/// Reads until a whole request head is in the buffer, the buffer reaches
/// [`MAX_HEAD_BYTES`], or [`HEAD_TIMEOUT`] passes; whatever was read is returned. Err when the
/// client sent nothing and went away.
async fn read_head(mut stream: TcpStream) -> io::Result<(TcpStream, BytesMut)> {
    let mut head = BytesMut::with_capacity(1024);
    let reading = async {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut request = httparse::Request::new(&mut headers);
            match request.parse(&head) {
                Ok(httparse::Status::Partial) if head.len() < MAX_HEAD_BYTES => {}
                // Complete, too large, or malformed: the route decides (malformed goes to
                // hyper, which answers 400).
                _ => return Ok(()),
            }
            if head.capacity() - head.len() < 512 {
                head.reserve(1024);
            }
            if stream.read_buf(&mut head).await? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
    };
    match tokio::time::timeout(HEAD_TIMEOUT, reading).await {
        Ok(Ok(())) => Ok((stream, head)),
        Ok(Err(e)) if head.is_empty() => Err(e),
        // A partial head: hyper answers it (or times it out) as it would have.
        Ok(Err(_)) | Err(_) => Ok((stream, head)),
    }
}

/// The URI and headers of `head` when it is a complete HTTP/1.1 `GET` of the SSE route that
/// this path serves; `None` for everything hyper should see.
fn sse_request(head: &[u8]) -> Option<(Uri, HeaderMap)> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let Ok(httparse::Status::Complete(length)) = request.parse(head) else {
        return None;
    };
    let path = request.path?;
    let route = path.split_once('?').map_or(path, |(route, _)| route);
    // A body after the head (pipelining, or a GET with content) is hyper's business.
    if request.method != Some("GET")
        || request.version != Some(1)
        || route != SSE_PATH
        || length != head.len()
    {
        return None;
    }
    let uri: Uri = path.parse().ok()?;
    let mut map = HeaderMap::with_capacity(request.headers.len());
    for header in request.headers.iter() {
        let name = HeaderName::from_bytes(header.name.as_bytes()).ok()?;
        let value = HeaderValue::from_bytes(header.value).ok()?;
        map.append(name, value);
    }
    // hyper would answer a body-bearing GET; this path has no body reader.
    if map.contains_key(axum::http::header::CONTENT_LENGTH)
        || map.contains_key(axum::http::header::TRANSFER_ENCODING)
    {
        return None;
    }
    Some((uri, map))
}

/// Runs the SSE handler for one request and writes its response on `stream`, then closes.
async fn serve_sse(mut stream: TcpStream, shared: Arc<Shared>, uri: Uri, headers: HeaderMap) {
    let query = Query::try_from_uri(&uri);
    drop(uri);
    let response = match query {
        Ok(query) => sse::connect(State(shared), query, headers).await,
        Err(rejection) => rejection.into_response(),
    };
    let (parts, body) = response.into_parts();
    let exact = http_body::Body::size_hint(&body).exact();
    let mut head = BytesMut::with_capacity(512);
    head.put_slice(b"HTTP/1.1 ");
    head.put_slice(parts.status.as_str().as_bytes());
    head.put_u8(b' ');
    head.put_slice(
        parts
            .status
            .canonical_reason()
            .unwrap_or("Unknown")
            .as_bytes(),
    );
    head.put_slice(b"\r\n");
    for (name, value) in &parts.headers {
        head.put_slice(name.as_str().as_bytes());
        head.put_slice(b": ");
        head.put_slice(value.as_bytes());
        head.put_slice(b"\r\n");
    }
    // One response per connection: the stream lasts as long as the connection does, and an
    // error answer is the end of it.
    head.put_slice(b"connection: close\r\n");
    match exact {
        Some(length) => {
            head.put_slice(format!("content-length: {length}\r\n\r\n").as_bytes());
            if let Ok(collected) = body.collect().await {
                head.put(collected.to_bytes());
            }
            let _ = write_all(&mut stream, head.freeze()).await;
            let _ = stream.shutdown().await;
        }
        None => {
            head.put_slice(b"transfer-encoding: chunked\r\n\r\n");
            if write_all(&mut stream, head.freeze()).await.is_ok() {
                stream_chunks(&mut stream, body).await;
            }
        }
    }
}

/// Writes the body's frames as chunks until it ends (then the last chunk) or the client goes
/// away (read end closed, a write failing or stuck).
async fn stream_chunks(stream: &mut TcpStream, mut body: Body) {
    let mut probe = [0u8; 64];
    loop {
        tokio::select! {
            biased;
            frame = body.frame() => {
                let data = match frame {
                    Some(Ok(frame)) => match frame.into_data() {
                        Ok(data) => data,
                        Err(_) => continue,
                    },
                    Some(Err(_)) => return,
                    None => {
                        let _ = write_all(stream, Bytes::from_static(b"0\r\n\r\n")).await;
                        let _ = stream.shutdown().await;
                        return;
                    }
                };
                if data.is_empty() {
                    continue;
                }
                let size = Bytes::from(format!("{:x}\r\n", data.len()));
                let chunk = size.chain(data).chain(Bytes::from_static(b"\r\n"));
                if write_all(stream, chunk).await.is_err() {
                    return;
                }
            }
            readable = stream.readable() => {
                if readable.is_err() {
                    return;
                }
                // An SSE client sends nothing after its request: this is the close (0), or
                // bytes to throw away.
                match stream.try_read(&mut probe) {
                    Ok(0) => return,
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(_) => return,
                }
            }
        }
    }
}

/// Writes all of `buf` within [`WRITE_TIMEOUT`] (vectored where the socket allows).
async fn write_all(stream: &mut TcpStream, mut buf: impl Buf) -> io::Result<()> {
    match tokio::time::timeout(WRITE_TIMEOUT, stream.write_all_buf(&mut buf)).await {
        Ok(result) => result,
        Err(_) => Err(io::ErrorKind::TimedOut.into()),
    }
}

/// A stream that first yields bytes already read from it: the head read to choose the route,
/// handed to hyper with the connection.
struct Prefixed {
    prefix: Bytes,
    io: TcpStream,
}

impl AsyncRead for Prefixed {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            if self.prefix.is_empty() {
                // Free the head's buffer: an upgraded WebSocket keeps this stream for hours.
                self.prefix = Bytes::new();
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Prefixed {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_complete_http11_sse_gets_are_taken() {
        let ok =
            b"GET /v1/realtime/sse?channels=a,b HTTP/1.1\r\nHost: x\r\nLast-Event-ID: e~1\r\n\r\n";
        let (uri, headers) = sse_request(ok).expect("an SSE request");
        assert_eq!(uri.query(), Some("channels=a,b"));
        assert_eq!(
            headers.get("last-event-id").map(|v| v.as_bytes()),
            Some(&b"e~1"[..])
        );
        for other in [
            &b"GET /v1/realtime/ws HTTP/1.1\r\nHost: x\r\n\r\n"[..],
            b"POST /v1/realtime/sse HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET /v1/realtime/sse HTTP/1.0\r\nHost: x\r\n\r\n",
            b"GET /v1/realtime/sse/x HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET /v1/realtime/sse HTTP/1.1\r\nHost: x\r\n",
            b"GET /v1/realtime/sse HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi",
            b"GET /v1/realtime/sse HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\n\r\n",
            b"garbage\r\n\r\n",
        ] {
            assert!(
                sse_request(other).is_none(),
                "{:?}",
                String::from_utf8_lossy(other)
            );
        }
    }
}
