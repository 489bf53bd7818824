//! The fan-out of one push.
//!
//! Subscribers stream out of MongoDB in `_id` order and each becomes one delivery message,
//! encoded into a reused buffer and handed to the producer without waiting for its
//! acknowledgement. Acknowledgements are collected per *window* of `checkpoint_every`
//! subscribers; when a window closes, the window before it is settled (all its messages
//! acknowledged) and its last subscriber id is written as the checkpoint. Settling one window
//! behind keeps the producer busy while checkpoints never claim an unacknowledged message.
//!
//! A fan-out that fails returns a [`FanoutError`]; the [`crate::supervisor`] decides whether
//! to retry it or give the push up, and [`Fanout::record_failure`] marks a given-up push
//! `failed` with the reason.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use pushservice_kafka::rdkafka::error::{KafkaError, RDKafkaErrorCode};
use pushservice_kafka::rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use pushservice_model::{
    DELIVERY_VERSION, DeliveryEnvelope, NotificationPayload, ObjectId, Platform, PushStatus,
    PushSubscription, RawPushMessage, TargetRef, Urgency, parse_object_id,
};
use pushservice_store::{AudienceMember, AudienceRow, Store, StoreError};
use tokio_util::sync::CancellationToken;

use crate::metrics::ParserMetrics;
use crate::supervisor::{Budget, Progress, RetryPolicy};

/// Longest TTL we pass on: push services cap it at four weeks anyway.
const MAX_TTL: i64 = 28 * 24 * 3600;

/// How a fan-out ended, when it ended for good (the raw-push offset may be stored).
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Every subscriber has its delivery message on the push topic; the push is `done`.
    Done(FanoutReport),
    /// The message needs no work (unknown push, already done, ...); logged with the reason.
    Skipped(String),
    /// The push cannot be sent and is marked `failed` with this reason.
    Failed(String),
}

/// Figures of a completed fan-out.
#[derive(Debug, Clone, PartialEq)]
pub struct FanoutReport {
    /// Delivery messages produced in total (including before a resume).
    pub produced: i64,
    /// Subscribers skipped because their subscription is unusable.
    pub skipped: i64,
    /// The checkpoint this run resumed after, if it resumed.
    pub resumed_after: Option<ObjectId>,
    /// Wall time of this run.
    pub elapsed: Duration,
}

/// Why a fan-out stopped before its end; the push is retried, resumed later, or (when
/// [`FanoutError::is_permanent`] or retried too long) marked `failed`.
#[derive(Debug, thiserror::Error)]
pub enum FanoutError {
    /// Shutdown or partition revoked; the checkpoint is written, another run resumes there.
    #[error(
        "stopped after {produced} delivery messages (shutdown or rebalance); resumes from the checkpoint"
    )]
    Cancelled {
        /// Messages produced so far, in total.
        produced: i64,
    },
    /// MongoDB failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Kafka did not take a delivery message.
    #[error("producing to topic {topic:?}: {source}")]
    Produce {
        /// The push topic.
        topic: String,
        /// librdkafka's error.
        source: KafkaError,
    },
}

impl FanoutError {
    /// Whether retrying cannot help: a document that does not fit the model stays so until
    /// someone edits it, and a delivery message too large for Kafka stays too large. Everything
    /// else (MongoDB unreachable or failing a query, Kafka refusing or timing out a message, a
    /// topic that does not exist yet) may pass and is retried within the budget.
    pub fn is_permanent(&self) -> bool {
        match self {
            FanoutError::Cancelled { .. } => false,
            FanoutError::Store(e) => matches!(
                e,
                StoreError::Decode { .. } | StoreError::Encode { .. } | StoreError::BadUrl { .. }
            ),
            FanoutError::Produce { source, .. } => matches!(
                source.rdkafka_error_code(),
                Some(RDKafkaErrorCode::MessageSizeTooLarge | RDKafkaErrorCode::InvalidMessageSize)
            ),
        }
    }
}

/// Everything a fan-out needs; shared by all fan-outs of a parser.
#[derive(Clone)]
pub struct Fanout {
    /// The store.
    pub store: Store,
    /// Producer for the push topic.
    pub producer: FutureProducer,
    /// The push topic.
    pub topic: String,
    /// Subscribers per checkpoint window.
    pub checkpoint_every: u32,
    /// Counters.
    pub metrics: Arc<ParserMetrics>,
}

/// Messages of one checkpoint window awaiting acknowledgement.
struct Window {
    acks: Vec<DeliveryFuture>,
    rows: u32,
    last: Option<ObjectId>,
    produced: i64,
    skipped: i64,
}

impl Window {
    fn new(capacity: u32) -> Window {
        Window {
            acks: Vec::with_capacity(capacity as usize),
            rows: 0,
            last: None,
            produced: 0,
            skipped: 0,
        }
    }
}

impl Fanout {
    /// Fans out the push `raw` names. `cancel` stops it at the next subscriber, after which
    /// everything produced is settled and checkpointed; `progress` counts the checkpoints.
    pub async fn process(
        &self,
        raw: &RawPushMessage,
        cancel: &CancellationToken,
        progress: &Progress,
    ) -> Result<Verdict, FanoutError> {
        let Ok(push_id) = parse_object_id("push", &raw.push_id) else {
            return Ok(Verdict::Skipped(format!(
                "malformed push id {:?}",
                raw.push_id
            )));
        };
        let push = match self.store.push(push_id).await {
            Ok(Some(push)) => push,
            Ok(None) => return Ok(Verdict::Skipped(format!("push {push_id} does not exist"))),
            // A push that does not fit the model is permanent: the supervisor marks it failed.
            Err(e) => return Err(e.into()),
        };
        if push.status != PushStatus::Processing {
            return Ok(Verdict::Skipped(format!(
                "push {push_id} is {}, not processing (a duplicate or stale trigger)",
                push.status
            )));
        }
        if raw.site_id != push.site_id.to_hex() {
            tracing::warn!(push_id = %push_id, message_site = %raw.site_id, push_site = %push.site_id,
                "raw-push names another site than the push document; using the document's");
        }
        if self.store.site(push.site_id).await?.is_none() {
            let reason = format!("site {} does not exist", push.site_id);
            if !self.store.fail_push(push_id, &reason).await? {
                return Ok(Verdict::Skipped(format!(
                    "push {push_id} stopped being processing; not marked failed ({reason})"
                )));
            }
            return Ok(Verdict::Failed(reason));
        }

        let started = Instant::now();
        let payload = NotificationPayload::of(&push).to_raw();
        let (push_hex, site_hex) = (push_id.to_hex(), push.site_id.to_hex());
        let ttl = u32::try_from(push.time_to_live.clamp(0, MAX_TTL)).unwrap_or(0);
        let urgency = Urgency::from(push.priority);
        let resume = push.fanout.clone().unwrap_or_default();
        let (mut produced, mut skipped) = (resume.produced, resume.skipped);
        if let Some(after) = resume.last_subscriber_id {
            tracing::info!(push_id = %push_id, after = %after, produced, "resuming fan-out after checkpoint");
        }

        let audience = self
            .store
            .audience(push.site_id, resume.last_subscriber_id)
            .await?;
        let mut audience = std::pin::pin!(audience);
        let mut window = Window::new(self.checkpoint_every);
        let mut previous: Option<Window> = None;
        let mut buffer = Vec::with_capacity(1024);
        let mut cancelled = false;

        while let Some(row) = audience.next().await {
            if cancel.is_cancelled() {
                cancelled = true;
                break;
            }
            let member = match row? {
                AudienceRow::Member(member) => member,
                AudienceRow::Unreadable { id, reason } => {
                    tracing::warn!(push_id = %push_id, subscriber_id = ?id.map(|i| i.to_hex()), %reason,
                        "subscriber skipped: unreadable document");
                    skipped += 1;
                    self.metrics.skipped.inc();
                    window.rows += 1;
                    window.last = id.or(window.last);
                    continue;
                }
            };
            window.rows += 1;
            window.last = Some(member.id);
            let subscriber_hex = member.id.to_hex();
            let subscription;
            let target = match target_of(&member) {
                Ok(TargetSource::Token(platform, token)) => match platform {
                    Platform::Ios => TargetRef::Ios { token },
                    _ => TargetRef::Android { token },
                },
                Ok(TargetSource::Web(json)) => match PushSubscription::parse(json) {
                    Ok(parsed) => {
                        subscription = parsed;
                        TargetRef::Web {
                            endpoint: &subscription.endpoint,
                            p256dh: &subscription.keys.p256dh,
                            auth: &subscription.keys.auth,
                        }
                    }
                    Err(e) => {
                        tracing::warn!(push_id = %push_id, subscriber_id = %subscriber_hex, reason = %e,
                            "subscriber skipped: unusable pushEndPoint");
                        skipped += 1;
                        self.metrics.skipped.inc();
                        continue;
                    }
                },
                Err(reason) => {
                    tracing::warn!(push_id = %push_id, subscriber_id = %subscriber_hex, %reason,
                        "subscriber skipped");
                    skipped += 1;
                    self.metrics.skipped.inc();
                    continue;
                }
            };
            DeliveryEnvelope {
                v: DELIVERY_VERSION,
                push_id: &push_hex,
                site_id: &site_hex,
                subscriber_id: &subscriber_hex,
                target,
                ttl,
                urgency,
                topic: None,
                attempt: 0,
                payload: &payload,
            }
            .write_json(&mut buffer);
            let ack = self.produce(&subscriber_hex, &buffer, cancel).await?;
            window.acks.push(ack);
            produced += 1;
            self.metrics.produced.inc();

            if window.rows >= self.checkpoint_every {
                (window.produced, window.skipped) = (produced, skipped);
                if let Some(done) = previous.take() {
                    self.settle_and_checkpoint(push_id, done, progress).await?;
                    tracing::info!(push_id = %push_id, produced, skipped,
                        rate = format!("{:.0}/s", rate(produced - resume.produced, started)),
                        "fan-out progress");
                }
                previous = Some(std::mem::replace(
                    &mut window,
                    Window::new(self.checkpoint_every),
                ));
            }
        }

        (window.produced, window.skipped) = (produced, skipped);
        if window.last.is_none() {
            // Nothing new in the last window: checkpoint the one before, if any.
            window.last = previous.as_ref().and_then(|w| w.last);
        }
        if let Some(done) = previous.take() {
            self.settle(done.acks).await?;
        }
        self.settle_and_checkpoint(push_id, window, progress)
            .await?;
        if cancelled {
            return Err(FanoutError::Cancelled { produced });
        }
        if !self.store.finish_fanout(push_id, produced, skipped).await? {
            return Ok(Verdict::Skipped(format!(
                "push {push_id} stopped being processing during fan-out"
            )));
        }
        Ok(Verdict::Done(FanoutReport {
            produced,
            skipped,
            resumed_after: resume.last_subscriber_id,
            elapsed: started.elapsed(),
        }))
    }

    /// Hands one message to the producer, waiting while its queue is full (backpressure).
    async fn produce(
        &self,
        key: &str,
        payload: &[u8],
        cancel: &CancellationToken,
    ) -> Result<DeliveryFuture, FanoutError> {
        let mut record = FutureRecord::to(&self.topic).key(key).payload(payload);
        loop {
            match self.producer.send_result(record) {
                Ok(ack) => return Ok(ack),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                    if cancel.is_cancelled() {
                        return Err(FanoutError::Cancelled { produced: 0 });
                    }
                    record = returned;
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                Err((source, _)) => {
                    return Err(FanoutError::Produce {
                        topic: self.topic.clone(),
                        source,
                    });
                }
            }
        }
    }

    /// Settles `window` and records its last subscriber as the checkpoint.
    async fn settle_and_checkpoint(
        &self,
        push_id: ObjectId,
        window: Window,
        progress: &Progress,
    ) -> Result<(), FanoutError> {
        self.settle(window.acks).await?;
        if let Some(last) = window.last {
            self.store
                .checkpoint_fanout(push_id, last, window.produced, window.skipped)
                .await?;
            progress.advance();
        }
        Ok(())
    }

    /// Marks the push `raw` names `failed` with `reason` once its fan-out was given up,
    /// retrying the write within `policy` (the store may be what failed). Returns `None` when
    /// `cancel` fired first: the push is then left for whoever owns the partition next.
    pub async fn record_failure(
        &self,
        raw: &RawPushMessage,
        reason: &str,
        policy: &RetryPolicy,
        cancel: &CancellationToken,
    ) -> Option<Verdict> {
        let Ok(push_id) = parse_object_id("push", &raw.push_id) else {
            // `process` skips a malformed id before anything can fail; nothing to mark.
            return Some(Verdict::Failed(reason.to_owned()));
        };
        let mut budget = Budget::new(policy.clone());
        loop {
            let started = tokio::time::Instant::now();
            let error = match self.store.fail_push(push_id, reason).await {
                Ok(true) => return Some(Verdict::Failed(reason.to_owned())),
                Ok(false) => {
                    return Some(Verdict::Skipped(format!(
                        "push {push_id} stopped being processing; not marked failed ({reason})"
                    )));
                }
                Err(e) => e,
            };
            let Some(delay) = budget.failed(started, 0) else {
                tracing::error!(push_id = %push_id, error = %error, %reason,
                    "push given up but not marked failed; it stays processing: re-send it with `pushctl send --force`");
                return Some(Verdict::Failed(format!(
                    "{reason}; not recorded on the push: {error}"
                )));
            };
            tracing::warn!(push_id = %push_id, error = %error, retry_in = ?delay,
                "could not mark the push failed; retrying");
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = cancel.cancelled() => return None,
            }
        }
    }

    /// Waits until Kafka acknowledged every message of a window.
    async fn settle(&self, acks: Vec<DeliveryFuture>) -> Result<(), FanoutError> {
        for ack in acks {
            match ack.await {
                Ok(Ok(_)) => {}
                Ok(Err((source, _))) => {
                    return Err(FanoutError::Produce {
                        topic: self.topic.clone(),
                        source,
                    });
                }
                Err(_) => {
                    return Err(FanoutError::Produce {
                        topic: self.topic.clone(),
                        source: KafkaError::Canceled,
                    });
                }
            }
        }
        Ok(())
    }
}

/// Where a member's delivery goes, before parsing.
enum TargetSource<'a> {
    Web(&'a str),
    Token(Platform, &'a str),
}

fn target_of(member: &AudienceMember) -> Result<TargetSource<'_>, String> {
    match member.platform.unwrap_or_default() {
        Platform::Web => member
            .push_end_point
            .as_deref()
            .map(TargetSource::Web)
            .ok_or_else(|| "web subscriber without pushEndPoint".to_owned()),
        platform => member
            .device_token
            .as_deref()
            .filter(|t| !t.trim().is_empty())
            .map(|t| TargetSource::Token(platform, t))
            .ok_or_else(|| format!("{platform:?} subscriber without deviceToken")),
    }
}

fn rate(count: i64, since: Instant) -> f64 {
    count as f64 / since.elapsed().as_secs_f64().max(1e-3)
}
