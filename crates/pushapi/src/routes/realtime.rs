//! Realtime: connection tokens, the site's realtime secret, and publishing to channels (the
//! gateways deliver; see `docs/realtime.md`).

use std::collections::BTreeSet;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use pushservice_control::realtime as control;
use pushservice_realtime::validate_channel;
use serde::Deserialize;
use serde_json::json;
use serde_json::value::RawValue;

use crate::auth::require_site;
use crate::body::{JsonBody, QueryParams};
use crate::error::{ApiError, ApiResult};
use crate::routes::sites::site_id;
use crate::state::AppState;

/// Longest token validity the API mints.
const MAX_TOKEN_TTL_SECS: u64 = 7 * 24 * 3600;

/// `POST /v1/sites/{siteId}/realtime/tokens` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TokenRequest {
    user: String,
    #[serde(default)]
    channels: Vec<String>,
    #[serde(default)]
    ttl_seconds: Option<u64>,
}

/// `POST /v1/sites/{siteId}/realtime/tokens`: a connection token for one of the site's users.
pub async fn token(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(site): Path<String>,
    body: JsonBody,
) -> ApiResult<impl IntoResponse> {
    let site = require_site(&state, &headers, site_id(&site)?).await?;
    let body: TokenRequest = body.parse()?;
    let ttl = body.ttl_seconds.unwrap_or(3_600);
    if !(1..=MAX_TOKEN_TTL_SECS).contains(&ttl) {
        return Err(ApiError::invalid(
            "ttlSeconds",
            format!("must be between 1 and {MAX_TOKEN_TTL_SECS} (a week)"),
        ));
    }
    let (token, exp) = control::token(
        &state.store,
        site.id,
        &body.user,
        body.channels,
        Duration::from_secs(ttl),
    )
    .await?;
    let expires_at = pushservice_model::DateTime::from_millis(
        i64::try_from(exp).unwrap_or(i64::MAX / 1000) * 1000,
    );
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "token": token,
            "expiresAt": expires_at.try_to_rfc3339_string().unwrap_or_default(),
        })),
    ))
}

/// `POST /v1/sites/{siteId}/realtime/secret`: a new realtime secret (the previous one stays
/// valid until the next rotation), shown once.
pub async fn rotate_secret(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(site): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let site = require_site(&state, &headers, site_id(&site)?).await?;
    let secret = control::rotate_secret(&state.store, site.id).await?;
    tracing::info!(site_id = %site.id, "realtime secret rotated");
    Ok((StatusCode::CREATED, Json(json!({ "secret": secret }))))
}

/// `POST /v1/sites/{siteId}/channels/{channel}/messages` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PublishRequest {
    data: Box<RawValue>,
    #[serde(default)]
    ack: bool,
    #[serde(default)]
    fallback: Option<FallbackBody>,
}

/// The offline fallback of a publish to `user:<id>`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FallbackBody {
    push: FallbackPush,
    #[serde(default)]
    ack_timeout_ms: Option<u64>,
}

/// The notification of a fallback (the push fields of `POST /v1/sites/{siteId}/pushes`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FallbackPush {
    title: String,
    #[serde(default)]
    options: Option<serde_json::Value>,
    launch_url: Option<String>,
    priority: Option<pushservice_model::Priority>,
    time_to_live: Option<i64>,
}

/// Longest wait for an ack before a fallback push.
const MAX_ACK_TIMEOUT_MS: u64 = 24 * 3600 * 1000;

/// `POST /v1/sites/{siteId}/channels/{channel}/messages`: publish to a channel.
pub async fn publish(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((site, channel)): Path<(String, String)>,
    body: JsonBody,
) -> ApiResult<impl IntoResponse> {
    let site = require_site(&state, &headers, site_id(&site)?).await?;
    validate_channel(&channel).map_err(|e| ApiError::invalid("channel", e.to_string()))?;
    let body: PublishRequest = body.parse()?;
    if body.data.get().len() > state.realtime_max_bytes {
        return Err(ApiError::invalid(
            "data",
            format!(
                "is {} bytes of JSON; at most {} (REALTIME_MAX_MESSAGE_BYTES)",
                body.data.get().len(),
                state.realtime_max_bytes
            ),
        ));
    }
    let fallback = match body.fallback {
        None => None,
        Some(fallback) => {
            let Some(user) = channel.strip_prefix(pushservice_realtime::channel::USER_PREFIX)
            else {
                return Err(ApiError::invalid(
                    "fallback",
                    "a fallback push is only for user:<id> channels",
                ));
            };
            let wait = fallback
                .ack_timeout_ms
                .unwrap_or(pushservice_realtime::record::DEFAULT_ACK_TIMEOUT_MS);
            if !(1..=MAX_ACK_TIMEOUT_MS).contains(&wait) {
                return Err(ApiError::invalid(
                    "fallback.ackTimeoutMs",
                    format!("must be 1 to {MAX_ACK_TIMEOUT_MS} (a day)"),
                ));
            }
            let content = crate::routes::pushes::Content {
                title: fallback.push.title,
                options: fallback.push.options,
                launch_url: fallback.push.launch_url,
                priority: fallback.push.priority,
                time_to_live: fallback.push.time_to_live,
            };
            let mut push = content.into_push(site.id).map_err(|mut e| {
                if let Some(field) = &e.field {
                    e.field = Some(format!("fallback.push.{field}"));
                }
                e
            })?;
            push.audience = Some(pushservice_model::Audience {
                external_ids: vec![user.to_owned()],
                tags: Vec::new(),
            });
            // Stored pending now; the gateways send it only if nobody acks in time.
            state.store.insert_push(&push).await?;
            Some((push.id, wait))
        }
    };
    let published = state
        .realtime
        .publish(
            site.id,
            &channel,
            body.data,
            body.ack,
            fallback.map(|(push_id, wait)| pushservice_realtime::Fallback {
                push_id: push_id.to_hex(),
                ack_timeout_ms: Some(wait),
            }),
        )
        .await?;
    let mut answer = json!({
        "id": published.id,
        "channel": channel,
        "offset": published.offset,
    });
    if let Some((push_id, _)) = fallback {
        answer["fallbackPushId"] = json!(push_id.to_hex());
    }
    Ok((StatusCode::ACCEPTED, Json(answer)))
}

/// `GET /v1/sites/{siteId}/presence` query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PresenceQuery {
    #[serde(default)]
    channel: Option<String>,
}

/// `GET /v1/sites/{siteId}/presence`: who is connected to the site now, over all gateways
/// (from their snapshots of the last few seconds); with `channel`, also that channel's.
pub async fn presence(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(site): Path<String>,
    QueryParams(query): QueryParams<PresenceQuery>,
) -> ApiResult<impl IntoResponse> {
    let site = require_site(&state, &headers, site_id(&site)?).await?;
    if let Some(channel) = &query.channel {
        validate_channel(channel).map_err(|e| ApiError::invalid("channel", e.to_string()))?;
    }
    let snapshots = state.store.presence(&site.id.to_hex()).await?;
    let connections: u64 = snapshots.iter().map(|s| s.connections).sum();
    let users: BTreeSet<&str> = snapshots
        .iter()
        .flat_map(|s| s.users.iter().map(|u| u.id.as_str()))
        .collect();
    let mut answer = json!({
        "connections": connections,
        "users": users.len(),
        "gateways": snapshots.len(),
    });
    if let Some(channel) = &query.channel {
        let in_channel = snapshots
            .iter()
            .flat_map(|s| s.channels.iter().filter(|c| &c.name == channel));
        let mut channel_connections = 0;
        let mut channel_users: BTreeSet<&str> = BTreeSet::new();
        for c in in_channel {
            channel_connections += c.connections;
            channel_users.extend(c.users.iter().map(String::as_str));
        }
        answer["channel"] = json!({
            "name": channel,
            "connections": channel_connections,
            "users": channel_users.len(),
        });
    }
    Ok(Json(answer))
}

/// `GET /v1/sites/{siteId}/users/{externalId}/presence`: whether a user is connected, and
/// how many connections it has over all gateways.
pub async fn user_presence(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((site, user)): Path<(String, String)>,
) -> ApiResult<impl IntoResponse> {
    let site = require_site(&state, &headers, site_id(&site)?).await?;
    pushservice_realtime::channel::validate_user(&user)
        .map_err(|e| ApiError::invalid("externalId", e.to_string()))?;
    let snapshots = state.store.presence(&site.id.to_hex()).await?;
    let mut connections = 0;
    let mut gateways = 0;
    for snapshot in &snapshots {
        if let Some(found) = snapshot.users.iter().find(|u| u.id == user) {
            connections += found.connections;
            gateways += 1;
        }
    }
    Ok(Json(json!({
        "user": user,
        "online": connections > 0,
        "connections": connections,
        "gateways": gateways,
    })))
}

/// `GET /v1/sites/{siteId}/realtime/messages/{messageId}`: a message's delivery figures, over
/// all gateways (for messages published with `ack`).
pub async fn message_figures(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((site, message)): Path<(String, String)>,
) -> ApiResult<impl IntoResponse> {
    let site = require_site(&state, &headers, site_id(&site)?).await?;
    if pushservice_realtime::record::parse_message_id(&message).is_none() {
        return Err(ApiError::invalid(
            "messageId",
            "a message id is <partition>-<offset>, as publishing answered it",
        ));
    }
    let figures = state.store.ack_figures(&site.id.to_hex(), &message).await?;
    if figures.is_empty() {
        return Err(ApiError::not_found(format!(
            "no figures for message {message}: it was not published with ack, is older than \
             ten minutes on every gateway, or no gateway has written figures yet"
        )));
    }
    Ok(Json(json!({
        "id": message,
        "written": figures.iter().map(|f| f.written).sum::<u64>(),
        "acked": figures.iter().map(|f| f.acked).sum::<u64>(),
        "gateways": figures.len(),
    })))
}

/// `GET /v1/sites/{siteId}/realtime/stats` query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatsQuery {
    #[serde(default)]
    period: Option<String>,
}

/// `GET /v1/sites/{siteId}/realtime/stats`: messages, deliveries and acks by minute (the last
/// hour), hour (the last day) or day (the last 30 days), with the ack rate.
pub async fn stats(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(site): Path<String>,
    QueryParams(query): QueryParams<StatsQuery>,
) -> ApiResult<impl IntoResponse> {
    let site = require_site(&state, &headers, site_id(&site)?).await?;
    let period = query.period.as_deref().unwrap_or("minute");
    let span_ms: i64 = match period {
        "minute" => 3_600_000,
        "hour" => 86_400_000,
        "day" => 30 * 86_400_000,
        _ => {
            return Err(ApiError::invalid("period", "is minute, hour or day"));
        }
    };
    let since = pushservice_model::DateTime::from_millis(
        pushservice_model::DateTime::now().timestamp_millis() - span_ms,
    );
    let figures = state
        .store
        .period_figures(&site.id.to_hex(), period, since)
        .await?;
    // Every gateway reads every message: messages are the largest count, deliveries and acks
    // the sum.
    let mut buckets: std::collections::BTreeMap<i64, (u64, u64, u64)> = Default::default();
    for f in figures {
        let bucket = buckets.entry(f.start.timestamp_millis()).or_default();
        bucket.0 = bucket.0.max(f.messages);
        bucket.1 += f.written;
        bucket.2 += f.acks;
    }
    let buckets: Vec<serde_json::Value> = buckets
        .into_iter()
        .map(|(start, (messages, written, acks))| {
            json!({
                "start": pushservice_model::DateTime::from_millis(start)
                    .try_to_rfc3339_string()
                    .unwrap_or_default(),
                "messages": messages,
                "written": written,
                "acks": acks,
                "ackRate": if written > 0 { acks as f64 / written as f64 } else { 0.0 },
            })
        })
        .collect();
    Ok(Json(json!({ "period": period, "buckets": buckets })))
}
