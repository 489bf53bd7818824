//! `result.json` of `pushbench api` and the summary printed at the end: figures derived from
//! the phases in one place, with `notes` saying how each was obtained.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use crate::api::client::EventTotals;
use crate::api::load::LoadRun;
use crate::api::usage::CpuFigure;
use crate::procs::Exit;
use crate::procstat::Machine;
use crate::summary::thousands;
use crate::timeline::rank;

/// How the figures were obtained.
pub const NOTES: [&str; 6] = [
    "Load: config.concurrency workers, each with its own reqwest client (HTTP/1.1 only, keep-alive, so one connection each), take the next request from a shared counter (closed loop: a worker sends its next request when the previous answer's body is read). Request bodies are built before the clock starts. The load generator runs in this process on the same machine: see its CPU (`pushbench`).",
    "rate_per_s = requests / wall_s; wall_s runs from the first request sent to the last answer read; per_second counts the answers read in each second of it. latency_ms: per request, from just before sending to the body read (an event repeated after a 503 counts once, with its waits); pNN is the k-th smallest with k = ceil(NN% of requests).",
    "cpu: utime+stime from /proc/<pid>/stat between the phase's first and last moment, divided by CLK_TCK; us_per_request divides by the phase's requests; `machine` is all busy CPU from /proc/stat, `untracked` the machine minus the processes listed. For events.counted the window runs from the first event to the poll that saw the totals complete.",
    "pushapi_peak_rss_kb: VmHWM of /proc/<pid>/status at the end of the phase, after the kernel's peak mark was reset at its start (echo 5 > /proc/<pid>/clear_refs; peak_rss_reset says whether that worked, otherwise it is the peak since pushapi started).",
    "events.counted: a poller reads GET /v1/pushes/{pushId} (totals.delivered, totals.clicked) and pushapi's /metrics every config.poll_ms from the first event; wall_s is the time of the first poll at which every event had been answered and both totals equalled the distinct (subscriber, type) pairs sent. pushapi writes events in batches (API_EVENTS_FLUSH_MS, up to 2,000 per batch) after checking each against MongoDB.",
    "final: after pushapi stopped with SIGTERM (its event queue drained), read from MongoDB directly: the push document's totalDeliver/totalClick, the summed pushEventStats, the number of pushEvents claims, subscribers and subscriberClaims in the run's database.",
];

/// Figures of a batch of requests.
#[derive(Debug, Clone, Serialize)]
pub struct RequestStats {
    /// Requests sent.
    pub requests: u64,
    /// First sent → last answered, seconds.
    pub wall_s: f64,
    /// Requests per second.
    pub rate_per_s: f64,
    /// Latency percentiles, milliseconds.
    pub latency_ms: BTreeMap<String, f64>,
    /// Answers by status (`error`: no answer).
    pub statuses: BTreeMap<String, u64>,
    /// Requests answered in each second since the first was sent (the last one partial).
    pub per_second: Vec<u64>,
}

impl RequestStats {
    /// The figures of `run`.
    pub fn of<T>(run: &LoadRun<T>) -> RequestStats {
        let mut latencies: Vec<u64> = run.done.iter().map(|d| d.latency_us).collect();
        latencies.sort_unstable();
        let total = latencies.len() as u64;
        let at = |p: f64| {
            let k = rank(p, total);
            latencies
                .get(k.saturating_sub(1) as usize)
                .map_or(0.0, |us| round3(*us as f64 / 1000.0))
        };
        let mut latency_ms = BTreeMap::new();
        if total > 0 {
            for (name, p) in [("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p99.9", 99.9)] {
                latency_ms.insert(name.to_owned(), at(p));
            }
            latency_ms.insert("max".to_owned(), at(100.0));
        }
        let mut statuses = BTreeMap::new();
        for done in &run.done {
            let key = done
                .answer
                .status
                .map_or_else(|| "error".to_owned(), |s| s.to_string());
            *statuses.entry(key).or_insert(0) += 1;
        }
        let mut per_second: Vec<u64> = Vec::new();
        for done in &run.done {
            let second = (done.finished_us / 1_000_000) as usize;
            if per_second.len() <= second {
                per_second.resize(second + 1, 0);
            }
            per_second[second] += 1;
        }
        let wall_s = run.wall.as_secs_f64();
        RequestStats {
            per_second,
            requests: total,
            wall_s: round3(wall_s),
            rate_per_s: (total as f64 / wall_s.max(1e-9)).round(),
            latency_ms,
            statuses,
        }
    }

    /// Answers with a status other than `expected` (errors included).
    pub fn unexpected(&self, expected: u16) -> u64 {
        let expected = expected.to_string();
        self.statuses
            .iter()
            .filter(|(status, _)| **status != expected)
            .map(|(_, n)| n)
            .sum()
    }
}

/// Phase 1: registrations.
#[derive(Debug, Clone, Serialize)]
pub struct Registrations {
    /// Requests and their answers (all must be 201).
    #[serde(flatten)]
    pub stats: RequestStats,
    /// 201 answers that said `created: true` with an id.
    pub created: u64,
    /// Distinct subscriber ids among them.
    pub distinct_ids: u64,
    /// CPU in the phase.
    pub cpu: Vec<CpuFigure>,
    /// pushapi's peak RSS in the phase, KiB.
    pub pushapi_peak_rss_kb: Option<u64>,
    /// Established connections from this process to pushapi at the end of the phase: the
    /// workers' and the control client's.
    pub connections: Option<usize>,
}

/// The idempotency check after phase 1.
#[derive(Debug, Clone, Serialize)]
pub struct Idempotency {
    /// Requests and their answers (all must be 200).
    #[serde(flatten)]
    pub stats: RequestStats,
    /// 200 answers with the id of the first registration and `created: false`.
    pub same_id: u64,
    /// The first few answers that were not.
    pub mismatches: Vec<String>,
}

/// The events planned.
#[derive(Debug, Clone, Serialize)]
pub struct PlanReport {
    /// Events posted.
    pub events: u64,
    /// Distinct (subscriber, type) pairs.
    pub distinct: u64,
    /// Events repeating a pair.
    pub duplicates: u64,
    /// `duplicates / events`, per mille.
    pub duplicate_per_mille: u64,
    /// Subscribers the events name.
    pub subscribers: u64,
    /// Expected `totals.delivered`.
    pub expected_delivered: u64,
    /// Expected `totals.clicked`.
    pub expected_clicked: u64,
}

/// One poll of phase 2.
#[derive(Debug, Clone, Serialize)]
pub struct PollSample {
    /// Seconds since the first event.
    pub t_s: f64,
    /// Events answered so far.
    pub answered: u64,
    /// `totals.delivered`.
    pub delivered: i64,
    /// `totals.clicked`.
    pub clicked: i64,
    /// pushapi's `pushapi_events_counted_total`.
    pub counted_metric: Option<f64>,
}

/// Phase 2, until the totals are right.
#[derive(Debug, Clone, Serialize)]
pub struct Counted {
    /// Whether the totals reached the distinct counts.
    pub reached: bool,
    /// First event → the poll that saw every event answered and the totals complete.
    pub wall_s: Option<f64>,
    /// Events posted / `wall_s`.
    pub events_per_s: Option<f64>,
    /// Distinct pairs counted / `wall_s`.
    pub distinct_per_s: Option<f64>,
    /// `wall_s` minus the acceptance wall: how far counting trailed acceptance.
    pub lag_after_acceptance_s: Option<f64>,
    /// The last totals seen.
    pub last_totals: Option<EventTotals>,
    /// Totals above the distinct counts (duplicates counted), when seen.
    pub overcount: Option<EventTotals>,
    /// CPU from the first event to the poll that saw the totals complete.
    pub cpu: Vec<CpuFigure>,
}

/// Phase 2: events.
#[derive(Debug, Clone, Serialize)]
pub struct Events {
    /// What was sent.
    pub plan: PlanReport,
    /// Acceptance at the API (all must be 202).
    pub accept: RequestStats,
    /// 503 answers repeated (the event queue was full).
    pub busy_retries: u64,
    /// CPU while the events were posted.
    pub accept_cpu: Vec<CpuFigure>,
    /// Until counted.
    pub counted: Counted,
    /// pushapi's peak RSS in the phase, KiB.
    pub pushapi_peak_rss_kb: Option<u64>,
    /// The polls.
    pub timeline: Vec<PollSample>,
}

/// Read from MongoDB after pushapi stopped.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Final {
    /// The push document's `totalDeliver`.
    pub push_total_deliver: Option<i64>,
    /// The push document's `totalClick`.
    pub push_total_click: Option<i64>,
    /// Summed `pushEventStats` of the push.
    pub event_stats: Option<EventTotals>,
    /// `pushEvents` documents (one per counted event).
    pub push_events_docs: Option<u64>,
    /// `subscribers` documents of the run's site.
    pub subscribers_docs: Option<u64>,
    /// `subscriberClaims` documents.
    pub subscriber_claims_docs: Option<u64>,
}

/// The pushapi process over the whole run.
#[derive(Debug, Clone, Serialize)]
pub struct ProcessSummary {
    /// Process id.
    pub pid: u32,
    /// CPU seconds over its life (start-up and shutdown included).
    pub cpu_lifetime_s: f64,
    /// Highest peak RSS sampled, KiB.
    pub peak_rss_kb: u64,
    /// Whether the per-phase peaks could be reset.
    pub peak_rss_reset: bool,
    /// How it ended.
    pub exit: Option<Exit>,
}

/// The run's configuration as reported.
#[derive(Debug, Clone, Serialize)]
pub struct ConfigReport {
    /// Registrations.
    pub subscribers: u64,
    /// Events.
    pub events: u64,
    /// Concurrent connections.
    pub concurrency: usize,
    /// Duplicates asked for, per mille (at least).
    pub duplicate_per_mille: u32,
    /// Registrations repeated.
    pub idempotency_sample: u64,
    /// Totals poll interval, ms.
    pub poll_ms: u128,
    /// The run's database.
    pub database: String,
    /// Whether it was kept.
    pub keep_database: bool,
    /// pushapi's address.
    pub api_url: String,
    /// pushapi's `API_*` settings (the admin token left out).
    pub pushapi_settings: BTreeMap<String, String>,
    /// The run's site and push.
    pub site_id: Option<String>,
    /// The run's push.
    pub push_id: Option<String>,
    /// The run's topics.
    pub topics: Vec<String>,
    /// `git describe --always --dirty`.
    pub git: Option<String>,
    /// When the `pushapi` binary was built, unix seconds.
    pub pushapi_modified_unix_s: Option<u64>,
    /// Release build of pushapi (`--bin-dir` under a `release` directory).
    pub bin_dir: String,
    /// The machine.
    pub machine: Machine,
}

/// `result.json` of `pushbench api`.
#[derive(Debug, Clone, Serialize)]
pub struct ApiBenchResult {
    /// Always `api`.
    pub mode: &'static str,
    /// `complete`, or `failed: <what>`.
    pub outcome: String,
    /// UTC time stamp of the run.
    pub run: String,
    /// Configuration.
    pub config: ConfigReport,
    /// Phase 1.
    pub registrations: Option<Registrations>,
    /// After phase 1.
    pub idempotency: Option<Idempotency>,
    /// Phase 2.
    pub events: Option<Events>,
    /// After pushapi stopped.
    #[serde(rename = "final")]
    pub final_check: Final,
    /// pushapi over the run.
    pub pushapi: Option<ProcessSummary>,
    /// What did not hold.
    pub failures: Vec<String>,
    /// What makes the figures less comparable (other processes busy during a phase).
    pub warnings: Vec<String>,
    /// Clean-up that did not work.
    pub cleanup_problems: Vec<String>,
    /// How figures were obtained.
    pub notes: Vec<&'static str>,
}

/// Which expectations of a run failed (empty: complete).
pub fn failures(result: &ApiBenchResult, registered_expected: u64) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(r) = &result.registrations {
        let bad = r.stats.unexpected(201);
        if bad > 0 {
            out.push(format!(
                "{bad} registrations not answered 201: {:?}",
                r.stats.statuses
            ));
        }
        if r.distinct_ids != r.created {
            out.push(format!(
                "{} subscriber ids for {} new registrations",
                r.distinct_ids, r.created
            ));
        }
    }
    if let Some(i) = &result.idempotency
        && i.same_id != i.stats.requests
    {
        out.push(format!(
            "{} of {} repeated registrations did not answer 200 with the same id: {:?}",
            i.stats.requests - i.same_id,
            i.stats.requests,
            i.mismatches
        ));
    }
    if let Some(e) = &result.events {
        let bad = e.accept.unexpected(202);
        if bad > 0 {
            out.push(format!(
                "{bad} events not answered 202: {:?}",
                e.accept.statuses
            ));
        }
        if let Some(over) = e.counted.overcount {
            out.push(format!(
                "totals went above the distinct counts (delivered {}, clicked {} for {} and {}): \
                 duplicates were counted",
                over.delivered, over.clicked, e.plan.expected_delivered, e.plan.expected_clicked
            ));
        } else if !e.counted.reached {
            out.push(format!(
                "totals did not reach the distinct counts (timed out, or unchanged for a minute \
                 after the last event; last {:?}, expected delivered {} clicked {})",
                e.counted.last_totals, e.plan.expected_delivered, e.plan.expected_clicked
            ));
        }
        let f = &result.final_check;
        let want = (
            Some(e.plan.expected_delivered as i64),
            Some(e.plan.expected_clicked as i64),
        );
        if (f.push_total_deliver, f.push_total_click) != want {
            out.push(format!(
                "the push document says totalDeliver {:?} totalClick {:?}, expected {} and {}",
                f.push_total_deliver,
                f.push_total_click,
                e.plan.expected_delivered,
                e.plan.expected_clicked
            ));
        }
        if let Some(stats) = f.event_stats
            && (Some(stats.delivered), Some(stats.clicked)) != want
        {
            out.push(format!("pushEventStats sum to {stats:?}"));
        }
        if f.push_events_docs.is_some_and(|n| n != e.plan.distinct) {
            out.push(format!(
                "{:?} pushEvents claims for {} distinct events",
                f.push_events_docs, e.plan.distinct
            ));
        }
    }
    let f = &result.final_check;
    if result.registrations.is_some() {
        for (what, n) in [
            ("subscribers", f.subscribers_docs),
            ("subscriberClaims", f.subscriber_claims_docs),
        ] {
            if n.is_some_and(|n| n != registered_expected) {
                out.push(format!(
                    "{n:?} {what} documents for {registered_expected} registrations"
                ));
            }
        }
    }
    if let Some(p) = &result.pushapi
        && p.exit.is_some_and(|e| !e.success())
    {
        out.push(format!("pushapi ended with {:?}", p.exit));
    }
    out
}

/// Average cores that processes other than those listed may use in a phase before the
/// result warns that its figures were measured on a shared machine.
pub const CONTENDED_CORES: f64 = 0.2;

/// Phases shorter than this are not judged: CPU times come in 10 ms ticks.
const JUDGED_PHASE_S: f64 = 1.0;

/// Phases during which other processes of the machine were busy (their CPU is `untracked`).
pub fn warnings(result: &ApiBenchResult) -> Vec<String> {
    let mut phases: Vec<(&str, f64, &[CpuFigure])> = Vec::new();
    if let Some(r) = &result.registrations {
        phases.push(("registrations", r.stats.wall_s, &r.cpu));
    }
    if let Some(e) = &result.events {
        phases.push(("event acceptance", e.accept.wall_s, &e.accept_cpu));
        phases.push((
            "event counting",
            e.counted.wall_s.unwrap_or(0.0),
            &e.counted.cpu,
        ));
    }
    phases
        .into_iter()
        .filter(|(_, wall_s, _)| *wall_s >= JUDGED_PHASE_S)
        .filter_map(|(phase, _, cpu)| {
            let other = cpu.iter().find(|f| f.name == "untracked")?;
            (other.cores > CONTENDED_CORES).then(|| {
                format!(
                    "other processes kept {:.2} cores busy during {phase}: its figures were \
                     measured on a shared machine",
                    other.cores
                )
            })
        })
        .collect()
}

/// The summary printed at the end.
pub fn render(result: &ApiBenchResult, json: &Path) -> String {
    let mut out = String::new();
    let c = &result.config;
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "pushbench api {} — {} ({} registrations, {} events, {} connections)",
        result.run,
        result.outcome,
        thousands(c.subscribers),
        thousands(c.events),
        c.concurrency
    );
    let _ = writeln!(
        out,
        "  machine       {} CPUs, {}; FerretDB at the run's database {}",
        c.machine.nproc,
        c.machine.cpu_model.as_deref().unwrap_or("unknown CPU"),
        c.database
    );
    if let Some(r) = &result.registrations {
        let _ = writeln!(
            out,
            "  register      {}/s  ({} in {:.2} s)  latency {}  [{}]",
            thousands(r.stats.rate_per_s as u64),
            thousands(r.stats.requests),
            r.stats.wall_s,
            latency(&r.stats),
            statuses(&r.stats)
        );
        let _ = writeln!(
            out,
            "                {}  pushapi peak RSS {}",
            cpu_line(&r.cpu),
            rss(r.pushapi_peak_rss_kb)
        );
    }
    if let Some(i) = &result.idempotency {
        let _ = writeln!(
            out,
            "  re-register   {}/s  ({} again: {} answered 200 with the same id)  latency {}",
            thousands(i.stats.rate_per_s as u64),
            thousands(i.stats.requests),
            thousands(i.same_id),
            latency(&i.stats)
        );
    }
    if let Some(e) = &result.events {
        let p = &e.plan;
        let _ = writeln!(
            out,
            "  events        {} posted: {} distinct (delivered {}, click {}), {} duplicates ({}‰)",
            thousands(p.events),
            thousands(p.distinct),
            thousands(p.expected_delivered),
            thousands(p.expected_clicked),
            thousands(p.duplicates),
            p.duplicate_per_mille
        );
        let _ = writeln!(
            out,
            "  accepted      {}/s  ({:.2} s)  latency {}  [{}]{}",
            thousands(e.accept.rate_per_s as u64),
            e.accept.wall_s,
            latency(&e.accept),
            statuses(&e.accept),
            if e.busy_retries > 0 {
                format!("  {} retries after 503", thousands(e.busy_retries))
            } else {
                String::new()
            }
        );
        let _ = writeln!(out, "                {}", cpu_line(&e.accept_cpu));
        let k = &e.counted;
        match k.wall_s {
            Some(wall) => {
                let _ = writeln!(
                    out,
                    "  counted       {}/s events, {}/s distinct  (totals right {:.2} s after the \
                     first event, {:.2} s after the last was accepted)",
                    thousands(k.events_per_s.unwrap_or(0.0).round() as u64),
                    thousands(k.distinct_per_s.unwrap_or(0.0).round() as u64),
                    wall,
                    k.lag_after_acceptance_s.unwrap_or(0.0)
                );
                let _ = writeln!(
                    out,
                    "                {}  pushapi peak RSS {}",
                    cpu_line(&k.cpu),
                    rss(e.pushapi_peak_rss_kb)
                );
            }
            None => {
                let _ = writeln!(
                    out,
                    "  counted       not reached; last totals {:?}",
                    k.last_totals
                );
            }
        }
    }
    let f = &result.final_check;
    let _ = writeln!(
        out,
        "  final         totalDeliver {}  totalClick {}  pushEvents {}  subscribers {}",
        opt(f.push_total_deliver),
        opt(f.push_total_click),
        opt(f.push_events_docs),
        opt(f.subscribers_docs)
    );
    if let Some(p) = &result.pushapi {
        let _ = writeln!(
            out,
            "  pushapi       {:.2} CPU s over its life, peak RSS {}, {}",
            p.cpu_lifetime_s,
            rss(Some(p.peak_rss_kb)),
            p.exit.map_or_else(|| "-".to_owned(), |e| e.to_string())
        );
    }
    for failure in &result.failures {
        let _ = writeln!(out, "\n  FAILED: {failure}");
    }
    for warning in &result.warnings {
        let _ = writeln!(out, "\n  WARNING: {warning}");
    }
    if !result.cleanup_problems.is_empty() {
        let _ = writeln!(out, "\n  clean-up: {}", result.cleanup_problems.join("; "));
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "  result: {}", json.display());
    out
}

fn latency(stats: &RequestStats) -> String {
    ["p50", "p99", "max"]
        .iter()
        .map(|k| {
            stats
                .latency_ms
                .get(*k)
                .map_or_else(|| format!("{k} -"), |v| format!("{k} {v:.1} ms"))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn statuses(stats: &RequestStats) -> String {
    stats
        .statuses
        .iter()
        .map(|(status, n)| format!("{status}: {}", thousands(*n)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn cpu_line(cpu: &[CpuFigure]) -> String {
    let shown: BTreeSet<&str> = ["pushapi", "ferretdb", "pushbench", "untracked"].into();
    let parts: Vec<String> = cpu
        .iter()
        .filter(|f| shown.contains(f.name.as_str()))
        .map(|f| match f.name.as_str() {
            "untracked" => format!("other processes {:.2} cores", f.cores),
            name => format!(
                "{name} {:.2} s ({:.0} µs/req, {:.2} cores)",
                f.cpu_s, f.us_per_request, f.cores
            ),
        })
        .collect();
    format!("CPU: {}", parts.join(", "))
}

fn rss(kb: Option<u64>) -> String {
    kb.map_or_else(
        || "-".to_owned(),
        |kb| format!("{:.1} MiB", kb as f64 / 1024.0),
    )
}

fn opt<T: std::fmt::Display>(value: Option<T>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::load::{Answer, Done};
    use std::time::Duration;

    #[test]
    fn request_stats_count_statuses_and_rank_latencies() {
        let done = (0..100)
            .map(|i| Done {
                index: i,
                latency_us: (i as u64 + 1) * 1_000,
                finished_us: i as u64 * 20_000,
                answer: Answer {
                    status: if i == 99 { None } else { Some(201) },
                    value: (),
                    retries: 0,
                },
            })
            .collect();
        let stats = RequestStats::of(&LoadRun {
            done,
            wall: Duration::from_secs(2),
        });
        assert_eq!(stats.requests, 100);
        assert_eq!(stats.rate_per_s, 50.0);
        assert_eq!(stats.latency_ms["p50"], 50.0);
        assert_eq!(stats.latency_ms["p99"], 99.0);
        assert_eq!(stats.latency_ms["max"], 100.0);
        assert_eq!(stats.statuses["201"], 99);
        assert_eq!(stats.statuses["error"], 1);
        assert_eq!(stats.unexpected(201), 1);
        assert_eq!(stats.per_second, vec![50, 50]);
    }
}
