//! Deliveries the sink accepted in verification mode, kept per subscriber so a test can assert
//! exactly what each subscriber would have seen: Web Push messages decrypted ([`Received`]),
//! APNs and FCM messages as the JSON the device would be handed ([`MobileReceived`]).
//!
//! Only verification mode keeps them: counting mode must stay allocation-free per request and
//! run for millions of requests without growing.

use std::collections::HashMap;
use std::sync::Mutex;

use pushservice_model::Urgency;
use serde::Serialize;

/// One accepted, verified and decrypted Web Push delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Received {
    /// The subscriber id from the endpoint URL.
    pub subscriber_id: String,
    /// The decrypted payload, padding removed.
    pub plaintext: Vec<u8>,
    /// The `TTL` header, seconds.
    pub ttl: u32,
    /// The `Urgency` header, when sent.
    pub urgency: Option<Urgency>,
    /// The `Topic` header, when sent.
    pub topic: Option<String>,
    /// The VAPID `sub` claim.
    pub vapid_sub: String,
    /// The VAPID `aud` claim.
    pub vapid_aud: String,
    /// Which request for this subscriber it was (1 for the first, counting every request
    /// since start or the last reset, whatever its answer).
    pub attempt: u32,
    /// When it was accepted: tests use it to tell when duplicates happened.
    #[serde(skip)]
    pub at: std::time::Instant,
}

/// Which mobile push service accepted a [`MobileReceived`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MobileKind {
    /// Apple Push Notification service.
    Apns,
    /// Firebase Cloud Messaging HTTP v1.
    Fcm,
}

/// One accepted and verified APNs or FCM delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MobileReceived {
    /// The service it went through.
    pub kind: MobileKind,
    /// The device token (APNs: from the path; FCM: `message.token`).
    pub token: String,
    /// APNs: the whole JSON payload; FCM: the `message` object.
    pub body: serde_json::Value,
    /// APNs `apns-topic` header.
    pub apns_topic: Option<String>,
    /// APNs `apns-push-type` header, when sent.
    pub apns_push_type: Option<String>,
    /// APNs `apns-priority` header (10, 5 or 1), when sent.
    pub apns_priority: Option<u8>,
    /// APNs `apns-expiration` header (unix seconds), when sent.
    pub apns_expiration: Option<u64>,
    /// APNs `apns-collapse-id` header, when sent.
    pub apns_collapse_id: Option<String>,
    /// Who sent it: the APNs team id of the provider token, or the `client_email` of the
    /// service account the FCM access token was issued to.
    pub issuer: String,
    /// FCM: the project from the URL.
    pub project_id: Option<String>,
    /// Which request for this token it was (1 for the first, counting every request since
    /// start or the last reset, whatever its answer).
    pub attempt: u32,
}

/// Accepted deliveries by subscriber id or device token, oldest first.
pub(crate) struct DeliveryLog<T> {
    by_subscriber: Mutex<HashMap<String, Vec<T>>>,
}

impl<T: Clone> DeliveryLog<T> {
    pub(crate) fn new() -> Self {
        DeliveryLog {
            by_subscriber: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn record(&self, subscriber: &str, delivery: T) {
        self.by_subscriber
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(subscriber.to_owned())
            .or_default()
            .push(delivery);
    }

    /// What `subscriber` received, oldest first.
    pub(crate) fn of(&self, subscriber: &str) -> Vec<T> {
        self.by_subscriber
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(subscriber)
            .cloned()
            .unwrap_or_default()
    }

    pub(crate) fn clear(&self) {
        self.by_subscriber
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }
}
