//! Round trips to Kafka and MongoDB that keep `/readyz` honest, and consumer lag.
//!
//! Every [`Probes::interval`] a daemon pings MongoDB, asks Kafka for the watermarks and
//! committed offsets of its consumer groups (one batched request per topic, without joining
//! the group), and checks that it holds partitions. Each result goes to [`Health`] as a named
//! check, so `/readyz` turns unready within one interval of losing Kafka or MongoDB, says
//! which and why, and turns ready again at the first round trip that succeeds.
//!
//! The lag of each group, topic and partition (high watermark − committed offset) becomes
//! `pushservice_consumer_lag_messages`. Every member of a group reports the whole group's
//! lag (it is one read, and it stays right when members come and go): aggregate it with
//! `max by (group, topic, partition)`, never `sum` across instances.

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

/// What a daemon probes.
pub struct Probes {
    /// The Kafka cluster.
    pub kafka: KafkaSettings,
    /// The store, when the daemon uses one.
    pub store: Option<Store>,
    /// Consumer groups whose lag is reported, each with its topics.
    pub groups: Vec<(String, Vec<String>)>,
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
            groups: Vec::new(),
            assigned: None,
            interval: DEFAULT_INTERVAL,
        }
    }

    /// Also pings `store`.
    pub fn store(mut self, store: Store) -> Self {
        self.store = Some(store);
        self
    }

    /// Also reports the lag of `group` on `topics`.
    pub fn group(mut self, group: &str, topics: &[&str]) -> Self {
        self.groups.push((
            group.to_owned(),
            topics.iter().map(|t| (*t).to_owned()).collect(),
        ));
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

            let (kafka, groups, reader) =
                (self.kafka.clone(), self.groups.clone(), Arc::clone(&reader));
            let round = tokio::task::spawn_blocking(move || kafka_round(&kafka, &groups, &reader));
            match round.await {
                Ok(Ok(lags)) => {
                    let partitions: usize = lags.iter().map(|l| l.partitions.len()).sum();
                    let total: i64 = lags.iter().map(TopicLag::total).sum();
                    let detail = if self.groups.is_empty() {
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

/// One round trip to Kafka: the groups' lag, or only the cluster's metadata when there are
/// no groups.
fn kafka_round(
    kafka: &KafkaSettings,
    groups: &[(String, Vec<String>)],
    reader: &std::sync::Mutex<Option<PositionReader>>,
) -> Result<Vec<TopicLag>, String> {
    let mut reader = reader.lock().unwrap_or_else(|p| p.into_inner());
    if reader.is_none() {
        *reader = Some(PositionReader::new(kafka).map_err(|e| e.to_string())?);
    }
    let Some(reader) = reader.as_ref() else {
        return Err("no Kafka client".to_owned());
    };
    if groups.is_empty() {
        return reader
            .check_reachable()
            .map(|()| Vec::new())
            .map_err(|e| e.to_string());
    }
    let groups: Vec<(&str, Vec<String>)> = groups
        .iter()
        .map(|(group, topics)| (group.as_str(), topics.clone()))
        .collect();
    reader.group_lags(&groups).map_err(|e| e.to_string())
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
