//! Server-Sent Events: `GET /v1/realtime/sse?channels=a,b`.
//!
//! The body is a stream of events we format ourselves, everything queued for the connection
//! gathered into one chunk; it ends when the client goes away (hyper drops it, and with it the
//! session), or after a `reconnect` or `error` event.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::{BufMut as _, Bytes, BytesMut};
use serde::Deserialize;
use serde_json::json;

use crate::http::{authenticate_request, cors_headers, error_response};
use crate::hub::Msg;
use crate::session::{End, Ending, Session, Shared, parse_resume_id};

/// Query parameters of the SSE endpoint.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SseQuery {
    /// Channels besides the user's, comma-separated.
    #[serde(default)]
    channels: Option<String>,
    /// The token, when it cannot come in a header or cookie.
    #[serde(default)]
    token: Option<String>,
    /// Resume position, for clients that build a new URL.
    #[serde(default)]
    last_event_id: Option<String>,
}

/// The handler.
pub async fn connect(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<SseQuery>,
    headers: HeaderMap,
) -> Response {
    let (identity, origin) =
        match authenticate_request(&shared, &headers, query.token.as_deref()).await {
            Ok(found) => found,
            Err(refused) => return *refused,
        };
    let cors = cors_headers(&identity, origin.as_deref());

    let mut session = Session::new(&shared, identity);
    let mut wanted = vec![session.user_channel()];
    for channel in query
        .channels
        .as_deref()
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|c| !c.is_empty())
    {
        if !wanted.iter().any(|w| w == channel) {
            wanted.push(channel.to_owned());
        }
    }
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or(query.last_event_id)
        .and_then(|id| parse_resume_id(&id));
    // Positions apply only to the same channel list (EventSource reconnects to the same URL).
    let resume = resume.map(|(epoch, positions)| {
        if positions.len() == wanted.len() {
            (epoch, positions)
        } else {
            (String::new(), vec![None; wanted.len()])
        }
    });

    // The welcome comes first and its id holds the positions *before* the recovered messages
    // that follow it, each of which then carries its own: a client cut off anywhere in
    // between resumes exactly where it was.
    let mut welcome_channels = Vec::with_capacity(wanted.len());
    let mut recovered_messages = Vec::new();
    for (index, channel) in wanted.iter().enumerate() {
        let since = resume.as_ref().map(|(epoch, positions)| {
            (
                positions.get(index).copied().flatten().unwrap_or(-1),
                epoch.as_str(),
            )
        });
        match session.join(channel, since).await {
            Ok(join) => {
                let start = match (join.messages.is_empty(), since) {
                    (false, Some((after, _))) => after,
                    _ => join.position,
                };
                if let Some(joined) = session.channels.last_mut() {
                    joined.position = start;
                }
                let mut entry = json!({"channel": channel, "offset": start});
                if let Some(recovered) = join.recovered {
                    entry["recovered"] = json!(recovered);
                }
                welcome_channels.push(entry);
                recovered_messages.extend(join.messages);
            }
            Err(e) => {
                return error_response(
                    StatusCode::FORBIDDEN,
                    e.code,
                    &e.message,
                    origin.as_deref(),
                );
            }
        }
    }
    let welcome = json!({
        "connection": session.conn.to_string(),
        "user": session.identity.user,
        "epoch": shared.epoch,
        "channels": welcome_channels,
        "heartbeatMs": shared.config.heartbeat.as_millis() as u64,
    });
    let mut head = BytesMut::with_capacity(1024);
    head.put_slice(b"retry: 1000\n");
    write_event(
        &mut head,
        Some(&session.resume_id()),
        "welcome",
        &welcome.to_string(),
    );
    for msg in &recovered_messages {
        session.sent(&msg.channel, msg.offset);
        write_message(&mut head, &session, msg);
    }

    shared.metrics.sse_connections.add(1);
    let events = Events {
        ending: session.ending(),
        session,
        first: Some(head.freeze()),
        heartbeat: tokio::time::interval_at(
            tokio::time::Instant::now() + shared.config.heartbeat,
            shared.config.heartbeat,
        ),
        done: false,
        _gauge: GaugeGuard(Arc::clone(&shared)),
    };
    let body = Body::from_stream(events);
    let mut response = (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/event-stream"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                header::HeaderName::from_static("x-accel-buffering"),
                HeaderValue::from_static("no"),
            ),
        ],
        body,
    )
        .into_response();
    response.headers_mut().extend(cors);
    response
}

struct GaugeGuard(Arc<Shared>);

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.metrics.sse_connections.add(-1);
    }
}

/// The event stream of one connection. A hand-written [`futures::Stream`] rather than an
/// `async` loop: hyper polls it once per wake-up, and each poll takes what is queued without
/// building a new future (and re-registering every waker) per chunk.
struct Events {
    session: Session,
    /// The welcome and recovered messages.
    first: Option<Bytes>,
    heartbeat: tokio::time::Interval,
    ending: Ending,
    done: bool,
    _gauge: GaugeGuard,
}

/// Bytes of events gathered into one chunk (one write) at most.
const CHUNK_BYTES: usize = 64 * 1024;

impl futures::Stream for Events {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        if let Some(first) = this.first.take() {
            return Poll::Ready(Some(Ok(first)));
        }
        let mut out = BytesMut::new();
        // Messages first, everything queued in one chunk; a connection asked to close stops
        // taking them (its queue is full when it was too slow).
        while out.len() < CHUNK_BYTES && !this.session.closing() {
            match this.session.rx.poll_recv(cx) {
                Poll::Ready(Some(msg)) => {
                    if this.session.accept(&msg) {
                        write_message(&mut out, &this.session, &msg);
                    }
                }
                Poll::Ready(None) => {
                    this.done = true;
                    break;
                }
                Poll::Pending => break,
            }
        }
        if !out.is_empty() && !this.session.closing() {
            return Poll::Ready(Some(Ok(out.freeze())));
        }
        if let Poll::Ready(end) = this.ending.as_mut().poll(cx) {
            let shared = this.session.shared();
            match end {
                End::Closed(reason) => {
                    shared.metrics.closed(reason);
                    let data = json!({"code": reason.code(), "message": reason.message()});
                    write_event(&mut out, None, "error", &data.to_string());
                }
                End::Shutdown => {
                    write_reconnect(&mut out, "shutdown", shared.shutdown_delay_ms());
                }
                End::Lifetime => {
                    write_reconnect(&mut out, "lifetime", fastrand::u64(0..=2_000));
                }
            }
            this.done = true;
            return Poll::Ready(Some(Ok(out.freeze())));
        }
        if this.heartbeat.poll_tick(cx).is_ready() {
            out.put_slice(b": ping\n\n");
        }
        if out.is_empty() {
            if this.done {
                return Poll::Ready(None);
            }
            return Poll::Pending;
        }
        Poll::Ready(Some(Ok(out.freeze())))
    }
}

fn write_message(out: &mut BytesMut, session: &Session, msg: &Msg) {
    session.count_written(msg);
    out.put_slice(b"id: ");
    session.write_resume_id(out);
    out.put_slice(b"\nevent: message\ndata: ");
    out.put_slice(msg.frame.as_str().as_bytes());
    out.put_slice(b"\n\n");
}

fn write_reconnect(out: &mut BytesMut, reason: &str, after_ms: u64) {
    let data = json!({"reason": reason, "afterMs": after_ms});
    out.put_slice(format!("retry: {after_ms}\n").as_bytes());
    write_event(out, None, "reconnect", &data.to_string());
}

fn write_event(out: &mut BytesMut, id: Option<&str>, event: &str, data: &str) {
    if let Some(id) = id {
        out.put_slice(b"id: ");
        out.put_slice(id.as_bytes());
        out.put_u8(b'\n');
    }
    out.put_slice(b"event: ");
    out.put_slice(event.as_bytes());
    out.put_slice(b"\ndata: ");
    out.put_slice(data.as_bytes());
    out.put_slice(b"\n\n");
}
