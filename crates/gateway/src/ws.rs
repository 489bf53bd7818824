//! WebSocket: `GET /v1/realtime/ws`, JSON text frames (see `docs/realtime.md`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;

use crate::auth::{Identity, authenticate, origin_allowed, request_token};
use crate::http::error_response;
use crate::session::{End, FrameLimit, Session, Shared};

/// Close codes.
const CLOSE_AUTH: u16 = 4001;
const CLOSE_KICKED: u16 = 4008;
const CLOSE_RATE: u16 = 4029;
const CLOSE_RESTART: u16 = 1012;
const CLOSE_NORMAL: u16 = 1000;

/// A write that takes longer is given up, and the connection with it: a client that stopped
/// reading must not hold its task (and socket) until TCP gives up, minutes later.
const WRITE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Sends a frame within [`WRITE_TIMEOUT`]; false when the connection is gone or stuck.
async fn send(socket: &mut WebSocket, message: Message) -> bool {
    matches!(
        tokio::time::timeout(WRITE_TIMEOUT, socket.send(message)).await,
        Ok(Ok(()))
    )
}

/// Query parameters of the WebSocket endpoint.
#[derive(Debug, Deserialize)]
pub struct WsQuery {
    #[serde(default)]
    token: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum ClientFrame {
    Auth {
        token: String,
        #[serde(default)]
        channels: Vec<String>,
        #[serde(default)]
        since: Option<SinceAll>,
    },
    Subscribe {
        channel: String,
        #[serde(default)]
        since: Option<SinceOne>,
    },
    Unsubscribe {
        channel: String,
    },
    Ack {
        ids: Vec<String>,
    },
    Ping,
}

#[derive(Debug, Deserialize)]
struct SinceAll {
    epoch: String,
    #[serde(default)]
    positions: HashMap<String, i64>,
}

#[derive(Debug, Deserialize)]
struct SinceOne {
    epoch: String,
    offset: i64,
}

/// The upgrade handler: a token at the upgrade is checked before upgrading (a bad one gets
/// HTTP 401); without one, the first frame must authenticate.
pub async fn upgrade(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<WsQuery>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let origin = headers
        .get(header::ORIGIN)
        .and_then(|o| o.to_str().ok())
        .map(str::to_owned);
    let identity = match request_token(&headers, query.token.as_deref()) {
        Some((token, from_cookie)) => {
            match authenticate(&shared.sites, &token, from_cookie).await {
                Ok(identity) => {
                    if !origin_allowed(&identity, origin.as_deref()) {
                        return error_response(
                            StatusCode::FORBIDDEN,
                            "origin_not_allowed",
                            "this page's origin is not one of the site's allowedOrigins",
                            None,
                        );
                    }
                    Some(identity)
                }
                Err(e) => {
                    shared.metrics.auth_failures.inc();
                    return error_response(StatusCode::UNAUTHORIZED, e.code, &e.message, None);
                }
            }
        }
        None => None,
    };
    let tracker = shared.tracker.clone();
    // Small buffers: most frames are tiny, and memory per connection is what limits a gateway.
    ws.read_buffer_size(4 * 1024)
        .write_buffer_size(0)
        .max_write_buffer_size(256 * 1024)
        .max_message_size(64 * 1024)
        .max_frame_size(64 * 1024)
        .on_upgrade(move |socket| {
            tracker.track_future(async move {
                shared.metrics.ws_connections.add(1);
                run(socket, Arc::clone(&shared), identity, origin).await;
                shared.metrics.ws_connections.add(-1);
            })
        })
}

async fn send_json(socket: &mut WebSocket, value: serde_json::Value) -> bool {
    send(socket, Message::Text(Utf8Bytes::from(value.to_string()))).await
}

async fn close(socket: &mut WebSocket, code: u16, reason: &'static str) {
    send(
        socket,
        Message::Close(Some(CloseFrame {
            code,
            reason: Utf8Bytes::from_static(reason),
        })),
    )
    .await;
}

async fn refuse(socket: &mut WebSocket, code: &str, message: &str, close_code: u16) {
    send_json(
        socket,
        json!({"type": "error", "code": code, "message": message}),
    )
    .await;
    close(socket, close_code, "refused").await;
}

async fn run(
    mut socket: WebSocket,
    shared: Arc<Shared>,
    identity: Option<Identity>,
    origin: Option<String>,
) {
    let (identity, channels, since) = match identity {
        Some(identity) => (identity, Vec::new(), None),
        None => {
            let first = tokio::time::timeout(shared.config.auth_timeout, socket.recv()).await;
            let text = match first {
                Ok(Some(Ok(Message::Text(text)))) => text,
                Ok(_) => return,
                Err(_) => {
                    shared.metrics.auth_failures.inc();
                    refuse(
                        &mut socket,
                        "auth_timeout",
                        "authenticate with an auth frame within GATEWAY_AUTH_TIMEOUT_MS",
                        CLOSE_AUTH,
                    )
                    .await;
                    return;
                }
            };
            let Ok(ClientFrame::Auth {
                token,
                channels,
                since,
            }) = serde_json::from_str::<ClientFrame>(text.as_str())
            else {
                shared.metrics.auth_failures.inc();
                refuse(
                    &mut socket,
                    "auth_required",
                    "the first frame must be {\"type\":\"auth\",\"token\":\"...\"}",
                    CLOSE_AUTH,
                )
                .await;
                return;
            };
            match authenticate(&shared.sites, &token, false).await {
                Ok(identity) if origin_allowed(&identity, origin.as_deref()) => {
                    (identity, channels, since)
                }
                Ok(_) => {
                    refuse(
                        &mut socket,
                        "origin_not_allowed",
                        "this page's origin is not one of the site's allowedOrigins",
                        CLOSE_AUTH,
                    )
                    .await;
                    return;
                }
                Err(e) => {
                    shared.metrics.auth_failures.inc();
                    refuse(&mut socket, e.code, &e.message, CLOSE_AUTH).await;
                    return;
                }
            }
        }
    };

    let mut session = Session::new(&shared, identity);
    let welcome = json!({
        "type": "welcome",
        "connection": session.conn.to_string(),
        "user": session.identity.user,
        "epoch": shared.epoch,
        "heartbeatMs": shared.config.heartbeat.as_millis() as u64,
    });
    if !send_json(&mut socket, welcome).await {
        return;
    }
    let mut wanted = vec![session.user_channel()];
    for channel in channels {
        if !wanted.contains(&channel) {
            wanted.push(channel);
        }
    }
    for channel in wanted {
        let position = since
            .as_ref()
            .and_then(|s| s.positions.get(&channel).map(|p| (*p, s.epoch.as_str())));
        if !subscribe(&mut socket, &mut session, &channel, position).await {
            return;
        }
    }

    let mut limit = FrameLimit::new(
        shared.config.client_rate_per_sec,
        shared.config.client_burst,
    );
    let mut heartbeat = tokio::time::interval_at(
        tokio::time::Instant::now() + shared.config.heartbeat,
        shared.config.heartbeat,
    );
    let mut last_heard = Instant::now();
    let mut ending = session.ending();
    loop {
        tokio::select! {
            biased;
            // Messages first: the hot path polls nothing else. A connection asked to close
            // (its queue full when too slow) stops taking them and finds out below.
            msg = session.rx.recv(), if !session.closing() => {
                let Some(msg) = msg else { return };
                if session.accept(&msg) {
                    session.count_written(&msg);
                    if !send(&mut socket, Message::Text(msg.frame.clone())).await {
                        return;
                    }
                }
            }
            end = &mut ending => {
                match end {
                    End::Closed(reason) => {
                        shared.metrics.closed(reason);
                        refuse(&mut socket, reason.code(), reason.message(), CLOSE_KICKED).await;
                    }
                    End::Shutdown => {
                        let after = shared.shutdown_delay_ms();
                        send_json(&mut socket, json!({"type": "reconnect", "reason": "shutdown", "afterMs": after})).await;
                        close(&mut socket, CLOSE_RESTART, "shutdown").await;
                    }
                    End::Lifetime => {
                        let after = fastrand::u64(0..=2_000);
                        send_json(&mut socket, json!({"type": "reconnect", "reason": "lifetime", "afterMs": after})).await;
                        close(&mut socket, CLOSE_RESTART, "lifetime").await;
                    }
                }
                return;
            }
            _ = heartbeat.tick() => {
                if last_heard.elapsed() > shared.config.heartbeat + shared.config.pong_timeout {
                    close(&mut socket, CLOSE_NORMAL, "no pong").await;
                    return;
                }
                if !send(&mut socket, Message::Ping(Default::default())).await {
                    return;
                }
            }
            frame = socket.recv() => {
                let Some(Ok(frame)) = frame else { return };
                last_heard = Instant::now();
                let text = match frame {
                    Message::Text(text) => text,
                    Message::Close(_) => return,
                    Message::Pong(_) | Message::Ping(_) => continue,
                    Message::Binary(_) => {
                        send_json(&mut socket, json!({"type": "error", "code": "bad_frame", "message": "frames are JSON text"})).await;
                        continue;
                    }
                };
                if !limit.take() {
                    shared.metrics.rate_limited.inc();
                    refuse(&mut socket, "rate_limited", "too many frames; slow down", CLOSE_RATE).await;
                    return;
                }
                if !handle(&mut socket, &mut session, text.as_str()).await {
                    return;
                }
            }
        }
    }
}

/// Joins a channel and tells the client: recovered messages, then `subscribed`. False when
/// the connection is gone.
async fn subscribe(
    socket: &mut WebSocket,
    session: &mut Session,
    channel: &str,
    since: Option<(i64, &str)>,
) -> bool {
    match session.join(channel, since).await {
        Ok(join) => {
            for msg in &join.messages {
                session.sent(&msg.channel, msg.offset);
                session.count_written(msg);
                if !send(socket, Message::Text(msg.frame.clone())).await {
                    return false;
                }
            }
            let mut frame =
                json!({"type": "subscribed", "channel": channel, "offset": join.position});
            if let Some(recovered) = join.recovered {
                frame["recovered"] = json!(recovered);
            }
            send_json(socket, frame).await
        }
        Err(e) => {
            send_json(
                socket,
                json!({"type": "error", "code": e.code, "message": e.message, "channel": channel}),
            )
            .await
        }
    }
}

async fn handle(socket: &mut WebSocket, session: &mut Session, text: &str) -> bool {
    let frame = match serde_json::from_str::<ClientFrame>(text) {
        Ok(frame) => frame,
        Err(e) => {
            return send_json(
                socket,
                json!({"type": "error", "code": "bad_frame", "message": format!("not a client frame: {e}")}),
            )
            .await;
        }
    };
    match frame {
        ClientFrame::Auth { .. } => {
            send_json(
                socket,
                json!({"type": "error", "code": "already_authenticated", "message": "this connection is authenticated"}),
            )
            .await
        }
        ClientFrame::Subscribe { channel, since } => {
            let since = since.as_ref().map(|s| (s.offset, s.epoch.as_str()));
            subscribe(socket, session, &channel, since).await
        }
        ClientFrame::Unsubscribe { channel } => {
            if session.leave(&channel) {
                send_json(socket, json!({"type": "unsubscribed", "channel": channel})).await
            } else {
                send_json(
                    socket,
                    json!({"type": "error", "code": "not_subscribed", "message": format!("not in channel {channel:?}"), "channel": channel}),
                )
                .await
            }
        }
        ClientFrame::Ack { ids } => {
            session.count_acks(&ids[..ids.len().min(1000)]);
            true
        }
        ClientFrame::Ping => send_json(socket, json!({"type": "pong"})).await,
    }
}
