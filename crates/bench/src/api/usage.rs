//! CPU time of the processes that do the work of a phase: pushapi, the MongoDB server
//! (FerretDB), Kafka, and this benchmark (the load generator shares the machine), plus the
//! machine's busy time, read from `/proc` at the phase's start and end.

use std::time::Instant;

use serde::Serialize;

use crate::procs::Proc;
use crate::procstat::{read_machine_busy, read_stat};

/// CPU ticks of every tracked process, then of the whole machine, at one moment.
#[derive(Debug, Clone)]
pub struct Snapshot {
    at: Instant,
    ticks: Vec<u64>,
}

/// One process's CPU over a phase.
#[derive(Debug, Clone, Serialize)]
pub struct CpuFigure {
    /// Process (`pushapi`, `ferretdb`, `kafka`, `pushbench`), or `machine` (every busy CPU)
    /// and `untracked` (the machine minus the processes listed).
    pub name: String,
    /// CPU seconds in the phase.
    pub cpu_s: f64,
    /// Average cores busy.
    pub cores: f64,
    /// CPU per request of the phase, microseconds.
    pub us_per_request: f64,
}

/// What is measured: pushapi (a child) and other processes by pid.
#[derive(Debug, Clone)]
pub struct Meter {
    /// Other processes by name (`ferretdb`, `kafka`, `pushbench`).
    pub others: Vec<(String, u32)>,
    /// Clock ticks per second.
    pub clk: f64,
}

impl Meter {
    /// CPU ticks now (samples `api`, so its memory figures are refreshed too).
    pub fn snapshot(&self, api: &mut Proc) -> Snapshot {
        let mut ticks = vec![api.sample()];
        ticks.extend(
            self.others
                .iter()
                .map(|(_, pid)| read_stat(*pid).map_or(0, |s| s.cpu_ticks)),
        );
        ticks.push(read_machine_busy().unwrap_or(0));
        Snapshot {
            at: Instant::now(),
            ticks,
        }
    }

    /// CPU of each process between two snapshots, per request of `requests`.
    pub fn between(&self, from: &Snapshot, to: &Snapshot, requests: u64) -> Vec<CpuFigure> {
        let wall = to.at.duration_since(from.at).as_secs_f64().max(1e-9);
        let figure = |name: &str, ticks: u64| {
            let cpu_s = ticks as f64 / self.clk;
            CpuFigure {
                name: name.to_owned(),
                cpu_s: round3(cpu_s),
                cores: round3(cpu_s / wall),
                us_per_request: round3(cpu_s * 1e6 / requests.max(1) as f64),
            }
        };
        let delta = |i: usize| {
            to.ticks
                .get(i)
                .zip(from.ticks.get(i))
                .map_or(0, |(b, a)| b.saturating_sub(*a))
        };
        let names = std::iter::once(super::daemon::PUSHAPI)
            .chain(self.others.iter().map(|(name, _)| name.as_str()));
        let mut figures: Vec<CpuFigure> = names
            .enumerate()
            .map(|(i, name)| figure(name, delta(i)))
            .collect();
        let listed: u64 = (0..figures.len()).map(delta).sum();
        let machine = delta(figures.len());
        figures.push(figure("machine", machine));
        figures.push(figure("untracked", machine.saturating_sub(listed)));
        figures
    }
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}
