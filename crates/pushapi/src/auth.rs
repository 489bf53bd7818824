//! Who is calling: the admin token, a site's API key, or nobody (public routes).
//!
//! The admin token may act on every site; a site key only on its own site (403 on another
//! site's resources, 401 when the key is wrong or revoked).

use std::sync::Arc;

use aws_lc_rs::digest::{SHA256, digest};
use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use pushservice_control::{ApiKeyError, PresentedKey};
use pushservice_model::{ObjectId, Site};

use crate::error::ApiError;
use crate::state::AppState;

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// The holder of `API_ADMIN_TOKEN`.
    Admin,
    /// A key of this site.
    Site(ObjectId),
}

/// SHA-256 of a token, so comparisons take the same time whatever the input.
pub fn token_hash(token: &str) -> [u8; 32] {
    let mut out = [0; 32];
    out.copy_from_slice(digest(&SHA256, token.as_bytes()).as_ref());
    out
}

/// The bearer token of a request, if it sent one.
fn bearer(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    let Some(value) = headers.get(AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| ApiError::unauthorized("the Authorization header is not ASCII"))?;
    let (scheme, token) = value
        .trim()
        .split_once(' ')
        .ok_or_else(|| ApiError::unauthorized("send the key as Authorization: Bearer <key>"))?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(ApiError::unauthorized(
            "send the key as Authorization: Bearer <key>",
        ));
    }
    Ok(Some(token.trim()))
}

/// The caller of a request; `None` when it sent no credentials.
pub async fn caller(state: &AppState, headers: &HeaderMap) -> Result<Option<Caller>, ApiError> {
    let Some(token) = bearer(headers)? else {
        return Ok(None);
    };
    if aws_lc_rs::constant_time::verify_slices_are_equal(&token_hash(token), &state.admin_hash)
        .is_ok()
    {
        return Ok(Some(Caller::Admin));
    }
    let key = PresentedKey::parse(token).map_err(|e| ApiError::unauthorized(e.to_string()))?;
    let site = state
        .sites
        .get(key.site_id)
        .await?
        .ok_or_else(|| ApiError::unauthorized(ApiKeyError::Unknown.to_string()))?;
    key.verify(&site)
        .map_err(|e| ApiError::unauthorized(e.to_string()))?;
    Ok(Some(Caller::Site(site.id)))
}

/// The admin, or 401/403.
pub async fn require_admin(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    match caller(state, headers).await? {
        Some(Caller::Admin) => Ok(()),
        Some(Caller::Site(_)) => Err(ApiError::forbidden(
            "this route needs the admin token (API_ADMIN_TOKEN), not a site key",
        )),
        None => Err(ApiError::unauthorized(
            "send the admin token as Authorization: Bearer <API_ADMIN_TOKEN>",
        )),
    }
}

/// Any authenticated caller, or 401.
pub async fn require_caller(state: &AppState, headers: &HeaderMap) -> Result<Caller, ApiError> {
    caller(state, headers).await?.ok_or_else(|| {
        ApiError::unauthorized("send the site's API key as Authorization: Bearer <key>")
    })
}

/// Whether `caller` may act on site `site_id`, or 403.
pub fn check_site(caller: &Caller, site_id: ObjectId) -> Result<(), ApiError> {
    match caller {
        Caller::Admin => Ok(()),
        Caller::Site(own) if *own == site_id => Ok(()),
        Caller::Site(own) => Err(ApiError::forbidden(format!(
            "this API key belongs to site {own}; it cannot act on site {site_id}"
        ))),
    }
}

/// Site `site_id` for a caller allowed on it: 401 without credentials, 403 for another
/// site's key, 404 when the site does not exist.
pub async fn require_site(
    state: &AppState,
    headers: &HeaderMap,
    site_id: ObjectId,
) -> Result<Arc<Site>, ApiError> {
    let caller = require_caller(state, headers).await?;
    check_site(&caller, site_id)?;
    state
        .sites
        .get(site_id)
        .await?
        .ok_or_else(|| ApiError::no_site(site_id))
}
