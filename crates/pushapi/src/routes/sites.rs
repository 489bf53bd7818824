//! Sites, their API keys and credentials.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use pushservice_control::{ControlError, api_keys, sites};
use pushservice_model::parse_object_id;
use pushservice_store::SiteChanges;
use serde::Deserialize;
use serde_json::json;

use crate::auth::{require_admin, require_site};
use crate::body::JsonBody;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::views;

/// Parses a site id from the path (400 naming `siteId` when malformed).
pub fn site_id(text: &str) -> ApiResult<pushservice_model::ObjectId> {
    parse_object_id("site", text).map_err(|e| ApiError::invalid("siteId", e.to_string()))
}

/// `POST /v1/sites` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NewSite {
    subject: String,
    #[serde(default)]
    allowed_origins: Vec<String>,
}

/// `POST /v1/sites` (admin): a site with fresh VAPID keys and its first API key.
pub async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: JsonBody,
) -> ApiResult<impl IntoResponse> {
    require_admin(&state, &headers).await?;
    let body: NewSite = body.parse()?;
    let mut site = sites::new_site(&body.subject, &body.allowed_origins)?;
    let key = api_keys::generate(site.id).map_err(ControlError::Other)?;
    site.api_keys.push(key.record.clone());
    state.store.insert_site(&site).await?;
    tracing::info!(site_id = %site.id, "site created");
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "site": views::site(&site),
            "apiKey": { "id": key.record.id, "key": key.secret },
        })),
    ))
}

/// `GET /v1/sites/{siteId}`.
pub async fn get(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(site): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let site = require_site(&state, &headers, site_id(&site)?).await?;
    Ok(Json(views::site(&site)))
}

/// `PATCH /v1/sites/{siteId}` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SitePatch {
    subject: Option<String>,
    allowed_origins: Option<Vec<String>>,
}

/// `PATCH /v1/sites/{siteId}`: change `subject`, `allowedOrigins`.
pub async fn update(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(site): Path<String>,
    body: JsonBody,
) -> ApiResult<impl IntoResponse> {
    let site = require_site(&state, &headers, site_id(&site)?).await?;
    let body: SitePatch = body.parse()?;
    let changes = SiteChanges {
        subject: body
            .subject
            .as_deref()
            .map(sites::check_subject)
            .transpose()?,
        allowed_origins: body
            .allowed_origins
            .as_deref()
            .map(sites::check_origins)
            .transpose()?,
    };
    if !state.store.update_site(site.id, &changes).await? {
        return Err(ApiError::no_site(site.id));
    }
    reload(&state, site.id).await
}

async fn reload(
    state: &AppState,
    id: pushservice_model::ObjectId,
) -> ApiResult<Json<serde_json::Value>> {
    state.sites.forget(id);
    let site = state
        .sites
        .get(id)
        .await?
        .ok_or_else(|| ApiError::no_site(id))?;
    Ok(Json(views::site(&site)))
}

/// `POST /v1/sites/{siteId}/keys`: a new API key, shown once.
pub async fn create_key(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(site): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let site = require_site(&state, &headers, site_id(&site)?).await?;
    if site.api_keys.len() >= api_keys::MAX_KEYS_PER_SITE {
        return Err(ApiError::conflict(format!(
            "site {} already has {} API keys, the most allowed; delete one first",
            site.id,
            site.api_keys.len()
        )));
    }
    let key = api_keys::generate(site.id).map_err(ControlError::Other)?;
    if !state.store.add_api_key(site.id, &key.record).await? {
        return Err(ApiError::no_site(site.id));
    }
    state.sites.forget(site.id);
    Ok((
        StatusCode::CREATED,
        Json(json!({ "id": key.record.id, "key": key.secret })),
    ))
}

/// `DELETE /v1/sites/{siteId}/keys/{keyId}`: revoke a key (not the site's last one).
pub async fn delete_key(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((site, key_id)): Path<(String, String)>,
) -> ApiResult<impl IntoResponse> {
    let site = require_site(&state, &headers, site_id(&site)?).await?;
    if !site.api_keys.iter().any(|k| k.id == key_id) {
        return Err(ApiError::not_found(format!(
            "site {} has no API key {key_id:?}",
            site.id
        )));
    }
    if site.api_keys.len() == 1 {
        return Err(ApiError::conflict(format!(
            "{key_id} is the last API key of site {}; create its replacement first \
             (POST /v1/sites/{}/keys)",
            site.id, site.id
        )));
    }
    let removed = state.store.remove_api_key(site.id, &key_id).await?;
    state.sites.forget(site.id);
    if !removed {
        return Err(ApiError::not_found(format!(
            "site {} has no API key {key_id:?}",
            site.id
        )));
    }
    tracing::info!(site_id = %site.id, key_id, "API key revoked");
    Ok(StatusCode::NO_CONTENT)
}

/// `PUT /v1/sites/{siteId}/apns` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ApnsBody {
    team_id: String,
    key_id: String,
    private_key: String,
    topic: String,
    #[serde(default)]
    sandbox: bool,
}

/// `PUT /v1/sites/{siteId}/apns`: the `.p8` key and app, checked as the senders use them.
pub async fn put_apns(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(site): Path<String>,
    body: JsonBody,
) -> ApiResult<impl IntoResponse> {
    let site = require_site(&state, &headers, site_id(&site)?).await?;
    let body: ApnsBody = body.parse()?;
    let credentials = sites::apns_credentials(
        &body.team_id,
        &body.key_id,
        &body.private_key,
        &body.topic,
        body.sandbox,
    )?;
    if !state
        .store
        .set_site_apns(site.id, Some(&credentials))
        .await?
    {
        return Err(ApiError::no_site(site.id));
    }
    reload(&state, site.id).await
}

/// `PUT /v1/sites/{siteId}/fcm` body: the service-account key file, as an object or as the
/// file's text.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FcmBody {
    service_account: serde_json::Value,
}

/// `PUT /v1/sites/{siteId}/fcm`: the Firebase service account, checked as the senders use it.
pub async fn put_fcm(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(site): Path<String>,
    body: JsonBody,
) -> ApiResult<impl IntoResponse> {
    let site = require_site(&state, &headers, site_id(&site)?).await?;
    let body: FcmBody = body.parse()?;
    let text = match &body.service_account {
        serde_json::Value::String(text) => text.clone(),
        serde_json::Value::Object(_) => body.service_account.to_string(),
        _ => {
            return Err(ApiError::invalid(
                "serviceAccount",
                "give the service-account key file's JSON (an object, or its text)",
            ));
        }
    };
    let credentials = sites::fcm_credentials(&text)?;
    if !state
        .store
        .set_site_fcm(site.id, Some(&credentials))
        .await?
    {
        return Err(ApiError::no_site(site.id));
    }
    reload(&state, site.id).await
}

/// `GET /v1/sites/{siteId}/vapid-public-key` (public): what `pushManager.subscribe` needs.
pub async fn vapid_public_key(
    State(state): State<AppState>,
    Path(site): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let id = site_id(&site)?;
    let site = state
        .sites
        .get(id)
        .await?
        .ok_or_else(|| ApiError::no_site(id))?;
    Ok(Json(json!({ "publicKey": site.public_key })))
}
