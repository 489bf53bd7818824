//! A push: one stored notification for one site, and its life cycle.

use bson::DateTime;
use bson::oid::ObjectId;
use serde::{Deserialize, Serialize};

use crate::lenient;

/// Default `timeToLive` of the original service: three days, in seconds.
pub const DEFAULT_TIME_TO_LIVE: i64 = 259_200;

/// Where a push is in its life cycle.
///
/// `pushctl send` moves `pending` to `processing`; the parser moves `processing` to `done`
/// (every subscriber fanned out) or `failed` (for example, its site is gone).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PushStatus {
    /// Stored, not triggered yet.
    Pending,
    /// Triggered: its `raw-push` message is on its way or being fanned out.
    Processing,
    /// Every subscriber has been handed a delivery message.
    Done,
    /// Could not be fanned out; see the push's `failureReason`.
    Failed,
    /// Withdrawn by its owner before it went out.
    Canceled,
}

impl PushStatus {
    /// The name stored in MongoDB.
    pub fn as_str(self) -> &'static str {
        match self {
            PushStatus::Pending => "pending",
            PushStatus::Processing => "processing",
            PushStatus::Done => "done",
            PushStatus::Failed => "failed",
            PushStatus::Canceled => "canceled",
        }
    }
}

impl std::fmt::Display for PushStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Delivery priority; becomes the Web Push `Urgency` header and the APNs/FCM priority.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    /// Deliver when convenient for the device (Web Push `Urgency: normal`).
    #[default]
    Normal,
    /// Wake the device now (Web Push `Urgency: high`).
    High,
}

/// A button shown with the notification (`NotificationOptions.actions` in the browser API).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NotificationAction {
    /// Identifier the service worker receives when the button is clicked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// Button label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Button icon URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icon: Option<String>,
    /// Where a click on this button leads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// The `options` sub-document: what the browser's `showNotification(title, options)` takes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Notification {
    /// Body text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Icon URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icon: Option<String>,
    /// Large image URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Monochrome badge URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub badge: Option<String>,
    /// Vibration pattern, passed through as stored (usually an array of milliseconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vibration: Option<serde_json::Value>,
    /// Show without sound or vibration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub silent: Option<bool>,
    /// Alert again when replacing a notification with the same tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renotify: Option<bool>,
    /// Keep the notification until the user acts on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub require_interaction: Option<bool>,
    /// Text direction: `auto`, `ltr` or `rtl`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<String>,
    /// Notifications with the same tag replace each other.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// Action buttons.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<NotificationAction>,
}

/// A document of the `pushes` collection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Push {
    /// The push id.
    #[serde(rename = "_id")]
    pub id: ObjectId,
    /// The site whose subscribers receive it.
    pub site_id: ObjectId,
    /// Life-cycle state.
    pub status: PushStatus,
    /// Notification title.
    pub title: String,
    /// Everything else the browser shows.
    #[serde(default)]
    pub options: Notification,
    /// Where a click on the notification leads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launch_url: Option<String>,
    /// Delivery priority.
    #[serde(default)]
    pub priority: Priority,
    /// Seconds the push service keeps the message for an offline device.
    #[serde(default = "default_ttl", deserialize_with = "lenient::i64_from_any")]
    pub time_to_live: i64,
    /// Delivery messages produced for this push (set by the parser when it finishes).
    #[serde(default, deserialize_with = "lenient::i64_from_any")]
    pub total_sent: i64,
    /// Deliveries reported by service workers.
    #[serde(default, deserialize_with = "lenient::i64_from_any")]
    pub total_deliver: i64,
    /// Clicks reported by service workers.
    #[serde(default, deserialize_with = "lenient::i64_from_any")]
    pub total_click: i64,
    /// Closes reported by service workers.
    #[serde(default, deserialize_with = "lenient::i64_from_any")]
    pub total_close: i64,
    /// Web Push / APNs / FCM requests the push services accepted (senders, `$inc`).
    #[serde(default, deserialize_with = "lenient::i64_from_any")]
    pub total_accepted: i64,
    /// Subscribers found gone (404/410) and unsubscribed while sending (senders, `$inc`).
    #[serde(default, deserialize_with = "lenient::i64_from_any")]
    pub total_unsubscribed: i64,
    /// Deliveries that failed for good: permanent errors and exhausted retries (senders).
    #[serde(default, deserialize_with = "lenient::i64_from_any")]
    pub total_failed: i64,
    /// Deliveries withdrawn because the push was canceled: dropped by senders, plus the
    /// subscribers the parser had not fanned out yet when it stopped.
    #[serde(default, deserialize_with = "lenient::i64_from_any")]
    pub total_canceled: i64,
    /// Who receives the push; absent means every subscribed subscriber of the site.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<Audience>,
    /// When the push was canceled (status `canceled`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canceled_at: Option<DateTime>,
    /// How many times the push was triggered (`pushctl send`, `--force` included); each
    /// trigger claims its number once, so two racing sends cannot both publish.
    #[serde(default, deserialize_with = "lenient::i64_from_any")]
    pub trigger_count: i64,
    /// How far the parser got fanning the push out; resumes from here after a restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fanout: Option<FanoutProgress>,
    /// Why the push failed, when `status` is `failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    /// Why deliveries failed, most frequent first (a reason names the setting to fix when
    /// the site's credentials are at fault).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub delivery_failures: Vec<ReasonCount>,
    /// When the document was created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<DateTime>,
    /// When the document was last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<DateTime>,
    /// Mongoose's document version key.
    #[serde(rename = "__v", default)]
    pub version: i32,
}

/// Who receives a push (field `audience`): subscribers whose `externalId` is one of
/// `externalIds`, or who carry at least one of `tags`. Both empty means everyone; both set
/// means subscribers matching both.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Audience {
    /// The site's own user ids (`subscribers.externalId`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub external_ids: Vec<String>,
    /// Subscriber tags (`subscribers.tags`): any one of them selects a subscriber.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

impl Audience {
    /// Whether this selects every subscriber (no restriction at all).
    pub fn is_everyone(&self) -> bool {
        self.external_ids.is_empty() && self.tags.is_empty()
    }
}

/// How many deliveries of a push failed for one reason.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReasonCount {
    /// Why.
    pub reason: String,
    /// How many deliveries.
    #[serde(default, deserialize_with = "lenient::i64_from_any")]
    pub count: i64,
}

/// The parser's checkpoint on a push document (field `fanout`).
///
/// Every subscriber up to and including `lastSubscriberId` (in `_id` order) has a delivery
/// message acknowledged by Kafka; a parser that picks the push up again streams from the next
/// one.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FanoutProgress {
    /// Last subscriber whose delivery message is durably on the `push` topic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_subscriber_id: Option<ObjectId>,
    /// Delivery messages produced so far.
    #[serde(default, deserialize_with = "lenient::i64_from_any")]
    pub produced: i64,
    /// Subscribers skipped because their subscription could not be used.
    #[serde(default, deserialize_with = "lenient::i64_from_any")]
    pub skipped: i64,
    /// Subscribers never fanned out because the push was canceled first (written by the
    /// parser when it stops; they count in `totalCanceled`).
    #[serde(default, deserialize_with = "lenient::i64_from_any")]
    pub canceled: i64,
    /// When the fan-out ended: every subscriber produced (`done`), or the parser stopped
    /// and counted the rest (`canceled`); absent while it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime>,
    /// When the checkpoint was written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<DateTime>,
}

fn default_ttl() -> i64 {
    DEFAULT_TIME_TO_LIVE
}

impl Push {
    /// A new `pending` push for `site_id`, with zeroed counters and timestamps set to now.
    pub fn new(site_id: ObjectId, title: String, options: Notification) -> Self {
        let now = DateTime::now();
        Push {
            id: ObjectId::new(),
            site_id,
            status: PushStatus::Pending,
            title,
            options,
            launch_url: None,
            priority: Priority::Normal,
            time_to_live: DEFAULT_TIME_TO_LIVE,
            total_sent: 0,
            total_deliver: 0,
            total_click: 0,
            total_close: 0,
            total_accepted: 0,
            total_unsubscribed: 0,
            total_failed: 0,
            total_canceled: 0,
            audience: None,
            canceled_at: None,
            trigger_count: 0,
            fanout: None,
            failure_reason: None,
            delivery_failures: Vec::new(),
            created_at: Some(now),
            updated_at: Some(now),
            version: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::doc;

    #[test]
    fn loads_mongoose_document_with_mixed_number_types() {
        let id = ObjectId::new();
        let site_id = ObjectId::new();
        let document = doc! {
            "_id": id,
            "siteId": site_id,
            "status": "done",
            "title": "Sale",
            "options": { "body": "50% off", "vibration": [200, 100, 200], "actions": [
                { "action": "open", "title": "Open", "url": "https://shop.example/sale" }
            ]},
            "launchUrl": "https://shop.example/",
            "priority": "high",
            "timeToLive": 3600.0,
            "totalSent": 12_i64,
            "totalDeliver": 3,
            "__v": 0,
            "someFieldWeDoNotKnow": "ignored",
        };
        let push: Push = bson::from_document(document).expect("document loads");
        assert_eq!(push.status, PushStatus::Done);
        assert_eq!(push.priority, Priority::High);
        assert_eq!(push.time_to_live, 3600);
        assert_eq!(push.total_sent, 12);
        assert_eq!(push.total_deliver, 3);
        assert_eq!(push.total_click, 0);
        assert_eq!(
            push.options.actions[0].url.as_deref(),
            Some("https://shop.example/sale")
        );
        assert_eq!(
            push.options.vibration,
            Some(serde_json::json!([200, 100, 200]))
        );
    }

    #[test]
    fn defaults_ttl_and_priority_when_absent() {
        let document = doc! {
            "_id": ObjectId::new(), "siteId": ObjectId::new(), "status": "pending", "title": "t",
        };
        let push: Push = bson::from_document(document).expect("document loads");
        assert_eq!(push.time_to_live, DEFAULT_TIME_TO_LIVE);
        assert_eq!(push.priority, Priority::Normal);
    }

    #[test]
    fn writes_camel_case_and_object_ids() {
        let push = Push::new(ObjectId::new(), "Hello".into(), Notification::default());
        let document = bson::to_document(&push).expect("serializes");
        assert!(matches!(
            document.get("siteId"),
            Some(bson::Bson::ObjectId(_))
        ));
        assert_eq!(document.get_str("status").expect("status"), "pending");
        assert!(document.contains_key("timeToLive"));
        assert!(matches!(
            document.get("createdAt"),
            Some(bson::Bson::DateTime(_))
        ));
    }
}
