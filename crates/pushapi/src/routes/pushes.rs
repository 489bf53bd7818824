//! Pushes: create (and send at once), list, read, send, cancel, follow.

use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use pushservice_model::{
    Audience, Notification, NotificationPayload, ObjectId, Priority, Push, PushStatus,
    parse_object_id,
};
use pushservice_store::Transition;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::{check_site, require_caller, require_site};
use crate::body::{JsonBody, QueryParams};
use crate::error::{ApiError, ApiResult};
use crate::routes::sites::site_id;
use crate::state::AppState;
use crate::views;

/// Longest `timeToLive`: 28 days, the most FCM and the browsers' push services keep a message.
pub const MAX_TIME_TO_LIVE: i64 = 28 * 24 * 3600;
/// Most external ids in an audience.
const MAX_AUDIENCE_IDS: usize = 10_000;
/// Most tags in an audience.
const MAX_AUDIENCE_TAGS: usize = 100;
/// Options a notification may carry (the browser's `showNotification` options we pass on).
const KNOWN_OPTIONS: [&str; 12] = [
    "body",
    "icon",
    "image",
    "badge",
    "vibration",
    "vibrate",
    "silent",
    "renotify",
    "requireInteraction",
    "dir",
    "tag",
    "actions",
];

/// Fields of a notification action.
const KNOWN_ACTION_FIELDS: [&str; 4] = ["action", "title", "icon", "url"];

/// What a notification says, as `POST /v1/sites/{siteId}/pushes` and direct sends take it
/// (each body is its own struct: `deny_unknown_fields` does not combine with `flatten`).
#[derive(Debug)]
pub struct Content {
    /// Notification title.
    pub title: String,
    /// `showNotification` options.
    pub options: Option<Value>,
    /// Where a click leads.
    pub launch_url: Option<String>,
    /// Delivery priority.
    pub priority: Option<Priority>,
    /// Seconds push services keep it for offline devices.
    pub time_to_live: Option<i64>,
}

impl Content {
    /// A pending push of `site_id` with this content, checked.
    pub fn into_push(self, site_id: ObjectId) -> ApiResult<Push> {
        let title = self.title.trim().to_owned();
        if title.is_empty() {
            return Err(ApiError::invalid("title", "must not be empty"));
        }
        let options = match self.options {
            None | Some(Value::Null) => Notification::default(),
            Some(value) => notification(value)?,
        };
        if let Some(url) = &self.launch_url {
            check_http_url("launchUrl", url)?;
        }
        for (i, action) in options.actions.iter().enumerate() {
            if let Some(url) = &action.url {
                check_http_url(&format!("options.actions[{i}].url"), url)?;
            }
        }
        let mut push = Push::new(site_id, title, options);
        push.launch_url = self.launch_url;
        push.priority = self.priority.unwrap_or_default();
        if let Some(ttl) = self.time_to_live {
            if !(0..=MAX_TIME_TO_LIVE).contains(&ttl) {
                return Err(ApiError::invalid(
                    "timeToLive",
                    format!("must be 0 to {MAX_TIME_TO_LIVE} seconds (28 days)"),
                ));
            }
            push.time_to_live = ttl;
        }
        // What the senders encrypt must fit one Web Push record.
        let payload = NotificationPayload::of(&push).to_raw();
        if payload.get().len() > pushservice_webpush::MAX_PLAINTEXT {
            return Err(ApiError::unusable(
                "options",
                "payload_too_large",
                format!(
                    "the notification is {} bytes as JSON; Web Push carries at most {}: shorten \
                     the title, body or actions",
                    payload.get().len(),
                    pushservice_webpush::MAX_PLAINTEXT
                ),
            ));
        }
        Ok(push)
    }
}

/// `options` checked key by key (unknown options are refused, not silently dropped).
fn notification(mut value: Value) -> ApiResult<Notification> {
    let Value::Object(map) = &mut value else {
        return Err(ApiError::invalid("options", "must be an object"));
    };
    if let Some(unknown) = map.keys().find(|k| !KNOWN_OPTIONS.contains(&k.as_str())) {
        return Err(ApiError::invalid(
            format!("options.{unknown}"),
            format!("unknown option; known: {}", KNOWN_OPTIONS.join(", ")),
        ));
    }
    if let Some(Value::Array(actions)) = map.get("actions") {
        for (i, action) in actions.iter().enumerate() {
            let Value::Object(action) = action else {
                return Err(ApiError::invalid(
                    format!("options.actions[{i}]"),
                    "must be an object",
                ));
            };
            if let Some(unknown) = action
                .keys()
                .find(|k| !KNOWN_ACTION_FIELDS.contains(&k.as_str()))
            {
                return Err(ApiError::invalid(
                    format!("options.actions[{i}].{unknown}"),
                    format!("unknown field; known: {}", KNOWN_ACTION_FIELDS.join(", ")),
                ));
            }
        }
    }
    if let Some(dir) = map.get("dir")
        && !matches!(dir.as_str(), Some("auto" | "ltr" | "rtl"))
    {
        return Err(ApiError::invalid("options.dir", "must be auto, ltr or rtl"));
    }
    // The browser calls it `vibrate`; the original schema stores `vibration`.
    if let Some(vibrate) = map.remove("vibrate") {
        map.insert("vibration".to_owned(), vibrate);
    }
    serde_path_to_error::deserialize::<_, Notification>(value).map_err(|e| {
        let field = format!("options.{}", e.path());
        ApiError::invalid(field, e.into_inner().to_string())
    })
}

fn check_http_url(field: &str, text: &str) -> ApiResult<()> {
    match url::Url::parse(text) {
        Ok(url) if matches!(url.scheme(), "https" | "http") => Ok(()),
        _ => Err(ApiError::invalid(
            field,
            format!("{text:?} is not an http(s) URL"),
        )),
    }
}

fn check_audience(audience: &Audience) -> ApiResult<()> {
    if audience.external_ids.len() > MAX_AUDIENCE_IDS {
        return Err(ApiError::invalid(
            "audience.externalIds",
            format!("at most {MAX_AUDIENCE_IDS}; use tags for larger groups"),
        ));
    }
    if audience.tags.len() > MAX_AUDIENCE_TAGS {
        return Err(ApiError::invalid(
            "audience.tags",
            format!("at most {MAX_AUDIENCE_TAGS}"),
        ));
    }
    for (field, list) in [
        ("audience.externalIds", &audience.external_ids),
        ("audience.tags", &audience.tags),
    ] {
        if let Some(i) = list.iter().position(|v| v.is_empty()) {
            return Err(ApiError::invalid(
                format!("{field}[{i}]"),
                "must not be empty",
            ));
        }
    }
    Ok(())
}

/// `audience` of a new push (unknown fields refused: a typo must not send to everyone).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AudienceBody {
    #[serde(default)]
    external_ids: Vec<String>,
    #[serde(default)]
    tags: Vec<String>,
}

/// `POST /v1/sites/{siteId}/pushes` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NewPush {
    title: String,
    #[serde(default)]
    options: Option<Value>,
    launch_url: Option<String>,
    priority: Option<Priority>,
    time_to_live: Option<i64>,
    audience: Option<AudienceBody>,
    #[serde(default)]
    send: bool,
}

/// `POST /v1/sites/{siteId}/pushes`: store a push, and send it at once with `send: true`.
pub async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(site): Path<String>,
    body: JsonBody,
) -> ApiResult<impl IntoResponse> {
    let site = require_site(&state, &headers, site_id(&site)?).await?;
    let body: NewPush = body.parse()?;
    let content = Content {
        title: body.title,
        options: body.options,
        launch_url: body.launch_url,
        priority: body.priority,
        time_to_live: body.time_to_live,
    };
    let mut push = content.into_push(site.id)?;
    let audience = body.audience.map(|a| Audience {
        external_ids: a.external_ids,
        tags: a.tags,
    });
    if let Some(audience) = audience.filter(|a| !a.is_everyone()) {
        check_audience(&audience)?;
        push.audience = Some(audience);
    }
    state.store.insert_push(&push).await?;
    if !body.send {
        return Ok((StatusCode::CREATED, Json(views::push(&push, None))));
    }
    match state
        .trigger
        .send_loaded(&state.store, push.clone(), false)
        .await
    {
        Ok(published) => Ok((
            StatusCode::CREATED,
            Json(views::push(&published.push, None)),
        )),
        Err(e) => {
            let mut error = ApiError::from(e);
            error.message = format!(
                "push {} was created but not sent: {}; send it with POST /v1/pushes/{}/send",
                push.id, error.message, push.id
            );
            Err(error)
        }
    }
}

/// `GET /v1/sites/{siteId}/pushes` query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    status: Option<String>,
    limit: Option<u32>,
    after: Option<String>,
}

/// `GET /v1/sites/{siteId}/pushes?status=&limit=&after=`: newest first; `next` is the
/// `after` of the following page (`null` on the last page).
pub async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(site): Path<String>,
    QueryParams(query): QueryParams<ListQuery>,
) -> ApiResult<impl IntoResponse> {
    let site = require_site(&state, &headers, site_id(&site)?).await?;
    let status = query
        .status
        .as_deref()
        .map(|s| {
            serde_json::from_value::<PushStatus>(Value::String(s.to_owned())).map_err(|_| {
                ApiError::invalid(
                    "status",
                    format!("{s:?} is not one of pending, processing, done, failed, canceled"),
                )
            })
        })
        .transpose()?;
    let limit = query.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::invalid("limit", "must be 1 to 100"));
    }
    let after = query
        .after
        .as_deref()
        .map(|a| parse_object_id("push", a).map_err(|e| ApiError::invalid("after", e.to_string())))
        .transpose()?;
    // One more than asked tells whether there is a next page.
    let mut pushes = state
        .store
        .list_pushes(site.id, status, limit + 1, after)
        .await?;
    let more = pushes.len() > limit as usize;
    pushes.truncate(limit as usize);
    let next = more.then(|| pushes.last().map(|p| p.id.to_hex())).flatten();
    Ok(Json(json!({
        "pushes": pushes.iter().map(|p| views::push(p, None)).collect::<Vec<_>>(),
        "next": next,
    })))
}

/// Push `id` for a caller allowed on its site: 401, 403 or 404.
async fn authorized_push(state: &AppState, headers: &HeaderMap, id: &str) -> ApiResult<Push> {
    let caller = require_caller(state, headers).await?;
    let id = parse_object_id("push", id).map_err(|e| ApiError::invalid("pushId", e.to_string()))?;
    let push = state
        .store
        .push(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("push {id} does not exist")))?;
    check_site(&caller, push.site_id)?;
    Ok(push)
}

/// The push with live totals: the senders' sums and the service workers' events.
async fn live(state: &AppState, id: ObjectId) -> ApiResult<Value> {
    let push = state
        .store
        .push(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("push {id} does not exist")))?;
    live_view(state, push).await
}

/// [`live`] for a push already loaded.
async fn live_view(state: &AppState, mut push: Push) -> ApiResult<Value> {
    state.store.add_live_totals(&mut push).await?;
    let events = state.store.event_counts(push.id).await?;
    let mut view = views::push(&push, Some(events));
    view["final"] = Value::Bool(views::is_final(&push));
    Ok(view)
}

/// `GET /v1/pushes/{pushId}`: status and live totals.
pub async fn get(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(push): Path<String>,
) -> ApiResult<impl IntoResponse> {
    // Loaded once, to authorize and to answer.
    let push = authorized_push(&state, &headers, &push).await?;
    Ok(Json(live_view(&state, push).await?))
}

/// `POST /v1/pushes/{pushId}/send` query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendQuery {
    #[serde(default)]
    force: bool,
}

/// `POST /v1/pushes/{pushId}/send`: as `pushctl send` (409 unless pending, or `?force=true`).
pub async fn send(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(push): Path<String>,
    QueryParams(query): QueryParams<SendQuery>,
) -> ApiResult<impl IntoResponse> {
    let push = authorized_push(&state, &headers, &push).await?;
    let published = state
        .trigger
        .send_loaded(&state.store, push, query.force)
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(views::push(&published.push, None)),
    ))
}

/// `POST /v1/pushes/{pushId}/cancel`: the parser stops fanning out within a second or two,
/// senders drop what is left (counted as canceled).
pub async fn cancel(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(push): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let push = authorized_push(&state, &headers, &push).await?;
    match state.store.cancel_push(push.id).await? {
        Transition::Done(canceled) => {
            tracing::info!(push_id = %canceled.id, "push canceled");
            // The push as the cancel left it (a re-read could still see `processing` on a
            // server that applies updates as read-modify-write), with live totals.
            let mut view = live(&state, canceled.id).await?;
            view["status"] = json!(canceled.status.as_str());
            view["canceledAt"] = views::push(&canceled, None)["canceledAt"].clone();
            view["final"] = json!(false);
            Ok(Json(view))
        }
        Transition::Conflict(None) => Err(ApiError::not_found(format!(
            "push {} does not exist",
            push.id
        ))),
        Transition::Conflict(Some(now)) => Err(ApiError::conflict(format!(
            "push {} is {now}; only a pending or processing push can be canceled",
            push.id
        ))),
    }
}

/// `GET /v1/pushes/{pushId}/progress`: Server-Sent Events, a `progress` event with the live
/// push once a second until it is final, then an `end` event. When the API stops, the stream
/// ends without one.
pub async fn progress(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(push): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let push = authorized_push(&state, &headers, &push).await?;
    let stream = futures::stream::unfold(
        (state, push.id, false, true),
        |(state, id, ended, first)| async move {
            if ended {
                return None;
            }
            if state.stopping.is_cancelled() {
                return None;
            }
            if !first {
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    // The API is stopping: end the stream; EventSource reconnects by itself,
                    // to an instance that is still up.
                    () = state.stopping.cancelled() => return None,
                }
            }
            let event = match live(&state, id).await {
                Ok(view) => {
                    let is_final = view["final"].as_bool().unwrap_or(false);
                    let event = SseEvent::default().event("progress").data(view.to_string());
                    if is_final {
                        // One more event says so explicitly; the stream then ends.
                        return Some((
                            futures::stream::iter(vec![
                                Ok::<_, Infallible>(event),
                                Ok(SseEvent::default().event("end").data(view.to_string())),
                            ]),
                            (state, id, true, false),
                        ));
                    }
                    event
                }
                Err(e) => {
                    // Said once; the stream then ends (the client may reconnect).
                    let event = SseEvent::default().event("error").data(
                        json!({ "error": { "code": e.code, "message": e.message } }).to_string(),
                    );
                    return Some((
                        futures::stream::iter(vec![Ok(event)]),
                        (state, id, true, false),
                    ));
                }
            };
            Some((
                futures::stream::iter(vec![Ok(event)]),
                (state, id, false, false),
            ))
        },
    );
    use futures::StreamExt as _;
    Ok(Sse::new(stream.flatten()).keep_alive(KeepAlive::default()))
}
