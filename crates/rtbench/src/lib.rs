//! `rtbench`: the realtime gateway's load tool.
//!
//! It plays thousands of browser tabs at once against a `gateway` (docs/realtime.md): N
//! connections, a mix of Server-Sent Events and WebSocket, each subscribed to one channel;
//! then it publishes M messages to every channel and measures how long each took to arrive,
//! how many arrived per second, and what they cost the gateway in CPU and memory.
//!
//! # Layout
//!
//! - [`config`] — flags, and the validated plan of a run.
//! - [`token`] — HS256 connection tokens minted from the site's realtime secret; [`site`] —
//!   a throwaway site with a realtime secret (`--create-site`).
//! - [`net`] — sockets bound to 127.0.0.x source addresses, and the open-file limit.
//! - [`connection`] — one simulated client (which transport, gateway, channel) and the
//!   bookkeeping shared by both transports; [`sse`] and [`ws`] speak each protocol.
//! - [`scan`] — reads the few fields needed from each frame without a JSON parse.
//! - [`stats`] and [`histogram`] — counters and the lock-free latency histogram every
//!   connection task writes to.
//! - [`publish`] — messages to the realtime topic or through pushapi, paced and pipelined.
//! - [`run`] — the phases and measurements; [`report`] — the table and the JSON.
//!
//! # Why these crates
//!
//! The client has to be cheaper than the server it measures, on the same 2 cores: one tokio
//! task per connection, hyper's HTTP/1.1 client for SSE (it de-chunks the body; nothing else
//! is asked of it), `tokio-tungstenite` for WebSocket with its read buffer cut from 128 KiB
//! to 4 KiB, `memchr` to find fields in frames instead of parsing them, `jsonwebtoken` (on
//! aws-lc-rs, already in the workspace) for tokens, and `rlimit` to raise the open-file limit
//! without `unsafe`. The `/proc` readers are pushbench's.

pub mod config;
pub mod connection;
pub mod histogram;
pub mod net;
pub mod publish;
pub mod report;
pub mod run;
pub mod scan;
pub mod site;
pub mod sse;
pub mod stats;
pub mod token;
pub mod ws;

pub use config::{RtbenchArgs, Settings};
pub use report::Report;
pub use run::run;
