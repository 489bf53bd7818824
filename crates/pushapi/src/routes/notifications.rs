//! Direct sends (Gaurun and gorush style): one payload to up to 500 explicit targets, without
//! a stored audience.
//!
//! The push is stored like any other, so it is tracked, counted, followed and canceled the
//! same way; its delivery messages go straight onto the push topic from here (no parser), and
//! it is `done` once the broker has them all. Targets that are not stored subscribers (raw
//! APNs/FCM tokens, Web Push subscriptions) get a fresh subscriber id that names no document:
//! an answer saying such a target is gone unsubscribes nothing.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use pushservice_kafka::rdkafka::producer::FutureRecord;
use pushservice_model::subscriber::SubscriptionKeys;
use pushservice_model::{
    DELIVERY_VERSION, DeliveryEnvelope, NotificationPayload, ObjectId, Platform, PushStatus,
    PushSubscription, Subscriber, TargetRef, Urgency, parse_object_id,
};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::require_site;
use crate::body::JsonBody;
use crate::error::{ApiError, ApiResult};
use crate::routes::pushes::Content;
use crate::routes::sites::site_id;
use crate::routes::subscribers::{check_auth, check_endpoint, check_p256dh, check_token};
use crate::state::AppState;
use crate::views;

/// Most targets of one direct send.
pub const MAX_TARGETS: usize = 500;

/// `POST /v1/sites/{siteId}/notifications` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DirectSend {
    title: String,
    #[serde(default)]
    options: Option<Value>,
    launch_url: Option<String>,
    priority: Option<pushservice_model::Priority>,
    time_to_live: Option<i64>,
    targets: Vec<DirectTarget>,
}

/// One target: exactly one of a stored subscriber, a user (all its devices), a raw app
/// token, or a raw browser subscription.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DirectTarget {
    subscriber_id: Option<String>,
    external_id: Option<String>,
    platform: Option<String>,
    token: Option<String>,
    subscription: Option<RawSubscription>,
}

/// A browser subscription given in full.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawSubscription {
    endpoint: String,
    #[serde(default)]
    expiration_time: Option<f64>,
    keys: RawKeys,
}

/// `keys` of a raw subscription.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKeys {
    p256dh: String,
    auth: String,
}

/// Where one delivery goes, owned.
enum Destination {
    Web(PushSubscription),
    Device(Platform, String),
}

/// `POST /v1/sites/{siteId}/notifications`: 202 once every delivery message is on the push
/// topic; `skipped` lists targets that could not be reached (unknown or unsubscribed).
pub async fn send(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(site): Path<String>,
    body: JsonBody,
) -> ApiResult<impl IntoResponse> {
    let site = require_site(&state, &headers, site_id(&site)?).await?;
    let body: DirectSend = body.parse()?;
    if body.targets.is_empty() || body.targets.len() > MAX_TARGETS {
        return Err(ApiError::invalid(
            "targets",
            format!("give 1 to {MAX_TARGETS} targets"),
        ));
    }
    let mut push = Content {
        title: body.title,
        options: body.options,
        launch_url: body.launch_url,
        priority: body.priority,
        time_to_live: body.time_to_live,
    }
    .into_push(site.id)?;

    // Check every target before anything is written.
    let mut resolved: Vec<(ObjectId, Destination)> = Vec::new();
    let mut skipped: Vec<Value> = Vec::new();
    for (i, target) in body.targets.iter().enumerate() {
        let field = |name: &str| format!("targets[{i}].{name}");
        let given = [
            target.subscriber_id.is_some(),
            target.external_id.is_some(),
            target.token.is_some(),
            target.subscription.is_some(),
        ];
        if given.iter().filter(|g| **g).count() != 1 {
            return Err(ApiError::invalid(
                format!("targets[{i}]"),
                "give exactly one of subscriberId, externalId, token (with platform) or subscription",
            ));
        }
        if let Some(id) = &target.subscriber_id {
            let id = parse_object_id("subscriber", id)
                .map_err(|e| ApiError::invalid(field("subscriberId"), e.to_string()))?;
            match state.store.subscriber(id).await? {
                Some(s) if s.site_id == site.id && s.subscribed => match destination_of(&s) {
                    Some(d) => resolved.push((s.id, d)),
                    None => skipped
                        .push(json!({ "index": i, "reason": "its subscription cannot be used" })),
                },
                Some(s) if s.site_id == site.id => {
                    skipped.push(json!({ "index": i, "reason": "unsubscribed" }));
                }
                _ => {
                    skipped.push(json!({ "index": i, "reason": "no such subscriber on this site" }))
                }
            }
        } else if let Some(user) = &target.external_id {
            let devices = state
                .store
                .subscribers_of_users(site.id, std::slice::from_ref(user), 100)
                .await?;
            let before = resolved.len();
            for s in &devices {
                if let Some(d) = destination_of(s) {
                    resolved.push((s.id, d));
                }
            }
            if resolved.len() == before {
                skipped.push(
                    json!({ "index": i, "reason": "no subscribed device of this externalId" }),
                );
            }
        } else if let Some(token) = &target.token {
            let platform = match target.platform.as_deref() {
                Some("ios") => Platform::Ios,
                Some("android") => Platform::Android,
                _ => {
                    return Err(ApiError::invalid(
                        field("platform"),
                        "a token needs platform ios or android",
                    ));
                }
            };
            let token = check_token(platform, token).map_err(|mut e| {
                let name = field("token");
                e.message = e.message.replacen("token", &name, 1);
                e.field = Some(name);
                e
            })?;
            resolved.push((ObjectId::new(), Destination::Device(platform, token)));
        } else if let Some(subscription) = &target.subscription {
            let renamed = |mut e: ApiError, name: &str| {
                let name = field(name);
                e.message = e
                    .message
                    .replacen(e.field.as_deref().unwrap_or(""), &name, 1);
                e.field = Some(name);
                e
            };
            let endpoint = check_endpoint(&state, &subscription.endpoint)
                .map_err(|e| renamed(e, "subscription.endpoint"))?;
            check_p256dh(&subscription.keys.p256dh)
                .map_err(|e| renamed(e, "subscription.keys.p256dh"))?;
            check_auth(&subscription.keys.auth)
                .map_err(|e| renamed(e, "subscription.keys.auth"))?;
            resolved.push((
                ObjectId::new(),
                Destination::Web(PushSubscription {
                    endpoint,
                    expiration_time: subscription.expiration_time,
                    keys: SubscriptionKeys {
                        p256dh: subscription.keys.p256dh.trim().to_owned(),
                        auth: subscription.keys.auth.trim().to_owned(),
                    },
                }),
            ));
        }
    }
    // A user named twice, or a subscriber named and reached through its user: once each.
    let mut seen = std::collections::HashSet::new();
    resolved.retain(|(id, _)| seen.insert(*id));

    push.status = PushStatus::Processing;
    push.trigger_count = 1;
    state.store.insert_push(&push).await?;
    let produced = match produce(&state, &push, &resolved).await {
        Ok(n) => n,
        Err(e) => {
            let reason = format!("direct send could not be published: {e}");
            let _ = state.store.fail_push(push.id, &reason).await;
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "kafka_unavailable",
                format!(
                    "push {}: {reason}; nothing was delivered, try again",
                    push.id
                ),
            ));
        }
    };
    state
        .store
        .finish_fanout(push.id, produced, skipped.len() as i64)
        .await?;
    let push = state.store.push(push.id).await?.unwrap_or(push);
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({
            "push": views::push(&push, None),
            "produced": produced,
            "skipped": skipped,
        })),
    ))
}

fn destination_of(subscriber: &Subscriber) -> Option<Destination> {
    match subscriber.platform.unwrap_or_default() {
        Platform::Web => subscriber.subscription().ok().map(Destination::Web),
        platform => subscriber
            .device_token
            .clone()
            .filter(|t| !t.is_empty())
            .map(|t| Destination::Device(platform, t)),
    }
}

/// Puts one delivery message per destination on the push topic and waits for the broker.
async fn produce(
    state: &AppState,
    push: &pushservice_model::Push,
    resolved: &[(ObjectId, Destination)],
) -> Result<i64, String> {
    let payload = NotificationPayload::of(push).to_raw();
    let (push_hex, site_hex) = (push.id.to_hex(), push.site_id.to_hex());
    let ttl = u32::try_from(push.time_to_live.clamp(0, i64::from(u32::MAX))).unwrap_or(0);
    let urgency = Urgency::from(push.priority);
    let topic = &state.topics.push.name;
    let mut acks = Vec::with_capacity(resolved.len());
    let mut buffer = Vec::with_capacity(1024);
    for (id, destination) in resolved {
        let subscriber_hex = id.to_hex();
        let target = match destination {
            Destination::Web(s) => TargetRef::Web {
                endpoint: &s.endpoint,
                p256dh: &s.keys.p256dh,
                auth: &s.keys.auth,
            },
            Destination::Device(Platform::Ios, token) => TargetRef::Ios { token },
            Destination::Device(_, token) => TargetRef::Android { token },
        };
        DeliveryEnvelope {
            v: DELIVERY_VERSION,
            push_id: &push_hex,
            site_id: &site_hex,
            subscriber_id: &subscriber_hex,
            target,
            ttl,
            urgency,
            topic: None,
            attempt: 0,
            payload: &payload,
        }
        .write_json(&mut buffer);
        let record = FutureRecord::to(topic)
            .key(&subscriber_hex)
            .payload(&buffer);
        let ack = state
            .trigger
            .producer()
            .send_result(record)
            .map_err(|(e, _)| e.to_string())?;
        acks.push(ack);
    }
    for ack in acks {
        match ack.await {
            Ok(Ok(_)) => {}
            Ok(Err((e, _))) => return Err(e.to_string()),
            Err(_) => return Err("the producer was dropped".to_owned()),
        }
    }
    Ok(resolved.len() as i64)
}
