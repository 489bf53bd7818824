//! `POST /v1/events`: what service workers report.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use pushservice_model::parse_object_id;
use pushservice_store::{Event, EventType};
use serde::Deserialize;
use serde_json::json;

use crate::body::JsonBody;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// `POST /v1/events` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EventBody {
    push_id: String,
    subscriber_id: String,
    #[serde(rename = "type")]
    kind: String,
}

/// `POST /v1/events` (public): 202 once queued; counted once per push, subscriber and type.
pub async fn record(State(state): State<AppState>, body: JsonBody) -> ApiResult<impl IntoResponse> {
    let body: EventBody = body.parse()?;
    let push_id = parse_object_id("push", &body.push_id)
        .map_err(|e| ApiError::invalid("pushId", e.to_string()))?;
    let subscriber_id = parse_object_id("subscriber", &body.subscriber_id)
        .map_err(|e| ApiError::invalid("subscriberId", e.to_string()))?;
    let kind = EventType::parse(&body.kind).ok_or_else(|| {
        ApiError::invalid(
            "type",
            format!("{:?} is not one of delivered, click, close", body.kind),
        )
    })?;
    let event = Event {
        push_id,
        subscriber_id,
        kind,
    };
    if state.events.push(event).is_err() {
        state.metrics.events_dropped.inc();
        let mut response = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            "events are arriving faster than they can be stored; retry in a second",
        )
        .into_response();
        response.headers_mut().insert(
            axum::http::header::RETRY_AFTER,
            axum::http::HeaderValue::from_static("1"),
        );
        return Ok(response);
    }
    state.metrics.events_received.inc();
    Ok((StatusCode::ACCEPTED, Json(json!({ "accepted": true }))).into_response())
}
