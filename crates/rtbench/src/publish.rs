//! Publishing the benchmark's messages: straight to the realtime topic (the record format of
//! docs/realtime.md, keyed `<site>:<channel>`), or through pushapi's publish endpoint.
//!
//! Each message's `data` carries `sentUs`, the µs time taken just before the publish call,
//! so the latency measured is the whole way: producer, broker, gateway, socket. Publishes are
//! paced by a tokio interval and pipelined (up to [`IN_FLIGHT`] awaiting their
//! acknowledgement), so a slow acknowledgement never lowers the rate asked for.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context as _;
use futures::stream::FuturesUnordered;
use futures::{FutureExt as _, StreamExt as _};
use pushservice_kafka::rdkafka::error::{KafkaError, RDKafkaErrorCode};
use pushservice_kafka::rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use pushservice_kafka::{ProducerTuning, producer};

use pushservice_realtime::record::record_key;

use crate::config::PublishVia;
use crate::stats::now_us;

/// Publishes awaiting their acknowledgement at most.
const IN_FLIGHT: usize = 1024;

/// Where messages go.
pub enum Publisher {
    /// A producer for the realtime topic.
    Kafka {
        /// The producer.
        producer: FutureProducer,
        /// The topic.
        topic: String,
    },
    /// pushapi.
    Pushapi {
        /// HTTP client.
        client: reqwest::Client,
        /// Base URL.
        base: String,
        /// Site API key.
        api_key: String,
    },
}

/// What publishing did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct PublishSummary {
    /// Messages acknowledged (by Kafka, or pushapi's 202).
    pub published: u64,
    /// Messages refused or lost.
    pub failed: u64,
    /// Why, with counts.
    pub errors: BTreeMap<String, u64>,
    /// First publish call, µs since the epoch.
    pub started_us: u64,
    /// Last publish call, µs since the epoch.
    pub last_sent_us: u64,
}

/// A publish awaiting its outcome.
type Pending = futures::future::BoxFuture<'static, Result<(), String>>;

impl Publisher {
    /// Connects the publishing path and checks it can work (the topic exists).
    pub async fn new(via: &PublishVia) -> anyhow::Result<Self> {
        match via {
            PublishVia::Kafka { settings, topic } => {
                // No lingering: every message is sent at once, since its latency is measured.
                let tuning = ProducerTuning {
                    linger: Duration::ZERO,
                    ..ProducerTuning::pipeline()
                };
                let producer = producer(settings, &tuning)?;
                let (checked, settings, topic_name) =
                    (producer.clone(), settings.clone(), topic.clone());
                tokio::task::spawn_blocking(move || {
                    pushservice_kafka::check_reachable(
                        checked.client(),
                        &settings,
                        Some(&topic_name),
                    )
                })
                .await
                .context("checking the realtime topic")??;
                Ok(Publisher::Kafka {
                    producer,
                    topic: topic.clone(),
                })
            }
            PublishVia::Pushapi { base, api_key } => Ok(Publisher::Pushapi {
                client: reqwest::Client::builder()
                    .timeout(Duration::from_secs(30))
                    .build()
                    .context("building the HTTP client")?,
                base: base.clone(),
                api_key: api_key.clone(),
            }),
        }
    }

    /// Publishes `messages` rounds, one message to each of `channels` per round, one message
    /// every `interval` (zero: no pause), each with `payload_bytes` of filler.
    pub async fn publish_all(
        &self,
        site: &str,
        channels: &[String],
        messages: u64,
        interval: Duration,
        payload_bytes: usize,
    ) -> PublishSummary {
        let mut summary = PublishSummary::default();
        let pad = "x".repeat(payload_bytes);
        let quoted_site = serde_json::Value::from(site).to_string();
        let mut ticker = (!interval.is_zero()).then(|| tokio::time::interval(interval));
        let mut in_flight: FuturesUnordered<Pending> = FuturesUnordered::new();
        summary.started_us = now_us();
        for seq in 0..messages {
            for channel in channels {
                if let Some(ticker) = ticker.as_mut() {
                    ticker.tick().await;
                }
                while in_flight.len() >= IN_FLIGHT {
                    if let Some(outcome) = in_flight.next().await {
                        summary.count(outcome);
                    }
                }
                while let Some(Some(outcome)) = in_flight.next().now_or_never() {
                    summary.count(outcome);
                }
                let sent_us = now_us();
                let data = format!(r#"{{"seq":{seq},"sentUs":{sent_us},"pad":"{pad}"}}"#);
                summary.last_sent_us = sent_us;
                match self.send(&quoted_site, site, channel, &data, sent_us).await {
                    Ok(pending) => in_flight.push(pending),
                    Err(e) => summary.count(Err(e)),
                }
            }
        }
        while let Some(outcome) = in_flight.next().await {
            summary.count(outcome);
        }
        summary
    }

    /// Starts one publish.
    async fn send(
        &self,
        quoted_site: &str,
        site: &str,
        channel: &str,
        data: &str,
        sent_us: u64,
    ) -> Result<Pending, String> {
        match self {
            Publisher::Kafka { producer, topic } => {
                let key = record_key(site, channel);
                let value = kafka_value(quoted_site, channel, data, sent_us / 1000);
                let mut record = FutureRecord::to(topic).key(&key).payload(&value);
                loop {
                    match producer.send_result(record) {
                        Ok(delivery) => {
                            return Ok(async move {
                                match delivery.await {
                                    Ok(Ok(_)) => Ok(()),
                                    Ok(Err((e, _))) => Err(format!("kafka: {e}")),
                                    Err(_) => Err("kafka: delivery canceled".to_owned()),
                                }
                            }
                            .boxed());
                        }
                        Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                            // The local queue is full: wait for acknowledgements to drain it.
                            record = back;
                            tokio::time::sleep(Duration::from_millis(1)).await;
                        }
                        Err((e, _)) => return Err(format!("kafka: {e}")),
                    }
                }
            }
            Publisher::Pushapi {
                client,
                base,
                api_key,
            } => {
                let request = client
                    .post(format!(
                        "{base}/v1/sites/{site}/channels/{channel}/messages"
                    ))
                    .bearer_auth(api_key)
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(format!(r#"{{"data":{data}}}"#))
                    .send();
                Ok(async move {
                    match request.await {
                        Ok(response) if response.status().is_success() => Ok(()),
                        Ok(response) => Err(format!("pushapi: HTTP {}", response.status())),
                        Err(e) => Err(format!("pushapi: {e}")),
                    }
                }
                .boxed())
            }
        }
    }
}

/// The value of a realtime record (docs/realtime.md), written without a serializer: `site`
/// is already a JSON string and channel names need no escaping (their alphabet has no `"` or
/// `\`).
fn kafka_value(quoted_site: &str, channel: &str, data: &str, ts_ms: u64) -> String {
    format!(r#"{{"site":{quoted_site},"channel":"{channel}","data":{data},"ts":{ts_ms}}}"#)
}

impl PublishSummary {
    fn count(&mut self, outcome: Result<(), String>) {
        match outcome {
            Ok(()) => self.published += 1,
            Err(e) => {
                self.failed += 1;
                *self.errors.entry(e).or_default() += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use pushservice_realtime::record::RealtimeRecord;

    use super::*;

    #[test]
    fn the_record_is_what_the_gateway_reads() {
        let value = kafka_value(
            &serde_json::Value::from("665f1c2e9b1e8a3d4c5b6a79").to_string(),
            "bench:ab-0",
            r#"{"seq":1,"sentUs":17,"pad":""}"#,
            5,
        );
        let record: RealtimeRecord = serde_json::from_str(&value).expect("a valid record");
        assert_eq!(record.site, "665f1c2e9b1e8a3d4c5b6a79");
        assert_eq!(record.channel, "bench:ab-0");
        assert_eq!(record.data.get(), r#"{"seq":1,"sentUs":17,"pad":""}"#);
        assert_eq!(record.ts, Some(5));
        assert!(!record.ack && record.fallback.is_none());
    }
}
