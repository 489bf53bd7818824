//! When to try a transient failure again, and when to stop trying.
//!
//! The budget is time, not a count of attempts: a push service that is down for five minutes
//! must not cost anybody their notification. A delivery is retried until its notification
//! would expire anyway (the push's TTL, counted from the first attempt) or until
//! `max_age` has passed, whichever comes first; only then it fails and is dead-lettered.
//!
//! Pacing is exponential backoff with "full jitter" (a uniformly random delay up to the
//! exponential bound), which spreads retries of many subscribers of one push service apart
//! instead of sending them back in a synchronized wave. A `Retry-After` from the push service
//! is a floor: we never come back sooner than asked.
//!
//! The wait itself happens on a retry topic (see `pushservice_config::RETRY_TIERS`), not in
//! memory: [`tier_for`] picks the topic.

use std::time::Duration;

/// Retry budget and pacing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Bound of the first retry's delay; doubles every attempt.
    pub base: Duration,
    /// Bound no backoff exceeds (a longer `Retry-After` is honoured).
    pub max: Duration,
    /// Longest time from the first attempt to the last.
    pub max_age: Duration,
}

/// What to do after a transient failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetryPlan {
    /// Try again after this long.
    After(Duration),
    /// The budget is spent; the reason says which bound ended it.
    GiveUp(String),
}

impl RetryPolicy {
    /// The plan after attempt `attempt` (1-based) failed at `now` (milliseconds since the
    /// epoch) for a delivery first attempted at `first_attempt_at`, whose notification
    /// lives `ttl` seconds (0: no TTL of its own). `random` is uniform in `[0, 1)`.
    pub fn plan(
        &self,
        attempt: u32,
        first_attempt_at: u64,
        now: u64,
        ttl: u32,
        retry_after: Option<Duration>,
        random: f64,
    ) -> RetryPlan {
        let exponent = attempt.saturating_sub(1).min(20);
        let bound = self.base.saturating_mul(1 << exponent).min(self.max);
        let jittered = bound.mul_f64(random.clamp(0.0, 1.0));
        let delay = match retry_after {
            Some(floor) => jittered.max(floor),
            None => jittered.max(Duration::from_millis(50)),
        };
        let ttl = Duration::from_secs(u64::from(ttl));
        let (budget, bound_name) = if ttl > Duration::ZERO && ttl < self.max_age {
            (ttl, "the notification's time to live")
        } else {
            (self.max_age, "SENDER_RETRY_MAX_AGE")
        };
        let elapsed = Duration::from_millis(now.saturating_sub(first_attempt_at));
        if elapsed + delay > budget {
            return RetryPlan::GiveUp(format!(
                "gave up after {attempt} attempts over {}s: the next retry would be past {bound_name} ({}s)",
                elapsed.as_secs(),
                budget.as_secs()
            ));
        }
        RetryPlan::After(delay)
    }
}

/// The retry tier for `delay`: the first whose wait covers it, else the last. `tiers` are
/// the tiers' waits, shortest first, and not empty.
pub fn tier_for(delay: Duration, tiers: &[Duration]) -> usize {
    tiers
        .iter()
        .position(|wait| delay <= *wait)
        .unwrap_or(tiers.len().saturating_sub(1))
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn now_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: RetryPolicy = RetryPolicy {
        base: Duration::from_secs(1),
        max: Duration::from_secs(60),
        max_age: Duration::from_secs(3_600),
    };

    fn delay(plan: RetryPlan) -> Duration {
        match plan {
            RetryPlan::After(d) => d,
            RetryPlan::GiveUp(why) => panic!("expected a retry, got: {why}"),
        }
    }

    #[test]
    fn bounds_double_up_to_the_maximum() {
        assert!(delay(POLICY.plan(1, 0, 0, 0, None, 0.999)) <= Duration::from_secs(1));
        assert!(delay(POLICY.plan(2, 0, 0, 0, None, 0.999)) > Duration::from_millis(1_990));
        assert!(delay(POLICY.plan(3, 0, 0, 0, None, 0.999)) <= Duration::from_secs(4));
        assert!(delay(POLICY.plan(30, 0, 0, 0, None, 0.999)) <= Duration::from_secs(60));
    }

    #[test]
    fn retry_after_is_a_floor_and_zero_jitter_still_waits() {
        assert_eq!(
            delay(POLICY.plan(1, 0, 0, 0, Some(Duration::from_secs(30)), 0.1)),
            Duration::from_secs(30)
        );
        assert_eq!(
            delay(POLICY.plan(1, 0, 0, 0, None, 0.0)),
            Duration::from_millis(50)
        );
    }

    #[test]
    fn a_five_minute_outage_is_well_within_the_budget() {
        // 60 attempts spread over five minutes of 503s with Retry-After: 5.
        let plan = POLICY.plan(60, 0, 300_000, 259_200, Some(Duration::from_secs(5)), 0.05);
        assert_eq!(delay(plan), Duration::from_secs(5));
    }

    #[test]
    fn the_budget_ends_at_the_ttl_or_the_max_age() {
        let plan = POLICY.plan(3, 0, 58_000, 60, Some(Duration::from_secs(5)), 0.5);
        let RetryPlan::GiveUp(why) = plan else {
            panic!("a 60 s TTL is over at 63 s")
        };
        assert!(why.contains("time to live"), "{why}");
        let plan = POLICY.plan(9, 0, 3_599_000, 0, Some(Duration::from_secs(5)), 0.5);
        let RetryPlan::GiveUp(why) = plan else {
            panic!("an hour is over")
        };
        assert!(why.contains("SENDER_RETRY_MAX_AGE"), "{why}");
    }

    #[test]
    fn tiers_cover_the_delay() {
        let tiers = [
            Duration::from_secs(10),
            Duration::from_secs(60),
            Duration::from_secs(600),
        ];
        assert_eq!(tier_for(Duration::from_millis(80), &tiers), 0);
        assert_eq!(tier_for(Duration::from_secs(10), &tiers), 0);
        assert_eq!(tier_for(Duration::from_secs(11), &tiers), 1);
        assert_eq!(tier_for(Duration::from_secs(3_600), &tiers), 2);
    }
}
