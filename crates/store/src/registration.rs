//! Registering subscribers from the HTTP API, idempotently.
//!
//! The same browser subscription (endpoint) or device token registered twice must give the
//! same subscriber, never a second document, even when two API instances receive the two
//! requests at once. The `subscribers` collection cannot enforce that itself: `pushEndPoint`
//! is a JSON string whose keys can change for the same endpoint, and the original service's
//! documents have no other unique field. So each registration first claims its identity in
//! `subscriberClaims`, whose `_id` is `<site id>:<SHA-256 of the identity>`; a unique `_id`
//! is enforced atomically by every MongoDB-protocol server (FerretDB 1.x's conditional
//! updates are not; see `Store::restart_push`). The subscriber document is then written
//! with an upsert on its `_id`, so a crash between the two steps heals on the next
//! registration.
//!
//! Subscribers the original service wrote have no claim; registering one of them again
//! through the API creates a new document (the parser still reaches that browser once per
//! subscribed document, so such a site should unsubscribe the old document).

use aws_lc_rs::digest::{SHA256, digest};
use bson::oid::ObjectId;
use bson::{DateTime, Document, doc};
use pushservice_model::{Platform, PushSubscription};

use crate::error::StoreError;
use crate::store::Store;

/// Collection of registration claims.
pub const SUBSCRIBER_CLAIMS: &str = "subscriberClaims";

/// What identifies a subscription.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// A browser's Web Push subscription (identified by its endpoint).
    Web(PushSubscription),
    /// An app's APNs or FCM token.
    Device {
        /// `ios` or `android`.
        platform: Platform,
        /// The token.
        token: String,
    },
}

impl Target {
    fn identity(&self) -> String {
        match self {
            Target::Web(subscription) => format!("web:{}", subscription.endpoint),
            Target::Device { platform, token } => format!("{platform:?}:{token}").to_lowercase(),
        }
    }

    /// The claim `_id` of this target on site `site_id`.
    pub fn claim_id(&self, site_id: ObjectId) -> String {
        let hash: String = digest(&SHA256, self.identity().as_bytes())
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        format!("{}:{hash}", site_id.to_hex())
    }
}

/// A registration: the target plus what the site says about its user.
#[derive(Debug, Clone, PartialEq)]
pub struct Registration {
    /// The site.
    pub site_id: ObjectId,
    /// The subscription.
    pub target: Target,
    /// The site's user id; `None` keeps what an earlier registration set.
    pub external_id: Option<String>,
    /// Tags; `None` keeps what an earlier registration set.
    pub tags: Option<Vec<String>>,
}

/// The outcome of a registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Registered {
    /// The subscriber id.
    pub id: ObjectId,
    /// Whether a new subscriber document was created (false: the existing one was updated).
    pub created: bool,
}

impl Store {
    /// Registers a subscription; the same target again returns the same subscriber,
    /// resubscribed and updated (keys, externalId, tags).
    pub async fn register_subscriber(
        &self,
        registration: &Registration,
    ) -> Result<Registered, StoreError> {
        let claims = self.database.collection::<Document>(SUBSCRIBER_CLAIMS);
        let claim_id = registration.target.claim_id(registration.site_id);
        let context = || format!("registering a subscriber of site {}", registration.site_id);
        // A new subscription is the common case: claim first (one round trip), and read the
        // claim only when the target was registered before.
        let id = ObjectId::new();
        let claim = doc! {
            "_id": &claim_id,
            "subscriberId": id,
            "siteId": registration.site_id,
            "createdAt": DateTime::now(),
        };
        let (id, claimed_now) = match claims.insert_one(claim).await {
            Ok(_) => (id, true),
            // Registered before (or by a racing request): use that subscriber.
            Err(e) if crate::error::is_duplicate_key(&e) => {
                let existing = claims
                    .find_one(doc! { "_id": &claim_id })
                    .await
                    .map_err(StoreError::query(context()))?;
                match existing.map(|c| c.get_object_id("subscriberId")) {
                    Some(Ok(id)) => (id, false),
                    _ => {
                        return Err(StoreError::Query {
                            context: format!(
                                "{}: claim {claim_id} is unreadable or was just removed; try again",
                                context()
                            ),
                            source: mongodb::error::Error::custom("damaged or vanished claim"),
                        });
                    }
                }
            }
            Err(e) => return Err(StoreError::query(context())(e)),
        };
        // Created by whoever claimed the target, even if a racing request for the same target
        // happened to insert the document first: exactly one of them answers "created".
        self.upsert_registered(id, registration).await?;
        Ok(Registered {
            id,
            created: claimed_now,
        })
    }

    /// Writes the subscriber document of a registration (inserting it if it is missing: a
    /// racing request, or a registration that crashed after its claim).
    async fn upsert_registered(
        &self,
        id: ObjectId,
        registration: &Registration,
    ) -> Result<(), StoreError> {
        let now = DateTime::now();
        let mut set = doc! { "subscribed": true, "updatedAt": now };
        match &registration.target {
            Target::Web(subscription) => {
                set.insert("pushEndPoint", subscription.to_json());
            }
            Target::Device { platform, token } => {
                let platform = bson::to_bson(platform).map_err(StoreError::encode("platform"))?;
                set.insert("platform", platform);
                set.insert("deviceToken", token);
                set.insert("pushEndPoint", "");
            }
        }
        if let Some(external_id) = &registration.external_id {
            set.insert("externalId", external_id);
        }
        if let Some(tags) = &registration.tags {
            set.insert("tags", tags.clone());
        }
        let update = doc! {
            "$set": set,
            "$setOnInsert": { "siteId": registration.site_id, "createdAt": now, "__v": 0 },
        };
        // Two upserts of the same missing document can both try the insert; the loser gets a
        // duplicate key error. MongoDB retries such an upsert itself, FerretDB does not: the
        // document exists now, so the same update applies to it on a second try.
        let mut attempt = 1;
        loop {
            match self
                .subscribers
                .update_one(doc! { "_id": id }, update.clone())
                .upsert(true)
                .await
            {
                Ok(_) => return Ok(()),
                Err(e) if attempt < 3 && crate::error::is_duplicate_key(&e) => attempt += 1,
                Err(e) => return Err(StoreError::query(format!("writing subscriber {id}"))(e)),
            }
        }
    }

    /// The subscriber registered for `target` on site `site_id`, if any.
    pub async fn registered_subscriber(
        &self,
        site_id: ObjectId,
        target: &Target,
    ) -> Result<Option<ObjectId>, StoreError> {
        let claims = self.database.collection::<Document>(SUBSCRIBER_CLAIMS);
        let claim = claims
            .find_one(doc! { "_id": target.claim_id(site_id) })
            .await
            .map_err(StoreError::query(format!(
                "looking up a registration of site {site_id}"
            )))?;
        Ok(claim.and_then(|c| c.get_object_id("subscriberId").ok()))
    }

    /// Marks subscriber `id` unsubscribed (the user left); false when there is no such
    /// subscriber.
    pub async fn unsubscribe_one(&self, id: ObjectId) -> Result<bool, StoreError> {
        let result = self
            .subscribers
            .update_one(
                doc! { "_id": id },
                doc! { "$set": { "subscribed": false, "updatedAt": DateTime::now() } },
            )
            .await
            .map_err(StoreError::query(format!("unsubscribing subscriber {id}")))?;
        Ok(result.matched_count > 0)
    }

    /// The site of subscriber `id`, `None` when there is no such subscriber.
    pub async fn subscriber_site(&self, id: ObjectId) -> Result<Option<ObjectId>, StoreError> {
        let found = self
            .subscribers
            .find_one(doc! { "_id": id })
            .projection(doc! { "siteId": 1 })
            .await
            .map_err(StoreError::query(format!("loading subscriber {id}")))?;
        Ok(found.and_then(|d| d.get_object_id("siteId").ok()))
    }

    /// Deletes subscriber `id` of site `site_id` and its registration claim; false when the
    /// site has no such subscriber.
    pub async fn delete_subscriber(
        &self,
        site_id: ObjectId,
        id: ObjectId,
    ) -> Result<bool, StoreError> {
        let context = || format!("deleting subscriber {id}");
        let Some(document) = self
            .subscribers
            .find_one(doc! { "_id": id })
            .await
            .map_err(StoreError::query(context()))?
        else {
            return Ok(false);
        };
        if document.get_object_id("siteId").ok() != Some(site_id) {
            return Ok(false);
        }
        self.subscribers
            .delete_one(doc! { "_id": id })
            .await
            .map_err(StoreError::query(context()))?;
        if let Some(target) = target_of(&document) {
            self.database
                .collection::<Document>(SUBSCRIBER_CLAIMS)
                .delete_one(doc! { "_id": target.claim_id(site_id) })
                .await
                .map_err(StoreError::query(context()))?;
        }
        Ok(true)
    }
}

/// The registration target a subscriber document stands for, when it can be read.
fn target_of(document: &Document) -> Option<Target> {
    let platform: Platform = document
        .get("platform")
        .and_then(|p| bson::from_bson(p.clone()).ok())
        .unwrap_or_default();
    match platform {
        Platform::Web => PushSubscription::parse(document.get_str("pushEndPoint").ok()?)
            .ok()
            .map(Target::Web),
        platform => Some(Target::Device {
            platform,
            token: document.get_str("deviceToken").ok()?.to_owned(),
        }),
    }
}

impl Store {
    /// Subscriber `id`, `None` when there is no such subscriber.
    pub async fn subscriber(
        &self,
        id: ObjectId,
    ) -> Result<Option<pushservice_model::Subscriber>, StoreError> {
        let found = self
            .subscribers
            .find_one(doc! { "_id": id })
            .await
            .map_err(StoreError::query(format!("loading subscriber {id}")))?;
        found
            .map(|d| {
                bson::from_document(d).map_err(StoreError::decode(crate::store::SUBSCRIBERS, &id))
            })
            .transpose()
    }

    /// The subscribed subscribers of site `site_id` whose `externalId` is one of
    /// `external_ids` (a user may have several devices), at most `limit`.
    pub async fn subscribers_of_users(
        &self,
        site_id: ObjectId,
        external_ids: &[String],
        limit: i64,
    ) -> Result<Vec<pushservice_model::Subscriber>, StoreError> {
        use futures::TryStreamExt as _;
        let context = || {
            format!(
                "finding subscribers of {} users of site {site_id}",
                external_ids.len()
            )
        };
        let documents: Vec<Document> = self
            .subscribers
            .find(doc! { "siteId": site_id, "subscribed": true, "externalId": { "$in": external_ids } })
            .limit(limit)
            .await
            .map_err(StoreError::query(context()))?
            .try_collect()
            .await
            .map_err(StoreError::query(context()))?;
        documents
            .into_iter()
            .map(|d| {
                let id = d.get_object_id("_id").unwrap_or_default();
                bson::from_document(d).map_err(StoreError::decode(crate::store::SUBSCRIBERS, &id))
            })
            .collect()
    }
}
