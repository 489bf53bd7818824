//! Reading a topic without joining a consumer group: for `pushctl tail`, `pushctl dlq` and
//! for tests.
//!
//! [`read_topic`] reads what arrives until the topic is quiet for a while. [`scan_topic`]
//! reads every partition up to the end it had when the scan started (high watermarks taken
//! first, so scanning a topic that keeps growing terminates), or on and on when following.

use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use pushservice_config::KafkaSettings;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError as RdKafkaError;
use rdkafka::message::{BorrowedMessage, Headers as _};
use rdkafka::{Message, Offset, TopicPartitionList};

use crate::client::{KafkaError, client_config};

/// Where reading starts in every partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadFrom {
    /// The oldest message still retained.
    Beginning,
    /// Only messages produced from now on.
    End,
}

/// One message read from a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadMessage {
    /// Partition it was read from.
    pub partition: i32,
    /// Its offset in that partition.
    pub offset: i64,
    /// Its key, if any.
    pub key: Option<Vec<u8>>,
    /// Its value, if any.
    pub payload: Option<Vec<u8>>,
    /// Producer or broker timestamp, milliseconds since the epoch.
    pub timestamp_ms: Option<i64>,
    /// Its headers in order, as (name, value); a header without a value has an empty one.
    pub headers: Vec<(String, Vec<u8>)>,
}

impl ReadMessage {
    fn from_borrowed(message: &BorrowedMessage<'_>) -> Self {
        let headers = message
            .headers()
            .map(|headers| {
                headers
                    .iter()
                    .map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec()))
                    .collect()
            })
            .unwrap_or_default();
        ReadMessage {
            partition: message.partition(),
            offset: message.offset(),
            key: message.key().map(<[u8]>::to_vec),
            payload: message.payload().map(<[u8]>::to_vec),
            timestamp_ms: message.timestamp().to_millis(),
            headers,
        }
    }

    /// The value of header `name` (the first, if repeated), as UTF-8 when it is.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .and_then(|(_, value)| std::str::from_utf8(value).ok())
    }
}

/// Reads up to `max` messages of every partition of `topic`, stopping early once nothing
/// arrived for `idle`. Blocking: call it from `spawn_blocking` in async code.
pub fn read_topic(
    settings: &KafkaSettings,
    topic: &str,
    from: ReadFrom,
    max: usize,
    idle: Duration,
) -> Result<Vec<ReadMessage>, KafkaError> {
    let consumer = reader(settings, false)?;
    let partitions = crate::admin::partition_count(consumer.client(), settings, topic)?;
    let offset = match from {
        ReadFrom::Beginning => Offset::Beginning,
        ReadFrom::End => Offset::End,
    };
    let mut assignment = TopicPartitionList::new();
    for partition in 0..partitions {
        assignment
            .add_partition_offset(topic, partition, offset)
            .map_err(|e| KafkaError::client("building assignment", e))?;
    }
    consumer
        .assign(&assignment)
        .map_err(|e| KafkaError::client(format!("assigning {topic:?}"), e))?;

    let mut messages = Vec::new();
    let mut last_seen = Instant::now();
    while messages.len() < max && last_seen.elapsed() < idle {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => {
                last_seen = Instant::now();
                messages.push(ReadMessage::from_borrowed(&message));
            }
            Some(Err(e)) => return Err(KafkaError::client(format!("reading {topic:?}"), e)),
            None => {}
        }
    }
    Ok(messages)
}

/// A consumer that is never used to commit: offsets are assigned explicitly, nothing stored.
fn reader(settings: &KafkaSettings, partition_eof: bool) -> Result<BaseConsumer, KafkaError> {
    client_config(settings)
        .set("group.id", "pushservice-reader")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        // Records of aborted transactions (a sender that died mid-batch) were never written.
        .set("isolation.level", "read_committed")
        .set(
            "enable.partition.eof",
            if partition_eof { "true" } else { "false" },
        )
        .create()
        .map_err(|e| KafkaError::client("creating reader", e))
}

/// Where [`scan_topic`] starts in each partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanFrom {
    /// The oldest message still retained.
    Beginning,
    /// The last this many messages of each partition.
    Last(u64),
    /// The end the partition had when the scan started: only messages produced later.
    End,
    /// These offsets, by partition (what an earlier scan returned); partitions beyond the
    /// list start at the beginning.
    Offsets(Vec<i64>),
}

/// Reads every partition of `topic` without joining a group, from `from` up to the end each
/// partition had when the scan started, handing each message to `visit` in partition order
/// (partitions interleave); `visit` may stop the scan early. With `follow`, it does not stop
/// at those ends but goes on reading what is produced later, until `visit` says stop.
///
/// The ends are the high watermarks read before anything else, so a topic that keeps growing
/// is still scanned in bounded time. A partition also counts as read to its end when the
/// broker says so (partition EOF), which covers offsets that hold no message (compaction,
/// transaction markers). Unless following, fails when nothing arrives for the settings'
/// timeout while partitions are unfinished. Blocking: call it from `spawn_blocking` in async
/// code.
///
/// Returns, by partition, the offset a later scan would go on from ([`ScanFrom::Offsets`]):
/// for a partition read to its end, that end.
pub fn scan_topic(
    settings: &KafkaSettings,
    topic: &str,
    from: ScanFrom,
    follow: bool,
    mut visit: impl FnMut(ReadMessage) -> ControlFlow<()>,
) -> Result<Vec<i64>, KafkaError> {
    let consumer = reader(settings, !follow)?;
    let partitions = crate::admin::partition_count(consumer.client(), settings, topic)?;
    let mut assignment = TopicPartitionList::new();
    // Per partition: the offset one past the last message to read (the high watermark),
    // `None` once read to it; and where reading is (the next offset).
    let mut ends: Vec<Option<i64>> = Vec::new();
    let mut positions: Vec<i64> = Vec::new();
    for partition in 0..partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, partition, settings.timeout)
            .map_err(|e| KafkaError::client(format!("watermarks of {topic:?}/{partition}"), e))?;
        let start = match &from {
            ScanFrom::Beginning => low,
            ScanFrom::Last(n) => high
                .saturating_sub(i64::try_from(*n).unwrap_or(i64::MAX))
                .max(low),
            ScanFrom::End => high,
            ScanFrom::Offsets(offsets) => usize::try_from(partition)
                .ok()
                .and_then(|p| offsets.get(p).copied())
                .unwrap_or(low)
                .clamp(low, high),
        };
        let unfinished = follow || start < high;
        ends.push(unfinished.then_some(high));
        positions.push(if unfinished { start } else { high });
        if unfinished {
            assignment
                .add_partition_offset(topic, partition, Offset::Offset(start))
                .map_err(|e| KafkaError::client("building assignment", e))?;
        }
    }
    let mut remaining = ends.iter().filter(|end| end.is_some()).count();
    if remaining == 0 {
        return Ok(positions);
    }
    consumer
        .assign(&assignment)
        .map_err(|e| KafkaError::client(format!("assigning {topic:?}"), e))?;

    let mut last_progress = Instant::now();
    while follow || remaining > 0 {
        let (partition, reached) = match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => {
                let read = ReadMessage::from_borrowed(&message);
                let (partition, next) = (read.partition, read.offset + 1);
                if let Some(position) = usize::try_from(partition)
                    .ok()
                    .and_then(|p| positions.get_mut(p))
                {
                    *position = next;
                }
                if visit(read).is_break() {
                    return Ok(positions);
                }
                (partition, next)
            }
            Some(Err(RdKafkaError::PartitionEOF(partition))) => (partition, i64::MAX),
            Some(Err(e)) => return Err(KafkaError::client(format!("reading {topic:?}"), e)),
            None => {
                if !follow && last_progress.elapsed() > settings.timeout {
                    return Err(KafkaError::client(
                        format!(
                            "reading {topic:?}: nothing arrived for {:?} with {remaining} \
                             partition(s) not read to their end",
                            settings.timeout
                        ),
                        RdKafkaError::MessageConsumption(
                            rdkafka::types::RDKafkaErrorCode::OperationTimedOut,
                        ),
                    ));
                }
                continue;
            }
        };
        last_progress = Instant::now();
        if follow {
            continue;
        }
        let Ok(index) = usize::try_from(partition) else {
            continue;
        };
        if let Some(end) = ends.get_mut(index)
            && let Some(high) = *end
            && reached >= high
        {
            *end = None;
            remaining -= 1;
            if let Some(position) = positions.get_mut(index) {
                *position = (*position).max(high);
            }
        }
    }
    Ok(positions)
}
