//! Positions in topics, and how far consumer groups are behind them (consumer lag).
//!
//! Lag of a group on a partition is the partition's high watermark (the offset the next
//! record will get) minus the offset the group committed there: how many offsets the group
//! still has to read. A partition the group never committed counts from the partition's low
//! watermark (the groups here start at the earliest record, `auto.offset.reset=earliest`), and
//! is reported as such. Offsets count transaction markers too, so a partition written by
//! transactions (outcome, retry and dead-letter topics) can show a lag of one marker when
//! the group has read every record.
//!
//! Everything is read with batched requests, never one per partition, so a 200-partition
//! topic costs one watermark round trip per broker and one offset fetch per group: a
//! [`PositionReader`] is a plain client that never joins a group, so looking never moves
//! a partition between a group's members or commits anything. Blocking: call it from
//! `spawn_blocking` in async code.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::time::Duration;

use pushservice_config::KafkaSettings;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::{Offset, TopicPartitionList};

use crate::admin::partition_count;
use crate::client::{KafkaError, client_config};

/// The offsets of one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Watermarks {
    /// Offset of the oldest record retained.
    pub low: i64,
    /// Offset the next record will get.
    pub high: i64,
}

/// What a group has left to read on one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionLag {
    /// The partition.
    pub partition: i32,
    /// Its watermarks when asked.
    pub watermarks: Watermarks,
    /// The offset the group committed, `None` when it never committed one.
    pub committed: Option<i64>,
    /// High watermark minus the committed offset (or minus the low watermark when nothing
    /// was committed); never negative.
    pub lag: i64,
}

/// What a group has left to read on one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicLag {
    /// The group.
    pub group: String,
    /// The topic.
    pub topic: String,
    /// Per partition, in partition order.
    pub partitions: Vec<PartitionLag>,
}

impl TopicLag {
    /// The lag summed over partitions.
    pub fn total(&self) -> i64 {
        self.partitions.iter().map(|p| p.lag).sum()
    }

    /// How many partitions the group has committed an offset on.
    pub fn committed_partitions(&self) -> usize {
        self.partitions
            .iter()
            .filter(|p| p.committed.is_some())
            .count()
    }

    /// Whether the group has never committed on this topic (it may not exist, or not have
    /// started yet).
    pub fn never_committed(&self) -> bool {
        self.committed_partitions() == 0
    }

    /// The largest lag of one partition: a hot partition shows here, not in the total.
    pub fn max_partition_lag(&self) -> i64 {
        self.partitions.iter().map(|p| p.lag).max().unwrap_or(0)
    }
}

/// A client that reads positions: partition counts, watermarks, offsets by time, and what
/// groups committed. Make one per command; it holds one connection per broker.
pub struct PositionReader {
    consumer: BaseConsumer,
    settings: KafkaSettings,
    /// One client per group asked about, kept for the reader's life: a daemon asking every
    /// few seconds reuses its connection to the group's coordinator instead of finding it
    /// again (and opening and closing a client with the group's id) on every round.
    group_clients: std::sync::Mutex<BTreeMap<String, BaseConsumer>>,
}

impl PositionReader {
    /// Connects (lazily: the first request fails with the brokers named when nobody answers).
    pub fn new(settings: &KafkaSettings) -> Result<Self, KafkaError> {
        let consumer: BaseConsumer = client_config(settings)
            // Never used to consume or commit: `committed_offsets` below asks for each group
            // by name without joining it.
            .set("group.id", "pushservice-positions")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            // The high watermark, not the last stable offset: lag counts what is written.
            .set("isolation.level", "read_uncommitted")
            .create()
            .map_err(|e| KafkaError::client("creating position reader", e))?;
        Ok(PositionReader {
            consumer,
            settings: settings.clone(),
            group_clients: std::sync::Mutex::default(),
        })
    }

    fn timeout(&self) -> Duration {
        self.settings.timeout
    }

    /// Asks the cluster for its metadata: [`KafkaError::Unreachable`] when nobody answers.
    pub fn check_reachable(&self) -> Result<(), KafkaError> {
        crate::client::check_reachable(self.consumer.client(), &self.settings, None).map(|_| ())
    }

    /// Partition count of `topic`, or [`KafkaError::UnknownTopic`].
    pub fn partitions(&self, topic: &str) -> Result<i32, KafkaError> {
        partition_count(self.consumer.client(), &self.settings, topic)
    }

    /// The watermarks of every partition of `topic`, in partition order: two batched
    /// requests (earliest and latest offsets) whatever the partition count.
    pub fn watermarks(&self, topic: &str) -> Result<Vec<Watermarks>, KafkaError> {
        let partitions = self.partitions(topic)?;
        let low = self.list_offsets(topic, partitions, Offset::Beginning)?;
        let high = self.list_offsets(topic, partitions, Offset::End)?;
        Ok(low
            .into_iter()
            .zip(high)
            .map(|(low, high)| Watermarks {
                low,
                high: high.max(low),
            })
            .collect())
    }

    /// Per partition of `topic` (in order), the offset of the first record written at or after
    /// `at_ms` (ms since the epoch), or the high watermark when none was.
    pub fn offsets_at(&self, topic: &str, at_ms: i64) -> Result<Vec<i64>, KafkaError> {
        let partitions = self.partitions(topic)?;
        let ends = self.list_offsets(topic, partitions, Offset::End)?;
        let found = self.list_offsets(topic, partitions, Offset::Offset(at_ms.max(0)))?;
        Ok(found
            .into_iter()
            .zip(ends)
            .map(|(found, end)| if found < 0 { end } else { found.min(end) })
            .collect())
    }

    /// ListOffsets for every partition: `query` is a timestamp, or `Beginning`/`End` for the
    /// low/high watermark (the protocol's -2/-1). A partition answered with "no such offset"
    /// comes back as -1.
    fn list_offsets(
        &self,
        topic: &str,
        partitions: i32,
        query: Offset,
    ) -> Result<Vec<i64>, KafkaError> {
        let mut list = TopicPartitionList::new();
        for partition in 0..partitions {
            list.add_partition_offset(topic, partition, query)
                .map_err(|e| KafkaError::client("building partition list", e))?;
        }
        let answered = self
            .consumer
            .offsets_for_times(list, self.timeout())
            .map_err(|e| KafkaError::client(format!("listing offsets of {topic:?}"), e))?;
        let mut offsets = vec![-1; usize::try_from(partitions).unwrap_or(0)];
        for element in answered.elements_for_topic(topic) {
            if let Err(e) = element.error() {
                return Err(KafkaError::client(
                    format!("listing offsets of {topic:?}/{}", element.partition()),
                    e,
                ));
            }
            let slot = usize::try_from(element.partition())
                .ok()
                .and_then(|p| offsets.get_mut(p));
            if let (Some(slot), Offset::Offset(offset)) = (slot, element.offset()) {
                *slot = offset;
            }
        }
        Ok(offsets)
    }

    /// What `group` committed on each partition of `topic` (in order), `None` where nothing.
    pub fn committed(
        &self,
        group: &str,
        topic: &str,
        partitions: i32,
    ) -> Result<Vec<Option<i64>>, KafkaError> {
        // The group id of a committed-offsets request is the client's own: a client per
        // group. It never subscribes, so it never joins the group, takes no partition and
        // commits nothing; it only asks the coordinator (OffsetFetch).
        let mut clients = self
            .group_clients
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let client = match clients.entry(group.to_owned()) {
            Entry::Occupied(kept) => kept.into_mut(),
            Entry::Vacant(slot) => slot.insert(
                client_config(&self.settings)
                    .set("group.id", group)
                    .set("enable.auto.commit", "false")
                    .set("enable.auto.offset.store", "false")
                    // Without it the offset fetch asks for stable offsets (KIP-447) and the
                    // coordinator makes it wait while a member's transaction holds pending
                    // offsets, which for a busy sender group is nearly always: the last
                    // completed commit is what lag counts from.
                    .set("isolation.level", "read_uncommitted")
                    .create()
                    .map_err(|e| {
                        KafkaError::client(format!("creating client of group {group:?}"), e)
                    })?,
            ),
        };
        let mut list = TopicPartitionList::new();
        for partition in 0..partitions {
            list.add_partition(topic, partition);
        }
        let committed = client
            .committed_offsets(list, self.timeout())
            .map_err(|e| {
                KafkaError::client(format!("offsets group {group:?} committed on {topic:?}"), e)
            })?;
        let mut offsets = vec![None; usize::try_from(partitions).unwrap_or(0)];
        for element in committed.elements_for_topic(topic) {
            let slot = usize::try_from(element.partition())
                .ok()
                .and_then(|p| offsets.get_mut(p));
            if let (Some(slot), Offset::Offset(offset)) = (slot, element.offset()) {
                *slot = Some(offset);
            }
        }
        Ok(offsets)
    }

    /// The lag of `group` on `topic`.
    pub fn topic_lag(&self, group: &str, topic: &str) -> Result<TopicLag, KafkaError> {
        let watermarks = self.watermarks(topic)?;
        let partitions = i32::try_from(watermarks.len()).unwrap_or(i32::MAX);
        let committed = self.committed(group, topic, partitions)?;
        Ok(lag_of(group, topic, &watermarks, &committed))
    }

    /// The lag of each `(group, topics)` pair, watermarks read once per topic however many
    /// groups read it.
    pub fn group_lags(&self, groups: &[(&str, Vec<String>)]) -> Result<Vec<TopicLag>, KafkaError> {
        let mut watermarks: BTreeMap<&str, Vec<Watermarks>> = BTreeMap::new();
        let mut lags = Vec::new();
        for (group, topics) in groups {
            for topic in topics {
                if !watermarks.contains_key(topic.as_str()) {
                    watermarks.insert(topic, self.watermarks(topic)?);
                }
                let marks = &watermarks[topic.as_str()];
                let partitions = i32::try_from(marks.len()).unwrap_or(i32::MAX);
                let committed = self.committed(group, topic, partitions)?;
                lags.push(lag_of(group, topic, marks, &committed));
            }
        }
        Ok(lags)
    }
}

/// The lag per partition from watermarks and committed offsets (same order).
pub fn lag_of(
    group: &str,
    topic: &str,
    watermarks: &[Watermarks],
    committed: &[Option<i64>],
) -> TopicLag {
    let partitions = watermarks
        .iter()
        .enumerate()
        .map(|(i, marks)| {
            let committed = committed.get(i).copied().flatten();
            // A committed offset below the low watermark (retention removed what the group
            // had not read) counts from the low watermark: that is where it will resume.
            let from = committed.unwrap_or(marks.low).max(marks.low);
            PartitionLag {
                partition: i32::try_from(i).unwrap_or(i32::MAX),
                watermarks: *marks,
                committed,
                lag: (marks.high - from).max(0),
            }
        })
        .collect();
    TopicLag {
        group: group.to_owned(),
        topic: topic.to_owned(),
        partitions,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_counts_from_the_commit_or_the_low_watermark() {
        let marks = [
            Watermarks { low: 0, high: 10 },
            Watermarks { low: 5, high: 8 },
            Watermarks { low: 4, high: 9 },
            Watermarks { low: 0, high: 0 },
        ];
        let lag = lag_of("g", "t", &marks, &[Some(7), None, Some(2), None]);
        let per: Vec<i64> = lag.partitions.iter().map(|p| p.lag).collect();
        assert_eq!(per, [3, 3, 5, 0]);
        assert_eq!(lag.total(), 11);
        assert_eq!(lag.committed_partitions(), 2);
        assert_eq!(lag.max_partition_lag(), 5);
        assert!(!lag.never_committed());
        assert!(lag_of("g", "t", &marks, &[]).never_committed());
    }
}
