//! The fleet at a glance (`pushctl stats`): pushes in progress with their rate and ETA,
//! consumer lag per group, outcomes by platform and reason over the last minutes, and dead
//! letters by reason.
//!
//! Everything is read, nothing written, and every read is bounded so the answer comes in
//! seconds on topics with millions of records:
//!
//! - pushes: every `processing` push and, of the most recent [`RECENT_DONE_PUSHES`] `done`
//!   ones, those whose deliveries do not all have an outcome yet, with live totals
//!   ([`Store::add_live_totals`]);
//! - lag: watermarks and committed offsets in batched requests ([`PositionReader`]);
//! - outcomes: the outcome topic from the first record of the window
//!   (`offsets_for_times(now − window)`) to its end, at most `max_records` records, the
//!   newest of each partition when there are more (then [`OutcomeWindow::capped`] says so);
//! - dead letters: the newest `max_records` of the dead-letter topic, counted as `pushctl
//!   dlq stats` counts them ([`DeadLetterStats`]), with the retained total from watermarks.
//!
//! A push's rate is its outcomes in the window over the time since the first of them, so a
//! push that started a minute ago is not diluted over the whole window; its ETA is what is
//! left of its fanned-out deliveries at that rate.

use std::collections::{BTreeMap, HashMap};
use std::ops::ControlFlow;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bson::{Document, doc};
use pushservice_config::{KafkaSettings, Topics};
use pushservice_kafka::{KafkaError, PositionReader, ScanFrom, TopicLag, scan_topic};
use pushservice_model::{OutcomeRecord, OutcomeResult, Push, PushStatus};
use pushservice_store::{PUSHES, Store, StoreError};

use crate::dlq::{DeadLetter, DeadLetterStats};
use crate::error::ControlError;

/// How many of the most recent `done` pushes are looked at for deliveries still going on.
pub const RECENT_DONE_PUSHES: i64 = 200;

/// The platform name of outcome records that do not carry one (written before records
/// named their platform).
pub const UNKNOWN_PLATFORM: &str = "unknown";

/// A consumer group to measure, and where its name comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSpec {
    /// What the group does, for people: `sender`, `outcome recorder`, ...
    pub role: String,
    /// The setting that names it (`SENDER_GROUP`).
    pub setting: String,
    /// The group id.
    pub group: String,
    /// The topics it reads.
    pub topics: Vec<String>,
}

/// What to read.
#[derive(Debug, Clone)]
pub struct StatsQuery {
    /// Outcomes of this last stretch of time.
    pub window: Duration,
    /// Most records read from the outcome topic, and from the dead-letter topic.
    pub max_records: usize,
    /// Groups whose lag to show.
    pub groups: Vec<GroupSpec>,
}

/// One push that is being delivered.
#[derive(Debug, Clone, PartialEq)]
pub struct PushProgress {
    /// The push, with live totals.
    pub push: Push,
    /// Delivery messages produced so far (all of them once `done`).
    pub fanned_out: i64,
    /// Outcomes so far: accepted + unsubscribed + failed + canceled.
    pub outcomes: i64,
    /// Outcomes per second over the window, when it saw any.
    pub rate_per_sec: Option<f64>,
    /// Seconds until every fanned-out delivery has an outcome at that rate.
    pub eta_secs: Option<f64>,
}

impl PushProgress {
    /// Whether the parser is still fanning it out (more deliveries will come).
    pub fn fanning_out(&self) -> bool {
        self.push.status == PushStatus::Processing
    }
}

/// Outcome counts by result.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResultCounts {
    /// Accepted by the push service.
    pub accepted: u64,
    /// Subscription gone.
    pub gone: u64,
    /// Failed for good.
    pub failed: u64,
    /// Dropped, push canceled.
    pub canceled: u64,
}

impl ResultCounts {
    fn add(&mut self, result: OutcomeResult) {
        match result {
            OutcomeResult::Accepted => self.accepted += 1,
            OutcomeResult::Gone => self.gone += 1,
            OutcomeResult::Failed => self.failed += 1,
            OutcomeResult::Canceled => self.canceled += 1,
        }
    }

    /// All outcomes.
    pub fn total(&self) -> u64 {
        self.accepted + self.gone + self.failed + self.canceled
    }
}

/// One push's outcomes within the window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PushWindow {
    /// Outcomes read.
    pub count: u64,
    /// Timestamp of the earliest, ms since the epoch.
    pub first_ms: i64,
}

/// Outcomes of the last minutes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OutcomeWindow {
    /// The topic read.
    pub topic: String,
    /// Start of the window, ms since the epoch.
    pub since_ms: i64,
    /// When it was read, ms since the epoch.
    pub until_ms: i64,
    /// Offsets in the window over all partitions (records, plus transaction markers).
    pub offsets_in_window: u64,
    /// Records read.
    pub records_read: u64,
    /// Whether the window held more than the cap: then only the newest records of each
    /// partition were read.
    pub capped: bool,
    /// Records that are not outcome records (counted, not aggregated).
    pub unreadable: u64,
    /// By platform (`web`, `ios`, `android`, [`UNKNOWN_PLATFORM`]).
    pub by_platform: BTreeMap<String, ResultCounts>,
    /// Failures by (platform, reason).
    pub failure_reasons: BTreeMap<(String, String), u64>,
    /// By push id (hex).
    pub by_push: HashMap<String, PushWindow>,
}

impl OutcomeWindow {
    /// Counts one outcome record read at `timestamp_ms`.
    pub fn add(&mut self, record: &OutcomeRecord, timestamp_ms: i64) {
        let platform = record
            .platform
            .map_or(UNKNOWN_PLATFORM, |p| p.as_str())
            .to_owned();
        if record.result == OutcomeResult::Failed {
            let reason = record.reason.clone().unwrap_or_else(|| "(none)".to_owned());
            *self
                .failure_reasons
                .entry((platform.clone(), reason))
                .or_default() += 1;
        }
        self.by_platform
            .entry(platform)
            .or_default()
            .add(record.result);
        let push = self.by_push.entry(record.push_id.clone()).or_default();
        push.first_ms = if push.count == 0 {
            timestamp_ms
        } else {
            push.first_ms.min(timestamp_ms)
        };
        push.count += 1;
    }

    /// All outcomes counted.
    pub fn total(&self) -> ResultCounts {
        self.by_platform
            .values()
            .fold(ResultCounts::default(), |mut sum, c| {
                sum.accepted += c.accepted;
                sum.gone += c.gone;
                sum.failed += c.failed;
                sum.canceled += c.canceled;
                sum
            })
    }
}

/// Dead letters: the retained total and what the newest say.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeadLetterSummary {
    /// The topic read.
    pub topic: String,
    /// Offsets retained over all partitions (dead letters, plus transaction markers).
    pub retained: u64,
    /// Whether only the newest were read.
    pub capped: bool,
    /// What those read say.
    pub stats: DeadLetterStats,
}

/// The lag of one group on one topic, or why it could not be read.
#[derive(Debug)]
pub struct LagRow {
    /// The group.
    pub spec: GroupSpec,
    /// The topic.
    pub topic: String,
    /// Its lag.
    pub lag: Result<TopicLag, KafkaError>,
}

/// Everything `pushctl stats` shows.
#[derive(Debug)]
pub struct FleetStats {
    /// When it was read, ms since the epoch.
    pub at_ms: i64,
    /// Pushes being delivered, oldest first.
    pub pushes: Vec<PushProgress>,
    /// Lag per group and topic.
    pub lag: Vec<LagRow>,
    /// Outcomes of the window.
    pub outcomes: OutcomeWindow,
    /// Dead letters.
    pub dead_letters: DeadLetterSummary,
}

/// Milliseconds since the epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The group specs of a fleet with these topics and group names.
pub fn fleet_groups(
    topics: &Topics,
    parser_group: &str,
    sender_group: &str,
    recorder_group: &str,
    gateway_history_group: &str,
) -> Vec<GroupSpec> {
    let spec = |role: &str, setting: &str, group: &str, topics: Vec<String>| GroupSpec {
        role: role.to_owned(),
        setting: setting.to_owned(),
        group: group.to_owned(),
        topics,
    };
    let mut sender_topics = vec![topics.push.name.clone()];
    sender_topics.extend(topics.retry_tiers().into_iter().map(|(t, _)| t.name));
    vec![
        spec(
            "parser",
            "PARSER_GROUP",
            parser_group,
            vec![topics.raw_push.name.clone()],
        ),
        spec("sender", "SENDER_GROUP", sender_group, sender_topics),
        spec(
            "outcome recorder",
            "SENDER_RECORDER_GROUP",
            recorder_group,
            vec![topics.outcomes.name.clone()],
        ),
        spec(
            "gateway history recorder",
            "GATEWAY_HISTORY_GROUP",
            gateway_history_group,
            vec![topics.realtime.name.clone()],
        ),
    ]
}

/// Reads everything: MongoDB for the pushes, Kafka for the rest (on blocking threads).
pub async fn collect(
    store: &Store,
    kafka: &KafkaSettings,
    topics: &Topics,
    query: &StatsQuery,
) -> Result<FleetStats, ControlError> {
    let at_ms = now_ms();
    let since_ms = at_ms - i64::try_from(query.window.as_millis()).unwrap_or(i64::MAX);
    let outcomes = {
        let (kafka, topic, max) = (
            kafka.clone(),
            topics.outcomes.name.clone(),
            query.max_records,
        );
        blocking(move || read_outcomes(&kafka, &topic, since_ms, max)).await?
    };
    let lag = {
        let (kafka, groups) = (kafka.clone(), query.groups.clone());
        blocking(move || consumer_lag(&kafka, &groups)).await?
    };
    let dead_letters = {
        let (kafka, topic, max) = (
            kafka.clone(),
            topics.dead_letter.name.clone(),
            query.max_records,
        );
        blocking(move || read_dead_letters(&kafka, &topic, max)).await?
    };
    let pushes = pushes_in_progress(store, &outcomes, at_ms).await?;
    Ok(FleetStats {
        at_ms,
        pushes,
        lag,
        outcomes,
        dead_letters,
    })
}

async fn blocking<T: Send + 'static>(
    call: impl FnOnce() -> Result<T, KafkaError> + Send + 'static,
) -> Result<T, ControlError> {
    tokio::task::spawn_blocking(call)
        .await
        .map_err(|e| anyhow::anyhow!("Kafka reader task failed: {e}"))?
        .map_err(ControlError::from)
}

/// Pushes whose deliveries are going on: `processing` ones, and recent `done` ones whose
/// outcomes do not account for every delivery message yet; oldest first.
pub async fn pushes_in_progress(
    store: &Store,
    window: &OutcomeWindow,
    now_ms: i64,
) -> Result<Vec<PushProgress>, StoreError> {
    let pushes = store.database().collection::<Document>(PUSHES);
    let context = "listing pushes in progress";
    let mut candidates: Vec<Push> = Vec::new();
    let processing = pushes
        .find(doc! { "status": PushStatus::Processing.as_str() })
        .await
        .map_err(query(context))?;
    let recent_done = pushes
        .find(doc! { "status": PushStatus::Done.as_str() })
        .sort(doc! { "_id": -1 })
        .limit(RECENT_DONE_PUSHES)
        .await
        .map_err(query(context))?;
    for mut cursor in [processing, recent_done] {
        while cursor.advance().await.map_err(query(context))? {
            let document = cursor.deserialize_current().map_err(query(context))?;
            // A document that does not fit the model is not ours to judge here.
            let Ok(push) = bson::from_document::<Push>(document) else {
                continue;
            };
            let settled = push.total_accepted
                + push.total_unsubscribed
                + push.total_failed
                + push.total_canceled;
            if push.status == PushStatus::Processing || settled < push.total_sent {
                candidates.push(push);
            }
        }
    }
    let mut progress = Vec::new();
    for mut push in candidates {
        store.add_live_totals(&mut push).await?;
        let outcomes =
            push.total_accepted + push.total_unsubscribed + push.total_failed + push.total_canceled;
        let fanned_out = match push.status {
            PushStatus::Done => push.total_sent,
            _ => push
                .fanout
                .as_ref()
                .map_or(push.total_sent, |f| f.produced)
                .max(push.total_sent),
        };
        if push.status == PushStatus::Done && outcomes >= fanned_out {
            continue;
        }
        let rate_per_sec = window.by_push.get(&push.id.to_hex()).map(|seen| {
            let seconds = ((now_ms - seen.first_ms) as f64 / 1000.0).max(1.0);
            seen.count as f64 / seconds
        });
        let remaining = (fanned_out - outcomes).max(0);
        let eta_secs = rate_per_sec
            .filter(|rate| *rate > 0.0)
            .map(|rate| remaining as f64 / rate);
        progress.push(PushProgress {
            push,
            fanned_out,
            outcomes,
            rate_per_sec,
            eta_secs,
        });
    }
    progress.sort_by_key(|p| p.push.id);
    Ok(progress)
}

/// Per partition, where to start reading so that at most `max` records are read in all:
/// `starts` where the window holds fewer, else the newest `max / partitions` of each
/// (at least one). Returns the starts and whether any was moved.
pub fn bounded_starts(starts: &[i64], ends: &[i64], max: usize) -> (Vec<i64>, bool) {
    let total: i64 = starts
        .iter()
        .zip(ends)
        .map(|(start, end)| (end - start).max(0))
        .sum();
    if total <= i64::try_from(max).unwrap_or(i64::MAX) {
        return (starts.to_vec(), false);
    }
    let share = i64::try_from(max / starts.len().max(1))
        .unwrap_or(i64::MAX)
        .max(1);
    let mut capped = false;
    let bounded = starts
        .iter()
        .zip(ends)
        .map(|(&start, &end)| {
            if end - start > share {
                capped = true;
                end - share
            } else {
                start
            }
        })
        .collect();
    (bounded, capped)
}

/// Reads the outcome topic from `since_ms` to its end, at most about `max` records.
/// Blocking.
pub fn read_outcomes(
    kafka: &KafkaSettings,
    topic: &str,
    since_ms: i64,
    max: usize,
) -> Result<OutcomeWindow, KafkaError> {
    let positions = PositionReader::new(kafka)?;
    let starts = positions.offsets_at(topic, since_ms)?;
    let ends: Vec<i64> = positions
        .watermarks(topic)?
        .iter()
        .map(|m| m.high)
        .collect();
    let (bounded, capped) = bounded_starts(&starts, &ends, max);
    let mut window = OutcomeWindow {
        topic: topic.to_owned(),
        since_ms,
        until_ms: now_ms(),
        offsets_in_window: starts
            .iter()
            .zip(&ends)
            .map(|(s, e)| u64::try_from(e - s).unwrap_or(0))
            .sum(),
        capped,
        ..OutcomeWindow::default()
    };
    // Records that arrive while reading are read too; past twice the cap it stops anyway.
    let hard_stop = u64::try_from(max).unwrap_or(u64::MAX).saturating_mul(2);
    scan_topic(kafka, topic, ScanFrom::Offsets(bounded), false, |record| {
        window.records_read += 1;
        let at = record.timestamp_ms.unwrap_or(window.until_ms);
        match record
            .payload
            .as_deref()
            .map(OutcomeRecord::from_json)
            .transpose()
        {
            Ok(Some(outcome)) => window.add(&outcome, at),
            _ => window.unreadable += 1,
        }
        if window.records_read >= hard_stop {
            window.capped = true;
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })?;
    Ok(window)
}

/// Counts the newest `max` dead letters (about) of `topic`, with the retained total. Blocking.
pub fn read_dead_letters(
    kafka: &KafkaSettings,
    topic: &str,
    max: usize,
) -> Result<DeadLetterSummary, KafkaError> {
    let positions = PositionReader::new(kafka)?;
    let marks = positions.watermarks(topic)?;
    let lows: Vec<i64> = marks.iter().map(|m| m.low).collect();
    let highs: Vec<i64> = marks.iter().map(|m| m.high).collect();
    let (starts, capped) = bounded_starts(&lows, &highs, max);
    let mut summary = DeadLetterSummary {
        topic: topic.to_owned(),
        retained: marks
            .iter()
            .map(|m| u64::try_from(m.high - m.low).unwrap_or(0))
            .sum(),
        capped,
        stats: DeadLetterStats::default(),
    };
    let hard_stop = u64::try_from(max).unwrap_or(u64::MAX).saturating_mul(2);
    scan_topic(kafka, topic, ScanFrom::Offsets(starts), false, |record| {
        summary.stats.add(&DeadLetter::from_record(record));
        if summary.stats.total >= hard_stop {
            summary.capped = true;
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })?;
    Ok(summary)
}

/// The lag of every group on each of its topics; a topic that cannot be measured (missing)
/// has its error in its row. Fails only when Kafka cannot be reached. Blocking.
pub fn consumer_lag(
    kafka: &KafkaSettings,
    groups: &[GroupSpec],
) -> Result<Vec<LagRow>, KafkaError> {
    let positions = PositionReader::new(kafka)?;
    // Reachability first, so a broker that is down is one error, not one per row.
    positions.check_reachable()?;
    let mut rows = Vec::new();
    for spec in groups {
        for topic in &spec.topics {
            let lag = match positions.topic_lag(&spec.group, topic) {
                Err(e @ KafkaError::Unreachable { .. }) => return Err(e),
                other => other,
            };
            rows.push(LagRow {
                spec: spec.clone(),
                topic: topic.clone(),
                lag,
            });
        }
    }
    Ok(rows)
}

/// A MongoDB failure while `context`.
fn query(context: &'static str) -> impl Fn(mongodb::error::Error) -> StoreError {
    move |source| StoreError::Query {
        context: context.to_owned(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pushservice_model::Platform;

    #[test]
    fn starts_are_bounded_to_the_newest_of_each_partition() {
        assert_eq!(bounded_starts(&[0, 5], &[10, 8], 100), (vec![0, 5], false));
        assert_eq!(bounded_starts(&[0, 5], &[100, 8], 20), (vec![90, 5], true));
        assert_eq!(bounded_starts(&[0], &[100], 0), (vec![99], true));
    }

    #[test]
    fn outcomes_are_counted_by_platform_reason_and_push() {
        let mut window = OutcomeWindow::default();
        let mut web = OutcomeRecord::new("p1", "s", OutcomeResult::Accepted, None, 1, false);
        web.platform = Some(Platform::Web);
        let mut ios =
            OutcomeRecord::new("p1", "s", OutcomeResult::Failed, Some("HTTP 400"), 1, false);
        ios.platform = Some(Platform::Ios);
        let old = OutcomeRecord::new("p2", "s", OutcomeResult::Gone, None, 1, false);
        window.add(&web, 2_000);
        window.add(&web, 1_000);
        window.add(&ios, 3_000);
        window.add(&old, 5_000);
        assert_eq!(window.by_platform["web"].accepted, 2);
        assert_eq!(window.by_platform["ios"].failed, 1);
        assert_eq!(window.by_platform[UNKNOWN_PLATFORM].gone, 1);
        assert_eq!(
            window.failure_reasons[&("ios".to_owned(), "HTTP 400".to_owned())],
            1
        );
        assert_eq!(
            window.by_push["p1"],
            PushWindow {
                count: 3,
                first_ms: 1_000
            }
        );
        assert_eq!(window.total().total(), 4);
    }
}
