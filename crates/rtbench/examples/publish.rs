//! Publishes one message to a realtime channel by writing a record to the `realtime` topic,
//! for trying the gateway and the SDK by hand (`pushctl publish` does the same through the
//! control layer once it exists):
//!
//! ```sh
//! cargo run -p pushservice-rtbench --example publish -- <siteId> <channel> '{"text":"hi"}' [ack]
//! ```
//!
//! Brokers from `KAFKA_BROKERS` (default 127.0.0.1:9092), topic from `TOPIC_REALTIME`
//! (default `realtime`). Prints the message id `<partition>-<offset>`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use pushservice_kafka::rdkafka::producer::FutureRecord;
use pushservice_kafka::{ProducerTuning, producer};
use pushservice_realtime::record::{RealtimeRecord, record_key};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [site, channel, data, rest @ ..] = args.as_slice() else {
        anyhow::bail!("usage: publish <siteId> <channel> '<json data>' [ack]");
    };
    let data =
        serde_json::value::RawValue::from_string(data.clone()).context("the data is not JSON")?;
    let ts = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    let record = RealtimeRecord {
        site: site.clone(),
        channel: channel.clone(),
        data,
        ts: Some(ts),
        ack: rest.first().is_some_and(|a| a == "ack"),
        fallback: None,
    };
    let settings = pushservice_config::KafkaSettings {
        brokers: std::env::var("KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into()),
        security: None,
        timeout: Duration::from_secs(10),
        session_timeout: Duration::from_millis(
            pushservice_config::KafkaSettings::DEFAULT_SESSION_TIMEOUT_MS,
        ),
    };
    let topic = std::env::var("TOPIC_REALTIME").unwrap_or_else(|_| "realtime".into());
    let producer = producer(&settings, &ProducerTuning::command(Duration::from_secs(10)))?;
    let value = serde_json::to_string(&record)?;
    let key = record_key(site, channel);
    let delivery = producer
        .send(
            FutureRecord::to(&topic).key(&key).payload(&value),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| anyhow::anyhow!("publishing to {topic}: {e}"))?;
    println!("{}-{}", delivery.partition, delivery.offset);
    Ok(())
}
