//! `GET /v1/sites`: the sites a caller may see (the admin: all of them, a page at a time; a
//! site key: its own), each with its subscribers counted by platform. The console's first
//! table.
//!
//! Queried here through `Store::database()` (the store has no site listing yet): sites in
//! `_id` order, then one aggregation over the page's subscribers, grouped by site, platform
//! and `subscribed`, which the `{siteId, subscribed, _id}` index serves.

use std::collections::HashMap;

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use bson::{Bson, Document, doc};
use futures::TryStreamExt as _;
use pushservice_model::{ObjectId, Site, parse_object_id};
use pushservice_store::{SITES, SUBSCRIBERS, StoreError};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::{Caller, require_caller};
use crate::body::QueryParams;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::views;

/// Most sites on one page.
pub const MAX_LIMIT: u32 = 200;

/// `GET /v1/sites` query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteListQuery {
    limit: Option<u32>,
    after: Option<String>,
}

/// Subscribers of one site.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SubscriberCounts {
    /// Subscribed browsers (Web Push; documents without a platform are the original
    /// service's, all Web Push).
    pub web: u64,
    /// Subscribed iOS devices.
    pub ios: u64,
    /// Subscribed Android devices.
    pub android: u64,
    /// No longer subscribed, any platform.
    pub unsubscribed: u64,
}

impl SubscriberCounts {
    /// As answered.
    pub fn to_json(self) -> Value {
        json!({
            "web": self.web,
            "ios": self.ios,
            "android": self.android,
            "total": self.web + self.ios + self.android,
            "unsubscribed": self.unsubscribed,
        })
    }
}

/// A site of the list: the site as `GET /v1/sites/{siteId}` answers it, and its subscribers.
pub fn site_with_counts(site: &Site, counts: SubscriberCounts) -> Value {
    let mut view = views::site(site);
    view["subscribers"] = counts.to_json();
    view
}

/// `GET /v1/sites?limit=&after=`: sites in creation order; `next` is the `after` of the
/// following page (`null` on the last page).
pub async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
    QueryParams(query): QueryParams<SiteListQuery>,
) -> ApiResult<impl IntoResponse> {
    let caller = require_caller(&state, &headers).await?;
    let limit = query.limit.unwrap_or(50);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::invalid(
            "limit",
            format!("must be 1 to {MAX_LIMIT}"),
        ));
    }
    let after = query
        .after
        .as_deref()
        .map(|a| parse_object_id("site", a).map_err(|e| ApiError::invalid("after", e.to_string())))
        .transpose()?;
    let (sites, more) = match caller {
        Caller::Admin => {
            // One more than asked tells whether there is a next page.
            let mut sites = page(&state, limit + 1, after).await?;
            let more = sites.len() > limit as usize;
            sites.truncate(limit as usize);
            (sites, more)
        }
        Caller::Site(own) => {
            let site = state
                .store
                .site(own)
                .await?
                .ok_or_else(|| ApiError::no_site(own))?;
            let shown = after.is_none_or(|after| site.id > after);
            (if shown { vec![site] } else { vec![] }, false)
        }
    };
    let ids: Vec<ObjectId> = sites.iter().map(|s| s.id).collect();
    let counts = subscriber_counts(&state, &ids).await?;
    let next = more.then(|| sites.last().map(|s| s.id.to_hex())).flatten();
    Ok(Json(json!({
        "sites": sites
            .iter()
            .map(|s| site_with_counts(s, counts.get(&s.id).copied().unwrap_or_default()))
            .collect::<Vec<_>>(),
        "next": next,
    })))
}

/// Up to `limit` sites after `after`, in `_id` (creation) order.
async fn page(state: &AppState, limit: u32, after: Option<ObjectId>) -> ApiResult<Vec<Site>> {
    let filter = match after {
        Some(after) => doc! { "_id": { "$gt": after } },
        None => doc! {},
    };
    let context = "listing sites";
    let documents: Vec<Document> = state
        .store
        .database()
        .collection::<Document>(SITES)
        .find(filter)
        .sort(doc! { "_id": 1 })
        .limit(i64::from(limit))
        .await
        .map_err(|source| query_error(context, source))?
        .try_collect()
        .await
        .map_err(|source| query_error(context, source))?;
    let mut sites = Vec::with_capacity(documents.len());
    for document in documents {
        let id = document.get_object_id("_id").unwrap_or_default();
        match bson::from_document::<Site>(document) {
            Ok(site) => sites.push(site),
            // One odd document must not hide every other site from the operator.
            Err(e) => {
                tracing::warn!(site_id = %id, error = %e, "site document unreadable; not listed")
            }
        }
    }
    Ok(sites)
}

/// Subscribers of each of `sites` by platform, in one aggregation.
async fn subscriber_counts(
    state: &AppState,
    sites: &[ObjectId],
) -> ApiResult<HashMap<ObjectId, SubscriberCounts>> {
    let mut counts: HashMap<ObjectId, SubscriberCounts> = HashMap::new();
    if sites.is_empty() {
        return Ok(counts);
    }
    let pipeline = [
        doc! { "$match": { "siteId": { "$in": sites } } },
        doc! { "$group": {
            "_id": { "site": "$siteId", "platform": "$platform", "subscribed": "$subscribed" },
            "count": { "$sum": 1 },
        } },
    ];
    let context = "counting subscribers by site and platform";
    let groups: Vec<Document> = state
        .store
        .database()
        .collection::<Document>(SUBSCRIBERS)
        .aggregate(pipeline)
        .await
        .map_err(|source| query_error(context, source))?
        .try_collect()
        .await
        .map_err(|source| query_error(context, source))?;
    for group in groups {
        let Ok(key) = group.get_document("_id") else {
            continue;
        };
        let Ok(site) = key.get_object_id("site") else {
            continue;
        };
        let count = match group.get("count") {
            Some(Bson::Int32(n)) => u64::try_from(*n).unwrap_or(0),
            Some(Bson::Int64(n)) => u64::try_from(*n).unwrap_or(0),
            Some(Bson::Double(n)) if *n >= 0.0 => *n as u64,
            _ => 0,
        };
        let entry = counts.entry(site).or_default();
        if !matches!(key.get("subscribed"), Some(Bson::Boolean(true))) {
            entry.unsubscribed += count;
            continue;
        }
        match key.get_str("platform").unwrap_or("web") {
            "ios" => entry.ios += count,
            "android" => entry.android += count,
            _ => entry.web += count,
        }
    }
    Ok(counts)
}

/// A failed MongoDB request, as the store reports its own.
fn query_error(context: &str, source: mongodb::error::Error) -> ApiError {
    StoreError::Query {
        context: context.to_owned(),
        source,
    }
    .into()
}
