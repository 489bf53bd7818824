//! `result.json`: everything a run measured, derived from the samples in one place.
//!
//! [`BenchResult::build`] turns the raw facts (samples, the simulator's counters, the push
//! document, the processes' CPU and memory) into the figures people compare: wall times,
//! rates, CPU per message, latency percentiles and counts. The JSON's `notes` say how each
//! figure was obtained, so a reader needs no source code to interpret it.

use std::collections::BTreeMap;

use pushservice_model::{Push, PushStatus};
use pushservice_push_sink::Stats;
use serde::Serialize;

use crate::checks::{NOTES, consistency_warnings, env_passthrough, git_describe};
use crate::config::BenchConfig;
use crate::monitor::{End, Watch};
use crate::procs::Exit;
use crate::procstat::Machine;
use crate::seed::Seeding;
use crate::timeline::{Point, anchored, interval_rates, percentile, window_rates};

/// Window of the smoothed rate (peak rate, chart), seconds.
pub const RATE_WINDOW_S: f64 = 1.0;

/// What is known about one process at the end of a run.
#[derive(Debug, Clone)]
pub struct ProcessFacts {
    /// Name (as in the samples).
    pub name: String,
    /// `child` (started by the run), `service` (Kafka, MongoDB server) or `self`.
    pub kind: &'static str,
    /// Process id.
    pub pid: u32,
    /// Peak RSS, KiB (children: highest sampled VmHWM; others: VmHWM over their lifetime).
    pub peak_rss_kb: Option<u64>,
    /// Children: CPU ticks over the whole life, read after exit.
    pub lifetime_ticks: Option<u64>,
    /// Children: how they ended.
    pub exit: Option<Exit>,
}

/// The run's configuration as reported.
#[derive(Debug, Serialize)]
pub struct ConfigReport {
    subscribers: u64,
    platform: &'static str,
    /// Senders started after the fan-out; times and CPU count from their start.
    pub(crate) backlog: bool,
    senders: u32,
    sink_protocol: String,
    sink_verify: bool,
    profile: &'static str,
    sink_gone_per_mille: u32,
    sink_throttle_per_mille: u32,
    sink_latency_ms: String,
    /// Streams per connection: Web Push, APNs, FCM.
    sink_streams: [String; 3],
    sink_goaway_after: u64,
    push_partitions: i32,
    sample_ms: u128,
    database: String,
    site_id: String,
    push_id: String,
    topics: Vec<String>,
    /// Daemon tuning inherited from the environment (SENDER_*, PARSER_*, QUERY_BATCH_SIZE,
    /// PUSH_SINK_*).
    env_passthrough: BTreeMap<String, String>,
    /// `git describe --always --dirty` of the working directory (the binaries may be older:
    /// see `binaries_modified_unix_s`).
    git: Option<String>,
    /// When the `sender` binary was last modified (built), unix seconds.
    binaries_modified_unix_s: Option<u64>,
    machine: Machine,
}

/// Wall times and rates.
#[derive(Debug, Serialize)]
pub struct Wall {
    /// `pushctl send` start → last acceptance at the simulator (its own clock).
    pub(crate) total_s: Option<f64>,
    /// `pushctl send` start → the parser marked the push `done`.
    pub(crate) fanout_s: Option<f64>,
    /// `pushctl send` start → first acceptance.
    pub(crate) first_accept_s: Option<f64>,
    /// Distinct acceptances / `total_s`.
    pub(crate) average_rate_per_s: Option<f64>,
    /// Highest rate over a trailing window of `RATE_WINDOW_S`.
    pub(crate) peak_rate_per_s: f64,
    /// Distinct acceptances / (last − first acceptance): the rate once deliveries flow,
    /// without the time to the first one.
    pub(crate) flow_rate_per_s: Option<f64>,
}

/// One process's figures.
#[derive(Debug, Serialize)]
pub struct ProcessReport {
    pub(crate) name: String,
    pub(crate) kind: &'static str,
    pub(crate) pid: u32,
    /// CPU seconds from the send to the end of the delivery phase.
    pub(crate) cpu_s: f64,
    /// `cpu_s` per subscriber, microseconds.
    pub(crate) cpu_us_per_msg: f64,
    /// Average cores busy during the delivery phase.
    pub(crate) cores: f64,
    /// Children: CPU seconds over the whole process life (start-up and shutdown included).
    pub(crate) cpu_lifetime_s: Option<f64>,
    pub(crate) peak_rss_kb: Option<u64>,
    pub(crate) exit: Option<Exit>,
}

/// One timeline sample.
#[derive(Debug, Serialize)]
pub struct TimelineEntry {
    t_s: f64,
    accepted: u64,
    rate_per_s: f64,
    requests: u64,
    fanned_out: i64,
    /// Cores busy since the previous sample, per process (order of `timeline_processes`).
    cpu_cores: Vec<f64>,
    /// Resident set per process, MiB (same order).
    rss_mib: Vec<f64>,
}

/// `result.json`.
#[derive(Debug, Serialize)]
pub struct BenchResult {
    /// `complete`, `timeout`, `interrupted` or `failed: <why>`.
    pub outcome: String,
    /// UTC time stamp of the run.
    pub run: String,
    pub(crate) config: ConfigReport,
    pub(crate) seeding: Seeding,
    /// Wall times.
    pub wall: Wall,
    /// Send-to-accept latency percentiles, seconds.
    pub latency_s: BTreeMap<String, Option<f64>>,
    /// The simulator's counters at the end.
    pub sink: Stats,
    /// Final counters of the push document.
    pub push: Option<serde_json::Value>,
    /// Per process figures.
    pub processes: Vec<ProcessReport>,
    pub(crate) timeline_processes: Vec<String>,
    pub(crate) timeline: Vec<TimelineEntry>,
    /// Clean-up that did not work (topics, groups).
    pub cleanup_problems: Vec<String>,
    /// Inconsistencies between what the simulator saw and what the push document says.
    pub warnings: Vec<String>,
    pub(crate) notes: Vec<&'static str>,
}

/// Facts of a finished run.
pub struct Facts<'a> {
    /// The configuration.
    pub config: &'a BenchConfig,
    /// The machine.
    pub machine: Machine,
    /// Site and push ids.
    pub site_id: String,
    /// The run's push.
    pub push_id: String,
    /// How the audience was prepared.
    pub seeding: Seeding,
    /// Unix ms when `pushctl send` started.
    pub t0_unix_ms: u64,
    /// The delivery phase.
    pub watch: &'a Watch,
    /// Processes, in sample order.
    pub processes: Vec<ProcessFacts>,
    /// The push document after the daemons stopped.
    pub final_push: Option<Push>,
    /// Clean-up problems.
    pub cleanup_problems: Vec<String>,
}

impl BenchResult {
    /// Derives every figure from `facts`.
    pub fn build(facts: Facts<'_>) -> BenchResult {
        let Facts { config, watch, .. } = facts;
        let clk = facts.machine.clk_tck as f64;
        let n = config.subscribers as f64;
        let since_t0 = |unix_ms: Option<u64>| {
            unix_ms.map(|ms| ms.saturating_sub(facts.t0_unix_ms) as f64 / 1000.0)
        };
        let stats = &watch.stats;
        let points: Vec<Point> = watch
            .samples
            .iter()
            .map(|s| Point {
                t_s: s.t_s,
                count: s.accepted,
            })
            .collect();
        let total_s = since_t0(stats.last_accepted_unix_ms);
        let push = facts.final_push.as_ref().or(watch.push.as_ref());
        let done = |p: &&Push| p.status == PushStatus::Done;
        // The fan-out end as the run saw it: the last sample's document, or the final one.
        let fanout_s = watch
            .push
            .as_ref()
            .filter(done)
            .or(facts.final_push.as_ref().filter(done))
            .and_then(|p| p.fanout.as_ref()?.updated_at)
            .and_then(|at| since_t0(u64::try_from(at.timestamp_millis()).ok()));
        let warnings = consistency_warnings(watch, facts.final_push.as_ref());
        let windowed = window_rates(&points, RATE_WINDOW_S);
        let first_accept_s = since_t0(stats.first_accepted_unix_ms);
        let wall = Wall {
            total_s,
            fanout_s,
            first_accept_s,
            flow_rate_per_s: total_s
                .zip(first_accept_s)
                .filter(|(last, first)| last > first)
                .map(|(last, first)| stats.distinct_accepted as f64 / (last - first)),
            average_rate_per_s: total_s
                .filter(|&t| t > 0.0)
                .map(|t| stats.distinct_accepted as f64 / t),
            peak_rate_per_s: windowed.iter().copied().fold(0.0, f64::max),
        };
        let total = stats.distinct_accepted;
        let exact = anchored(
            &points,
            since_t0(stats.first_accepted_unix_ms),
            total_s.map(|t| (t, total)),
        );
        let mut latency_s: BTreeMap<String, Option<f64>> = [50.0, 90.0, 99.0, 99.9]
            .iter()
            .map(|&p| (format!("p{p}"), percentile(&exact, total, p)))
            .collect();
        latency_s.insert("max".to_owned(), total_s);
        latency_s.insert("min".to_owned(), wall.first_accept_s);

        let (first, last) = match (watch.samples.first(), watch.samples.last()) {
            (Some(first), Some(last)) => (first.cpu_ticks.clone(), last.cpu_ticks.clone()),
            _ => (Vec::new(), Vec::new()),
        };
        let phase_s = watch.samples.last().map_or(0.0, |s| s.t_s).max(1e-9);
        let processes = facts
            .processes
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let ticks = last
                    .get(i)
                    .zip(first.get(i))
                    .map_or(0, |(b, a)| b.saturating_sub(*a));
                let cpu_s = ticks as f64 / clk;
                ProcessReport {
                    name: p.name.clone(),
                    kind: p.kind,
                    pid: p.pid,
                    cpu_s,
                    cpu_us_per_msg: cpu_s * 1e6 / n,
                    cores: cpu_s / phase_s,
                    cpu_lifetime_s: p.lifetime_ticks.map(|t| t as f64 / clk),
                    peak_rss_kb: p.peak_rss_kb,
                    exit: p.exit,
                }
            })
            .collect::<Vec<_>>();
        let mut processes = processes;
        // The last CPU column is the whole machine: what the listed processes did not use went
        // to something else (other tenants, the kernel's own threads).
        let machine = facts.processes.len();
        if let (Some(b), Some(a)) = (last.get(machine), first.get(machine)) {
            let busy_s = b.saturating_sub(*a) as f64 / clk;
            let listed: f64 = processes.iter().map(|p| p.cpu_s).sum();
            let other_s = (busy_s - listed).max(0.0);
            processes.push(ProcessReport {
                name: "untracked".to_owned(),
                kind: "machine",
                pid: 0,
                cpu_s: other_s,
                cpu_us_per_msg: other_s * 1e6 / n,
                cores: other_s / phase_s,
                cpu_lifetime_s: None,
                peak_rss_kb: None,
                exit: None,
            });
        }

        let rates = interval_rates(&points);
        let timeline = watch
            .samples
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let previous = i.checked_sub(1).map(|j| &watch.samples[j]);
                let cpu_cores = previous.map_or_else(
                    || vec![0.0; s.cpu_ticks.len()],
                    |prev| {
                        let dt = (s.t_s - prev.t_s).max(1e-9);
                        s.cpu_ticks
                            .iter()
                            .zip(&prev.cpu_ticks)
                            .map(|(now, before)| {
                                round3(now.saturating_sub(*before) as f64 / clk / dt)
                            })
                            .collect()
                    },
                );
                TimelineEntry {
                    t_s: round3(s.t_s),
                    accepted: s.accepted,
                    rate_per_s: rates[i].round(),
                    requests: s.requests,
                    fanned_out: s.fanned_out,
                    cpu_cores,
                    rss_mib: s
                        .rss_kb
                        .iter()
                        .map(|kb| round3(*kb as f64 / 1024.0))
                        .collect(),
                }
            })
            .collect();

        BenchResult {
            outcome: match &watch.end {
                End::Complete => "complete".to_owned(),
                End::Timeout => "timeout".to_owned(),
                End::Interrupted => "interrupted".to_owned(),
                End::Failed(why) => format!("failed: {why}"),
            },
            run: config.stamp.clone(),
            config: ConfigReport {
                subscribers: config.subscribers,
                platform: crate::config::platform_name(config.platform),
                backlog: config.backlog,
                senders: config.senders,
                sink_protocol: config.sink_protocol.to_string(),
                sink_verify: config.sink_verify,
                profile: config.profile.name(),
                sink_gone_per_mille: config.sink.gone_per_mille,
                sink_throttle_per_mille: config.sink.throttle_per_mille,
                sink_latency_ms: config.sink.latency_ms.clone(),
                sink_streams: config.sink.streams.clone(),
                sink_goaway_after: config.sink.goaway_after,
                push_partitions: config.push_partitions,
                sample_ms: config.sample.as_millis(),
                database: config.database.clone(),
                site_id: facts.site_id,
                push_id: facts.push_id,
                topics: config.all_topics(),
                env_passthrough: env_passthrough(),
                git: git_describe(),
                binaries_modified_unix_s: std::fs::metadata(config.bin_dir.join("sender"))
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map(|d| d.as_secs()),
                machine: facts.machine,
            },
            seeding: facts.seeding,
            wall,
            latency_s,
            sink: stats.clone(),
            push: push.map(push_counters),
            processes,
            timeline_processes: watch_names(&facts.processes),
            timeline,
            cleanup_problems: facts.cleanup_problems,
            warnings,
            notes: NOTES.to_vec(),
        }
    }

    /// The chart data: times, windowed rates, cumulative accepted and fanned out.
    pub fn chart_series(&self) -> (Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>) {
        let points: Vec<Point> = self
            .timeline
            .iter()
            .map(|e| Point {
                t_s: e.t_s,
                count: e.accepted,
            })
            .collect();
        (
            points.iter().map(|p| p.t_s).collect(),
            window_rates(&points, RATE_WINDOW_S),
            points.iter().map(|p| p.count as f64).collect(),
            self.timeline.iter().map(|e| e.fanned_out as f64).collect(),
        )
    }
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

fn watch_names(processes: &[ProcessFacts]) -> Vec<String> {
    let mut names: Vec<String> = processes.iter().map(|p| p.name.clone()).collect();
    names.push("machine (busy CPU; memory in use)".to_owned());
    names
}

/// The push document's counters, named as stored.
fn push_counters(push: &Push) -> serde_json::Value {
    serde_json::json!({
        "status": push.status.as_str(),
        "totalSent": push.total_sent,
        "totalAccepted": push.total_accepted,
        "totalUnsubscribed": push.total_unsubscribed,
        "totalFailed": push.total_failed,
        "fanoutProduced": push.fanout.as_ref().map(|f| f.produced),
        "fanoutSkipped": push.fanout.as_ref().map(|f| f.skipped),
    })
}
