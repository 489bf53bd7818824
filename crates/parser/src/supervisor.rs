//! Supervision of one push's fan-out: retries with backoff, a bounded budget, panics caught.
//!
//! A fan-out fails for reasons that pass (MongoDB restarting, a broker election) and for
//! reasons that do not (a push topic that does not exist, a bug that panics). The parser cannot
//! tell them apart reliably from one error, so every failing push gets the same bounded
//! budget ([`RetryPolicy`]), and only errors that can never pass
//! ([`FanoutError::is_permanent`]: a document nobody can read, a message too large for Kafka)
//! end it at once.
//!
//! **The budget.** Retries wait `first_delay`, then twice as long each time, up to
//! `max_delay`. A push is given up once it has failed at least `attempts` times in a row *and*
//! the first of those failed attempts started at least `patience` ago. Both, so that slow
//! failures (each attempt waiting out the MongoDB timeout) still get their tries and fast ones
//! still get their time: with the defaults (8 tries, 5 minutes) a MongoDB or Kafka outage of
//! up to about five minutes is ridden out. The bound is the larger of the two, plus one attempt and one delay: each
//! attempt is itself bounded by the store's and the producer's timeouts. An attempt that wrote
//! a checkpoint before failing ends the streak ([`Progress`]), so a fan-out of tens of millions
//! that meets three short outages an hour apart is not failed for their sum.
//!
//! **Panics.** Every attempt runs as its own tokio task. A panic ends that task with a
//! `JoinError`, which the supervisor counts as a failed attempt with the panic's message as
//! the reason; the parser and the partition's other pushes carry on. The next attempt resumes
//! from the checkpoint like after any other failure.
//!
//! **Cancellation** (shutdown, partition revoked) stops a backoff wait at once and is passed
//! to the running attempt, which checkpoints and ends; the supervisor then reports
//! [`Supervised::Cancelled`] and the push is left for whoever owns the partition next.

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pushservice_model::ObjectId;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::fanout::{FanoutError, Verdict};
use crate::metrics::ParserMetrics;

/// How long a failing fan-out is retried before its push is marked `failed`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Wait before the first retry (`PARSER_RETRY_DELAY_MS`).
    pub first_delay: Duration,
    /// Longest wait between two tries; the wait doubles up to it (`PARSER_RETRY_MAX_DELAY_MS`).
    pub max_delay: Duration,
    /// Failures in a row before giving up is considered (`PARSER_RETRY_ATTEMPTS`).
    pub attempts: u32,
    /// How long failures in a row must last before giving up is considered
    /// (`PARSER_RETRY_FOR_SECS`).
    pub patience: Duration,
}

impl Default for RetryPolicy {
    /// The documented defaults: 5 s doubling to 60 s, at least 8 tries over at least 5 minutes.
    fn default() -> Self {
        RetryPolicy {
            first_delay: Duration::from_millis(5_000),
            max_delay: Duration::from_millis(60_000),
            attempts: 8,
            patience: Duration::from_secs(300),
        }
    }
}

impl RetryPolicy {
    /// The wait after the `failures`-th failure in a row (1-based).
    pub fn delay(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(30);
        self.first_delay
            .saturating_mul(1 << doublings)
            .min(self.max_delay)
    }
}

/// What the attempts of one push's fan-out in this process have done: the checkpoints they
/// wrote, so the supervisor can tell a failure after progress from a failure in place, and
/// how far Kafka acknowledged their messages, so a retry resumes there. Cheap to clone;
/// clones share both.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    checkpoints: Arc<AtomicU64>,
    settled: Arc<Mutex<Option<Settled>>>,
}

/// A prefix of the audience (in `_id` order) whose every delivery message Kafka
/// acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settled {
    /// Its last subscriber.
    pub last_subscriber_id: ObjectId,
    /// Delivery messages produced up to it, in total.
    pub produced: i64,
    /// Subscribers skipped up to it, in total.
    pub skipped: i64,
}

impl Progress {
    /// Records one more checkpoint.
    pub fn advance(&self) {
        self.checkpoints.fetch_add(1, Ordering::Relaxed);
    }

    /// Checkpoints so far.
    pub fn get(&self) -> u64 {
        self.checkpoints.load(Ordering::Relaxed)
    }

    /// Records that Kafka acknowledged every message up to `settled` (kept if it reaches
    /// further than what was recorded before).
    pub fn settle(&self, settled: Settled) {
        let mut current = self.settled.lock().unwrap_or_else(|p| p.into_inner());
        let rows = |s: &Settled| s.produced + s.skipped;
        if current.is_none_or(|c| rows(&settled) > rows(&c)) {
            *current = Some(settled);
        }
    }

    /// The furthest acknowledged prefix an attempt recorded. It can be ahead of the stored
    /// checkpoint: MongoDB failing is what ends most attempts, and then the checkpoint could
    /// not be written.
    pub fn settled(&self) -> Option<Settled> {
        *self.settled.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The running tally of failures in a row against a [`RetryPolicy`].
#[derive(Debug)]
pub struct Budget {
    policy: RetryPolicy,
    /// Failures in the current streak and when the first of them started.
    streak: Option<(u32, Instant)>,
    /// [`Progress`] as it was at the last failure.
    progress_at_failure: u64,
}

impl Budget {
    /// A fresh budget.
    pub fn new(policy: RetryPolicy) -> Self {
        Budget {
            policy,
            streak: None,
            progress_at_failure: 0,
        }
    }

    /// Records the failure of an attempt that began at `started`, `progress` being the
    /// checkpoints written so far. Returns how long to wait before the next try, or `None`
    /// when the budget is spent.
    pub fn failed(&mut self, started: Instant, progress: u64) -> Option<Duration> {
        if progress != self.progress_at_failure {
            // The failed attempt moved the checkpoint: a new streak.
            self.streak = None;
            self.progress_at_failure = progress;
        }
        let (failures, since) = self.streak.get_or_insert((0, started));
        *failures += 1;
        if *failures >= self.policy.attempts && since.elapsed() >= self.policy.patience {
            return None;
        }
        Some(self.policy.delay(*failures))
    }

    /// Failures in the current streak.
    pub fn failures(&self) -> u32 {
        self.streak.map_or(0, |(n, _)| n)
    }

    /// How long the current streak has lasted.
    pub fn streak_age(&self) -> Duration {
        self.streak
            .map_or(Duration::ZERO, |(_, since)| since.elapsed())
    }
}

/// How a supervised fan-out ended.
#[derive(Debug)]
pub enum Supervised {
    /// An attempt reached a verdict.
    Finished(Verdict),
    /// Shutdown or rebalance; the push resumes from its checkpoint wherever it runs next.
    Cancelled {
        /// Messages produced in total when the last attempt stopped (0 if none was running).
        produced: i64,
    },
    /// The budget is spent or the error cannot pass: mark the push failed with this reason.
    GaveUp {
        /// What went wrong, for the push's `failureReason` (`pushctl status` shows it).
        reason: String,
    },
}

/// Why one attempt failed.
enum Failure {
    Error(FanoutError),
    Panic(String),
    /// The task ended without an answer or a panic (aborted); nothing but a dropped
    /// supervisor aborts attempts, so this is not expected.
    Lost(String),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Error(e) => write!(f, "{e}"),
            Failure::Panic(message) => write!(f, "fan-out panicked: {message}"),
            Failure::Lost(error) => write!(f, "fan-out task lost: {error}"),
        }
    }
}

/// Runs the attempts of one push's fan-out within a [`RetryPolicy`].
#[derive(Clone)]
pub struct Supervisor {
    /// The budget every push gets.
    pub policy: RetryPolicy,
    /// Where retries and panics are counted.
    pub metrics: Arc<ParserMetrics>,
}

impl Supervisor {
    /// Calls `attempt` until it reaches a verdict, `cancel` fires or the budget is spent.
    /// Each attempt is spawned as its own task, so a panic in it is caught as a failure.
    pub async fn run<F, Fut>(&self, cancel: &CancellationToken, mut attempt: F) -> Supervised
    where
        F: FnMut(Progress) -> Fut,
        Fut: Future<Output = Result<Verdict, FanoutError>> + Send + 'static,
    {
        let mut budget = Budget::new(self.policy.clone());
        let progress = Progress::default();
        loop {
            let started = Instant::now();
            let task = AbortOnDrop(tokio::spawn(attempt(progress.clone()).in_current_span()));
            let failure = match task.join().await {
                Ok(Ok(verdict)) => return Supervised::Finished(verdict),
                Ok(Err(FanoutError::Cancelled { produced })) => {
                    return Supervised::Cancelled { produced };
                }
                Ok(Err(e)) if e.is_permanent() => {
                    return Supervised::GaveUp {
                        reason: e.to_string(),
                    };
                }
                Ok(Err(e)) => Failure::Error(e),
                Err(e) if e.is_panic() => {
                    self.metrics.panics.inc();
                    Failure::Panic(panic_message(e.into_panic().as_ref()))
                }
                Err(e) => Failure::Lost(e.to_string()),
            };
            if cancel.is_cancelled() {
                tracing::info!(error = %failure, "fan-out attempt failed while stopping");
                return Supervised::Cancelled { produced: 0 };
            }
            let Some(delay) = budget.failed(started, progress.get()) else {
                tracing::warn!(attempts = budget.failures(), error = %failure,
                    "fan-out keeps failing; giving the push up");
                return Supervised::GaveUp {
                    reason: format!(
                        "{failure} (failed {} times in a row over {} s)",
                        budget.failures(),
                        budget.streak_age().as_secs()
                    ),
                };
            };
            self.metrics.retries.inc();
            tracing::warn!(attempt = budget.failures(), retry_in = ?delay, error = %failure,
                "fan-out failed; retrying from the checkpoint");
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = cancel.cancelled() => return Supervised::Cancelled { produced: 0 },
            }
        }
    }
}

/// A spawned attempt that is aborted if the supervisor is dropped before it ends (the
/// daemon's task set dropped on an error path), so no fan-out outlives its job.
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> AbortOnDrop<T> {
    async fn join(mut self) -> Result<T, tokio::task::JoinError> {
        (&mut self.0).await
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        // A no-op once the task has ended.
        self.0.abort();
    }
}

/// The message a panic was raised with (`panic!("...")` gives a `&str` or a `String`).
fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use pushservice_daemon::Registry;
    use pushservice_store::StoreError;

    use super::*;
    use crate::fanout::FanoutReport;

    #[test]
    fn progress_keeps_the_furthest_settled_position_across_clones() {
        let progress = Progress::default();
        assert_eq!(progress.settled(), None);
        let at = |produced, skipped| Settled {
            last_subscriber_id: ObjectId::new(),
            produced,
            skipped,
        };
        let (first, further, behind) = (at(500, 0), at(990, 10), at(900, 0));
        progress.settle(first);
        let attempt = progress.clone();
        attempt.settle(further);
        attempt.settle(behind);
        assert_eq!(
            progress.settled(),
            Some(further),
            "an attempt's clone shares it"
        );
    }

    fn policy() -> RetryPolicy {
        RetryPolicy {
            first_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(8),
            attempts: 3,
            patience: Duration::from_secs(60),
        }
    }

    fn supervisor(policy: RetryPolicy) -> Supervisor {
        Supervisor {
            policy,
            metrics: Arc::new(ParserMetrics::new(&Registry::default())),
        }
    }

    /// An error the supervisor retries: what a query against a stopped MongoDB returns.
    fn transient() -> FanoutError {
        FanoutError::Store(StoreError::Query {
            context: "loading push".into(),
            source: mongodb::error::Error::custom("connection refused"),
        })
    }

    fn done() -> Verdict {
        Verdict::Done(FanoutReport {
            produced: 1,
            skipped: 0,
            resumed_after: None,
            elapsed: Duration::ZERO,
        })
    }

    #[test]
    fn delays_double_up_to_the_cap() {
        let delays: Vec<u64> = (1..=6).map(|n| policy().delay(n).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 8, 8]);
        assert_eq!(policy().delay(u32::MAX), Duration::from_secs(8));
    }

    #[tokio::test(start_paused = true)]
    async fn the_budget_needs_both_the_attempts_and_the_time() {
        let mut budget = Budget::new(policy());
        // Fast failures: three tries are not enough before a minute has passed.
        for _ in 0..10 {
            assert!(budget.failed(Instant::now(), 0).is_some());
            tokio::time::advance(Duration::from_secs(5)).await;
        }
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(
            budget.failed(Instant::now(), 0),
            None,
            "11 failures over 60 s"
        );

        // Slow failures: a minute is not enough before three tries. The time counts from the
        // start of the first failed attempt.
        let mut budget = Budget::new(policy());
        let first = Instant::now();
        tokio::time::advance(Duration::from_secs(120)).await;
        assert!(budget.failed(first, 0).is_some(), "one try of two minutes");
        assert!(budget.failed(Instant::now(), 0).is_some());
        assert_eq!(budget.failed(Instant::now(), 0), None);
    }

    #[tokio::test(start_paused = true)]
    async fn progress_starts_a_new_streak() {
        let mut budget = Budget::new(policy());
        for _ in 0..3 {
            assert!(budget.failed(Instant::now(), 0).is_some());
            tokio::time::advance(Duration::from_secs(25)).await;
        }
        // The next attempt wrote a checkpoint before failing: it is failure 1 again.
        assert_eq!(
            budget.failed(Instant::now(), 1),
            Some(Duration::from_secs(1))
        );
        assert_eq!(budget.failures(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_panicking_attempt_is_caught_and_retried() {
        let attempts = Arc::new(Mutex::new(0));
        let counted = Arc::clone(&attempts);
        let supervisor = supervisor(policy());
        let outcome = supervisor
            .run(&CancellationToken::new(), move |_| {
                let n = {
                    let mut n = counted.lock().unwrap_or_else(|p| p.into_inner());
                    *n += 1;
                    *n
                };
                async move {
                    if n == 1 {
                        panic!("subscriber 42 broke the encoder");
                    }
                    Ok(done())
                }
            })
            .await;
        assert!(
            matches!(outcome, Supervised::Finished(Verdict::Done(_))),
            "{outcome:?}"
        );
        assert_eq!(*attempts.lock().unwrap_or_else(|p| p.into_inner()), 2);
        assert_eq!(supervisor.metrics.panics.get(), 1);
        assert_eq!(supervisor.metrics.retries.get(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_fan_out_that_always_panics_is_given_up_with_the_panic_message() {
        let started = Instant::now();
        let outcome = supervisor(policy())
            .run(&CancellationToken::new(), |_| async {
                if true {
                    panic!("subscriber 42 broke the encoder");
                }
                Ok(done())
            })
            .await;
        let Supervised::GaveUp { reason } = outcome else {
            panic!("expected GaveUp, got {outcome:?}");
        };
        assert!(
            reason.starts_with("fan-out panicked: subscriber 42 broke the encoder (failed "),
            "{reason}"
        );
        // 1 + 2 + 4 + 8 + 8 + ... until a minute has passed since the first failure.
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_secs(60) && waited <= Duration::from_secs(70),
            "gave up after {waited:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn transient_errors_are_retried_until_they_pass() {
        let failures = Arc::new(Mutex::new(4));
        let outcome = supervisor(policy())
            .run(&CancellationToken::new(), move |_| {
                let fail = {
                    let mut left = failures.lock().unwrap_or_else(|p| p.into_inner());
                    *left -= 1;
                    *left >= 0
                };
                async move { if fail { Err(transient()) } else { Ok(done()) } }
            })
            .await;
        assert!(
            matches!(outcome, Supervised::Finished(Verdict::Done(_))),
            "{outcome:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn permanent_errors_give_up_at_once() {
        let outcome = supervisor(policy())
            .run(&CancellationToken::new(), |_| async {
                let broken = bson::doc! { "_id": bson::oid::ObjectId::new(), "subject": "x" };
                let source = bson::from_document::<pushservice_model::Site>(broken)
                    .expect_err("a site without keys does not load");
                Err(FanoutError::Store(StoreError::Decode {
                    collection: "sites",
                    id: "65a1f0c2e4b0a1b2c3d4e5f6".into(),
                    source: Box::new(source),
                }))
            })
            .await;
        let Supervised::GaveUp { reason } = outcome else {
            panic!("expected GaveUp, got {outcome:?}");
        };
        assert!(reason.contains("missing field `publicKey`"), "{reason}");
    }

    #[tokio::test(start_paused = true)]
    async fn cancellation_stops_a_backoff_wait() {
        let cancel = CancellationToken::new();
        let supervisor = supervisor(policy());
        let run = supervisor.run(&cancel, |_| async { Err(transient()) });
        let stop = async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            cancel.cancel();
        };
        let (outcome, ()) = tokio::join!(run, stop);
        assert!(
            matches!(outcome, Supervised::Cancelled { .. }),
            "{outcome:?}"
        );
    }
}
