//! Round trips to Kafka and MongoDB that keep `/readyz` honest, and consumer lag.
//!
//! Every [`Probes::interval`] a daemon pings MongoDB, asks Kafka for the watermarks of the
//! partitions its group member holds, compares them with the member's own read positions,
//! and checks that it holds partitions. Each result goes to [`Health`] as a named
//! check, so `/readyz` turns unready within one interval of losing Kafka or MongoDB, says
//! which and why, and turns ready again at the first round trip that succeeds.
//!
//! The lag of each group, topic and partition (high watermark − the member's position) becomes
//! `pushservice_consumer_lag_messages`; each member reports the partitions it holds, so the
//! series of a group's members add up to the group's lag.
//!
//! Why not read every group's committed offsets from outside, as `pushctl stats` does: that
//! takes a client with the group's id, and a daemon doing so every few seconds beside the
//! group's members made the members redeliver (measured with the sender's outage test: 202
//! duplicate deliveries instead of 0), and so did asking for committed offsets through the
//! member's own consumer. Its positions are in memory and cost the group nothing.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use pushservice_config::KafkaSettings;
use pushservice_kafka::lag::{PositionReader, TopicLag};
use pushservice_store::Store;
use tokio_util::sync::CancellationToken;

use crate::http::Health;
use crate::metrics::{GaugeFamily, Registry};

/// How often the probes run by default.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);

/// Counts the partitions this instance holds, or says why it cannot tell.
pub type AssignedPartitions = Arc<dyn Fn() -> Result<usize, String> + Send + Sync>;

/// Where a group member stands on the partitions it holds: `(topic, partition, offset)`,
/// `None` where it has no position yet.
pub type CommittedOffsets =
    Arc<dyn Fn() -> Result<Vec<(String, i32, Option<i64>)>, String> + Send + Sync>;

/// [`CommittedOffsets`] of a group member's own consumer: its read positions on the
/// partitions assigned to it, which it keeps in memory (no request to the group coordinator:
/// asking for committed offsets beside a running member made it redeliver, see above).
pub fn positions_of<C, K>(consumer: Arc<K>) -> CommittedOffsets
where
    C: pushservice_kafka::rdkafka::consumer::ConsumerContext + 'static,
    K: pushservice_kafka::rdkafka::consumer::Consumer<C> + Send + Sync + 'static,
{
    use pushservice_kafka::rdkafka::Offset;
    Arc::new(move || {
        let positions = consumer
            .position()
            .map_err(|e| format!("reading the consumer's positions: {e}"))?;
        Ok(positions
            .elements()
            .iter()
            .map(|e| {
                let offset = match e.offset() {
                    Offset::Offset(offset) => Some(offset),
                    _ => None,
                };
                (e.topic().to_owned(), e.partition(), offset)
            })
            .collect())
    })
}

/// What a daemon probes.
pub struct Probes {
    /// The Kafka cluster.
    pub kafka: KafkaSettings,
    /// The store, when the daemon uses one.
    pub store: Option<Store>,
    /// The group whose lag this member reports, and how to read its commits.
    pub lag: Option<(String, CommittedOffsets)>,
    /// Partitions this instance holds; ready needs at least one.
    pub assigned: Option<AssignedPartitions>,
    /// Time between rounds.
    pub interval: Duration,
}

impl Probes {
    /// Probes `kafka` (and nothing else yet) every [`DEFAULT_INTERVAL`].
    pub fn new(kafka: &KafkaSettings) -> Self {
        Probes {
            kafka: kafka.clone(),
            store: None,
            lag: None,
            assigned: None,
            interval: DEFAULT_INTERVAL,
        }
    }

    /// Also pings `store`.
    pub fn store(mut self, store: Store) -> Self {
        self.store = Some(store);
        self
    }

    /// Also reports the lag of `group` on the partitions this member holds.
    pub fn lag(mut self, group: &str, committed: CommittedOffsets) -> Self {
        self.lag = Some((group.to_owned(), committed));
        self
    }

    /// Ready needs `assigned` to count at least one partition.
    pub fn assigned(mut self, assigned: AssignedPartitions) -> Self {
        self.assigned = Some(assigned);
        self
    }

    /// Runs the first round now, then one every interval until `stop`.
    pub fn spawn(
        self,
        health: Arc<Health>,
        registry: &Registry,
        stop: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let lag = registry.gauge_family(
            "pushservice_consumer_lag_messages",
            "Messages of a partition not yet committed by a consumer group (high watermark minus committed offset), as read by each member.",
        );
        // Unready until each check has passed once.
        let stale = self.interval * 3 + self.kafka.timeout;
        let not_yet = || Err("not checked yet".to_owned());
        if self.store.is_some() {
            health.report("mongodb", not_yet(), stale);
        }
        health.report("kafka", not_yet(), stale);
        if self.assigned.is_some() {
            health.report("partitions", not_yet(), stale);
        }
        tokio::spawn(self.run(health, lag, stop))
    }

    async fn run(self, health: Arc<Health>, lag: GaugeFamily, stop: CancellationToken) {
        // A result stands for three rounds and a slow Kafka answer; a probe that hangs
        // longer than that counts as failed.
        let stale = self.interval * 3 + self.kafka.timeout;
        let reader: Arc<std::sync::Mutex<Option<PositionReader>>> = Arc::default();
        let mut shown: BTreeSet<(String, String, String)> = BTreeSet::new();
        loop {
            if let Some(store) = &self.store {
                let result = match tokio::time::timeout(stale, store.ping()).await {
                    Ok(Ok(())) => Ok("ping answered".to_owned()),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err(format!("no answer to ping within {stale:?}")),
                };
                health.report("mongodb", result, stale);
            }

            let (kafka, lag_source, reader) =
                (self.kafka.clone(), self.lag.clone(), Arc::clone(&reader));
            let round = tokio::task::spawn_blocking(move || {
                kafka_round(&kafka, lag_source.as_ref(), &reader)
            });
            match round.await {
                Ok(Ok(lags)) => {
                    let partitions: usize = lags.iter().map(|l| l.partitions.len()).sum();
                    let total: i64 = lags.iter().map(TopicLag::total).sum();
                    let detail = if self.lag.is_none() {
                        "metadata answered".to_owned()
                    } else {
                        format!("lag {total} over {partitions} partitions")
                    };
                    health.report("kafka", Ok(detail), stale);
                    shown = publish_lag(&lag, &lags, shown);
                }
                Ok(Err(e)) => health.report("kafka", Err(e), stale),
                Err(e) => health.report("kafka", Err(format!("probe panicked: {e}")), stale),
            }

            if let Some(assigned) = &self.assigned {
                let result = match assigned() {
                    Ok(0) => Err("no partition assigned (yet): the group is rebalancing, or there are more members than partitions".to_owned()),
                    Ok(n) => Ok(format!("{n} assigned")),
                    Err(e) => Err(e),
                };
                health.report("partitions", result, stale);
            }

            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(self.interval) => {}
            }
        }
    }
}

/// One round trip to Kafka: the member's lag, or only the cluster's metadata without one.
fn kafka_round(
    kafka: &KafkaSettings,
    lag_source: Option<&(String, CommittedOffsets)>,
    reader: &std::sync::Mutex<Option<PositionReader>>,
) -> Result<Vec<TopicLag>, String> {
    let mut reader = reader.lock().unwrap_or_else(|p| p.into_inner());
    if reader.is_none() {
        *reader = Some(PositionReader::new(kafka).map_err(|e| e.to_string())?);
    }
    let Some(reader) = reader.as_ref() else {
        return Err("no Kafka client".to_owned());
    };
    let Some((group, committed)) = lag_source else {
        return reader
            .check_reachable()
            .map(|()| Vec::new())
            .map_err(|e| e.to_string());
    };
    // Watermarks of the topics held, one batched read each; nothing held: a metadata read.
    let held = committed()?;
    if held.is_empty() {
        reader.check_reachable().map_err(|e| e.to_string())?;
    }
    let mut by_topic: std::collections::BTreeMap<&str, Vec<(i32, Option<i64>)>> =
        std::collections::BTreeMap::new();
    for (topic, partition, offset) in &held {
        by_topic
            .entry(topic)
            .or_default()
            .push((*partition, *offset));
    }
    let mut lags = Vec::new();
    for (topic, partitions) in by_topic {
        let marks = reader.watermarks(topic).map_err(|e| e.to_string())?;
        let mut lag = TopicLag {
            group: group.clone(),
            topic: topic.to_owned(),
            partitions: Vec::new(),
        };
        for (partition, offset) in partitions {
            let Some(marks) = usize::try_from(partition).ok().and_then(|p| marks.get(p)) else {
                continue;
            };
            let from = offset.unwrap_or(marks.low);
            lag.partitions.push(pushservice_kafka::lag::PartitionLag {
                partition,
                watermarks: *marks,
                committed: offset,
                lag: (marks.high - from).max(0),
            });
        }
        lags.push(lag);
    }
    Ok(lags)
}

/// Sets the lag series of `lags` and removes those shown before that are gone.
fn publish_lag(
    family: &GaugeFamily,
    lags: &[TopicLag],
    before: BTreeSet<(String, String, String)>,
) -> BTreeSet<(String, String, String)> {
    let mut now = BTreeSet::new();
    for topic in lags {
        for partition in &topic.partitions {
            let key = (
                topic.group.clone(),
                topic.topic.clone(),
                partition.partition.to_string(),
            );
            family.set(
                &[("group", &key.0), ("topic", &key.1), ("partition", &key.2)],
                partition.lag,
            );
            now.insert(key);
        }
    }
    for gone in before.difference(&now) {
        family.remove(&[
            ("group", &gone.0),
            ("topic", &gone.1),
            ("partition", &gone.2),
        ]);
    }
    now
}
