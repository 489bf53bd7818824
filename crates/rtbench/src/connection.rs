//! One simulated client: which transport, gateway, source address and channel it uses, and
//! the bookkeeping every transport shares (ready, failed, dropped).
//!
//! Each connection is one tokio task. It holds a permit of the connect semaphore until it is
//! subscribed (or has failed), so only `--connect-concurrency` handshakes are in flight at
//! once, then keeps reading until the server ends the stream or the run ends.

use std::net::Ipv4Addr;
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::{Gateway, Settings};
use crate::stats::Shared;
use crate::token::Minter;
use crate::{sse, ws};

/// The transport of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// Server-Sent Events.
    Sse,
    /// WebSocket.
    Ws,
}

/// Everything one connection needs to know.
#[derive(Debug, Clone)]
pub struct Spec {
    /// Its number, 0-based.
    pub index: usize,
    /// SSE or WebSocket.
    pub transport: Transport,
    /// The gateway it connects to.
    pub gateway: Gateway,
    /// The local address it binds.
    pub source: Ipv4Addr,
    /// Its user (`sub`): one per connection, so the per-user session cap never applies.
    pub user: String,
    /// The channel it joins.
    pub channel: String,
}

/// Whether connection `i` of a run uses WebSocket, for `ws_percent`: spread evenly (like a
/// line drawn on a pixel grid), so any prefix of the connections has about the right mix.
pub fn is_websocket(i: usize, ws_percent: u8) -> bool {
    let p = usize::from(ws_percent);
    (i + 1) * p / 100 > i * p / 100
}

/// The plan of connection `i` of a run.
pub fn spec(settings: &Settings, run_id: &str, channels: &[String], i: usize) -> Spec {
    Spec {
        index: i,
        transport: if is_websocket(i, settings.ws_percent) {
            Transport::Ws
        } else {
            Transport::Sse
        },
        gateway: settings.gateways[i % settings.gateways.len()].clone(),
        source: settings.sources[i % settings.sources.len()],
        user: format!("rtbench-{run_id}-{i}"),
        channel: channels[i / settings.channel_size].clone(),
    }
}

/// How a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// Before it was subscribed.
    Failed(String),
    /// After it was subscribed.
    Dropped(String),
}

/// A connection's progress: its semaphore permit until it is ready, and the shared counters.
pub struct Progress<'a> {
    /// The run's counters.
    pub shared: &'a Shared,
    permit: Option<OwnedSemaphorePermit>,
}

impl Progress<'_> {
    /// The connection is subscribed: count it and let the next handshake start.
    pub fn ready(&mut self) {
        if self.permit.take().is_some() {
            self.shared.connection_ready();
        }
    }

    /// Whether [`ready`](Self::ready) was called.
    pub fn is_ready(&self) -> bool {
        self.permit.is_none()
    }

    /// The stream ended for `how`, after the server said `farewell` (a reconnect or error
    /// frame), if it did.
    pub fn ended(&self, how: String, farewell: Option<String>) -> Ended {
        let reason = farewell.unwrap_or(how);
        if self.is_ready() {
            Ended::Dropped(reason)
        } else {
            Ended::Failed(reason)
        }
    }
}

/// Runs connection `spec` to its end, reporting to `shared`.
pub async fn run(spec: Spec, minter: Arc<Minter>, shared: Arc<Shared>, connecting: Arc<Semaphore>) {
    let Ok(permit) = connecting.acquire_owned().await else {
        return; // the semaphore is closed: the run is over
    };
    let mut progress = Progress {
        shared: &shared,
        permit: Some(permit),
    };
    let token = minter.mint(&spec.user, std::slice::from_ref(&spec.channel));
    let ended = match spec.transport {
        Transport::Sse => sse::run(&spec, &token, &mut progress).await,
        Transport::Ws => ws::run(&spec, &token, &mut progress).await,
    };
    let label = match spec.transport {
        Transport::Sse => "sse",
        Transport::Ws => "ws",
    };
    match ended {
        Ended::Failed(reason) => shared.connection_failed(format!("{label} {reason}")),
        Ended::Dropped(reason) => shared.connection_dropped(format!("{label} {reason}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn websocket_share_is_spread_evenly() {
        for percent in [0u8, 1, 33, 50, 99, 100] {
            let ws = (0..1000).filter(|&i| is_websocket(i, percent)).count();
            assert_eq!(ws, usize::from(percent) * 10, "{percent} %");
            let first_hundred = (0..100).filter(|&i| is_websocket(i, percent)).count();
            assert_eq!(
                first_hundred,
                usize::from(percent),
                "{percent} % of the first 100"
            );
        }
        assert!(is_websocket(1, 50) && !is_websocket(0, 50) && !is_websocket(2, 50));
    }
}
