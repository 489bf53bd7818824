//! What a parser counts.

use std::sync::Arc;

use pushservice_daemon::{Counter, Gauge, Registry};

use crate::fanout::Verdict;

/// Parser metrics, registered once at start.
#[derive(Debug)]
pub struct ParserMetrics {
    pushes: [Arc<Counter>; 4],
    /// Delivery messages handed to Kafka.
    pub produced: Arc<Counter>,
    /// Subscribers skipped because their subscription is unusable.
    pub skipped: Arc<Counter>,
    /// Fan-outs in progress.
    pub running: Arc<Gauge>,
    /// Fan-out attempts that failed and were retried (see `supervisor`).
    pub retries: Arc<Counter>,
    /// Fan-out attempts that panicked (a bug; the push was retried or failed, the parser went on).
    pub panics: Arc<Counter>,
}

impl ParserMetrics {
    /// Registers the parser's metrics.
    pub fn new(registry: &Registry) -> Self {
        let pushes = |label| {
            registry.counter(
                "pushservice_parser_pushes_total",
                "Triggered pushes by how their fan-out ended.",
                &[("verdict", label)],
            )
        };
        ParserMetrics {
            pushes: [
                pushes("done"),
                pushes("skipped"),
                pushes("failed"),
                pushes("canceled"),
            ],
            produced: registry.counter(
                "pushservice_parser_messages_produced_total",
                "Delivery messages handed to Kafka.",
                &[],
            ),
            skipped: registry.counter(
                "pushservice_parser_subscribers_skipped_total",
                "Subscribers skipped because their subscription is unusable.",
                &[],
            ),
            running: registry.gauge(
                "pushservice_parser_fanouts_running",
                "Fan-outs in progress.",
                &[],
            ),
            retries: registry.counter(
                "pushservice_parser_fanout_retries_total",
                "Fan-out attempts that failed and were retried.",
                &[],
            ),
            panics: registry.counter(
                "pushservice_parser_fanout_panics_total",
                "Fan-out attempts that panicked.",
                &[],
            ),
        }
    }

    /// Counts how a fan-out ended.
    pub fn finished(&self, verdict: &Verdict) {
        let index = match verdict {
            Verdict::Done(_) => 0,
            Verdict::Skipped(_) => 1,
            Verdict::Failed(_) => 2,
            Verdict::Canceled(_) => 3,
        };
        self.pushes[index].inc();
    }
}
