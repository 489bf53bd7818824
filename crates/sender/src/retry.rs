//! When to try a transient failure again.
//!
//! Exponential backoff with "full jitter" (a uniformly random delay up to the exponential
//! bound) spreads retries of many subscribers of one push service apart instead of sending
//! them back in a synchronized wave. A `Retry-After` from the push service is a floor: we never
//! come back sooner than asked.

use std::time::Duration;

/// Retry budget and pacing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in total, the first included; the last transient failure counts as failed.
    pub max_attempts: u32,
    /// Bound of the first retry's delay; doubles every attempt.
    pub base: Duration,
    /// Bound no delay exceeds (except a longer `Retry-After`, capped at one hour).
    pub max: Duration,
}

impl RetryPolicy {
    /// Delay before attempt `attempt + 1`, given that attempt `attempt` (1-based) failed;
    /// `None` when the budget is spent. `random` is uniform in `[0, 1)`.
    pub fn delay(
        &self,
        attempt: u32,
        retry_after: Option<Duration>,
        random: f64,
    ) -> Option<Duration> {
        if attempt >= self.max_attempts {
            return None;
        }
        let exponent = attempt.saturating_sub(1).min(20);
        let bound = self.base.saturating_mul(1 << exponent).min(self.max);
        let jittered = bound.mul_f64(random.clamp(0.0, 1.0));
        Some(match retry_after {
            Some(floor) => jittered.max(floor),
            None => jittered.max(Duration::from_millis(50)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: RetryPolicy = RetryPolicy {
        max_attempts: 4,
        base: Duration::from_secs(1),
        max: Duration::from_secs(5),
    };

    #[test]
    fn bounds_double_up_to_the_maximum() {
        assert_eq!(
            POLICY.delay(1, None, 0.999_999).map(|d| d.as_secs()),
            Some(0)
        );
        assert!(POLICY.delay(1, None, 0.999_999).expect("retry") <= Duration::from_secs(1));
        assert!(POLICY.delay(2, None, 0.999_999).expect("retry") > Duration::from_millis(1_990));
        assert!(POLICY.delay(3, None, 0.999_999).expect("retry") <= Duration::from_secs(4));
        assert_eq!(
            POLICY.delay(4, None, 0.5),
            None,
            "budget of 4 attempts spent"
        );
    }

    #[test]
    fn retry_after_is_a_floor_and_zero_jitter_still_waits() {
        assert_eq!(
            POLICY.delay(1, Some(Duration::from_secs(30)), 0.1),
            Some(Duration::from_secs(30))
        );
        assert_eq!(POLICY.delay(1, None, 0.0), Some(Duration::from_millis(50)));
    }
}
