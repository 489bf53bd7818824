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
//!
//! **Cancel.** While it runs, a fan-out asks MongoDB every [`CANCEL_CHECK_EVERY`] whether its
//! push was canceled (two `_id` lookups, not a query per subscriber). When it was, it stops
//! producing, waits until Kafka acknowledged what it produced (senders drop those deliveries
//! and count them `canceled`), counts the audience after the last subscriber it streamed and
//! records that as the parser's `canceled` count (absolute, so writing it again is harmless),
//! then writes the push's totals and makes sure it says `canceled` (see
//! `Store::settle_canceled_push`). So for a canceled push accepted + unsubscribed + failed +
//! canceled is its audience (less the subscribers skipped as unusable, as for a done push).
//! A raw-push of an already canceled push is skipped; if no parser recorded its canceled
//! count yet (the one fanning it out crashed, or it was canceled before its fan-out began),
//! the count is taken from its checkpoint, an estimate that may count the deliveries produced
//! after that checkpoint twice.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use pushservice_kafka::rdkafka::error::{KafkaError, RDKafkaErrorCode};
use pushservice_kafka::rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use pushservice_model::Push;
use pushservice_model::{
    DELIVERY_VERSION, DeliveryEnvelope, NotificationPayload, ObjectId, Platform, PushStatus,
    PushSubscription, RawPushMessage, TargetRef, Urgency, parse_object_id,
};
use pushservice_store::pushes::FanoutEnd;
use pushservice_store::{AudienceMember, AudienceRow, Store, StoreError};
use tokio_util::sync::CancellationToken;

use crate::metrics::ParserMetrics;
use crate::supervisor::{Budget, Progress, RetryPolicy, Settled};

/// Longest TTL we pass on: push services cap it at four weeks anyway.
const MAX_TTL: i64 = 28 * 24 * 3600;

/// How often a running fan-out checks whether its push was canceled.
pub const CANCEL_CHECK_EVERY: Duration = Duration::from_millis(500);

/// How long after settling a canceled push its parser writes the totals once more: an
/// outcome recorder that summed the counters just before the parser's count existed, and
/// wrote just after the parser, would otherwise leave totals without it (FerretDB 1.x
/// writes whole documents back, see `Store::settle_canceled_push`).
const RESETTLE_AFTER: Duration = Duration::from_secs(2);

/// How a fan-out ended, when it ended for good (the raw-push offset may be stored).
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Every subscriber has its delivery message on the push topic; the push is `done`.
    Done(FanoutReport),
    /// The message needs no work (unknown push, already done, ...); logged with the reason.
    Skipped(String),
    /// The push cannot be sent and is marked `failed` with this reason.
    Failed(String),
    /// The push was canceled while it was fanned out; the fan-out stopped.
    Canceled(CancelReport),
}

/// Figures of a fan-out stopped by a cancel.
#[derive(Debug, Clone, PartialEq)]
pub struct CancelReport {
    /// Delivery messages produced in total (senders drop those not sent yet).
    pub produced: i64,
    /// Subscribers skipped because their subscription is unusable.
    pub skipped: i64,
    /// Subscribers never fanned out, counted as canceled.
    pub canceled: i64,
    /// Wall time of this run.
    pub elapsed: Duration,
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
    /// How far the audience is on Kafka once this window's messages are acknowledged (its
    /// `produced` and `skipped` must be the running totals at its end).
    fn settled(&self) -> Option<Settled> {
        self.last.map(|last_subscriber_id| Settled {
            last_subscriber_id,
            produced: self.produced,
            skipped: self.skipped,
        })
    }

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
        if push.status == PushStatus::Canceled {
            return self.skip_canceled(&push).await;
        }
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
        let sent_at = record_timestamp(raw.triggered_at, now_ms());
        let ttl = u32::try_from(push.time_to_live.clamp(0, MAX_TTL)).unwrap_or(0);
        let urgency = Urgency::from(push.priority);
        let mut resume = push.fanout.clone().unwrap_or_default();
        if let Some(settled) = progress.settled()
            && settled.produced + settled.skipped > resume.produced + resume.skipped
        {
            // An earlier attempt in this process got further than the stored checkpoint (its
            // write is what failed, or MongoDB failed before the next one): everything up to
            // there is on Kafka, so starting there produces nothing twice.
            resume.last_subscriber_id = Some(settled.last_subscriber_id);
            (resume.produced, resume.skipped) = (settled.produced, settled.skipped);
        }
        let (mut produced, mut skipped) = (resume.produced, resume.skipped);
        if let Some(after) = resume.last_subscriber_id {
            tracing::info!(push_id = %push_id, after = %after, produced, "resuming fan-out after checkpoint");
        }

        if self
            .store
            .cancel_requested(push_id, push.trigger_count)
            .await?
        {
            // Canceled between its trigger and now, its status write undone by a checkpoint
            // or never made: counted from the checkpoint, unless a parser counted first.
            let end = FanoutEnd {
                produced,
                skipped,
                last_subscriber_id: resume.last_subscriber_id,
                canceled: 0,
            };
            return self.stop_canceled(&push, end, false, started, cancel).await;
        }
        let canceled = CancellationToken::new();
        let _watcher = self.watch_cancel(&push, canceled.clone());

        let audience = self
            .store
            .audience(
                push.site_id,
                resume.last_subscriber_id,
                push.audience.as_ref(),
            )
            .await?;
        let mut audience = std::pin::pin!(audience);
        let mut window = Window::new(self.checkpoint_every);
        let mut previous: Option<Window> = None;
        let mut buffer = Vec::with_capacity(1024);
        let mut cancelled = false;

        // MongoDB or Kafka failing ends the loop with the error, so what was produced can be
        // salvaged first.
        let streamed: Result<(), FanoutError> = loop {
            // A fan-out waiting for its next batch (FerretDB may take seconds for the first
            // one) stops as soon as it is told to.
            let row = tokio::select! {
                biased;
                () = cancel.cancelled() => None,
                () = canceled.cancelled() => None,
                row = audience.next() => row,
            };
            let Some(row) = row else {
                // The audience ended, or one of the tokens fired.
                cancelled = cancel.is_cancelled();
                break Ok(());
            };
            if cancel.is_cancelled() {
                cancelled = true;
                break Ok(());
            }
            if canceled.is_cancelled() {
                break Ok(());
            }
            let row = match row {
                Ok(row) => row,
                Err(e) => break Err(e.into()),
            };
            let member = match row {
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
            let last_before = window.last;
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
            let produced_now = self
                .produce(&subscriber_hex, &buffer, sent_at, &[cancel, &canceled])
                .await;
            let Ok(Some(ack)) = produced_now else {
                // Not produced: stopped while the producer's queue was full, or refused.
                window.rows -= 1;
                window.last = last_before;
                if let Err(e) = produced_now {
                    break Err(e);
                }
                cancelled = cancel.is_cancelled();
                break Ok(());
            };
            window.acks.push(ack);
            produced += 1;
            self.metrics.produced.inc();

            if window.rows >= self.checkpoint_every {
                (window.produced, window.skipped) = (produced, skipped);
                if let Some(done) = previous.take() {
                    if let Err(e) = self.settle_and_checkpoint(push_id, done, progress).await {
                        break Err(e);
                    }
                    tracing::info!(push_id = %push_id, produced, skipped,
                        rate = format!("{:.0}/s", rate(produced - resume.produced, started)),
                        "fan-out progress");
                }
                previous = Some(std::mem::replace(
                    &mut window,
                    Window::new(self.checkpoint_every),
                ));
            }
        };
        if let Err(e) = streamed {
            if matches!(e, FanoutError::Store(_)) {
                // MongoDB failed, not Kafka: what was produced gets acknowledged, and the
                // retry starts after it instead of at the stored checkpoint.
                (window.produced, window.skipped) = (produced, skipped);
                self.salvage([previous.take(), Some(window)], progress)
                    .await;
            }
            return Err(e);
        }

        (window.produced, window.skipped) = (produced, skipped);
        if window.last.is_none() {
            // Nothing new in the last window: checkpoint the one before, if any.
            window.last = previous.as_ref().and_then(|w| w.last);
        }
        if let Some(done) = previous.take() {
            self.settle_recorded(done, progress).await?;
        }
        let end = FanoutEnd {
            produced,
            skipped,
            last_subscriber_id: window.last.or(resume.last_subscriber_id),
            canceled: 0,
        };
        if canceled.is_cancelled() && !cancelled {
            // No checkpoint: the push is not `processing` any more, and a checkpoint racing
            // the cancel's write could undo it on FerretDB.
            self.settle(window.acks).await?;
            return self.stop_canceled(&push, end, true, started, cancel).await;
        }
        self.settle_and_checkpoint(push_id, window, progress)
            .await?;
        if cancelled {
            return Err(FanoutError::Cancelled { produced });
        }
        if !self.store.finish_fanout(push_id, produced, skipped).await? {
            if self
                .store
                .cancel_requested(push_id, push.trigger_count)
                .await?
            {
                // Canceled after the last subscriber: nobody is left, but the cancel must
                // still be settled on the push.
                return self.stop_canceled(&push, end, true, started, cancel).await;
            }
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
    /// `None` when one of `stop` fired while it waited: the message was not produced.
    async fn produce(
        &self,
        key: &str,
        payload: &[u8],
        sent_at: Option<i64>,
        stop: &[&CancellationToken],
    ) -> Result<Option<DeliveryFuture>, FanoutError> {
        let mut record = FutureRecord::to(&self.topic).key(key).payload(payload);
        if let Some(sent_at) = sent_at {
            record = record.timestamp(sent_at);
        }
        loop {
            match self.producer.send_result(record) {
                Ok(ack) => return Ok(Some(ack)),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                    if stop.iter().any(|token| token.is_cancelled()) {
                        return Ok(None);
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

    /// Checks every [`CANCEL_CHECK_EVERY`] whether `push` was canceled, and fires `canceled`
    /// when it was. Stops when the returned guard is dropped. A failing check is only logged:
    /// the fan-out's own queries fail too if MongoDB is gone, and are retried as usual.
    fn watch_cancel(
        &self,
        push: &Push,
        canceled: CancellationToken,
    ) -> tokio_util::sync::DropGuard {
        let stop = CancellationToken::new();
        let (store, push_id, trigger) = (self.store.clone(), push.id, push.trigger_count);
        let watching = stop.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(CANCEL_CHECK_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tokio::select! {
                    () = watching.cancelled() => return,
                    _ = tick.tick() => {}
                }
                match store.cancel_requested(push_id, trigger).await {
                    Ok(true) => {
                        tracing::info!(push_id = %push_id, "push canceled: stopping its fan-out");
                        canceled.cancel();
                        return;
                    }
                    Ok(false) => {}
                    Err(e) => {
                        tracing::debug!(push_id = %push_id, error = %e, "checking for a cancel");
                    }
                }
            }
        });
        stop.drop_guard()
    }

    /// Ends the fan-out of canceled `push`, which stopped at `end` with everything it
    /// produced acknowledged: counts the audience it never reached as the parser's canceled
    /// count (`exact`: see [`Fanout::record_canceled`]), and settles the push (status,
    /// `totalSent`, totals), twice (see [`RESETTLE_AFTER`]).
    async fn stop_canceled(
        &self,
        push: &Push,
        end: FanoutEnd,
        exact: bool,
        started: Instant,
        cancel: &CancellationToken,
    ) -> Result<Verdict, FanoutError> {
        let (end, _) = self.record_canceled(push, end, exact).await?;
        tracing::info!(push_id = %push.id, produced = end.produced, skipped = end.skipped,
            canceled = end.canceled, "fan-out stopped: push canceled");
        tokio::select! {
            () = tokio::time::sleep(RESETTLE_AFTER) => {
                self.store
                    .settle_canceled_push(push.id, push.trigger_count, end, true)
                    .await?;
            }
            // Settled once already; the recorders keep the totals up to date.
            () = cancel.cancelled() => {}
        }
        Ok(Verdict::Canceled(CancelReport {
            produced: end.produced,
            skipped: end.skipped,
            canceled: end.canceled,
            elapsed: started.elapsed(),
        }))
    }

    /// Writes the parser's canceled count of `push` (the audience after `end`) and settles
    /// the push. With `exact` false (an estimate from a checkpoint, which may count deliveries
    /// produced after it twice) a count already recorded is kept. Returns `end` with the
    /// count, and whether it was recorded.
    async fn record_canceled(
        &self,
        push: &Push,
        end: FanoutEnd,
        exact: bool,
    ) -> Result<(FanoutEnd, bool), FanoutError> {
        if exact {
            // Where the fan-out stopped, on the push first: counting takes a while on
            // FerretDB, and a retry after a failure here counts from this exact point.
            self.store
                .settle_canceled_push(push.id, push.trigger_count, end, false)
                .await?;
        } else if let Some(counted) = self.store.parser_canceled(push.id).await? {
            let end = FanoutEnd {
                canceled: counted,
                ..end
            };
            self.store
                .settle_canceled_push(push.id, push.trigger_count, end, true)
                .await?;
            return Ok((end, false));
        }
        let remaining = self
            .store
            .count_audience(push.site_id, end.last_subscriber_id, push.audience.as_ref())
            .await?;
        let end = FanoutEnd {
            canceled: i64::try_from(remaining).unwrap_or(i64::MAX),
            ..end
        };
        let written = self
            .store
            .write_parser_canceled(push.id, end.canceled, end.last_subscriber_id, exact)
            .await?;
        self.store
            .settle_canceled_push(push.id, push.trigger_count, end, true)
            .await?;
        Ok((end, written))
    }

    /// A raw-push of a push that is canceled already: nothing to fan out. If no parser
    /// recorded how many subscribers the cancel withheld (it was canceled before its
    /// fan-out began, or the parser fanning it out stopped before it could), they are
    /// counted from the checkpoint.
    async fn skip_canceled(&self, push: &Push) -> Result<Verdict, FanoutError> {
        let resume = push.fanout.clone().unwrap_or_default();
        let end = FanoutEnd {
            produced: resume.produced,
            skipped: resume.skipped,
            last_subscriber_id: resume.last_subscriber_id,
            canceled: 0,
        };
        let (end, recorded) = self.record_canceled(push, end, false).await?;
        let counted = if recorded {
            format!(
                "{} subscribers after its checkpoint counted as canceled",
                end.canceled
            )
        } else {
            "its parser counted its canceled subscribers".to_owned()
        };
        Ok(Verdict::Skipped(format!(
            "push {} is canceled ({counted})",
            push.id
        )))
    }

    /// Settles `windows` in order after a failure that was not Kafka's, recording in
    /// `progress` how far they reach; stops at the first that Kafka did not take (nothing
    /// after a gap may count as settled).
    async fn salvage(&self, windows: [Option<Window>; 2], progress: &Progress) {
        for window in windows.into_iter().flatten() {
            if self.settle_recorded(window, progress).await.is_err() {
                return;
            }
        }
    }

    /// Settles `window` and records in `progress` how far the audience is on Kafka now.
    async fn settle_recorded(
        &self,
        window: Window,
        progress: &Progress,
    ) -> Result<Option<Settled>, FanoutError> {
        let reached = window.settled();
        self.settle(window.acks).await?;
        if let Some(reached) = reached {
            progress.settle(reached);
        }
        Ok(reached)
    }

    /// Settles `window` and records its last subscriber as the checkpoint (and, before
    /// writing it, in `progress`, which outlives a failed write).
    async fn settle_and_checkpoint(
        &self,
        push_id: ObjectId,
        window: Window,
        progress: &Progress,
    ) -> Result<(), FanoutError> {
        if let Some(Settled {
            last_subscriber_id,
            produced,
            skipped,
        }) = self.settle_recorded(window, progress).await?
        {
            self.store
                .checkpoint_fanout(push_id, last_subscriber_id, produced, skipped)
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

/// The timestamp of a push's delivery records: when the push was triggered, so a sender can
/// measure the time from send to acceptance. A trigger from over an hour ago (or a clock far
/// ahead) keeps the producer's time: Kafka's time-based retention must not take a late
/// fan-out's records early, and brokers refuse timestamps too far in the future.
fn record_timestamp(triggered_at: i64, now: i64) -> Option<i64> {
    const WITHIN_MS: i64 = 3_600_000;
    (triggered_at > 0 && (now - WITHIN_MS..=now + 60_000).contains(&triggered_at))
        .then_some(triggered_at)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
