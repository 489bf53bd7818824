//! Presence: every few seconds each gateway writes who is connected to it, per site, to
//! MongoDB; `pushapi` sums the snapshots of all gateways that are still alive.

use std::sync::Arc;
use std::time::Duration;

use pushservice_model::DateTime;
use pushservice_store::{ChannelPresence, PresenceCount, PresenceSnapshot, Store};
use tokio_util::sync::CancellationToken;

use crate::hub::Hub;

/// Writes this gateway's presence every `interval` until `stop`, then removes it.
pub async fn run(
    store: Store,
    hub: Arc<Hub>,
    gateway: String,
    interval: Duration,
    stop: CancellationToken,
) {
    let mut ticks = tokio::time::interval(interval);
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = ticks.tick() => {}
        }
        let snapshots = snapshots(&hub, &gateway, interval);
        if let Err(e) = store.write_presence(&gateway, &snapshots).await {
            tracing::warn!(error = %e, "writing presence");
        }
    }
    if let Err(e) = store.write_presence(&gateway, &[]).await {
        tracing::warn!(error = %e, "removing presence at shutdown");
    }
}

/// This gateway's snapshots, one per site with connections.
pub fn snapshots(hub: &Hub, gateway: &str, interval: Duration) -> Vec<PresenceSnapshot> {
    let expires_at = DateTime::from_millis(
        DateTime::now().timestamp_millis()
            + i64::try_from(interval.as_millis() * 3).unwrap_or(15_000),
    );
    hub.presence()
        .into_iter()
        .map(|(site, presence)| PresenceSnapshot {
            id: format!("{gateway}:{site}"),
            gateway: gateway.to_owned(),
            site_id: site,
            expires_at,
            connections: presence.connections,
            users: presence
                .users
                .into_iter()
                .map(|(id, connections)| PresenceCount { id, connections })
                .collect(),
            channels: presence
                .channels
                .into_iter()
                .map(|(name, connections, users)| ChannelPresence {
                    name,
                    connections,
                    users,
                })
                .collect(),
        })
        .collect()
}
