//! One WebSocket connection to the gateway.
//!
//! tokio-tungstenite on a socket bound to the chosen source address, with small buffers:
//! tungstenite allocates its read buffer up front (128 KiB by default), which at 20,000
//! connections would be 2.5 GB of the load tool's memory for frames of a few hundred bytes.
//! The token goes in the first `auth` frame, with the channel, so the connection is
//! subscribed after one round trip. Protocol pings are answered by tungstenite itself.

use futures::{SinkExt as _, StreamExt as _};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::connection::{Ended, Progress, Spec};
use crate::net::connect_from;
use crate::scan;

/// Buffers fit for small frames.
fn config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
        .max_write_buffer_size(64 * 1024)
        .max_message_size(Some(1 << 20))
        .max_frame_size(Some(1 << 20))
}

/// Runs one WebSocket connection until the server ends it.
pub async fn run(spec: &Spec, token: &str, progress: &mut Progress<'_>) -> Ended {
    let stream = match connect_from(spec.source, spec.gateway.addr).await {
        Ok(stream) => stream,
        Err(e) => return Ended::Failed(format!("connect: {e}")),
    };
    let url = format!("ws://{}/v1/realtime/ws", spec.gateway.authority);
    let mut ws =
        match tokio_tungstenite::client_async_with_config(url, stream, Some(config())).await {
            Ok((ws, _response)) => ws,
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                let body = response
                    .body()
                    .as_deref()
                    .map(|b| String::from_utf8_lossy(&b[..b.len().min(200)]).into_owned())
                    .unwrap_or_default();
                return Ended::Failed(format!(
                    "upgrade refused: HTTP {} {body}",
                    response.status()
                ));
            }
            Err(e) => return Ended::Failed(format!("upgrade: {e}")),
        };
    let auth = serde_json::json!({"type": "auth", "token": token, "channels": [spec.channel]});
    if let Err(e) = ws.send(Message::text(auth.to_string())).await {
        return Ended::Failed(format!("sending auth: {e}"));
    }
    let mut last_offset = None;
    let mut farewell: Option<String> = None;
    loop {
        let frame = match ws.next().await {
            Some(Ok(frame)) => frame,
            Some(Err(e)) => return progress.ended(format!("read: {e}"), farewell),
            None => return progress.ended("stream ended".into(), farewell),
        };
        match frame {
            Message::Text(text) => {
                let text = text.as_bytes();
                match scan::string_after(text, "type") {
                    Some(b"message") => progress
                        .shared
                        .delivered(scan::delivery(text), &mut last_offset),
                    Some(b"subscribed")
                        if scan::string_after(text, "channel") == Some(spec.channel.as_bytes()) =>
                    {
                        progress.ready();
                    }
                    Some(b"reconnect") => {
                        let reason = scan::string_after(text, "reason").unwrap_or(b"?");
                        farewell = Some(format!("reconnect {}", String::from_utf8_lossy(reason)));
                    }
                    Some(b"error") => {
                        let code = scan::string_after(text, "code").unwrap_or(b"?");
                        let reason = format!("error {}", String::from_utf8_lossy(code));
                        if !progress.is_ready() {
                            // Refused before subscribing (a bad token, a channel not allowed):
                            // nothing more will come for this connection.
                            return Ended::Failed(reason);
                        }
                        farewell = Some(reason);
                    }
                    _ => {} // welcome, pong, unsubscribed
                }
            }
            Message::Close(frame) => {
                let how = match frame {
                    Some(frame) => format!("close {} {}", u16::from(frame.code), frame.reason),
                    None => "close".to_owned(),
                };
                return progress.ended(how, farewell);
            }
            _ => {} // pings are answered by tungstenite; binary frames are not used
        }
    }
}
