//! What a sender counts: attempts by platform and answer with the push services' response
//! times, retries by tier and their delays, dead letters, messages not final, and what the
//! outcome recorder applied.

use std::sync::Arc;
use std::time::Duration;

use pushservice_daemon::{Counter, Gauge, Histogram, LATENCY_BUCKETS, Registry, WAIT_BUCKETS};
use pushservice_model::Platform;
use pushservice_provider::DeliveryOutcome;

/// The answers attempts are counted by, in [`answer_index`] order.
const ANSWERS: [&str; 7] = [
    "accepted",
    "gone",
    "suspect",
    "misconfigured",
    "deferred",
    "permanent",
    "transient",
];
/// The platforms, in [`platform_index`] order.
const PLATFORMS: [Platform; 3] = [Platform::Web, Platform::Ios, Platform::Android];

/// Counter and response-time histogram of one platform and answer.
#[derive(Debug)]
struct AttemptSeries {
    count: Arc<Counter>,
    response: Arc<Histogram>,
}

/// Sender metrics, registered once at start.
#[derive(Debug)]
pub struct SenderMetrics {
    /// Indexed by [`platform_index`], then [`answer_index`].
    attempts: Vec<Vec<AttemptSeries>>,
    retries: Vec<Arc<Counter>>,
    retry_delay: Arc<Histogram>,
    /// Time from the push's send to acceptance, by [`platform_index`].
    send_to_accept: Vec<Arc<Histogram>>,
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
        let attempts = PLATFORMS
            .iter()
            .map(|platform| {
                ANSWERS
                    .iter()
                    .map(|answer| {
                        let labels = [("platform", platform.as_str()), ("result", *answer)];
                        AttemptSeries {
                            count: registry.counter(
                                "pushservice_sender_attempts_total",
                                "Requests to push services by platform and how they were answered.",
                                &labels,
                            ),
                            response: registry.histogram(
                                "pushservice_sender_response_seconds",
                                "Time from a request's slot to the push service's answer, by platform and answer (requests that were sent).",
                                &labels,
                                LATENCY_BUCKETS,
                            ),
                        }
                    })
                    .collect()
            })
            .collect();
        SenderMetrics {
            attempts,
            retry_delay: registry.histogram(
                "pushservice_sender_retry_delay_seconds",
                "How long deliveries scheduled for another attempt wait for it.",
                &[],
                WAIT_BUCKETS,
            ),
            send_to_accept: PLATFORMS
                .iter()
                .map(|platform| {
                    registry.histogram(
                        "pushservice_sender_send_to_accept_seconds",
                        "Time from a push's send to each delivery's acceptance by the push service, by platform.",
                        &[("platform", platform.as_str())],
                        WAIT_BUCKETS,
                    )
                })
                .collect(),
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

    /// Counts one attempt's answer on `platform`; `answered_in` is the push service's
    /// response time when a request was sent.
    pub fn attempt(
        &self,
        platform: Platform,
        outcome: &DeliveryOutcome,
        answered_in: Option<Duration>,
    ) {
        let Some(answer) = answer_index(outcome) else {
            return;
        };
        let series = &self.attempts[platform_index(platform)][answer];
        series.count.inc();
        if let Some(elapsed) = answered_in {
            series.response.observe_duration(elapsed);
        }
    }

    /// Counts one retry scheduled on tier `tier`, due in `delay`.
    pub fn retry(&self, tier: usize, delay: Duration) {
        if let Some(counter) = self.retries.get(tier).or(self.retries.last()) {
            counter.inc();
        }
        self.retry_delay.observe_duration(delay);
    }

    /// Observes the time from a push's send to a delivery's acceptance.
    pub fn accepted_after(&self, platform: Platform, since_send: Duration) {
        self.send_to_accept[platform_index(platform)].observe_duration(since_send);
    }
}

fn platform_index(platform: Platform) -> usize {
    match platform {
        Platform::Web => 0,
        Platform::Ios => 1,
        Platform::Android => 2,
    }
}

/// The index of `outcome` in [`ANSWERS`]; `None` for what is not an attempt.
fn answer_index(outcome: &DeliveryOutcome) -> Option<usize> {
    Some(match outcome {
        DeliveryOutcome::Accepted => 0,
        DeliveryOutcome::SubscriptionGone { .. } => 1,
        DeliveryOutcome::SuspectToken { .. } => 2,
        DeliveryOutcome::Misconfigured { .. } => 3,
        DeliveryOutcome::Deferred { .. } => 4,
        DeliveryOutcome::Permanent { .. } => 5,
        DeliveryOutcome::Transient { .. } => 6,
        // Not an attempt: counted as canceled by the caller.
        DeliveryOutcome::Withdrawn => return None,
    })
}
