//! The delivery phase: sampling every process and counter until every delivery is accepted.
//!
//! Each tick reads, in this order: the simulator's counters (their time is the sample's
//! time), the push document (fan-out progress, status), and the CPU time of every process
//! that matters (the children, the Kafka and MongoDB servers, this process). The loop ends when
//! the push is `done` and the simulator has a final outcome for every delivery message, or on
//! timeout, Ctrl-C, a failed push, or a daemon that died. It draws a progress bar on a
//! terminal, and a line every few seconds otherwise (CI logs).

use std::io::IsTerminal as _;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use pushservice_model::{ObjectId, Push, PushStatus};
use pushservice_push_sink::Stats;
use pushservice_store::Store;

use crate::procs::Proc;
use crate::procstat::{read_machine_busy, read_machine_used_kb, read_memory, read_stat};
use crate::sink::{SinkClient, final_outcomes};

/// One sample of the delivery phase.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Seconds since the send.
    pub t_s: f64,
    /// Distinct subscribers accepted by the simulator.
    pub accepted: u64,
    /// Push requests the simulator received (retries and duplicates included).
    pub requests: u64,
    /// Delivery messages the parser reported produced (its checkpoints).
    pub fanned_out: i64,
    /// CPU clock ticks of each watched process (order of [`Watched::names`]), then of the
    /// whole machine.
    pub cpu_ticks: Vec<u64>,
    /// Resident set of each watched process, KiB (same order).
    pub rss_kb: Vec<u64>,
}

/// Why the delivery phase ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// Every delivery message has a final outcome at the simulator.
    Complete,
    /// `--timeout-secs` passed first.
    Timeout,
    /// Ctrl-C.
    Interrupted,
    /// The push failed, `pushctl send` failed, or a daemon exited; the text says which.
    Failed(String),
}

/// The processes whose CPU time is sampled: children (with memory) and other pids.
pub struct Watched<'a> {
    /// Children: simulator, parser, senders.
    pub children: &'a mut [Proc],
    /// Other processes by name (Kafka, MongoDB server, this process).
    pub others: &'a [(String, u32)],
}

impl Watched<'_> {
    /// Names in sample order.
    pub fn names(&self) -> Vec<String> {
        let children = self.children.iter().map(|p| p.name.clone());
        children
            .chain(self.others.iter().map(|(name, _)| name.clone()))
            .collect()
    }

    /// CPU ticks of each, now, and last the busy ticks of the whole machine (so the CPU
    /// of processes not watched, other tenants included, can be told apart).
    pub fn cpu_ticks(&mut self) -> Vec<u64> {
        let mut ticks: Vec<u64> = self.children.iter_mut().map(Proc::sample).collect();
        ticks.extend(
            self.others
                .iter()
                .map(|(_, pid)| read_stat(*pid).map_or(0, |s| s.cpu_ticks)),
        );
        ticks.push(read_machine_busy().unwrap_or(0));
        ticks
    }

    /// Resident set of each as of the last [`Watched::cpu_ticks`], KiB, and last the memory
    /// in use on the whole machine (`MemTotal − MemAvailable`).
    pub fn rss_kb(&self) -> Vec<u64> {
        let mut rss: Vec<u64> = self.children.iter().map(Proc::rss_kb).collect();
        rss.extend(
            self.others
                .iter()
                .map(|(_, pid)| read_memory(*pid).map_or(0, |(_, rss)| rss)),
        );
        rss.push(read_machine_used_kb().unwrap_or(0));
        rss
    }
}

/// What the delivery phase saw.
#[derive(Debug)]
pub struct Watch {
    /// Samples, the first at t = 0 (just before the send).
    pub samples: Vec<Sample>,
    /// How it ended.
    pub end: End,
    /// The simulator's last counters.
    pub stats: Stats,
    /// The push document at the last sample.
    pub push: Option<Push>,
}

/// Runs the delivery phase. `send` is the running `pushctl send`, started at `t0` (`None` in
/// backlog mode, where it finished before the senders started at `t0`); `target` is the
/// number of deliveries expected until the parser reports its own count.
#[allow(clippy::too_many_arguments)]
pub async fn watch(
    sink: &SinkClient,
    store: &Store,
    push_id: ObjectId,
    target: u64,
    mut send: Option<Proc>,
    t0: Instant,
    mut watched: Watched<'_>,
    baseline: Vec<u64>,
    interval: Duration,
    timeout: Duration,
) -> anyhow::Result<Watch> {
    let bar = progress_bar(target);
    let mut samples = vec![Sample {
        t_s: 0.0,
        accepted: 0,
        requests: 0,
        fanned_out: 0,
        cpu_ticks: baseline,
        rss_kb: watched.rss_kb(),
    }];
    let mut stats = Stats::default();
    let mut push = None;
    let mut last_line = Instant::now();
    let mut ctrl_c = std::pin::pin!(tokio::signal::ctrl_c());
    let end = loop {
        tokio::select! {
            _ = &mut ctrl_c => break End::Interrupted,
            () = tokio::time::sleep(interval) => {}
        }
        let (sink_result, push_result) = tokio::join!(sink.stats(), store.push(push_id));
        let t_s = t0.elapsed().as_secs_f64();
        if let Ok(now) = sink_result {
            stats = now;
        }
        if let Ok(Some(now)) = push_result {
            push = Some(now);
        }
        let cpu_ticks = watched.cpu_ticks();
        let rss_kb = watched.rss_kb();
        let fanned_out = push
            .as_ref()
            .and_then(|p| p.fanout.as_ref())
            .map_or(0, |f| f.produced);
        samples.push(Sample {
            t_s,
            accepted: stats.distinct_accepted,
            requests: stats.requests,
            fanned_out,
            cpu_ticks,
            rss_kb,
        });
        let status = push.as_ref().map_or(PushStatus::Pending, |p| p.status);
        bar.set_position(stats.distinct_accepted);
        bar.set_message(format!("fanned out {fanned_out} ({status})"));
        if bar.is_hidden() && last_line.elapsed() >= Duration::from_secs(5) {
            last_line = Instant::now();
            eprintln!(
                "{t_s:>7.1}s  accepted {:>9}/{target}  requests {:>9}  fanned out {fanned_out:>9}  push {status}",
                stats.distinct_accepted, stats.requests
            );
        }

        // `send` is taken once it has ended: what is left at the end is still running.
        if let Some(mut ended) = send.take_if(|s| s.has_ended()) {
            let exit = ended.wait(Duration::from_secs(1)).await?;
            if !exit.success() {
                break End::Failed(format!("`pushctl send` failed ({exit}); see pushctl.log"));
            }
        }
        if let Some(p) = &push {
            match p.status {
                PushStatus::Done
                    if final_outcomes(&stats) >= u64::try_from(p.total_sent).unwrap_or(0) =>
                {
                    break End::Complete;
                }
                PushStatus::Failed | PushStatus::Canceled => {
                    let reason = p.failure_reason.clone().unwrap_or_default();
                    break End::Failed(format!("push {push_id} is {}: {reason}", p.status));
                }
                _ => {}
            }
        }
        if let Some(dead) = watched.children.iter().find(|p| p.has_ended()) {
            break End::Failed(format!(
                "{} exited during the run; see {}.log",
                dead.name, dead.name
            ));
        }
        if t0.elapsed() >= timeout {
            break End::Timeout;
        }
    };
    bar.finish_and_clear();
    if let Some(mut running) = send {
        running.terminate();
        let _ = running.wait(Duration::from_secs(5)).await;
    }
    Ok(Watch {
        samples,
        end,
        stats,
        push,
    })
}

/// A progress bar of accepted deliveries on a terminal; hidden otherwise.
fn progress_bar(target: u64) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let style = ProgressStyle::with_template(
        "{spinner} {elapsed_precise} [{bar:32}] {human_pos}/{human_len} accepted  {per_sec}  {msg}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    let bar = ProgressBar::new(target).with_style(style);
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}
