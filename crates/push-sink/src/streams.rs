//! HTTP/2 stream limits that change while a connection lives, and GOAWAY after a number of
//! requests: what real push services do and hyper's server cannot say by itself.
//!
//! hyper (through `h2`) advertises one `SETTINGS_MAX_CONCURRENT_STREAMS` for a connection's
//! whole life and offers no way to send another SETTINGS frame. APNs starts a connection at
//! one stream and widens it after the first success, and the sink only learns a connection's
//! kind from its first request (see [`crate::config::Streams`]). So [`LimitIo`] sits between
//! the socket and hyper, at the frame level:
//!
//! - on the way out it rewrites the `MAX_CONCURRENT_STREAMS` value of the server's first
//!   SETTINGS frame to what a connection advertises before its first request, and inserts a
//!   SETTINGS frame of its own between two of hyper's frames whenever [`ConnState`] changes
//!   the limit;
//! - on the way in it drops the client's acknowledgements of those inserted frames (h2 would
//!   take an ACK it did not ask for as a protocol error).
//!
//! hyper itself is configured with the largest limit any kind allows, so the advertised
//! limit is a promise the sink makes, not one h2 enforces: a client that opens more streams
//! than advertised is counted (`streams_over_limit`), which is what the client tests check.
//! A connection that turns out to be HTTP/1.1 (no HTTP/2 preface) passes through untouched.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::task::{Context, Poll, Waker};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;

use crate::config::{StreamRule, Streams};
use crate::stats::{Counters, Kind};

/// The HTTP/2 client connection preface.
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Frame type SETTINGS, its ACK flag, and the MAX_CONCURRENT_STREAMS parameter id.
const SETTINGS: u8 = 0x4;
const ACK: u8 = 0x1;
const MAX_CONCURRENT_STREAMS: u16 = 0x3;

/// One connection's stream limit, request count and GOAWAY trigger, shared by its
/// [`LimitIo`] and the requests it carries.
pub(crate) struct ConnState {
    rules: Streams,
    kind: OnceLock<Kind>,
    succeeded: AtomicBool,
    advertised: AtomicU32,
    /// A limit to announce at the next frame boundary.
    pending: Mutex<Option<u32>>,
    /// The connection task, woken so a pending limit goes out without waiting for a write.
    waker: Mutex<Option<Waker>>,
    active: AtomicU32,
    requests: AtomicU64,
    goaway_after: Option<u64>,
    /// Notified once when the connection has carried `goaway_after` requests.
    pub(crate) goaway: Notify,
}

impl ConnState {
    pub(crate) fn new(rules: Streams, goaway_after: Option<u64>) -> Self {
        ConnState {
            rules,
            kind: OnceLock::new(),
            succeeded: AtomicBool::new(false),
            advertised: AtomicU32::new(rules.before_first_request()),
            pending: Mutex::new(None),
            waker: Mutex::new(None),
            active: AtomicU32::new(0),
            requests: AtomicU64::new(0),
            goaway_after,
            goaway: Notify::new(),
        }
    }

    fn rule(&self) -> Option<StreamRule> {
        match self.kind.get()? {
            Kind::WebPush => Some(self.rules.web_push),
            Kind::Apns => Some(self.rules.apns),
            // Google's token endpoint is one of its front ends too.
            Kind::Fcm | Kind::Oauth => Some(self.rules.fcm),
        }
    }

    /// A request of `kind` arrived: the first one decides the connection's rule. Returns a
    /// guard that counts the stream as active until dropped.
    pub(crate) fn on_request<'a>(&'a self, kind: Kind, counters: &'a Counters) -> ActiveStream<'a> {
        let mut first = false;
        self.kind.get_or_init(|| {
            first = true;
            kind
        });
        if first && let Some(rule) = self.rule() {
            self.announce(rule.initial);
        }
        let active = self.active.fetch_add(1, Relaxed) + 1;
        counters.streams_active(active, self.advertised.load(Relaxed));
        let n = self.requests.fetch_add(1, Relaxed) + 1;
        if self.goaway_after == Some(n) {
            self.goaway.notify_one();
        }
        ActiveStream { state: self }
    }

    /// A request was answered `status`: the first success widens an APNs connection.
    pub(crate) fn on_answer(&self, status: u16) {
        if !(200..300).contains(&status) {
            return;
        }
        if let Some(StreamRule {
            after_success: Some(after),
            ..
        }) = self.rule()
            && !self.succeeded.swap(true, Relaxed)
        {
            self.announce(after);
        }
    }

    fn announce(&self, limit: u32) {
        if self.advertised.swap(limit, Relaxed) == limit {
            return;
        }
        *self.pending.lock().unwrap_or_else(PoisonError::into_inner) = Some(limit);
        if let Some(waker) = self
            .waker
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
        {
            waker.wake_by_ref();
        }
    }

    fn take_pending(&self) -> Option<u32> {
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    fn remember_waker(&self, waker: &Waker) {
        let mut slot = self.waker.lock().unwrap_or_else(PoisonError::into_inner);
        if !slot.as_ref().is_some_and(|w| w.will_wake(waker)) {
            *slot = Some(waker.clone());
        }
    }
}

/// A request being handled; dropping it frees its stream in the count.
pub(crate) struct ActiveStream<'a> {
    state: &'a ConnState,
}

impl Drop for ActiveStream<'_> {
    fn drop(&mut self) {
        self.state.active.fetch_sub(1, Relaxed);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Matching the client's first bytes against the HTTP/2 preface.
    Preface(usize),
    /// HTTP/2 frames.
    Frames,
    /// Not HTTP/2 (or written to before the preface was seen): bytes pass untouched.
    Passthrough,
}

/// Where a byte stream is in its frames: bytes of the 9-byte header seen, body bytes left.
#[derive(Debug, Clone, Copy, Default)]
struct FrameCursor {
    header: [u8; 9],
    header_len: usize,
    body_left: usize,
}

impl FrameCursor {
    fn at_boundary(&self) -> bool {
        self.header_len == 0 && self.body_left == 0
    }
}

/// The socket as hyper sees it (see the module docs).
pub(crate) struct LimitIo<S> {
    inner: S,
    state: Arc<ConnState>,
    mode: Mode,
    // Read side: bytes read and not yet handed to hyper, and where the client's frames are.
    ready: Vec<u8>,
    ready_pos: usize,
    read_cursor: FrameCursor,
    acks_seen: u32,
    // Write side: where hyper's frames are, how far into the first frame (patched) we are,
    // and an inserted SETTINGS frame still being written.
    write_cursor: FrameCursor,
    written: u64,
    first_frame_len: Option<u64>,
    param: [u8; 2],
    insert: Vec<u8>,
    insert_pos: usize,
}

impl<S> LimitIo<S> {
    pub(crate) fn new(inner: S, state: Arc<ConnState>) -> Self {
        LimitIo {
            inner,
            state,
            mode: Mode::Preface(0),
            ready: Vec::new(),
            ready_pos: 0,
            read_cursor: FrameCursor::default(),
            acks_seen: 0,
            write_cursor: FrameCursor::default(),
            written: 0,
            first_frame_len: None,
            param: [0; 2],
            insert: Vec::new(),
            insert_pos: 0,
        }
    }

    /// Appends `bytes` (just read) to `ready`, dropping acknowledgements of inserted SETTINGS.
    fn filter_read(&mut self, bytes: &[u8]) {
        let mut i = 0;
        while i < bytes.len() {
            match self.mode {
                Mode::Passthrough => {
                    self.ready.extend_from_slice(&bytes[i..]);
                    return;
                }
                Mode::Preface(seen) => {
                    if bytes[i] != PREFACE[seen] {
                        self.mode = Mode::Passthrough;
                        continue;
                    }
                    self.ready.push(bytes[i]);
                    i += 1;
                    self.mode = if seen + 1 == PREFACE.len() {
                        Mode::Frames
                    } else {
                        Mode::Preface(seen + 1)
                    };
                }
                Mode::Frames => {
                    let cursor = &mut self.read_cursor;
                    if cursor.body_left > 0 {
                        let n = cursor.body_left.min(bytes.len() - i);
                        self.ready.extend_from_slice(&bytes[i..i + n]);
                        cursor.body_left -= n;
                        i += n;
                        continue;
                    }
                    // Headers are held back until whole, so a dropped one never half-leaks.
                    cursor.header[cursor.header_len] = bytes[i];
                    cursor.header_len += 1;
                    i += 1;
                    if cursor.header_len == 9 {
                        let h = cursor.header;
                        let length =
                            usize::from(h[0]) << 16 | usize::from(h[1]) << 8 | usize::from(h[2]);
                        cursor.header_len = 0;
                        cursor.body_left = length;
                        let is_ack = h[3] == SETTINGS && h[4] & ACK != 0 && length == 0;
                        if is_ack {
                            self.acks_seen += 1;
                            // The first ACK answers hyper's own SETTINGS; later ones ours.
                            if self.acks_seen > 1 {
                                continue;
                            }
                        }
                        self.ready.extend_from_slice(&h);
                    }
                }
            }
        }
    }

    /// Advances the write cursor over `bytes` (as hyper wrote them); with `out`, writes the
    /// bytes to send there, the first frame's MAX_CONCURRENT_STREAMS rewritten.
    fn scan_written(&mut self, bytes: &[u8], mut out: Option<&mut Vec<u8>>) {
        let advertised = self.state.rules.before_first_request().to_be_bytes();
        let (mut cursor, mut written, mut first_len, mut param) = (
            self.write_cursor,
            self.written,
            self.first_frame_len,
            self.param,
        );
        for &byte in bytes {
            let mut sent = byte;
            // Inside the first frame's parameters (6 bytes each: id, value)?
            if let Some(len) = first_len
                && written >= 9
                && written < 9 + len
            {
                let at = ((written - 9) % 6) as usize;
                match at {
                    0 | 1 => param[at] = byte,
                    _ if u16::from_be_bytes(param) == MAX_CONCURRENT_STREAMS => {
                        sent = advertised[at - 2];
                    }
                    _ => {}
                }
            }
            if cursor.body_left > 0 {
                cursor.body_left -= 1;
            } else {
                cursor.header[cursor.header_len] = byte;
                cursor.header_len += 1;
                if cursor.header_len == 9 {
                    let h = cursor.header;
                    let length =
                        usize::from(h[0]) << 16 | usize::from(h[1]) << 8 | usize::from(h[2]);
                    cursor.header_len = 0;
                    cursor.body_left = length;
                    if written == 8 && h[3] == SETTINGS && h[4] & ACK == 0 {
                        first_len = Some(length as u64);
                    }
                }
            }
            written += 1;
            if let Some(out) = out.as_deref_mut() {
                out.push(sent);
            }
        }
        if out.is_none() {
            (
                self.write_cursor,
                self.written,
                self.first_frame_len,
                self.param,
            ) = (cursor, written, first_len, param);
        }
    }

    /// Whether bytes written now may fall in the first frame (and need rewriting).
    fn in_first_frame(&self) -> bool {
        match self.first_frame_len {
            None => self.written < 9,
            Some(len) => self.written < 9 + len,
        }
    }
}

impl<S: AsyncWrite + Unpin> LimitIo<S> {
    /// Writes the inserted SETTINGS frame (building it from a pending limit when hyper is
    /// between frames); `Ready` once nothing of ours is left to write.
    fn poll_insert(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        loop {
            if self.insert_pos < self.insert.len() {
                let n = std::task::ready!(
                    Pin::new(&mut self.inner).poll_write(cx, &self.insert[self.insert_pos..])
                )?;
                if n == 0 {
                    return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
                }
                self.insert_pos += n;
                continue;
            }
            if self.mode != Mode::Frames
                || !self.write_cursor.at_boundary()
                || self.in_first_frame()
            {
                return Poll::Ready(Ok(()));
            }
            let Some(limit) = self.state.take_pending() else {
                return Poll::Ready(Ok(()));
            };
            self.insert.clear();
            self.insert_pos = 0;
            self.insert
                .extend_from_slice(&[0, 0, 6, SETTINGS, 0, 0, 0, 0, 0]);
            self.insert
                .extend_from_slice(&MAX_CONCURRENT_STREAMS.to_be_bytes());
            self.insert.extend_from_slice(&limit.to_be_bytes());
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for LimitIo<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        if this.mode != Mode::Passthrough {
            this.state.remember_waker(cx.waker());
            // A limit changed while hyper waits for the client: send it now, not with the
            // next response. Pending here means the socket is full; it wakes us.
            if let Poll::Ready(Ok(())) = this.poll_insert(cx) {
                let _ = Pin::new(&mut this.inner).poll_flush(cx);
            }
        }
        loop {
            if this.ready_pos < this.ready.len() {
                let n = buf.remaining().min(this.ready.len() - this.ready_pos);
                buf.put_slice(&this.ready[this.ready_pos..this.ready_pos + n]);
                this.ready_pos += n;
                if this.ready_pos == this.ready.len() {
                    this.ready.clear();
                    this.ready_pos = 0;
                }
                return Poll::Ready(Ok(()));
            }
            let mut chunk = [0u8; 8192];
            let mut chunk_buf = ReadBuf::new(&mut chunk);
            std::task::ready!(Pin::new(&mut this.inner).poll_read(cx, &mut chunk_buf))?;
            let filled = chunk_buf.filled().len();
            if filled == 0 {
                return Poll::Ready(Ok(()));
            }
            this.filter_read(&chunk[..filled]);
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for LimitIo<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        if this.mode == Mode::Preface(0) {
            // Hyper writes first only on a connection that is not HTTP/2 with a preface.
            this.mode = Mode::Passthrough;
        }
        if this.mode == Mode::Passthrough {
            return Pin::new(&mut this.inner).poll_write(cx, buf);
        }
        std::task::ready!(this.poll_insert(cx))?;
        let n = if this.in_first_frame() {
            let mut out = Vec::with_capacity(buf.len());
            this.scan_written(buf, Some(&mut out));
            std::task::ready!(Pin::new(&mut this.inner).poll_write(cx, &out))?
        } else {
            std::task::ready!(Pin::new(&mut this.inner).poll_write(cx, buf))?
        };
        this.scan_written(&buf[..n], None);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        if this.mode == Mode::Frames {
            std::task::ready!(this.poll_insert(cx))?;
        }
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> Arc<ConnState> {
        Arc::new(ConnState::new(Streams::default(), None))
    }

    #[test]
    fn the_first_settings_frame_advertises_the_pre_request_limit() {
        let mut io = LimitIo::new(Vec::<u8>::new(), state());
        io.mode = Mode::Frames;
        // SETTINGS: MAX_CONCURRENT_STREAMS=1000, INITIAL_WINDOW_SIZE=65535.
        let mut frame = vec![0, 0, 12, SETTINGS, 0, 0, 0, 0, 0];
        frame.extend_from_slice(&[0, 3, 0, 0, 0x03, 0xe8, 0, 4, 0, 0, 0xff, 0xff]);
        let mut out = Vec::new();
        io.scan_written(&frame, Some(&mut out));
        assert_eq!(
            &out[9..15],
            &[0, 3, 0, 0, 0, 1],
            "1 stream before the first request"
        );
        assert_eq!(&out[15..], &frame[15..], "other parameters untouched");
        io.scan_written(&frame, None);
        assert!(io.write_cursor.at_boundary() && !io.in_first_frame());
    }

    #[test]
    fn acks_of_inserted_settings_are_dropped() {
        let mut io = LimitIo::new(Vec::<u8>::new(), state());
        let ack = [0u8, 0, 0, SETTINGS, ACK, 0, 0, 0, 0];
        let ping = [0u8, 0, 8, 6, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8];
        let mut input = PREFACE.to_vec();
        input.extend_from_slice(&ack);
        input.extend_from_slice(&ping);
        input.extend_from_slice(&ack);
        // Fed in awkward pieces: headers split across reads.
        for piece in input.chunks(5) {
            io.filter_read(piece);
        }
        let mut expected = PREFACE.to_vec();
        expected.extend_from_slice(&ack);
        expected.extend_from_slice(&ping);
        assert_eq!(io.ready, expected);
    }

    #[test]
    fn http1_passes_through() {
        let mut io = LimitIo::new(Vec::<u8>::new(), state());
        io.filter_read(b"POST /wp/x HTTP/1.1\r\n");
        assert_eq!(io.ready, b"POST /wp/x HTTP/1.1\r\n");
        assert_eq!(io.mode, Mode::Passthrough);
    }

    #[test]
    fn apns_widens_after_the_first_success_only() {
        let counters = Counters::new();
        let state = state();
        let active = state.on_request(Kind::Apns, &counters);
        assert_eq!(
            state.take_pending(),
            None,
            "APNs starts at 1 like the connection"
        );
        state.on_answer(500);
        assert_eq!(state.take_pending(), None);
        state.on_answer(200);
        drop(active);
        assert_eq!(state.take_pending(), Some(1000));
        let web = Arc::new(ConnState::new(Streams::default(), None));
        drop(web.on_request(Kind::WebPush, &counters));
        assert_eq!(
            web.take_pending(),
            Some(100),
            "Web Push: 100 from its first request"
        );
    }
}
