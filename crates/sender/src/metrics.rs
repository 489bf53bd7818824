//! What a sender counts: attempts by answer, retries by tier, dead letters, messages not
//! final, and what the outcome recorder applied.

use std::sync::Arc;

use pushservice_daemon::{Counter, Gauge, Registry};
use pushservice_provider::DeliveryOutcome;

/// Sender metrics, registered once at start.
#[derive(Debug)]
pub struct SenderMetrics {
    attempts: [Arc<Counter>; 7],
    retries: Vec<Arc<Counter>>,
    /// Records written to the dead-letter topic.
    pub dead_letters: Arc<Counter>,
    /// Kafka messages that were not delivery messages.
    pub malformed: Arc<Counter>,
    /// Deliveries stopped unfinished because their partition moved to another sender.
    pub handed_over: Arc<Counter>,
    /// Deliveries dropped because their push was canceled.
    pub canceled: Arc<Counter>,
    /// Messages taken from Kafka and not final yet.
    pub pending: Arc<Gauge>,
}

impl SenderMetrics {
    /// Registers the sender's metrics.
    pub fn new(registry: &Registry) -> Self {
        let attempt = |label| {
            registry.counter(
                "pushservice_sender_attempts_total",
                "Requests to push services by how they were answered.",
                &[("result", label)],
            )
        };
        SenderMetrics {
            attempts: [
                attempt("accepted"),
                attempt("gone"),
                attempt("suspect"),
                attempt("misconfigured"),
                attempt("deferred"),
                attempt("permanent"),
                attempt("transient"),
            ],
            retries: pushservice_config::RETRY_TIERS
                .iter()
                .map(|(tier, _)| {
                    registry.counter(
                        "pushservice_sender_retries_total",
                        "Deliveries scheduled for another attempt, by retry topic tier.",
                        &[("tier", tier)],
                    )
                })
                .collect(),
            dead_letters: registry.counter(
                "pushservice_sender_dead_letters_total",
                "Records written to the dead-letter topic.",
                &[],
            ),
            malformed: registry.counter(
                "pushservice_sender_malformed_messages_total",
                "Kafka messages that were not delivery messages.",
                &[],
            ),
            handed_over: registry.counter(
                "pushservice_sender_handed_over_total",
                "Deliveries dropped unfinished because their partition moved to another sender.",
                &[],
            ),
            canceled: registry.counter(
                "pushservice_sender_canceled_total",
                "Deliveries dropped (outcome canceled) because their push was canceled.",
                &[],
            ),
            pending: registry.gauge(
                "pushservice_sender_pending_messages",
                "Messages taken from Kafka whose outcome is not final yet.",
                &[],
            ),
        }
    }

    /// Counts one attempt's answer.
    pub fn attempt(&self, outcome: &DeliveryOutcome) {
        let index = match outcome {
            DeliveryOutcome::Accepted => 0,
            DeliveryOutcome::SubscriptionGone { .. } => 1,
            DeliveryOutcome::SuspectToken { .. } => 2,
            DeliveryOutcome::Misconfigured { .. } => 3,
            DeliveryOutcome::Deferred { .. } => 4,
            DeliveryOutcome::Permanent { .. } => 5,
            DeliveryOutcome::Transient { .. } => 6,
            // Not an attempt: counted as canceled by the caller.
            DeliveryOutcome::Withdrawn => return,
        };
        self.attempts[index].inc();
    }

    /// Counts one retry scheduled on tier `tier`.
    pub fn retry(&self, tier: usize) {
        if let Some(counter) = self.retries.get(tier).or(self.retries.last()) {
            counter.inc();
        }
    }
}
