//! A lock-free latency histogram shared by every connection task.
//!
//! Log-linear buckets (as HdrHistogram): values below 128 µs are exact, above that each power
//! of two is split into 64 buckets, so a reported percentile is within 1/64 (1.6 %) of the
//! true value. Recording is one `fetch_add` on an atomic, so 20,000 tasks record at once
//! without a lock; 3,776 buckets cover every `u64`.

use std::sync::atomic::{AtomicU64, Ordering};

/// Sub-buckets per power of two, as a bit count.
const SUB_BITS: u32 = 6;
/// Sub-buckets per power of two.
const SUB: u64 = 1 << SUB_BITS;
/// Values below this are counted one bucket each.
const LINEAR: u64 = 2 * SUB;
/// Buckets needed for every u64.
const BUCKETS: usize = LINEAR as usize + (63 - SUB_BITS as usize) * SUB as usize;

/// The bucket of `value`.
fn index(value: u64) -> usize {
    if value < LINEAR {
        return value as usize;
    }
    let exponent = 63 - value.leading_zeros(); // ≥ SUB_BITS + 1
    let sub = (value >> (exponent - SUB_BITS)) - SUB;
    LINEAR as usize + (exponent - SUB_BITS - 1) as usize * SUB as usize + sub as usize
}

/// The smallest value of bucket `i`.
fn lower_bound(i: usize) -> u64 {
    let i = i as u64;
    if i < LINEAR {
        return i;
    }
    let exponent = (i - LINEAR) / SUB + u64::from(SUB_BITS) + 1;
    let sub = (i - LINEAR) % SUB;
    (SUB + sub) << (exponent - u64::from(SUB_BITS))
}

/// The largest value of bucket `i`.
fn upper_bound(i: usize) -> u64 {
    if i + 1 >= BUCKETS {
        u64::MAX
    } else {
        lower_bound(i + 1) - 1
    }
}

/// Counts of values (µs) by bucket, plus exact count, sum and maximum.
pub struct Histogram {
    buckets: Box<[AtomicU64]>,
    count: AtomicU64,
    sum: AtomicU64,
    max: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum: AtomicU64::new(0),
            max: AtomicU64::new(0),
        }
    }
}

/// What a histogram holds, read once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Percentiles {
    /// Values recorded.
    pub count: u64,
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Largest value (exact).
    pub max: u64,
    /// Mean (exact, rounded down).
    pub mean: u64,
}

impl Histogram {
    /// Counts one value.
    pub fn record(&self, value: u64) {
        // Relaxed: the counts are read after the run, through the joins and sleeps that end it.
        self.buckets[index(value)].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum.fetch_add(value, Ordering::Relaxed);
        self.max.fetch_max(value, Ordering::Relaxed);
    }

    /// The value below which a fraction `q` (0–1) of the recorded values fall: the upper bound
    /// of the bucket holding the ⌈q·count⌉-th value, capped by the exact maximum. 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        let count = self.count.load(Ordering::Relaxed);
        if count == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * count as f64).ceil() as u64).max(1);
        let max = self.max.load(Ordering::Relaxed);
        let mut seen = 0;
        for (i, bucket) in self.buckets.iter().enumerate() {
            seen += bucket.load(Ordering::Relaxed);
            if seen >= rank {
                return upper_bound(i).min(max);
            }
        }
        max
    }

    /// Count, percentiles, maximum and mean.
    pub fn percentiles(&self) -> Percentiles {
        let count = self.count.load(Ordering::Relaxed);
        Percentiles {
            count,
            p50: self.quantile(0.50),
            p90: self.quantile(0.90),
            p99: self.quantile(0.99),
            p999: self.quantile(0.999),
            max: self.max.load(Ordering::Relaxed),
            mean: self
                .sum
                .load(Ordering::Relaxed)
                .checked_div(count)
                .unwrap_or(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_tile_the_numbers_without_gaps() {
        assert_eq!(index(u64::MAX), BUCKETS - 1);
        for i in 0..BUCKETS - 1 {
            assert_eq!(upper_bound(i) + 1, lower_bound(i + 1), "bucket {i}");
            assert_eq!(index(lower_bound(i)), i, "lower bound of bucket {i}");
            assert_eq!(index(upper_bound(i)), i, "upper bound of bucket {i}");
        }
    }

    #[test]
    fn buckets_are_narrow() {
        for i in LINEAR as usize..BUCKETS - 1 {
            let width = upper_bound(i) - lower_bound(i) + 1;
            assert!(
                width * SUB <= lower_bound(i),
                "bucket {i} [{}, {}] is wider than 1/{SUB} of its values",
                lower_bound(i),
                upper_bound(i)
            );
        }
    }

    #[test]
    fn percentiles_of_one_to_ten_thousand() {
        let histogram = Histogram::default();
        for v in 1..=10_000 {
            histogram.record(v);
        }
        let p = histogram.percentiles();
        assert_eq!(p.count, 10_000);
        assert_eq!(p.max, 10_000);
        assert_eq!(p.mean, 5_000);
        for (got, want) in [
            (p.p50, 5_000),
            (p.p90, 9_000),
            (p.p99, 9_900),
            (p.p999, 9_990),
        ] {
            assert!(
                got >= want && got <= want + want / SUB,
                "expected {want} (+1/{SUB}), got {got}"
            );
        }
    }

    #[test]
    fn small_values_are_exact_and_empty_is_zero() {
        let histogram = Histogram::default();
        assert_eq!(histogram.percentiles().p99, 0);
        for v in [3, 3, 3, 7] {
            histogram.record(v);
        }
        assert_eq!(histogram.quantile(0.5), 3);
        assert_eq!(histogram.quantile(0.75), 3);
        assert_eq!(histogram.quantile(0.76), 7);
        assert_eq!(histogram.quantile(1.0), 7);
        assert_eq!(histogram.quantile(0.0), 3);
    }
}
