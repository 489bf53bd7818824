//! `pushbench api`: subscription registrations and tracking events per second through the
//! HTTP API daemon, `pushapi`.
//!
//! A release `pushapi` runs as a process on the local services, on a database and topics of
//! the run's own; the benchmark talks to it over HTTP/1.1 keep-alive from C concurrent
//! connections, as browsers and service workers would (from one address, so the public
//! routes' rate limit is raised). Phase 1 registers N browser subscriptions and registers a
//! sample again (idempotency: 200, the same id); phase 2 sends a push (to the run's raw-push
//! topic, which no parser reads), posts M tracking events for it, duplicates included, and
//! waits until the push's totals count exactly the distinct ones. Results:
//! `result.json` and a summary on stdout.
//!
//! # Layout
//!
//! - [`config`] — flags, validated; per-run names.
//! - [`run`] — the steps of a run: services, setup, pushapi, phases, final check, clean-up.
//! - [`daemon`] — the pushapi process: environment, readiness.
//! - [`phases`] — site, registrations, idempotency, push, events and the totals poller.
//! - [`plan`] — subscriptions and the event plan (distinct pairs, duplicates, shuffle).
//! - [`load`] — C workers, one keep-alive connection each, timing every request.
//! - [`client`] — the routes called.
//! - [`usage`] — CPU per phase of pushapi, FerretDB, Kafka, the benchmark and the machine.
//! - [`report`] — `result.json`, the checks that decide the outcome, the summary.

pub mod client;
pub mod config;
pub mod daemon;
pub mod load;
pub mod phases;
pub mod plan;
pub mod report;
pub mod run;
pub mod usage;

pub use config::{ApiArgs, ApiBenchConfig};
pub use run::run;
