//! Throughput and latency from a cumulative-count timeline.
//!
//! The benchmark samples the simulator's count of distinct accepted deliveries every few
//! hundred milliseconds. Everything here is derived from those samples, as pure functions:
//!
//! - rates between consecutive samples, and over a trailing window (smoother, for charts);
//! - send-to-accept latency percentiles: every delivery was triggered by the one `pushctl send`
//!   at t = 0, so the latency of the k-th acceptance is simply the time at which the count
//!   reached k. Between two samples the count is assumed to grow linearly, so the time is
//!   interpolated; its resolution is the sampling interval.

/// One sample: the cumulative count at `t_s` seconds after the send.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Point {
    /// Seconds since the send.
    pub t_s: f64,
    /// Cumulative count at that time.
    pub count: u64,
}

/// When the count reached `k` (linear interpolation between samples); `None` if it never did.
/// The samples must be in time order with non-decreasing counts.
pub fn time_of_count(points: &[Point], k: u64) -> Option<f64> {
    let i = points.iter().position(|p| p.count >= k)?;
    let Some(before) = i.checked_sub(1).map(|j| points[j]) else {
        return Some(points[i].t_s);
    };
    let after = points[i];
    // before.count < k <= after.count, so the span is at least 1.
    let span = (after.count - before.count) as f64;
    let fraction = (k - before.count) as f64 / span;
    Some(before.t_s + fraction * (after.t_s - before.t_s))
}

/// The rank of percentile `p` (0–100], to three decimals) among `total` items:
/// ⌈p/100 · total⌉, at least 1. Integer arithmetic, so 99.9 % of 1000 is 999, not 1000.
pub fn rank(p: f64, total: u64) -> u64 {
    let p_milli = (p * 1000.0).round().clamp(0.0, 100_000.0) as u128;
    let rank = (p_milli * u128::from(total)).div_ceil(100_000);
    u64::try_from(rank)
        .unwrap_or(u64::MAX)
        .clamp(1, total.max(1))
}

/// The time at which `p` percent of `total` had been counted.
pub fn percentile(points: &[Point], total: u64, p: f64) -> Option<f64> {
    if total == 0 {
        return None;
    }
    time_of_count(points, rank(p, total))
}

/// `points` made consistent with exactly known times of the first and the last count:
/// `first_s` is when the count became 1, `last` is (time, count) of the final one. Samples
/// that contradict them (taken around the same moment, so their clocks disagree by a few
/// milliseconds) are dropped and the anchors inserted, so percentiles computed from the result
/// lie between the exact minimum and maximum.
pub fn anchored(points: &[Point], first_s: Option<f64>, last: Option<(f64, u64)>) -> Vec<Point> {
    let mut out: Vec<Point> = points
        .iter()
        .copied()
        .filter(|p| first_s.is_none_or(|f| if p.count == 0 { p.t_s <= f } else { p.t_s > f }))
        .filter(|p| last.is_none_or(|(l, total)| p.t_s < l && p.count < total))
        .collect();
    if let Some(first_s) = first_s {
        out.push(Point {
            t_s: first_s,
            count: 1,
        });
    }
    if let Some((t_s, count)) = last {
        out.push(Point { t_s, count });
    }
    out.sort_by(|a, b| a.t_s.total_cmp(&b.t_s).then(a.count.cmp(&b.count)));
    // Counts never go down; a sample older than an anchor cannot exceed it.
    let mut high = 0;
    for p in out.iter_mut().rev() {
        if high > 0 && p.count > high {
            p.count = high;
        }
        high = if high == 0 {
            p.count
        } else {
            high.min(p.count)
        };
    }
    out
}

/// Rate (per second) of each sample since the previous one; the first sample's rate is 0.
pub fn interval_rates(points: &[Point]) -> Vec<f64> {
    let mut rates = Vec::with_capacity(points.len());
    for (i, point) in points.iter().enumerate() {
        let rate = match i.checked_sub(1).map(|j| points[j]) {
            Some(prev) if point.t_s > prev.t_s => {
                point.count.saturating_sub(prev.count) as f64 / (point.t_s - prev.t_s)
            }
            _ => 0.0,
        };
        rates.push(rate);
    }
    rates
}

/// Rate (per second) of each sample over the trailing `window_s` seconds (or since the first
/// sample, early on). Smooths the jitter of short sampling intervals.
pub fn window_rates(points: &[Point], window_s: f64) -> Vec<f64> {
    let mut rates = Vec::with_capacity(points.len());
    let mut start = 0;
    for (i, point) in points.iter().enumerate() {
        while start + 1 < i && point.t_s - points[start + 1].t_s >= window_s {
            start += 1;
        }
        let from = points[start];
        let rate = if i > start && point.t_s > from.t_s {
            point.count.saturating_sub(from.count) as f64 / (point.t_s - from.t_s)
        } else {
            0.0
        };
        rates.push(rate);
    }
    rates
}

#[cfg(test)]
mod tests {
    use super::*;

    fn points(samples: &[(f64, u64)]) -> Vec<Point> {
        samples
            .iter()
            .map(|&(t_s, count)| Point { t_s, count })
            .collect()
    }

    #[test]
    fn times_are_interpolated_between_samples() {
        let timeline = points(&[(0.0, 0), (1.0, 100), (2.0, 100), (3.0, 300)]);
        assert_eq!(time_of_count(&timeline, 50), Some(0.5));
        assert_eq!(time_of_count(&timeline, 100), Some(1.0));
        // Flat between 1 s and 2 s: the 101st acceptance happened after 2 s.
        assert_eq!(time_of_count(&timeline, 101), Some(2.005));
        assert_eq!(time_of_count(&timeline, 300), Some(3.0));
        assert_eq!(time_of_count(&timeline, 301), None);
    }

    #[test]
    fn percentiles_use_ceiling_ranks() {
        let timeline = points(&[(0.0, 0), (10.0, 1000)]);
        assert_eq!(rank(50.0, 1000), 500);
        assert_eq!(rank(99.9, 1000), 999);
        assert_eq!(rank(50.0, 3), 2);
        assert_eq!(rank(1.0, 3), 1);
        assert_eq!(rank(100.0, 3), 3);
        assert_eq!(percentile(&timeline, 1000, 50.0), Some(5.0));
        assert_eq!(percentile(&timeline, 1000, 99.0), Some(9.9));
        assert_eq!(percentile(&timeline, 1000, 100.0), Some(10.0));
        assert_eq!(percentile(&timeline, 0, 50.0), None);
    }

    #[test]
    fn first_sample_already_past_the_rank() {
        let timeline = points(&[(0.25, 10), (0.5, 20)]);
        assert_eq!(time_of_count(&timeline, 5), Some(0.25));
    }

    #[test]
    fn anchors_replace_samples_that_contradict_them() {
        // The sample at 3.0 s saw 1000 but the last acceptance was at 2.9 s; the sample at
        // 1.05 s saw 0 though the first acceptance was at 1.0 s.
        let timeline = points(&[(0.0, 0), (1.05, 0), (2.0, 600), (3.0, 1000)]);
        let fixed = anchored(&timeline, Some(1.0), Some((2.9, 1000)));
        assert_eq!(
            fixed,
            points(&[(0.0, 0), (1.0, 1), (2.0, 600), (2.9, 1000)])
        );
        let p99 = percentile(&fixed, 1000, 99.0).expect("reached");
        assert!(p99 <= 2.9, "{p99}");
        assert_eq!(percentile(&fixed, 1000, 100.0), Some(2.9));
        // Without anchors nothing changes.
        assert_eq!(anchored(&timeline, None, None), timeline);
    }

    #[test]
    fn interval_rates_follow_each_step() {
        let timeline = points(&[(0.0, 0), (0.5, 100), (1.0, 100), (1.25, 150)]);
        assert_eq!(interval_rates(&timeline), vec![0.0, 200.0, 0.0, 200.0]);
        assert!(interval_rates(&[]).is_empty());
    }

    #[test]
    fn window_rates_average_the_trailing_window() {
        let timeline = points(&[(0.0, 0), (0.5, 100), (1.0, 100), (1.5, 300), (2.0, 300)]);
        let rates = window_rates(&timeline, 1.0);
        assert_eq!(rates[0], 0.0);
        assert_eq!(rates[1], 200.0); // since t=0
        assert_eq!(rates[2], 100.0); // 0.0..1.0
        assert_eq!(rates[3], 200.0); // 0.5..1.5
        assert_eq!(rates[4], 200.0); // 1.0..2.0
    }
}
