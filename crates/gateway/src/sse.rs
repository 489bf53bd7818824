//! Server-Sent Events: `GET /v1/realtime/sse?channels=a,b`.
//!
//! The body is a stream we format ourselves (a message event is three short writes around the
//! shared frame); it ends when the client goes away (hyper drops it, and with it the session),
//! or after a `reconnect` or `error` event.

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::{BufMut as _, Bytes, BytesMut};
use serde::Deserialize;
use serde_json::json;

use crate::http::{authenticate_request, cors_headers, error_response};
use crate::hub::Msg;
use crate::session::{Session, Shared, parse_resume_id};

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
    let state = Stream {
        session,
        first: Some(head.freeze()),
        heartbeat: tokio::time::interval_at(
            tokio::time::Instant::now() + shared.config.heartbeat,
            shared.config.heartbeat,
        ),
        deadline: shared.lifetime().map(|l| Box::pin(tokio::time::sleep(l))),
        done: false,
        _gauge: GaugeGuard(Arc::clone(&shared)),
    };
    let body = Body::from_stream(futures::stream::unfold(state, next_chunk));
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

struct Stream {
    session: Session,
    first: Option<Bytes>,
    heartbeat: tokio::time::Interval,
    deadline: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
    done: bool,
    _gauge: GaugeGuard,
}

async fn next_chunk(mut state: Stream) -> Option<(Result<Bytes, Infallible>, Stream)> {
    if state.done {
        return None;
    }
    if let Some(first) = state.first.take() {
        return Some((Ok(first), state));
    }
    let shared = Arc::clone(state.session.shared());
    let mut out = BytesMut::new();
    loop {
        tokio::select! {
            biased;
            reason = state.session.control.closed() => {
                shared.metrics.closed(reason);
                let data = json!({"code": reason.code(), "message": reason.message()});
                write_event(&mut out, None, "error", &data.to_string());
                state.done = true;
                break;
            }
            () = shared.shutdown.cancelled() => {
                write_reconnect(&mut out, "shutdown", shared.shutdown_delay_ms());
                state.done = true;
                break;
            }
            () = async {
                match state.deadline.as_mut() {
                    Some(deadline) => deadline.await,
                    None => std::future::pending().await,
                }
            } => {
                write_reconnect(&mut out, "lifetime", fastrand::u64(0..=2_000));
                state.done = true;
                break;
            }
            msg = state.session.rx.recv() => {
                let msg = msg?;
                if state.session.accept(&msg) {
                    write_message(&mut out, &state.session, &msg);
                }
                // Take what else is queued, so a burst is one write.
                while out.len() < 64 * 1024 {
                    let Ok(msg) = state.session.rx.try_recv() else { break };
                    if state.session.accept(&msg) {
                        write_message(&mut out, &state.session, &msg);
                    }
                }
                if !out.is_empty() {
                    break;
                }
            }
            _ = state.heartbeat.tick() => {
                out.put_slice(b": ping\n\n");
                break;
            }
        }
    }
    Some((Ok(out.freeze()), state))
}

fn write_message(out: &mut BytesMut, session: &Session, msg: &Msg) {
    session.count_written(msg);
    write_event(
        out,
        Some(&session.resume_id()),
        "message",
        msg.frame.as_str(),
    );
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
