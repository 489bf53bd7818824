//! What service workers report: a notification shown (`delivered`), clicked or closed.
//!
//! Counted once per (push, subscriber, type): each event first claims
//! `pushEvents._id = "<push>:<subscriber>:<type>"` (unique `_id`, enforced atomically by every
//! MongoDB-protocol server), so a service worker that reports twice, a retried request or a
//! replayed one never inflates a total. The new events of a batch are added to a counter
//! document per push and API instance (`pushEventStats._id = "<push>:<instance>"`), which
//! only that instance writes: concurrent `$inc`s on one document are lost updates on
//! FerretDB 1.x, which applies updates as read-modify-write. The push document's
//! `totalDeliver`, `totalClick` and `totalClose` are then set to the sum over those
//! documents; [`Store::event_counts`] reads the sum live.

use std::collections::HashMap;

use bson::oid::ObjectId;
use bson::{DateTime, Document, doc};
use futures::TryStreamExt as _;

use crate::error::StoreError;
use crate::store::Store;

/// Collection of event claims (one document per counted event).
pub const PUSH_EVENTS: &str = "pushEvents";
/// Collection of per-instance event counters.
pub const PUSH_EVENT_STATS: &str = "pushEventStats";

/// What a service worker reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    /// The notification was shown.
    Delivered,
    /// The notification (or one of its actions) was clicked.
    Click,
    /// The notification was dismissed.
    Close,
}

impl EventType {
    /// The name used in the API and in claim ids.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Delivered => "delivered",
            EventType::Click => "click",
            EventType::Close => "close",
        }
    }

    /// Parses an API name.
    pub fn parse(name: &str) -> Option<EventType> {
        match name {
            "delivered" => Some(EventType::Delivered),
            "click" => Some(EventType::Click),
            "close" => Some(EventType::Close),
            _ => None,
        }
    }
}

/// One reported event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Event {
    /// The push.
    pub push_id: ObjectId,
    /// The subscriber whose service worker reported it.
    pub subscriber_id: ObjectId,
    /// What happened.
    pub kind: EventType,
}

/// Event totals of a push.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EventCounts {
    /// Notifications shown.
    pub delivered: i64,
    /// Clicks.
    pub clicked: i64,
    /// Closes.
    pub closed: i64,
}

impl EventCounts {
    fn add(&mut self, kind: EventType, n: i64) {
        match kind {
            EventType::Delivered => self.delivered += n,
            EventType::Click => self.clicked += n,
            EventType::Close => self.closed += n,
        }
    }

    fn is_zero(&self) -> bool {
        *self == EventCounts::default()
    }
}

impl Store {
    /// Counts `events` (each at most once ever) for API instance `instance` and brings the
    /// touched pushes' totals up to date. Returns how many events were new.
    pub async fn record_events(&self, instance: &str, events: &[Event]) -> Result<u64, StoreError> {
        if events.is_empty() {
            return Ok(0);
        }
        let claims: Vec<Document> = events
            .iter()
            .map(|e| {
                doc! {
                    "_id": format!("{}:{}:{}", e.push_id.to_hex(), e.subscriber_id.to_hex(), e.kind.as_str()),
                    "at": DateTime::now(),
                }
            })
            .collect();
        let context = || format!("recording {} push events", events.len());
        let inserted: Vec<bool> = match self
            .database
            .collection::<Document>(PUSH_EVENTS)
            .insert_many(claims)
            .ordered(false)
            .await
        {
            Ok(_) => vec![true; events.len()],
            Err(e) => match e.kind.as_ref() {
                mongodb::error::ErrorKind::InsertMany(failure)
                    if failure.write_concern_error.is_none()
                        && failure
                            .write_errors
                            .iter()
                            .flatten()
                            .all(|w| w.code == 11000) =>
                {
                    let mut inserted = vec![true; events.len()];
                    for w in failure.write_errors.iter().flatten() {
                        if let Some(slot) = inserted.get_mut(w.index) {
                            *slot = false;
                        }
                    }
                    inserted
                }
                _ => return Err(StoreError::query(context())(e)),
            },
        };

        let mut per_push: HashMap<ObjectId, EventCounts> = HashMap::new();
        for (event, new) in events.iter().zip(&inserted) {
            if *new {
                per_push
                    .entry(event.push_id)
                    .or_default()
                    .add(event.kind, 1);
            }
        }
        let stats = self.database.collection::<Document>(PUSH_EVENT_STATS);
        for (push_id, counts) in &per_push {
            if counts.is_zero() {
                continue;
            }
            stats
                .update_one(
                    doc! { "_id": format!("{}:{instance}", push_id.to_hex()) },
                    doc! {
                        "$inc": {
                            "delivered": counts.delivered,
                            "clicked": counts.clicked,
                            "closed": counts.closed,
                        },
                        "$set": { "pushId": push_id, "updatedAt": DateTime::now() },
                    },
                )
                .upsert(true)
                .await
                .map_err(StoreError::query(context()))?;
        }
        for push_id in per_push.keys() {
            let totals = self.event_counts(*push_id).await?;
            self.pushes
                .update_one(
                    doc! { "_id": push_id },
                    doc! { "$max": {
                        "totalDeliver": totals.delivered,
                        "totalClick": totals.clicked,
                        "totalClose": totals.closed,
                    } },
                )
                .await
                .map_err(StoreError::query(context()))?;
        }
        Ok(inserted.iter().filter(|n| **n).count() as u64)
    }

    /// The event totals of push `push_id`, summed over every API instance's counter.
    pub async fn event_counts(&self, push_id: ObjectId) -> Result<EventCounts, StoreError> {
        let context = || format!("summing events of push {push_id}");
        let documents: Vec<Document> = self
            .database
            .collection::<Document>(PUSH_EVENT_STATS)
            .find(doc! { "pushId": push_id })
            .await
            .map_err(StoreError::query(context()))?
            .try_collect()
            .await
            .map_err(StoreError::query(context()))?;
        let mut counts = EventCounts::default();
        for d in &documents {
            counts.delivered += number(d, "delivered");
            counts.clicked += number(d, "clicked");
            counts.closed += number(d, "closed");
        }
        Ok(counts)
    }
}

fn number(d: &Document, key: &str) -> i64 {
    match d.get(key) {
        Some(bson::Bson::Int32(n)) => i64::from(*n),
        Some(bson::Bson::Int64(n)) => *n,
        Some(bson::Bson::Double(n)) => *n as i64,
        _ => 0,
    }
}
