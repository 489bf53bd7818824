//! Dead letters by reason, and their replay: what `pushctl dlq stats` and `pushctl dlq
//! replay` do, over HTTP, implemented once in [`pushservice_control::dlq`].
//!
//! The admin sees every dead letter (`/v1/dead-letters`); a site key sees its site's
//! (`/v1/sites/{siteId}/dead-letters`: those whose `x-site-id` header, or message, names the
//! site). Each call reads the dead-letter topic from its beginning to its end as it was when
//! the call began, in flat memory; a replay puts each dead letter back at most once, however
//! many consoles and `pushctl` runs ask (markers in `deadLetterReplays`).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use pushservice_control::dlq::{
    self, DeadLetterStats, Filter, ReasonMatch, ReplayCounts, ReplayOptions, Replayer,
};
use pushservice_model::parse_object_id;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::{require_admin, require_site};
use crate::body::{JsonBody, QueryParams};
use crate::error::{ApiError, ApiResult};
use crate::routes::sites::site_id;
use crate::state::AppState;

/// Most pushes listed by count (the rest are summed in `otherPushes`).
pub const MAX_PUSHES: usize = 20;

/// `GET .../dead-letters` query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DeadLetterQuery {
    push_id: Option<String>,
}

/// `POST .../dead-letters/replay` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ReplayRequest {
    /// Only dead letters with exactly this reason, as the listing names it.
    reason: Option<String>,
    /// Only this push's.
    push_id: Option<String>,
    /// Count, change nothing.
    #[serde(default)]
    dry_run: bool,
    /// Also those replayed before.
    #[serde(default)]
    again: bool,
}

/// `pushId` checked (400 naming it).
fn push_filter(push_id: Option<&str>) -> ApiResult<Option<String>> {
    push_id
        .map(|id| {
            parse_object_id("push", id)
                .map(|id| id.to_hex())
                .map_err(|e| ApiError::invalid("pushId", e.to_string()))
        })
        .transpose()
}

/// `GET /v1/dead-letters` (admin): every site's dead letters by reason and push.
pub async fn list_all(
    State(state): State<AppState>,
    headers: HeaderMap,
    QueryParams(query): QueryParams<DeadLetterQuery>,
) -> ApiResult<impl IntoResponse> {
    require_admin(&state, &headers).await?;
    let filter = Filter {
        push: push_filter(query.push_id.as_deref())?,
        ..Filter::default()
    };
    summary(&state, filter).await
}

/// `GET /v1/sites/{siteId}/dead-letters`: the site's dead letters by reason and push.
pub async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(site): Path<String>,
    QueryParams(query): QueryParams<DeadLetterQuery>,
) -> ApiResult<impl IntoResponse> {
    let site = require_site(&state, &headers, site_id(&site)?).await?;
    let filter = Filter {
        push: push_filter(query.push_id.as_deref())?,
        site: Some(site.id.to_hex()),
        reason: None,
    };
    summary(&state, filter).await
}

/// `POST /v1/dead-letters/replay` (admin).
pub async fn replay_all(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: JsonBody,
) -> ApiResult<impl IntoResponse> {
    require_admin(&state, &headers).await?;
    replay(&state, None, body.parse()?).await
}

/// `POST /v1/sites/{siteId}/dead-letters/replay`.
pub async fn replay_site(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(site): Path<String>,
    body: JsonBody,
) -> ApiResult<impl IntoResponse> {
    let site = require_site(&state, &headers, site_id(&site)?).await?;
    replay(&state, Some(site.id.to_hex()), body.parse()?).await
}

async fn summary(state: &AppState, filter: Filter) -> ApiResult<Json<Value>> {
    let topic = &state.topics.dead_letter.name;
    let stats = dlq::stats(state.trigger.kafka(), topic, &filter, Some(&state.store)).await?;
    Ok(Json(stats_view(topic, &filter, &stats)))
}

/// The answer of the listing routes.
pub fn stats_view(topic: &str, filter: &Filter, stats: &DeadLetterStats) -> Value {
    let time = |ms: Option<u64>| ms.map(dlq::rfc3339);
    let mut reasons: Vec<(&String, &u64)> = stats.by_reason.iter().collect();
    // Most first; ties in name order.
    reasons.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let mut pushes: Vec<(&String, &u64)> = stats.by_push.iter().collect();
    pushes.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let other: u64 = pushes.iter().skip(MAX_PUSHES).map(|(_, n)| **n).sum();
    json!({
        "topic": topic,
        "siteId": filter.site,
        "pushId": filter.push,
        "total": stats.total,
        "unreadable": stats.unreadable,
        "replayed": stats.replayed(),
        "reasons": reasons.iter().map(|(reason, count)| json!({
            "reason": reason,
            "count": count,
            "replayed": stats.replayed_by_reason.get(*reason).copied().unwrap_or(0),
        })).collect::<Vec<_>>(),
        "pushes": pushes.iter().take(MAX_PUSHES).map(|(push, count)| json!({
            "pushId": push,
            "count": count,
        })).collect::<Vec<_>>(),
        "otherPushes": other,
        "oldestFailedAt": time(stats.oldest_failed_at),
        "newestFailedAt": time(stats.newest_failed_at),
    })
}

async fn replay(
    state: &AppState,
    site: Option<String>,
    body: ReplayRequest,
) -> ApiResult<Json<Value>> {
    let reason = match body.reason {
        Some(reason) if reason.is_empty() => {
            return Err(ApiError::invalid(
                "reason",
                format!(
                    "must not be empty; dead letters without one are listed as {:?}",
                    dlq::NO_REASON
                ),
            ));
        }
        reason => reason,
    };
    let filter = Filter {
        push: push_filter(body.push_id.as_deref())?,
        site,
        reason: reason.map(ReasonMatch::Exact),
    };
    let replayer = Replayer::with_producer(
        &state.store,
        state.trigger.producer().clone(),
        state.trigger.kafka().clone(),
        state.topics.push.name.clone(),
        ReplayOptions {
            dry_run: body.dry_run,
            again: body.again,
        },
    );
    let counts = replayer
        .run(&filter, &state.topics.dead_letter.name, |id, why| {
            tracing::warn!(
                dead_letter = id,
                reason = why,
                "unreadable dead letter, not replayed"
            );
        })
        .await?;
    tracing::info!(
        site_id = filter.site.as_deref().unwrap_or("*"),
        push_id = filter.push.as_deref().unwrap_or("*"),
        replayed = counts.replayed,
        skipped = counts.skipped,
        dry_run = body.dry_run,
        "dead letters replayed"
    );
    Ok(Json(replay_view(&counts, body.dry_run)))
}

/// The answer of the replay routes.
pub fn replay_view(counts: &ReplayCounts, dry_run: bool) -> Value {
    json!({
        "dryRun": dry_run,
        "read": counts.read,
        "replayed": counts.replayed,
        "skipped": counts.skipped,
        "unreadable": counts.unreadable,
        "notMatching": counts.not_matching,
    })
}
