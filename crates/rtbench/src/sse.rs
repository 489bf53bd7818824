//! Server-Sent Events: an incremental event parser, and one SSE connection to the gateway.
//!
//! The connection is hyper's HTTP/1.1 client on a socket bound to the chosen source address
//! (hyper de-chunks the body); the parser turns body chunks into (event, data) pairs as
//! the EventSource specification does, keeping only what the load tool reads: `event` and
//! `data` (the `id` and `retry` fields and comment lines, the heartbeat, are skipped).

use std::pin::pin;

use http_body_util::{BodyExt as _, Empty};
use hyper::body::Bytes;
use hyper::header::{ACCEPT, HOST};
use hyper_util::rt::TokioIo;

use crate::connection::{Ended, Progress, Spec};
use crate::net::connect_from;
use crate::scan;

/// Splits a byte stream into SSE events.
#[derive(Debug, Default)]
pub struct SseParser {
    /// The line being read (bytes since the last line end).
    line: Vec<u8>,
    /// The current event's `event` field.
    event: Vec<u8>,
    /// The current event's `data` lines, joined by `\n`.
    data: Vec<u8>,
    /// Whether any `data` field was seen for the current event (the spec dispatches only
    /// then).
    has_data: bool,
    /// The last chunk ended with `\r`: a `\n` starting the next one belongs to that line end.
    after_cr: bool,
}

impl SseParser {
    /// Feeds a chunk; `on_event(event, data)` is called for every complete event in it
    /// (`event` is `message` when the field was absent, as in EventSource).
    pub fn feed(&mut self, mut chunk: &[u8], mut on_event: impl FnMut(&[u8], &[u8])) {
        if self.after_cr {
            self.after_cr = false;
            if let Some(rest) = chunk.strip_prefix(b"\n") {
                chunk = rest;
            }
        }
        while let Some(end) = memchr::memchr2(b'\n', b'\r', chunk) {
            if self.line.is_empty() {
                self.take_line(&chunk[..end], &mut on_event);
            } else {
                // The line began in an earlier chunk; the buffer is reused afterwards.
                let mut line = std::mem::take(&mut self.line);
                line.extend_from_slice(&chunk[..end]);
                self.take_line(&line, &mut on_event);
                line.clear();
                self.line = line;
            }
            let terminator = chunk[end];
            chunk = &chunk[end + 1..];
            if terminator == b'\r' {
                match chunk.first() {
                    Some(b'\n') => chunk = &chunk[1..],
                    Some(_) => {}
                    None => self.after_cr = true,
                }
            }
        }
        self.line.extend_from_slice(chunk);
    }

    /// Handles one line (without its terminator).
    fn take_line(&mut self, line: &[u8], on_event: &mut impl FnMut(&[u8], &[u8])) {
        if line.is_empty() {
            if self.has_data {
                let event: &[u8] = if self.event.is_empty() {
                    b"message"
                } else {
                    &self.event
                };
                on_event(event, &self.data);
            }
            self.event.clear();
            self.data.clear();
            self.has_data = false;
            return;
        }
        if line[0] == b':' {
            return; // a comment: the heartbeat
        }
        let (field, value) = match memchr::memchr(b':', line) {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &b""[..]),
        };
        match field {
            b"event" => {
                self.event.clear();
                self.event.extend_from_slice(value);
            }
            b"data" => {
                if self.has_data {
                    self.data.push(b'\n');
                }
                self.data.extend_from_slice(value);
                self.has_data = true;
            }
            _ => {} // id, retry, unknown fields
        }
    }
}

/// Runs one SSE connection until the server ends it.
pub async fn run(spec: &Spec, token: &str, progress: &mut Progress<'_>) -> Ended {
    let stream = match connect_from(spec.source, spec.gateway.addr).await {
        Ok(stream) => stream,
        Err(e) => return Ended::Failed(format!("connect: {e}")),
    };
    let (mut sender, conn) = match hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
    {
        Ok(parts) => parts,
        Err(e) => return Ended::Failed(format!("HTTP handshake: {e}")),
    };
    let mut conn = pin!(conn);
    let request = hyper::Request::get(format!(
        "/v1/realtime/sse?channels={}&token={token}",
        spec.channel
    ))
    .header(HOST, &spec.gateway.authority)
    .header(ACCEPT, "text/event-stream")
    .body(Empty::<Bytes>::new());
    let request = match request {
        Ok(request) => request,
        Err(e) => return Ended::Failed(format!("building the request: {e}")),
    };
    let response = tokio::select! {
        response = sender.send_request(request) => response,
        _ = &mut conn => return Ended::Failed("closed before answering".into()),
    };
    let response = match response {
        Ok(response) => response,
        Err(e) => return Ended::Failed(format!("request: {e}")),
    };
    let status = response.status();
    let mut body = response.into_body();
    if status != hyper::StatusCode::OK {
        // The refusal's reason (expired, bad_signature, ...) is in the body.
        let first = tokio::select! {
            frame = body.frame() => frame,
            _ = &mut conn => None,
        };
        let text = first
            .and_then(Result::ok)
            .and_then(|frame| frame.into_data().ok())
            .map(|data| String::from_utf8_lossy(&data[..data.len().min(200)]).into_owned())
            .unwrap_or_default();
        return Ended::Failed(format!("HTTP {status} {text}"));
    }

    let mut parser = SseParser::default();
    let mut last_offset = None;
    // What the server said before ending the stream (reconnect or error event).
    let mut farewell: Option<String> = None;
    loop {
        let frame = tokio::select! {
            frame = body.frame() => frame,
            _ = &mut conn => None,
        };
        let frame = match frame {
            Some(Ok(frame)) => frame,
            Some(Err(e)) => return progress.ended(format!("read: {e}"), farewell),
            None => return progress.ended("stream ended".into(), farewell),
        };
        let Some(data) = frame.data_ref() else {
            continue;
        };
        parser.feed(data, |event, data| match event {
            b"message" => progress
                .shared
                .delivered(scan::delivery(data), &mut last_offset),
            b"welcome" => progress.ready(),
            b"reconnect" => {
                let reason = scan::string_after(data, "reason").unwrap_or(b"?");
                farewell = Some(format!("reconnect {}", String::from_utf8_lossy(reason)));
            }
            b"error" => {
                let code = scan::string_after(data, "code").unwrap_or(b"?");
                farewell = Some(format!("error {}", String::from_utf8_lossy(code)));
            }
            _ => {}
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(chunks: &[&[u8]]) -> Vec<(String, String)> {
        let mut parser = SseParser::default();
        let mut out = Vec::new();
        for chunk in chunks {
            parser.feed(chunk, |event, data| {
                out.push((
                    String::from_utf8_lossy(event).into_owned(),
                    String::from_utf8_lossy(data).into_owned(),
                ));
            });
        }
        out
    }

    const STREAM: &[u8] = b": ping\n\nevent: welcome\nid: e1~5,-\ndata: {\"user\":\"u\"}\n\n\
        retry: 1800\nevent:message\nid: e1~6,-\ndata: {\"offset\":6}\n\n\
        data: line one\r\ndata:line two\r\n\r\n\
        event: reconnect\rdata: {\"afterMs\":10}\r\rdata: unfinished";

    fn expected() -> Vec<(String, String)> {
        [
            ("welcome", "{\"user\":\"u\"}"),
            ("message", "{\"offset\":6}"),
            ("message", "line one\nline two"),
            ("reconnect", "{\"afterMs\":10}"),
        ]
        .iter()
        .map(|(e, d)| ((*e).to_owned(), (*d).to_owned()))
        .collect()
    }

    #[test]
    fn parses_events_comments_and_every_line_end() {
        assert_eq!(events(&[STREAM]), expected());
    }

    #[test]
    fn any_split_into_chunks_gives_the_same_events() {
        for at in 0..=STREAM.len() {
            assert_eq!(
                events(&[&STREAM[..at], &STREAM[at..]]),
                expected(),
                "split at {at}"
            );
        }
        let bytes: Vec<&[u8]> = STREAM.chunks(1).collect();
        assert_eq!(events(&bytes), expected(), "one byte at a time");
    }

    #[test]
    fn a_field_without_colon_and_an_event_without_data_dispatch_nothing() {
        assert_eq!(
            events(&[b"event: welcome\n\ndata\n\n"]),
            vec![("message".to_owned(), String::new())]
        );
    }
}
