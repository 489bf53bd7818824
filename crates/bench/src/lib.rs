//! `pushbench`: the end-to-end benchmark of pushservice.
//!
//! Given N subscribers and K senders, it seeds (or reuses) an audience whose endpoints point
//! at the push-service simulator, starts the simulator, a parser and K senders as separate
//! processes — the release binaries, configured only through their environment, exactly as an
//! operator runs them — sends one push with `pushctl send`, and measures until the simulator
//! has accepted every delivery. Results: `result.json` (wall times, throughput over time, CPU
//! and peak memory per process, send-to-accept latency percentiles, counts by outcome) and
//! `throughput.svg`, plus a summary on stdout.
//!
//! Measuring separate processes rather than in-process tasks is the point: it includes what
//! production pays (Kafka round trips, serialisation, TLS between processes, MongoDB) and
//! shows where a machine's cores go, the services' included.
//!
//! `pushbench api` measures the HTTP API instead (see [`api`]).
//!
//! # Layout
//!
//! - [`api`] — the `api` mode: registrations and tracking events through `pushapi`.
//! - [`config`] — flags and environment, validated; per-run names.
//! - [`clock`] — UTC time stamps naming runs.
//! - [`run`] — the steps of a run.
//! - [`launch`] — commands with the run's environment; one-shot commands.
//! - [`fleet`] — simulator, parser and senders: start, readiness, stop.
//! - [`procs`] — a child process: spawn, sample, SIGTERM, exit.
//! - [`procstat`] — `/proc` parsing: CPU ticks, peak RSS, machine description.
//! - [`services`] — Kafka and MongoDB: reachability, their pids, topics and groups.
//! - [`seed`] — reusing or seeding the audience; the run's push.
//! - [`sink`] — the simulator's counters over HTTP.
//! - [`monitor`] — the sampling loop and progress bar.
//! - [`timeline`] — rates and latency percentiles from samples.
//! - [`report`] — `result.json`.
//! - [`checks`] — cross-checks of the outcome counts; provenance (commit, inherited tuning).
//! - [`svg`] — `throughput.svg`.
//! - [`summary`] — the table printed at the end.

pub mod api;
pub mod checks;
pub mod clock;
pub mod config;
pub mod fleet;
pub mod launch;
pub mod monitor;
pub mod procs;
pub mod procstat;
pub mod report;
pub mod run;
pub mod seed;
pub mod services;
pub mod sink;
pub mod summary;
pub mod svg;
pub mod timeline;

pub use config::{BenchArgs, BenchConfig, Mode};
pub use run::run;
