//! Realtime messages and connection tokens: what `pushctl publish` and `pushapi` do alike.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pushservice_config::KafkaSettings;
use pushservice_kafka::rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use pushservice_kafka::{ProducerTuning, check_reachable, producer};
use pushservice_model::ObjectId;
use pushservice_realtime::{
    Claims, Fallback, RealtimeRecord, message_id, mint, new_secret, partition_of, record_key,
    validate_channel,
};
use pushservice_store::Store;
use serde_json::value::RawValue;

use crate::error::ControlError;

/// Publishes messages on the realtime topic. Make one per process.
#[derive(Clone)]
pub struct RealtimePublisher {
    producer: FutureProducer,
    kafka: KafkaSettings,
    topic: String,
    partitions: std::sync::Arc<tokio::sync::OnceCell<usize>>,
}

/// Where a message went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedMessage {
    /// Message id, `<partition>-<offset>`.
    pub id: String,
    /// Kafka partition.
    pub partition: i32,
    /// Its position in the channel.
    pub offset: i64,
}

impl RealtimePublisher {
    /// A publisher to `topic`.
    pub fn new(kafka: &KafkaSettings, topic: String) -> Result<Self, ControlError> {
        Ok(RealtimePublisher {
            producer: producer(kafka, &ProducerTuning::command(kafka.timeout))?,
            kafka: kafka.clone(),
            topic,
            partitions: std::sync::Arc::default(),
        })
    }

    async fn partitions(&self) -> Result<usize, ControlError> {
        self.partitions
            .get_or_try_init(|| async {
                let (producer, kafka, topic) = (
                    self.producer.clone(),
                    self.kafka.clone(),
                    self.topic.clone(),
                );
                let count = tokio::task::spawn_blocking(move || {
                    check_reachable(producer.client(), &kafka, Some(&topic))
                })
                .await
                .map_err(|e| anyhow::anyhow!("broker check task failed: {e}"))??;
                Ok::<usize, ControlError>(count)
            })
            .await
            .copied()
    }

    /// Publishes `data` (JSON) to a site's channel, acknowledged by every in-sync replica.
    pub async fn publish(
        &self,
        site: ObjectId,
        channel: &str,
        data: Box<RawValue>,
        ack: bool,
        fallback: Option<Fallback>,
    ) -> Result<PublishedMessage, ControlError> {
        validate_channel(channel).map_err(|e| ControlError::Invalid {
            field: "channel".into(),
            message: e.to_string(),
        })?;
        if fallback.is_some() && !channel.starts_with(pushservice_realtime::channel::USER_PREFIX) {
            return Err(ControlError::Invalid {
                field: "fallback".into(),
                message: "a fallback push is only for user:<id> channels".into(),
            });
        }
        let site = site.to_hex();
        let record = RealtimeRecord {
            site: site.clone(),
            channel: channel.to_owned(),
            data,
            ts: Some(now_ms()),
            ack,
            fallback,
        };
        let value = serde_json::to_vec(&record).map_err(|e| anyhow::anyhow!("encoding: {e}"))?;
        let key = record_key(&site, channel);
        let partition = partition_of(&key, self.partitions().await?);
        let sent = self
            .producer
            .send(
                FutureRecord::to(&self.topic)
                    .key(&key)
                    .payload(&value)
                    .partition(partition),
                Duration::from_secs(0),
            )
            .await
            .map_err(|(e, _)| {
                ControlError::Other(anyhow::anyhow!(
                    "Kafka did not take the message on {:?}: {e}",
                    self.topic
                ))
            })?;
        Ok(PublishedMessage {
            id: message_id(sent.partition, sent.offset),
            partition: sent.partition,
            offset: sent.offset,
        })
    }

    /// Waits for anything queued to be sent (before a command exits).
    pub fn flush(&self) {
        let _ = self.producer.flush(self.kafka.timeout);
    }
}

/// A connection token for `user` of `site`, valid for `ttl`, signed with the site's newest
/// realtime secret (created on first use).
pub async fn token(
    store: &Store,
    site: ObjectId,
    user: &str,
    channels: Vec<String>,
    ttl: Duration,
) -> Result<(String, u64), ControlError> {
    let settings = store
        .realtime_settings(site)
        .await?
        .ok_or_else(|| ControlError::NotFound(format!("site {site} does not exist")))?;
    let secret = match settings.secrets.first() {
        Some(secret) => secret.clone(),
        None => {
            let secret = new_secret();
            store.rotate_realtime_secret(site, &secret).await?;
            secret
        }
    };
    let now = now_ms() / 1000;
    let exp = u64::try_from(now).unwrap_or(0) + ttl.as_secs().max(1);
    let claims = Claims {
        site: site.to_hex(),
        sub: user.to_owned(),
        channels,
        exp,
        iat: u64::try_from(now).ok(),
        nbf: None,
    };
    claims.grants().map_err(|e| ControlError::Invalid {
        field: "channels".into(),
        message: e.to_string(),
    })?;
    Ok((mint(&secret, &claims), exp))
}

/// Starts a new realtime secret for `site` (the previous one stays valid until the next
/// rotation) and returns it.
pub async fn rotate_secret(store: &Store, site: ObjectId) -> Result<String, ControlError> {
    let secret = new_secret();
    if !store.rotate_realtime_secret(site, &secret).await? {
        return Err(ControlError::NotFound(format!(
            "site {site} does not exist"
        )));
    }
    Ok(secret)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
