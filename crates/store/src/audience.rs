//! Streaming a site's audience for the parser.
//!
//! Subscribers are read with a projection (only what a delivery needs), in `_id` order, in
//! `QUERY_BATCH_SIZE` batches, through the `{siteId, subscribed, _id}` index; memory stays
//! flat whatever the audience size. Documents are decoded here one by one from raw BSON, so
//! one odd document is reported with its id and the stream goes on.
//!
//! A push's [`Audience`] narrows the stream: subscribers whose `externalId` is one of its
//! `externalIds` and/or who carry one of its `tags` (both given: both must hold). The
//! narrowing is extra conditions next to `{siteId, subscribed}`, so the order, the index
//! prefix and resuming after a checkpoint (`_id > last`) stay as they are for everyone.

use bson::oid::ObjectId;
use bson::{Document, RawDocumentBuf, doc};
use futures::{Stream, StreamExt as _};
use pushservice_model::{Audience, Platform};

use crate::error::StoreError;
use crate::store::Store;

/// The fields of one subscriber that a delivery needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudienceMember {
    /// Subscriber id.
    pub id: ObjectId,
    /// `pushEndPoint` as stored (a JSON string), for Web Push subscribers.
    pub push_end_point: Option<String>,
    /// Platform, `None` for the original service's documents (all Web Push).
    pub platform: Option<Platform>,
    /// APNs/FCM token, for app subscribers.
    pub device_token: Option<String>,
}

/// One document of the audience stream: usable, or not, with the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AudienceRow {
    /// A subscriber to deliver to (its subscription is still to be checked).
    Member(AudienceMember),
    /// A document that cannot be read as a subscriber.
    Unreadable {
        /// Its `_id`, when it has an ObjectId one.
        id: Option<ObjectId>,
        /// What is wrong.
        reason: String,
    },
}

/// The filter of the subscribed subscribers of `site_id` that `audience` selects (everyone
/// when `None` or [`Audience::is_everyone`]), after subscriber `after` in `_id` order.
pub fn audience_filter(
    site_id: ObjectId,
    after: Option<ObjectId>,
    audience: Option<&Audience>,
) -> Document {
    // Always an ObjectId lower bound on `_id`, `$gte` the smallest one when not resuming:
    // on MongoDB it is the index's last key anyway (and, like any comparison, matches
    // ObjectIds only, which every subscriber `_id` is); on the local FerretDB it is what
    // lets the patched SQLite backend stream from its `_id` index in order
    // (scripts/ferretdb/sqlite-id-order.patch) instead of reading and sorting the whole
    // collection before the first batch (32–63 s for 1,000,000 subscribers).
    let mut filter = doc! { "siteId": site_id, "subscribed": true };
    match after {
        Some(after) => filter.insert("_id", doc! { "$gt": after }),
        None => filter.insert("_id", doc! { "$gte": ObjectId::from_bytes([0; 12]) }),
    };
    if let Some(audience) = audience {
        if !audience.external_ids.is_empty() {
            filter.insert("externalId", doc! { "$in": &audience.external_ids });
        }
        if !audience.tags.is_empty() {
            // `$in` on an array field matches a document holding any one of the values.
            filter.insert("tags", doc! { "$in": &audience.tags });
        }
    }
    filter
}

impl Store {
    /// Streams the subscribed subscribers of `site_id` that `audience` selects (everyone when
    /// `None`), in `_id` order, starting after `after`.
    pub async fn audience(
        &self,
        site_id: ObjectId,
        after: Option<ObjectId>,
        audience: Option<&Audience>,
    ) -> Result<impl Stream<Item = Result<AudienceRow, StoreError>> + Send + use<>, StoreError>
    {
        let filter = audience_filter(site_id, after, audience);
        let cursor = self
            .subscribers
            .clone_with_type::<RawDocumentBuf>()
            .find(filter)
            .projection(doc! { "_id": 1, "pushEndPoint": 1, "platform": 1, "deviceToken": 1 })
            .sort(doc! { "_id": 1 })
            .batch_size(self.batch_size)
            .await
            .map_err(StoreError::query(format!(
                "streaming subscribers of site {site_id}"
            )))?;
        Ok(cursor.map(move |document| {
            document
                .map(|d| decode_member(&d))
                .map_err(StoreError::query(format!(
                    "streaming subscribers of site {site_id}"
                )))
        }))
    }

    /// How many subscribers [`Store::audience`] would stream with the same arguments: for a
    /// canceled push, the subscribers its fan-out never reached.
    pub async fn count_audience(
        &self,
        site_id: ObjectId,
        after: Option<ObjectId>,
        audience: Option<&Audience>,
    ) -> Result<u64, StoreError> {
        self.subscribers
            .count_documents(audience_filter(site_id, after, audience))
            .await
            .map_err(StoreError::query(format!(
                "counting the audience of site {site_id}"
            )))
    }
}

fn decode_member(document: &RawDocumentBuf) -> AudienceRow {
    let id = match document.get_object_id("_id") {
        Ok(id) => id,
        Err(e) => {
            return AudienceRow::Unreadable {
                id: None,
                reason: format!("_id: {e}"),
            };
        }
    };
    let unreadable = |reason: String| AudienceRow::Unreadable {
        id: Some(id),
        reason,
    };
    let push_end_point = match document.get("pushEndPoint") {
        Ok(None) => None,
        Ok(Some(value)) => match value.as_str() {
            Some(text) => Some(text.to_owned()),
            None => {
                return unreadable(format!(
                    "pushEndPoint is {:?}, not a string",
                    value.element_type()
                ));
            }
        },
        Err(e) => return unreadable(format!("pushEndPoint: {e}")),
    };
    let platform = match document.get_str("platform") {
        Ok(name) => match name {
            "web" => Some(Platform::Web),
            "ios" => Some(Platform::Ios),
            "android" => Some(Platform::Android),
            other => return unreadable(format!("platform {other:?} is not web, ios or android")),
        },
        Err(_) => None,
    };
    let device_token = document.get_str("deviceToken").ok().map(str::to_owned);
    AudienceRow::Member(AudienceMember {
        id,
        push_end_point,
        platform,
        device_token,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_audience_narrows_the_subscribed_filter() {
        let (site, after) = (ObjectId::new(), ObjectId::new());
        let from_start = ObjectId::from_bytes([0; 12]);
        let everyone = doc! { "siteId": site, "subscribed": true, "_id": { "$gte": from_start } };
        assert_eq!(audience_filter(site, None, None), everyone);
        assert_eq!(
            audience_filter(site, None, Some(&Audience::default())),
            everyone
        );
        let users = Audience {
            external_ids: vec!["u1".into(), "u2".into()],
            tags: Vec::new(),
        };
        assert_eq!(
            audience_filter(site, Some(after), Some(&users)),
            doc! {
                "siteId": site, "subscribed": true, "_id": { "$gt": after },
                "externalId": { "$in": ["u1", "u2"] },
            }
        );
        let both = Audience {
            external_ids: vec!["u1".into()],
            tags: vec!["vip".into(), "fr".into()],
        };
        assert_eq!(
            audience_filter(site, None, Some(&both)),
            doc! {
                "siteId": site, "subscribed": true, "_id": { "$gte": from_start },
                "externalId": { "$in": ["u1"] }, "tags": { "$in": ["vip", "fr"] },
            }
        );
    }

    fn raw(document: bson::Document) -> RawDocumentBuf {
        RawDocumentBuf::from_document(&document).expect("encodes")
    }

    #[test]
    fn decodes_web_and_app_members_and_reports_odd_ones() {
        let id = ObjectId::new();
        let row = decode_member(&raw(doc! { "_id": id, "pushEndPoint": "{}" }));
        assert_eq!(
            row,
            AudienceRow::Member(AudienceMember {
                id,
                push_end_point: Some("{}".into()),
                platform: None,
                device_token: None
            })
        );
        let row = decode_member(&raw(
            doc! { "_id": id, "platform": "ios", "deviceToken": "ab" },
        ));
        assert!(matches!(row, AudienceRow::Member(m) if m.platform == Some(Platform::Ios)));
        let row = decode_member(&raw(doc! { "_id": id, "pushEndPoint": 42 }));
        assert!(
            matches!(row, AudienceRow::Unreadable { id: Some(_), ref reason } if reason.contains("not a string"))
        );
        let row = decode_member(&raw(doc! { "_id": "text-id" }));
        assert!(matches!(row, AudienceRow::Unreadable { id: None, .. }));
    }
}
