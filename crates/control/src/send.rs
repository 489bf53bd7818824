//! Triggering a push: the original service's `node cmd/send.js <pushId>`, for `pushctl send`
//! and `POST /v1/pushes/{pushId}/send`.
//!
//! Order matters for "loses nothing": everything that can be checked is checked before the
//! push changes state (push, site, status). Only then is the push moved to `processing`,
//! atomically, and its `raw-push` message published with `acks=all`. If the broker does not
//! acknowledge in time, the push is moved back to the status it had, so the same request can
//! simply be made again.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pushservice_config::KafkaSettings;
use pushservice_kafka::rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use pushservice_kafka::{KafkaError, ProducerTuning, check_reachable, producer};
use pushservice_model::{ObjectId, Push, PushStatus, RawPushMessage};
use pushservice_store::{Store, Transition};

use crate::error::ControlError;

/// Publishes `raw-push` messages. Cheap to clone (the producer is shared); make one per
/// process.
#[derive(Clone)]
pub struct PushTrigger {
    producer: FutureProducer,
    kafka: KafkaSettings,
    topic: String,
}

/// Where a trigger was published.
#[derive(Debug, Clone)]
pub struct Published {
    /// The push, now `processing`.
    pub push: Push,
    /// Partition of the `raw-push` message.
    pub partition: i32,
    /// Offset of the `raw-push` message.
    pub offset: i64,
}

impl PushTrigger {
    /// A trigger publishing to `topic` (the raw-push topic).
    pub fn new(kafka: &KafkaSettings, topic: String) -> Result<Self, ControlError> {
        let producer = producer(kafka, &ProducerTuning::command(kafka.timeout))?;
        Ok(PushTrigger {
            producer,
            kafka: kafka.clone(),
            topic,
        })
    }

    /// Checks that the broker answers and has the topic, within the configured timeout.
    pub async fn check_reachable(&self) -> Result<(), ControlError> {
        let (producer, kafka, topic) = (
            self.producer.clone(),
            self.kafka.clone(),
            self.topic.clone(),
        );
        tokio::task::spawn_blocking(move || {
            check_reachable(producer.client(), &kafka, Some(&topic))
        })
        .await
        .map_err(|e| anyhow::anyhow!("broker check task failed: {e}"))??;
        Ok(())
    }

    /// Sends push `push_id`: it must exist, its site too, and be `pending` (any status with
    /// `force`, which also forgets the fan-out checkpoint so everyone is reached again).
    pub async fn send(
        &self,
        store: &Store,
        push_id: ObjectId,
        force: bool,
    ) -> Result<Published, ControlError> {
        let push = store.push(push_id).await?.ok_or_else(|| {
            ControlError::NotFound(format!("push {push_id} does not exist; check the id"))
        })?;
        self.send_loaded(store, push, force).await
    }

    /// [`PushTrigger::send`] for a push already loaded (and, for the API, already checked to
    /// belong to the caller's site).
    pub async fn send_loaded(
        &self,
        store: &Store,
        push: Push,
        force: bool,
    ) -> Result<Published, ControlError> {
        let push_id = push.id;
        if store.site(push.site_id).await?.is_none() {
            return Err(ControlError::NotFound(format!(
                "push {push_id} belongs to site {}, which does not exist; the push cannot be signed",
                push.site_id
            )));
        }
        let previous = push.status;
        if previous != PushStatus::Pending && !force {
            return Err(ControlError::NotPending {
                push_id,
                status: previous,
            });
        }

        // Also forgets any fan-out checkpoint, so a forced resend reaches everyone again.
        let push = match store.restart_push(push_id, previous).await? {
            Transition::Done(push) => *push,
            Transition::Conflict(now) => {
                let now = now.map_or("gone".to_owned(), |s| s.to_string());
                return Err(ControlError::Conflict(format!(
                    "push {push_id} changed from {previous} to {now} while sending; nothing was \
                     published"
                )));
            }
        };

        let message = RawPushMessage {
            push_id: push_id.to_hex(),
            site_id: push.site_id.to_hex(),
            triggered_at: now_millis(),
        };
        let payload = message.to_json();
        let record = FutureRecord::to(&self.topic)
            .key(&message.push_id)
            .payload(&payload);
        match self.producer.send(record, self.kafka.timeout).await {
            Ok(delivery) => {
                tracing::info!(
                    push_id = %push_id, partition = delivery.partition, offset = delivery.offset,
                    "raw-push published"
                );
                Ok(Published {
                    push,
                    partition: delivery.partition,
                    offset: delivery.offset,
                })
            }
            Err((error, _)) => {
                // Not acknowledged: put the push back so that sending again works.
                let reverted = store
                    .transition_push(push_id, PushStatus::Processing, previous)
                    .await;
                if let Err(e) = &reverted {
                    tracing::error!(push_id = %push_id, error = %e, "could not restore push status");
                }
                Err(ControlError::Kafka(KafkaError::Unreachable {
                    brokers: self.kafka.brokers.clone(),
                    timeout: self.kafka.timeout,
                    source: error,
                }))
            }
        }
    }

    /// The producer, for callers that publish more (the API's direct sends).
    pub fn producer(&self) -> &FutureProducer {
        &self.producer
    }

    /// How long a publish may wait for the broker.
    pub fn timeout(&self) -> Duration {
        self.kafka.timeout
    }

    /// The Kafka settings it was made with, for callers that read topics too (the API's
    /// dead-letter routes).
    pub fn kafka(&self) -> &KafkaSettings {
        &self.kafka
    }
}

fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
