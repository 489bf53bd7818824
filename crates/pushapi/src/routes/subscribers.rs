//! Registering and removing subscribers.
//!
//! Browsers register themselves (public, bound to the site by CORS and a rate limit); apps'
//! backends register device tokens with a site key. Everything is checked before anything
//! is written: the endpoint against the same policy the senders apply, the key as a point
//! on P-256, the auth secret's length.

use aws_lc_rs::agreement::{ECDH_P256, ParsedPublicKey, UnparsedPublicKey};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use pushservice_model::subscriber::SubscriptionKeys;
use pushservice_model::subscriber::decode_base64;
use pushservice_model::{Platform, PushSubscription, parse_object_id};
use pushservice_store::{Registration, Target};
use serde::Deserialize;
use serde_json::json;

use crate::auth::{caller, check_site, require_site};
use crate::body::JsonBody;
use crate::error::{ApiError, ApiResult};
use crate::routes::sites::site_id;
use crate::state::AppState;
use crate::views;

/// Longest endpoint accepted.
const MAX_ENDPOINT_LEN: usize = 2_048;
/// Most tags per subscriber.
const MAX_TAGS: usize = 32;
/// Longest tag.
const MAX_TAG_LEN: usize = 64;
/// Longest external id.
const MAX_EXTERNAL_ID_LEN: usize = 256;

/// `POST /v1/sites/{siteId}/subscribers` body: a browser's `PushSubscription.toJSON()`, or an
/// app's `{platform, token}`; either with `externalId` and `tags`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SubscribeBody {
    endpoint: Option<String>,
    #[serde(default)]
    expiration_time: Option<f64>,
    keys: Option<KeysBody>,
    platform: Option<String>,
    token: Option<String>,
    external_id: Option<String>,
    tags: Option<Vec<String>>,
}

/// `keys` of a browser subscription.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeysBody {
    p256dh: Option<String>,
    auth: Option<String>,
}

/// `POST /v1/sites/{siteId}/subscribers`: 201 with a new subscriber, 200 with the one already
/// registered for the same endpoint or token.
pub async fn subscribe(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(site): Path<String>,
    body: JsonBody,
) -> ApiResult<impl IntoResponse> {
    let site_id = site_id(&site)?;
    // A key is needed for app tokens; when one is sent anyway it must be right.
    let caller = caller(&state, &headers).await?;
    if let Some(caller) = &caller {
        check_site(caller, site_id)?;
    }
    let site = state
        .sites
        .get(site_id)
        .await?
        .ok_or_else(|| ApiError::no_site(site_id))?;
    let body: SubscribeBody = body.parse()?;

    let external_id = body
        .external_id
        .as_deref()
        .map(check_external_id)
        .transpose()?;
    let tags = body.tags.as_deref().map(check_tags).transpose()?;
    let (target, platform) = match body.platform.as_deref() {
        None | Some("web") => (Target::Web(web_subscription(&state, &body)?), "web"),
        Some(name @ ("ios" | "android")) => {
            if caller.is_none() {
                return Err(ApiError::unauthorized(
                    "registering an app's device token needs the site's API key \
                     (Authorization: Bearer <key>); only browsers subscribe without one",
                ));
            }
            if body.endpoint.is_some() || body.keys.is_some() {
                let field = if body.endpoint.is_some() {
                    "endpoint"
                } else {
                    "keys"
                };
                return Err(ApiError::invalid(
                    field,
                    "an app subscriber has a token, not an endpoint and keys",
                ));
            }
            let platform = if name == "ios" {
                Platform::Ios
            } else {
                Platform::Android
            };
            let token = body
                .token
                .as_deref()
                .ok_or_else(|| ApiError::invalid("token", "required for ios and android"))?;
            (
                Target::Device {
                    platform,
                    token: check_token(platform, token)?,
                },
                name,
            )
        }
        Some(other) => {
            return Err(ApiError::invalid(
                "platform",
                format!("{other:?} is not one of web, ios, android"),
            ));
        }
    };
    let registered = state
        .store
        .register_subscriber(&Registration {
            site_id: site.id,
            target,
            external_id,
            tags,
        })
        .await?;
    if registered.created {
        state.metrics.subscribers_created.inc();
    }
    let status = if registered.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(views::registered(&site.id.to_hex(), platform, registered)),
    ))
}

/// Checks a browser subscription from the body.
fn web_subscription(state: &AppState, body: &SubscribeBody) -> ApiResult<PushSubscription> {
    if body.token.is_some() {
        return Err(ApiError::invalid(
            "token",
            "a browser subscriber has an endpoint and keys; give platform ios or android for a token",
        ));
    }
    let endpoint = body.endpoint.as_deref().ok_or_else(|| {
        ApiError::invalid("endpoint", "required: the PushSubscription's endpoint")
    })?;
    let keys = body
        .keys
        .as_ref()
        .ok_or_else(|| ApiError::invalid("keys", "required: the PushSubscription's keys"))?;
    let p256dh = keys
        .p256dh
        .as_deref()
        .ok_or_else(|| ApiError::invalid("keys.p256dh", "required"))?;
    let auth = keys
        .auth
        .as_deref()
        .ok_or_else(|| ApiError::invalid("keys.auth", "required"))?;
    let endpoint = check_endpoint(state, endpoint)?;
    check_p256dh(p256dh)?;
    check_auth(auth)?;
    Ok(PushSubscription {
        endpoint,
        expiration_time: body.expiration_time,
        keys: SubscriptionKeys {
            p256dh: p256dh.trim().to_owned(),
            auth: auth.trim().to_owned(),
        },
    })
}

/// The endpoint, if the senders' endpoint policy allows it (422 otherwise).
pub fn check_endpoint(state: &AppState, endpoint: &str) -> ApiResult<String> {
    if endpoint.len() > MAX_ENDPOINT_LEN {
        return Err(ApiError::invalid(
            "endpoint",
            format!("longer than {MAX_ENDPOINT_LEN} characters"),
        ));
    }
    let url = state
        .endpoint_policy
        .check_url(endpoint.trim())
        .map_err(|e| ApiError::unusable("endpoint", "endpoint_refused", e.to_string()))?;
    Ok(url.to_string())
}

/// `keys.p256dh` must be a point on P-256 (422 otherwise).
pub fn check_p256dh(text: &str) -> ApiResult<()> {
    let refused = |why: String| ApiError::unusable("keys.p256dh", "invalid_key", why);
    let bytes = decode_base64(text).map_err(|e| refused(format!("not base64url ({e})")))?;
    if bytes.len() != 65 || bytes[0] != 0x04 {
        return Err(refused(format!(
            "{} bytes; expected a 65-byte uncompressed P-256 point",
            bytes.len()
        )));
    }
    ParsedPublicKey::try_from(&UnparsedPublicKey::new(&ECDH_P256, &bytes))
        .map_err(|_| refused("65 bytes, but not a point on the P-256 curve".to_owned()))?;
    Ok(())
}

/// `keys.auth` must be 16 bytes (422 otherwise).
pub fn check_auth(text: &str) -> ApiResult<()> {
    let bytes = decode_base64(text).map_err(|e| {
        ApiError::unusable("keys.auth", "invalid_key", format!("not base64url ({e})"))
    })?;
    if bytes.len() != 16 {
        return Err(ApiError::unusable(
            "keys.auth",
            "invalid_key",
            format!("{} bytes; the auth secret is 16 bytes", bytes.len()),
        ));
    }
    Ok(())
}

/// An APNs token is hex; an FCM token is URL-safe text.
pub fn check_token(platform: Platform, token: &str) -> ApiResult<String> {
    let token = token.trim();
    let ok = match platform {
        Platform::Ios => {
            (16..=200).contains(&token.len())
                && token.len().is_multiple_of(2)
                && token.bytes().all(|b| b.is_ascii_hexdigit())
        }
        _ => {
            (16..=4096).contains(&token.len())
                && token
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_:.".contains(&b))
        }
    };
    if !ok {
        let expected = match platform {
            Platform::Ios => "an APNs device token: 16 to 200 hexadecimal characters",
            _ => "an FCM registration token: 16 to 4096 characters of A-Z, a-z, 0-9, - _ : .",
        };
        return Err(ApiError::invalid("token", format!("not {expected}")));
    }
    Ok(token.to_owned())
}

fn check_external_id(id: &str) -> ApiResult<String> {
    if id.is_empty() || id.len() > MAX_EXTERNAL_ID_LEN || id.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            "externalId",
            format!("must be 1 to {MAX_EXTERNAL_ID_LEN} characters without control characters"),
        ));
    }
    Ok(id.to_owned())
}

fn check_tags(tags: &[String]) -> ApiResult<Vec<String>> {
    if tags.len() > MAX_TAGS {
        return Err(ApiError::invalid(
            "tags",
            format!("at most {MAX_TAGS} tags"),
        ));
    }
    let mut out: Vec<String> = Vec::with_capacity(tags.len());
    for (i, tag) in tags.iter().enumerate() {
        if tag.is_empty() || tag.len() > MAX_TAG_LEN || tag.chars().any(char::is_control) {
            return Err(ApiError::invalid(
                format!("tags[{i}]"),
                format!("must be 1 to {MAX_TAG_LEN} characters without control characters"),
            ));
        }
        if !out.contains(tag) {
            out.push(tag.clone());
        }
    }
    Ok(out)
}

/// `POST /v1/sites/{siteId}/subscribers/unsubscribe` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnsubscribeBody {
    endpoint: Option<String>,
    token: Option<String>,
    platform: Option<String>,
}

/// `POST /v1/sites/{siteId}/subscribers/unsubscribe` (public): the user left.
pub async fn unsubscribe(
    State(state): State<AppState>,
    Path(site): Path<String>,
    body: JsonBody,
) -> ApiResult<impl IntoResponse> {
    let site_id = site_id(&site)?;
    if state.sites.get(site_id).await?.is_none() {
        return Err(ApiError::no_site(site_id));
    }
    let body: UnsubscribeBody = body.parse()?;
    let targets: Vec<Target> = match (&body.endpoint, &body.token) {
        (Some(endpoint), None) => {
            // Only the endpoint identifies a registration; the keys are not needed.
            let endpoint = url::Url::parse(endpoint.trim())
                .map_err(|e| ApiError::invalid("endpoint", format!("not a URL ({e})")))?
                .to_string();
            vec![Target::Web(PushSubscription {
                endpoint,
                expiration_time: None,
                keys: SubscriptionKeys {
                    p256dh: String::new(),
                    auth: String::new(),
                },
            })]
        }
        (None, Some(token)) => {
            let platforms = match body.platform.as_deref() {
                Some("ios") => vec![Platform::Ios],
                Some("android") => vec![Platform::Android],
                None => vec![Platform::Ios, Platform::Android],
                Some(other) => {
                    return Err(ApiError::invalid(
                        "platform",
                        format!("{other:?} is not ios or android"),
                    ));
                }
            };
            platforms
                .into_iter()
                .map(|platform| Target::Device {
                    platform,
                    token: token.trim().to_owned(),
                })
                .collect()
        }
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid(
                "token",
                "give endpoint (a browser) or token (an app), not both",
            ));
        }
        (None, None) => {
            return Err(ApiError::invalid(
                "body",
                "give endpoint (a browser) or token (an app)",
            ));
        }
    };
    for target in &targets {
        if let Some(id) = state.store.registered_subscriber(site_id, target).await?
            && state.store.unsubscribe_one(id).await?
        {
            return Ok(Json(json!({ "id": id.to_hex(), "unsubscribed": true })));
        }
    }
    Err(ApiError::not_found(format!(
        "site {site_id} has no subscriber registered with this endpoint or token"
    )))
}

/// `DELETE /v1/sites/{siteId}/subscribers/{id}`: remove a subscriber for good.
pub async fn delete(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((site, subscriber)): Path<(String, String)>,
) -> ApiResult<impl IntoResponse> {
    let site = require_site(&state, &headers, site_id(&site)?).await?;
    let id = parse_object_id("subscriber", &subscriber)
        .map_err(|e| ApiError::invalid("subscriberId", e.to_string()))?;
    if !state.store.delete_subscriber(site.id, id).await? {
        return Err(ApiError::not_found(format!(
            "site {} has no subscriber {id}",
            site.id
        )));
    }
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    const P256DH: &str =
        "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4";

    #[test]
    fn p256dh_must_be_a_curve_point() {
        check_p256dh(P256DH).expect("a browser's key");
        // Right length and prefix, not on the curve.
        let mut bytes = decode_base64(P256DH).expect("b64");
        bytes[40] ^= 0xff;
        let off_curve =
            base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, &bytes);
        let err = check_p256dh(&off_curve).expect_err("off curve");
        assert_eq!(err.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(err.message.contains("not a point"), "{}", err.message);
        assert!(check_p256dh("AAAA").is_err());
        assert!(check_p256dh("not base64!").is_err());
    }

    #[test]
    fn auth_is_16_bytes() {
        check_auth("BTBZMqHH6r4Tts7J_aSIgg").expect("16 bytes");
        let err = check_auth("BTBZMqHH6r4Tts7J").expect_err("12 bytes");
        assert_eq!(err.field.as_deref(), Some("keys.auth"));
    }

    #[test]
    fn tokens() {
        check_token(Platform::Ios, &"ab".repeat(32)).expect("apns");
        assert!(check_token(Platform::Ios, "xyz").is_err());
        check_token(Platform::Android, "fcm-token:APA91b_abcdefghij").expect("fcm");
        assert!(check_token(Platform::Android, "has space in it and more").is_err());
    }
}
