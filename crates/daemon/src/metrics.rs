//! Counters, gauges and histograms, exposed in the Prometheus text format.
//!
//! Built on `prometheus-client` (the Prometheus project's Rust client): it keeps metric
//! families, label sets, histogram buckets and the exposition format right, and its counters
//! and gauges are single relaxed atomics, so the hot path pays no more than the hand-written
//! atomics this module had before. A thin [`Registry`] keeps the daemons' shape: metrics are
//! registered once at start-up by name, help and *fixed* labels, and the hot path only
//! touches the returned handle. Label values must come from small, known sets (platform,
//! outcome, topic, partition): never a subscriber or push id.
//!
//! Every registry also reports the process (CPU seconds, resident and virtual memory, open
//! and maximum file descriptors, threads, start time) under client_golang's standard names,
//! read from `/proc` with the `procfs` crate at each scrape.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric as _};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter as RawCounter};
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::{ConstGauge, Gauge as RawGauge};
use prometheus_client::metrics::histogram::Histogram as RawHistogram;

/// Label pairs of one series.
type Labels = Vec<(String, String)>;

/// A monotonically increasing count.
#[derive(Debug, Default, Clone)]
pub struct Counter(RawCounter);

impl Counter {
    /// Adds one.
    pub fn inc(&self) {
        self.0.inc();
    }

    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.inc_by(n);
    }

    /// Current value.
    pub fn get(&self) -> u64 {
        self.0.get()
    }
}

/// A value that goes up and down.
#[derive(Debug, Default, Clone)]
pub struct Gauge(RawGauge);

impl Gauge {
    /// Sets the value.
    pub fn set(&self, value: i64) {
        self.0.set(value);
    }

    /// Adds `delta` (negative to subtract).
    pub fn add(&self, delta: i64) {
        self.0.inc_by(delta);
    }

    /// Current value.
    pub fn get(&self) -> i64 {
        self.0.get()
    }
}

/// A distribution of observed values in fixed buckets.
#[derive(Debug, Clone)]
pub struct Histogram(RawHistogram);

impl Histogram {
    /// Observes `value`.
    pub fn observe(&self, value: f64) {
        self.0.observe(value);
    }

    /// Observes a duration, in seconds.
    pub fn observe_duration(&self, duration: Duration) {
        self.0.observe(duration.as_secs_f64());
    }
}

/// Bucket bounds for durations from 1 ms to 30 s: push-service answers (tens to hundreds of
/// milliseconds), timeouts, and the time a notification takes from send to acceptance.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Bucket bounds for waits from 1 s to a day: retry delays and the age of what is delivered.
pub const WAIT_BUCKETS: &[f64] = &[
    0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 21600.0,
    86400.0,
];

/// Creates each label set's histogram with the family's buckets.
#[derive(Debug, Clone)]
struct Buckets(Arc<[f64]>);

impl MetricConstructor<RawHistogram> for Buckets {
    fn new_metric(&self) -> RawHistogram {
        RawHistogram::new(self.0.iter().copied())
    }
}

/// A gauge family whose label sets come and go at run time (consumer lag per partition, as
/// partitions are assigned and revoked).
#[derive(Debug, Clone, Default)]
pub struct GaugeFamily(Family<Labels, RawGauge>);

impl GaugeFamily {
    /// Sets the series of `labels` to `value`.
    pub fn set(&self, labels: &[(&str, &str)], value: i64) {
        self.0.get_or_create(&owned(labels)).set(value);
    }

    /// Removes the series of `labels`.
    pub fn remove(&self, labels: &[(&str, &str)]) {
        self.0.remove(&owned(labels));
    }

    /// The value of the series of `labels`, if it exists.
    pub fn get(&self, labels: &[(&str, &str)]) -> Option<i64> {
        self.0.get(&owned(labels)).map(|g| g.get())
    }
}

#[derive(Debug, Default)]
struct Families {
    registry: prometheus_client::registry::Registry,
    counters: HashMap<String, Family<Labels, RawCounter>>,
    gauges: HashMap<String, Family<Labels, RawGauge>>,
    histograms: HashMap<String, Family<Labels, RawHistogram, Buckets>>,
}

/// Every metric of a process. Cheap to share (`Arc`); registering happens at start-up, the
/// hot path only touches the returned handles.
#[derive(Debug)]
pub struct Registry {
    families: Mutex<Families>,
}

impl Default for Registry {
    fn default() -> Self {
        let mut families = Families::default();
        families
            .registry
            .register_collector(Box::new(ProcessCollector));
        Registry {
            families: Mutex::new(families),
        }
    }
}

impl Registry {
    /// Registers a counter `name{labels}`; `name` ends in `_total`, as Prometheus expects.
    pub fn counter(&self, name: &str, help: &str, labels: &[(&str, &str)]) -> Arc<Counter> {
        // The encoder appends `_total` to a counter family's name.
        let family_name = name.strip_suffix("_total").unwrap_or(name);
        let mut families = self.lock();
        let Families {
            registry, counters, ..
        } = &mut *families;
        let family = counters.entry(family_name.to_owned()).or_insert_with(|| {
            let family = Family::<Labels, RawCounter>::default();
            registry.register(family_name, help.trim_end_matches('.'), family.clone());
            family
        });
        Arc::new(Counter(family.get_or_create_owned(&owned(labels))))
    }

    /// Registers a gauge `name{labels}`.
    pub fn gauge(&self, name: &str, help: &str, labels: &[(&str, &str)]) -> Arc<Gauge> {
        let family = self.gauge_family_inner(name, help);
        Arc::new(Gauge(family.get_or_create_owned(&owned(labels))))
    }

    /// Registers a gauge family whose label sets are set and removed at run time.
    pub fn gauge_family(&self, name: &str, help: &str) -> GaugeFamily {
        GaugeFamily(self.gauge_family_inner(name, help))
    }

    fn gauge_family_inner(&self, name: &str, help: &str) -> Family<Labels, RawGauge> {
        let mut families = self.lock();
        let Families {
            registry, gauges, ..
        } = &mut *families;
        gauges
            .entry(name.to_owned())
            .or_insert_with(|| {
                let family = Family::<Labels, RawGauge>::default();
                registry.register(name, help.trim_end_matches('.'), family.clone());
                family
            })
            .clone()
    }

    /// Registers a histogram `name{labels}` with `buckets` (upper bounds, ascending; `+Inf`
    /// is implied). A name registered again keeps its first buckets.
    pub fn histogram(
        &self,
        name: &str,
        help: &str,
        labels: &[(&str, &str)],
        buckets: &[f64],
    ) -> Arc<Histogram> {
        let mut families = self.lock();
        let Families {
            registry,
            histograms,
            ..
        } = &mut *families;
        let family = histograms.entry(name.to_owned()).or_insert_with(|| {
            let family = Family::new_with_constructor(Buckets(Arc::from(buckets)));
            registry.register(name, help.trim_end_matches('.'), family.clone());
            family
        });
        Arc::new(Histogram(family.get_or_create_owned(&owned(labels))))
    }

    /// The Prometheus text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let families = self.lock();
        let mut out = String::with_capacity(16 * 1024);
        // Writing to a String cannot fail; a metric that cannot encode is a bug worth a
        // visible gap rather than a panic in the scrape handler.
        if let Err(e) =
            prometheus_client::encoding::prometheus_text::encode(&mut out, &families.registry)
        {
            tracing::warn!(error = %e, "encoding metrics");
        }
        out
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Families> {
        self.families.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn owned(labels: &[(&str, &str)]) -> Labels {
    labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// The process metrics of client_golang, read from `/proc/self` at each scrape.
#[derive(Debug)]
struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        // Not on Linux, or /proc is not mounted: no process metrics, nothing else lost.
        let Ok(process) = procfs::process::Process::myself() else {
            return Ok(());
        };
        if let Ok(stat) = process.stat() {
            let ticks = procfs::ticks_per_second().max(1) as f64;
            let cpu = (stat.utime + stat.stime) as f64 / ticks;
            let counter = ConstCounter::new(cpu);
            counter.encode(encoder.encode_descriptor(
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds",
                None,
                MetricType::Counter,
            )?)?;
            let page = procfs::page_size();
            gauge(
                &mut encoder,
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                (stat.rss.saturating_mul(page)) as f64,
            )?;
            gauge(
                &mut encoder,
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes",
                stat.vsize as f64,
            )?;
            gauge(
                &mut encoder,
                "process_threads",
                "Number of OS threads in the process",
                stat.num_threads as f64,
            )?;
            if let Ok(boot) = procfs::boot_time_secs() {
                gauge(
                    &mut encoder,
                    "process_start_time_seconds",
                    "Start time of the process since unix epoch in seconds",
                    boot as f64 + stat.starttime as f64 / ticks,
                )?;
            }
        }
        if let Ok(open) = process.fd_count() {
            gauge(
                &mut encoder,
                "process_open_fds",
                "Number of open file descriptors",
                open as f64,
            )?;
        }
        if let Ok(limits) = process.limits()
            && let procfs::process::LimitValue::Value(max) = limits.max_open_files.soft_limit
        {
            gauge(
                &mut encoder,
                "process_max_fds",
                "Maximum number of open file descriptors",
                max as f64,
            )?;
        }
        Ok(())
    }
}

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: f64,
) -> Result<(), std::fmt::Error> {
    ConstGauge::new(value).encode(encoder.encode_descriptor(name, help, None, MetricType::Gauge)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_families_once_with_their_series() {
        let registry = Registry::default();
        let accepted = registry.counter(
            "deliveries_total",
            "Deliveries.",
            &[("outcome", "accepted")],
        );
        let failed = registry.counter("deliveries_total", "Deliveries.", &[("outcome", "failed")]);
        let pending = registry.gauge("pending", "Not final yet.", &[]);
        accepted.add(3);
        failed.inc();
        pending.set(-2);
        let text = registry.render();
        assert_eq!(
            text.matches("# TYPE deliveries_total counter").count(),
            1,
            "{text}"
        );
        assert!(
            text.contains("deliveries_total{outcome=\"accepted\"} 3\n"),
            "{text}"
        );
        assert!(
            text.contains("deliveries_total{outcome=\"failed\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE pending gauge\npending -2\n"),
            "{text}"
        );
    }

    #[test]
    fn the_same_series_registered_twice_is_one_series() {
        let registry = Registry::default();
        let a = registry.counter("hits_total", "Hits.", &[("kind", "a")]);
        let again = registry.counter("hits_total", "Hits.", &[("kind", "a")]);
        a.inc();
        again.inc();
        assert_eq!(a.get(), 2);
        assert!(registry.render().contains("hits_total{kind=\"a\"} 2\n"));
    }

    #[test]
    fn histograms_count_into_their_buckets() {
        let registry = Registry::default();
        let latency = registry.histogram(
            "request_duration_seconds",
            "Request time.",
            &[("platform", "web")],
            LATENCY_BUCKETS,
        );
        latency.observe_duration(Duration::from_millis(80));
        latency.observe(0.2);
        let text = registry.render();
        assert!(
            text.contains("# TYPE request_duration_seconds histogram"),
            "{text}"
        );
        assert!(
            text.contains("request_duration_seconds_bucket{platform=\"web\",le=\"0.05\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("request_duration_seconds_bucket{platform=\"web\",le=\"0.1\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("request_duration_seconds_bucket{platform=\"web\",le=\"+Inf\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("request_duration_seconds_count{platform=\"web\"} 2\n"),
            "{text}"
        );
    }

    #[test]
    fn gauge_families_drop_series() {
        let registry = Registry::default();
        let lag = registry.gauge_family("lag", "Lag.");
        lag.set(&[("partition", "0")], 5);
        lag.set(&[("partition", "1")], 7);
        lag.remove(&[("partition", "0")]);
        let text = registry.render();
        assert!(!text.contains("lag{partition=\"0\"}"), "{text}");
        assert!(text.contains("lag{partition=\"1\"} 7\n"), "{text}");
        assert_eq!(lag.get(&[("partition", "1")]), Some(7));
    }

    #[test]
    fn reports_the_process() {
        let text = Registry::default().render();
        for name in [
            "process_cpu_seconds_total",
            "process_resident_memory_bytes",
            "process_open_fds",
            "process_max_fds",
            "process_threads",
            "process_start_time_seconds",
        ] {
            assert!(
                text.lines()
                    .any(|l| l.starts_with(name) && !l.starts_with('#')),
                "{name} missing:\n{text}"
            );
        }
    }
}
