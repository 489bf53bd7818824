//! One delivery, from message to final outcome.
//!
//! Attempts go through the provider for the target's platform; the outcome decides:
//! accepted → counted; subscription gone → unsubscribed (batched write awaited), counted;
//! permanent → counted as failed, logged, dead-lettered; transient → tried again after a
//! backoff (no sooner than `Retry-After`) until the retry budget is spent, then failed. While
//! a delivery waits for its retry it holds no request slot, so other subscribers of the same
//! partition go on being delivered; only the commit position waits for it.

use std::sync::Arc;

use pushservice_apns::{ApnsClient, ApnsRequest, build_payload};
use pushservice_fcm::{FcmClient, FcmRequest};
use pushservice_model::{DeliveryMessage, ObjectId, PayloadFields, Target, parse_object_id};
use pushservice_provider::DeliveryOutcome;
use pushservice_webpush::{WebPushClient, WebPushRequest, decode_auth, decode_p256dh};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::counters::{Counted, PushCounters};
use crate::credentials::CredentialCache;
use crate::deadletter::{DeadLetter, DeadLetterInfo};
use crate::metrics::SenderMetrics;
use crate::retry::RetryPolicy;
use crate::unsubscribe::Unsubscriber;

/// Everything a delivery needs; shared by all deliveries of a sender.
pub struct Deliverer {
    /// Web Push provider.
    pub web: WebPushClient,
    /// APNs provider.
    pub apns: ApnsClient,
    /// FCM provider.
    pub fcm: FcmClient,
    /// Site credentials.
    pub credentials: CredentialCache,
    /// Per-push counters.
    pub counters: Arc<PushCounters>,
    /// Unsubscribe batcher.
    pub unsubscriber: Unsubscriber,
    /// Dead-letter writer.
    pub dead_letter: DeadLetter,
    /// Retry budget and pacing.
    pub retry: RetryPolicy,
    /// Bounds requests in flight (deliveries waiting for a retry hold none).
    pub active: Arc<Semaphore>,
    /// Cancelled at shutdown: deliveries waiting for a retry give up (not final, redelivered).
    pub stop: CancellationToken,
    /// Attempts, retries, dead letters.
    pub metrics: SenderMetrics,
}

/// Where a message came from, for logs and dead letters.
#[derive(Debug, Clone, Copy)]
pub struct Source {
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
}

impl Deliverer {
    /// Delivers one raw message. Returns true when its outcome is final (its offset may be
    /// committed), false when shutdown or `revoked` interrupted it.
    ///
    /// `revoked` is cancelled when the message's partition moves to another sender, which
    /// redelivers it from the last committed offset: the delivery stops wherever it is
    /// (waiting for a request slot, on the wire, or waiting for a retry) rather than
    /// delivering a second copy and counting it twice.
    pub async fn process(&self, raw: &[u8], source: Source, revoked: &CancellationToken) -> bool {
        tokio::select! {
            biased;
            finished = self.deliver(raw, source) => finished,
            () = revoked.cancelled() => {
                self.metrics.handed_over.inc();
                false
            }
        }
    }

    async fn deliver(&self, raw: &[u8], source: Source) -> bool {
        let message = match DeliveryMessage::from_json(raw) {
            Ok(message) => message,
            Err(e) => {
                self.metrics.malformed.inc();
                let reason = format!("malformed delivery message: {e}");
                tracing::error!(partition = source.partition, offset = source.offset, %reason,
                    "message dead-lettered");
                self.dead_letter(raw, "", source, 0, &reason).await;
                return true;
            }
        };
        let Ok(push_id) = parse_object_id("push", &message.push_id) else {
            let reason = format!("malformed pushId {:?}", message.push_id);
            self.dead_letter(raw, &message.subscriber_id, source, 0, &reason)
                .await;
            return true;
        };
        let mut attempt = message.attempt;
        loop {
            attempt += 1;
            let outcome = {
                let Ok(_slot) = self.active.acquire().await else {
                    return false;
                };
                self.attempt(&message).await
            };
            self.metrics.attempt(&outcome);
            match outcome {
                DeliveryOutcome::Accepted => {
                    self.counters.add(push_id, Counted::Accepted);
                    return true;
                }
                DeliveryOutcome::SubscriptionGone { status } => {
                    let Ok(subscriber_id) = parse_object_id("subscriber", &message.subscriber_id)
                    else {
                        self.counters.add(push_id, Counted::Failed);
                        return true;
                    };
                    if self.unsubscriber.unsubscribe(subscriber_id).await.is_err() {
                        return false;
                    }
                    tracing::debug!(push_id = %push_id, subscriber_id = %subscriber_id, status,
                        "subscription gone; unsubscribed");
                    self.counters.add(push_id, Counted::Unsubscribed);
                    return true;
                }
                DeliveryOutcome::Permanent { status, reason } => {
                    tracing::warn!(push_id = %push_id, subscriber_id = %message.subscriber_id,
                        status, %reason, "delivery failed permanently");
                    self.fail(raw, &message, push_id, source, attempt, &reason)
                        .await;
                    return true;
                }
                DeliveryOutcome::Transient {
                    status,
                    retry_after,
                    reason,
                } => {
                    if self.stop.is_cancelled() {
                        return false;
                    }
                    let Some(delay) = self.retry.delay(attempt, retry_after, fastrand::f64())
                    else {
                        let reason = format!("gave up after {attempt} attempts: {reason}");
                        tracing::warn!(push_id = %push_id, subscriber_id = %message.subscriber_id,
                            status, %reason, "delivery failed");
                        self.fail(raw, &message, push_id, source, attempt, &reason)
                            .await;
                        return true;
                    };
                    self.metrics.retries.inc();
                    tracing::debug!(push_id = %push_id, subscriber_id = %message.subscriber_id,
                        status, attempt, ?delay, %reason, "delivery will be retried");
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = self.stop.cancelled() => return false,
                    }
                }
            }
        }
    }

    async fn attempt(&self, message: &DeliveryMessage) -> DeliveryOutcome {
        let Ok(site_id) = parse_object_id("site", &message.site_id) else {
            return DeliveryOutcome::permanent(format!("malformed siteId {:?}", message.site_id));
        };
        let credentials = match self.credentials.get(site_id).await {
            Ok(Ok(credentials)) => credentials,
            Ok(Err(reason)) => return DeliveryOutcome::permanent(reason),
            Err(e) => {
                return DeliveryOutcome::transient(format!("loading site credentials: {e}"));
            }
        };
        match &message.target {
            Target::Web {
                endpoint,
                p256dh,
                auth,
            } => {
                let keys = decode_p256dh(p256dh)
                    .map_err(|e| e.to_string())
                    .and_then(|p| decode_auth(auth).map(|a| (p, a)).map_err(|e| e.to_string()));
                let (p256dh, auth) = match keys {
                    Ok(keys) => keys,
                    Err(reason) => {
                        return DeliveryOutcome::permanent(format!(
                            "broken subscription keys: {reason}"
                        ));
                    }
                };
                let vapid_key = match &credentials.vapid {
                    Ok(key) => key,
                    Err(reason) => return DeliveryOutcome::permanent(reason.clone()),
                };
                let request = WebPushRequest {
                    endpoint,
                    p256dh: &p256dh,
                    auth: &auth,
                    payload: message.payload.get().as_bytes(),
                    ttl: message.ttl,
                    urgency: message.urgency,
                    topic: message.topic.as_deref(),
                    vapid_key,
                    subject: &credentials.subject,
                    site_key: &credentials.site_key,
                };
                self.web.send(&request).await
            }
            Target::Ios { token } => {
                let apns = match &credentials.apns {
                    Ok(apns) => apns,
                    Err(reason) => return DeliveryOutcome::permanent(reason.clone()),
                };
                let fields = match PayloadFields::parse(&message.payload) {
                    Ok(fields) => fields,
                    Err(e) => {
                        return DeliveryOutcome::permanent(format!(
                            "unreadable notification payload: {e}"
                        ));
                    }
                };
                let payload = build_payload(&fields, message.urgency);
                let expiration = match message.ttl {
                    0 => 0,
                    ttl => unix_now() + u64::from(ttl),
                };
                self.apns
                    .send(&ApnsRequest {
                        token,
                        key: &apns.key,
                        topic: &apns.topic,
                        sandbox: apns.sandbox,
                        payload: &payload,
                        expiration,
                        collapse_id: message.topic.as_deref(),
                    })
                    .await
            }
            Target::Android { token } => {
                let account = match &credentials.fcm {
                    Ok(account) => account,
                    Err(reason) => return DeliveryOutcome::permanent(reason.clone()),
                };
                let fields = match PayloadFields::parse(&message.payload) {
                    Ok(fields) => fields,
                    Err(e) => {
                        return DeliveryOutcome::permanent(format!(
                            "unreadable notification payload: {e}"
                        ));
                    }
                };
                self.fcm
                    .send(&FcmRequest {
                        token,
                        account,
                        fields: &fields,
                        ttl: message.ttl,
                        urgency: message.urgency,
                        collapse_key: message.topic.as_deref(),
                    })
                    .await
            }
        }
    }

    async fn fail(
        &self,
        raw: &[u8],
        message: &DeliveryMessage,
        push_id: ObjectId,
        source: Source,
        attempts: u32,
        reason: &str,
    ) {
        self.dead_letter(raw, &message.subscriber_id, source, attempts, reason)
            .await;
        self.counters.add(push_id, Counted::Failed);
    }

    async fn dead_letter(
        &self,
        raw: &[u8],
        key: &str,
        source: Source,
        attempts: u32,
        reason: &str,
    ) {
        let info = DeadLetterInfo {
            key,
            partition: source.partition,
            offset: source.offset,
            attempts,
            reason,
        };
        self.metrics.dead_letters.inc();
        self.dead_letter.write(raw, info).await;
    }
}

/// Seconds since the Unix epoch (0 if the clock is before it).
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
