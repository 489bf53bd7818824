//! One delivery attempt, from message to the records its outcome produces.
//!
//! The attempt goes through the provider of the target's platform; the answer decides what
//! is written (with the message's offset, in one transaction, by [`crate::committer`]):
//!
//! | answer | records |
//! |---|---|
//! | accepted | outcome `accepted` |
//! | subscription gone | outcome `gone` (the recorder unsubscribes) |
//! | suspect token ([`crate::breaker`]) | `gone` among successes; failed naming the setting once the site's breaker tripped; else a retry |
//! | misconfigured | outcome `failed` naming the setting, dead letter; the site's breaker trips |
//! | permanent | outcome `failed`, dead letter |
//! | transient | the message on a retry topic, due after the backoff; `failed` and a dead letter once the time budget is spent |
//! | deferred (the push service's slots and queue are full) | the message on a retry topic, no attempt counted |
//! | none: the push is canceled ([`crate::canceled`]) | outcome `canceled`, no attempt, no dead letter |
//!
//! No delivery waits in memory for a retry or for MongoDB: its outcome is final as soon as
//! its records are written.
//!
//! A delivery of a canceled push is dropped before its attempt, or during it when the
//! cancel is learned while it waits for a request slot (nothing is sent). A request already
//! on the wire is never abandoned: it finishes and counts as what the push service answered,
//! so a push's totals match what reached the push service.

use std::sync::Arc;
use std::time::Duration;

use pushservice_apns::{ApnsClient, ApnsRequest};
use pushservice_fcm::{FcmClient, FcmRequest};
use pushservice_model::{DeliveryMessage, OutcomeResult, Target, parse_object_id};
use pushservice_provider::DeliveryOutcome;
use pushservice_webpush::{WebPushClient, WebPushRequest, decode_auth, decode_p256dh};
use tokio_util::sync::CancellationToken;

use crate::breaker::{Breakers, Verdict};
use crate::canceled::CanceledPushes;
use crate::committer::Produced;
use crate::credentials::CredentialCache;
use crate::metrics::SenderMetrics;
use crate::payloads::PreparedPayloads;
use crate::records::{DeadLetter, RecordTopics, Source};
use crate::retry::{RetryPlan, RetryPolicy, now_millis, tier_for};

/// How long an undecided suspect answer waits for the breaker's evidence.
const UNDECIDED_RETRY: Duration = Duration::from_secs(10);

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
    /// APNs and FCM payloads, read once per push.
    pub payloads: PreparedPayloads,
    /// Per-site breakers for answers that may mean a misconfiguration.
    pub breakers: Arc<Breakers>,
    /// Which pushes are canceled.
    pub canceled: Arc<CanceledPushes>,
    /// Where records go.
    pub records: RecordTopics,
    /// Retry budget and pacing.
    pub retry: RetryPolicy,
    /// The retry tiers' waits, shortest first.
    pub retry_tiers: Vec<Duration>,
    /// Attempts, retries, dead letters.
    pub metrics: SenderMetrics,
}

impl Deliverer {
    /// Delivers one message once and returns the records its outcome produces; `None` when
    /// `revoked` interrupted it (its partition moved to another sender, which delivers it
    /// again from the last committed offset).
    pub async fn process(
        &self,
        raw: &[u8],
        parsed: Result<DeliveryMessage, String>,
        source: &Source,
        revoked: &CancellationToken,
    ) -> Option<Produced> {
        let message = match parsed {
            Ok(message) => message,
            Err(e) => {
                self.metrics.malformed.inc();
                let reason = format!("malformed delivery message: {e}");
                tracing::error!(topic = %source.topic, partition = source.partition, offset = source.offset,
                    %reason, "message dead-lettered");
                self.metrics.dead_letters.inc();
                return Some(vec![self.records.dead_letter(DeadLetter {
                    message: None,
                    raw,
                    source,
                    attempts: 0,
                    reason: &reason,
                    failed_at: now_millis(),
                })]);
            }
        };
        let push = self.canceled.check(&message.push_id).await;
        if push.canceled {
            return Some(self.drop_canceled(&message));
        }
        // A cancel learned while the delivery waits for a request slot withdraws it (nothing
        // is sent); one learned after the request went out lets it finish and count as what
        // the push service answered, so the push's totals are what reached it.
        let outcome = tokio::select! {
            biased;
            () = revoked.cancelled() => {
                self.metrics.handed_over.inc();
                return None;
            }
            timed = pushservice_provider::slots::timed(self.attempt(&message, &push.token)) => timed,
        };
        let (outcome, slot_taken) = outcome;
        let platform = message.target.platform();
        self.metrics
            .attempt(platform, &outcome, slot_taken.map(|at| at.elapsed()));
        // A replayed dead letter's record is stamped when it was replayed, not sent.
        if matches!(outcome, DeliveryOutcome::Accepted)
            && !message.replayed
            && let Some(sent_at) = source.push_sent_at_ms
        {
            let since = now_millis().saturating_sub(sent_at);
            self.metrics
                .accepted_after(platform, Duration::from_millis(since));
        }
        Some(self.produced(&message, raw, source, outcome))
    }

    /// The record of a delivery not made because its push is canceled: no attempt counted,
    /// no dead letter (nothing failed).
    fn drop_canceled(&self, message: &DeliveryMessage) -> Produced {
        self.metrics.canceled.inc();
        tracing::trace!(push_id = %message.push_id, subscriber_id = %message.subscriber_id,
            "delivery dropped: push canceled");
        vec![
            self.records
                .outcome(message, OutcomeResult::Canceled, None, message.attempt),
        ]
    }

    /// The records `outcome` produces for `message`.
    fn produced(
        &self,
        message: &DeliveryMessage,
        raw: &[u8],
        source: &Source,
        outcome: DeliveryOutcome,
    ) -> Produced {
        let attempts = message.attempt + 1;
        let platform = platform(&message.target);
        let gone = |status: u16| {
            tracing::debug!(push_id = %message.push_id, subscriber_id = %message.subscriber_id,
                status, "subscription gone");
            vec![
                self.records
                    .outcome(message, OutcomeResult::Gone, None, attempts),
            ]
        };
        match outcome {
            DeliveryOutcome::Accepted => {
                self.breakers.success(&message.site_id, platform);
                vec![
                    self.records
                        .outcome(message, OutcomeResult::Accepted, None, attempts),
                ]
            }
            DeliveryOutcome::SubscriptionGone { status } => gone(status),
            DeliveryOutcome::SuspectToken {
                status,
                reason,
                setting,
            } => match self
                .breakers
                .suspect(&message.site_id, platform, &reason, setting)
            {
                Verdict::Gone => gone(status),
                Verdict::Misconfigured(why) => self.fail(message, raw, source, attempts, &why),
                Verdict::Undecided => {
                    self.retry_or_fail(message, raw, source, Some(UNDECIDED_RETRY), &reason)
                }
            },
            DeliveryOutcome::Misconfigured {
                status,
                reason,
                setting,
            } => {
                let why = self
                    .breakers
                    .misconfigured(&message.site_id, platform, &reason, setting);
                tracing::debug!(push_id = %message.push_id, status, %why, "site misconfigured");
                self.fail(message, raw, source, attempts, &why)
            }
            DeliveryOutcome::Permanent { status, reason } => {
                tracing::warn!(push_id = %message.push_id, subscriber_id = %message.subscriber_id,
                    ?status, %reason, "delivery failed permanently");
                self.fail(message, raw, source, attempts, &reason)
            }
            DeliveryOutcome::Deferred { reason } => self.defer(message, &reason),
            DeliveryOutcome::Withdrawn => self.drop_canceled(message),
            DeliveryOutcome::Transient {
                status,
                retry_after,
                reason,
            } => {
                tracing::debug!(push_id = %message.push_id, subscriber_id = %message.subscriber_id,
                    ?status, attempts, %reason, "delivery will be retried");
                self.retry_or_fail(message, raw, source, retry_after, &reason)
            }
        }
    }

    /// A retry on the tier that covers the backoff, or a failure once the budget is spent.
    fn retry_or_fail(
        &self,
        message: &DeliveryMessage,
        raw: &[u8],
        source: &Source,
        retry_after: Option<Duration>,
        reason: &str,
    ) -> Produced {
        let attempts = message.attempt + 1;
        let now = now_millis();
        let first = message.first_attempt_at.unwrap_or(now);
        match self.retry.plan(
            attempts,
            first,
            now,
            message.ttl,
            retry_after,
            fastrand::f64(),
        ) {
            RetryPlan::After(delay) => {
                let tier = tier_for(delay, &self.retry_tiers);
                self.metrics.retry(tier, delay);
                let due = now.saturating_add(u64::try_from(delay.as_millis()).unwrap_or(u64::MAX));
                vec![self.records.retry(message, tier, attempts, first, due)]
            }
            RetryPlan::GiveUp(why) => {
                let reason = format!("{reason} ({why})");
                tracing::warn!(push_id = %message.push_id, subscriber_id = %message.subscriber_id,
                    %reason, "delivery failed");
                self.fail(message, raw, source, attempts, &reason)
            }
        }
    }

    /// Back on the shortest retry tier without counting an attempt: the push service is too
    /// slow to take it now. A delivery deferred before waits longer, so a long queue for
    /// a slow push service circulates through Kafka slowly.
    fn defer(&self, message: &DeliveryMessage, reason: &str) -> Produced {
        let now = now_millis();
        let first = message.first_attempt_at.unwrap_or(now);
        let (low, high) = if message.due_at.is_some() {
            (5_000, 20_000)
        } else {
            (1_000, 5_000)
        };
        let delay = fastrand::u64(low..high);
        tracing::trace!(push_id = %message.push_id, %reason, delay_ms = delay, "delivery deferred");
        let tier = tier_for(Duration::from_millis(delay), &self.retry_tiers);
        self.metrics.retry(tier, Duration::from_millis(delay));
        vec![
            self.records
                .retry(message, tier, message.attempt, first, now + delay),
        ]
    }

    fn fail(
        &self,
        message: &DeliveryMessage,
        raw: &[u8],
        source: &Source,
        attempts: u32,
        reason: &str,
    ) -> Produced {
        self.metrics.dead_letters.inc();
        vec![
            self.records
                .outcome(message, OutcomeResult::Failed, Some(reason), attempts),
            self.records.dead_letter(DeadLetter {
                message: Some(message),
                raw,
                source,
                attempts,
                reason,
                failed_at: now_millis(),
            }),
        ]
    }

    async fn attempt(
        &self,
        message: &DeliveryMessage,
        withdrawn: &CancellationToken,
    ) -> DeliveryOutcome {
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
        let ttl = remaining_ttl(message, now_millis());
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
                    ttl,
                    urgency: message.urgency,
                    topic: message.topic.as_deref(),
                    vapid_key,
                    subject: &credentials.subject,
                    site_key: &credentials.site_key,
                    withdrawn: Some(withdrawn),
                };
                self.web.send(&request).await
            }
            Target::Ios { token } => {
                let apns = match &credentials.apns {
                    Ok(apns) => apns,
                    Err(reason) => return DeliveryOutcome::permanent(reason.clone()),
                };
                let prepared = match self.payloads.get(message) {
                    Ok(prepared) => prepared,
                    Err(e) => {
                        return DeliveryOutcome::permanent(format!(
                            "unreadable notification payload: {e}"
                        ));
                    }
                };
                let expiration = match ttl {
                    0 => 0,
                    ttl => now_millis() / 1_000 + u64::from(ttl),
                };
                self.apns
                    .send(&ApnsRequest {
                        token,
                        key: &apns.key,
                        topic: &apns.topic,
                        sandbox: apns.sandbox,
                        payload: prepared.apns(),
                        expiration,
                        collapse_id: message.topic.as_deref(),
                        withdrawn: Some(withdrawn),
                    })
                    .await
            }
            Target::Android { token } => {
                let account = match &credentials.fcm {
                    Ok(account) => account,
                    Err(reason) => return DeliveryOutcome::permanent(reason.clone()),
                };
                let prepared = match self.payloads.get(message) {
                    Ok(prepared) => prepared,
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
                        fields: &prepared.fields,
                        ttl,
                        urgency: message.urgency,
                        collapse_key: message.topic.as_deref(),
                        withdrawn: Some(withdrawn),
                    })
                    .await
            }
        }
    }
}

/// The platform's name, for breakers and reasons.
fn platform(target: &Target) -> &'static str {
    match target {
        Target::Web { .. } => "Web Push",
        Target::Ios { .. } => "APNs",
        Target::Android { .. } => "FCM",
    }
}

/// What is left of the message's TTL at `now`, counted from its first attempt, so a retried
/// notification expires when the first attempt's would have (at least 1 s while any is
/// left; 0 stays 0: "now or never").
fn remaining_ttl(message: &DeliveryMessage, now: u64) -> u32 {
    let Some(first) = message.first_attempt_at else {
        return message.ttl;
    };
    if message.ttl == 0 {
        return 0;
    }
    let elapsed = u32::try_from(now.saturating_sub(first) / 1_000).unwrap_or(u32::MAX);
    message.ttl.saturating_sub(elapsed).max(1)
}

/// A first attempt's message to `target` carrying `payload`, for tests.
#[cfg(test)]
pub(crate) fn test_message(target: Target, payload: &str) -> DeliveryMessage {
    DeliveryMessage {
        v: pushservice_model::DELIVERY_VERSION,
        push_id: "p".into(),
        site_id: "s".into(),
        subscriber_id: "sub".into(),
        target,
        ttl: 600,
        urgency: pushservice_model::Urgency::Normal,
        topic: None,
        attempt: 0,
        first_attempt_at: None,
        due_at: None,
        replayed: false,
        replaced_failure: None,
        payload: serde_json::value::RawValue::from_string(payload.into()).expect("json"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_send_what_is_left_of_the_ttl() {
        let mut message = test_message(Target::Android { token: "t".into() }, "{}");
        assert_eq!(remaining_ttl(&message, 1_000_000), 600, "first attempt");
        message.first_attempt_at = Some(1_000_000);
        assert_eq!(remaining_ttl(&message, 1_120_000), 480);
        assert_eq!(remaining_ttl(&message, 9_000_000), 1, "never 0 by accident");
        message.ttl = 0;
        assert_eq!(remaining_ttl(&message, 1_120_000), 0);
    }
}
