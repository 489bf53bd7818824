//! `GET /v1/sites/{siteId}/realtime/channels`: who is connected to a site now, channel by
//! channel, over all gateways (from their presence snapshots of the last few seconds). The
//! console's realtime table; `GET /v1/sites/{siteId}/presence` answers one channel.

use std::collections::{BTreeMap, BTreeSet};

use axum::Json;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use pushservice_store::PresenceSnapshot;
use serde_json::{Value, json};

use crate::auth::require_site;
use crate::error::ApiResult;
use crate::routes::sites::site_id;
use crate::state::AppState;

/// Most channels answered, the busiest first; `otherChannels` counts the rest.
pub const MAX_CHANNELS: usize = 100;

/// `GET /v1/sites/{siteId}/realtime/channels`.
pub async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(site): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let site = require_site(&state, &headers, site_id(&site)?).await?;
    let snapshots = state.store.presence(&site.id.to_hex()).await?;
    Ok(Json(channels_view(&snapshots)))
}

/// Site totals and channels summed over gateways: connections add up, users are counted
/// once however many gateways they are connected to.
pub fn channels_view(snapshots: &[PresenceSnapshot]) -> Value {
    let connections: u64 = snapshots.iter().map(|s| s.connections).sum();
    let users: BTreeSet<&str> = snapshots
        .iter()
        .flat_map(|s| s.users.iter().map(|u| u.id.as_str()))
        .collect();
    let mut channels: BTreeMap<&str, (u64, BTreeSet<&str>)> = BTreeMap::new();
    for channel in snapshots.iter().flat_map(|s| s.channels.iter()) {
        let entry = channels.entry(channel.name.as_str()).or_default();
        entry.0 += channel.connections;
        entry.1.extend(channel.users.iter().map(String::as_str));
    }
    let mut rows: Vec<(&str, u64, usize)> = channels
        .into_iter()
        .map(|(name, (connections, users))| (name, connections, users.len()))
        .collect();
    // Busiest first; ties in name order.
    rows.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let other = rows.len().saturating_sub(MAX_CHANNELS);
    json!({
        "connections": connections,
        "users": users.len(),
        "gateways": snapshots.len(),
        "channels": rows.iter().take(MAX_CHANNELS).map(|(name, connections, users)| json!({
            "name": name,
            "connections": connections,
            "users": users,
        })).collect::<Vec<_>>(),
        "otherChannels": other,
    })
}
