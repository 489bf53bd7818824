//! Counters and gauges, rendered in the Prometheus text exposition format.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// A monotonically increasing count.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds one.
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// Current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down.
#[derive(Debug, Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    /// Sets the value.
    pub fn set(&self, value: i64) {
        self.0.store(value, Ordering::Relaxed);
    }

    /// Adds `delta` (negative to subtract).
    pub fn add(&self, delta: i64) {
        self.0.fetch_add(delta, Ordering::Relaxed);
    }

    /// Current value.
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Debug)]
enum Value {
    Counter(Arc<Counter>),
    Gauge(Arc<Gauge>),
}

#[derive(Debug)]
struct Series {
    name: String,
    help: String,
    labels: String,
    value: Value,
}

/// Every metric of a process. Cheap to share (`Arc`); registering happens at start-up, the
/// hot path only touches the returned atomics.
#[derive(Debug, Default)]
pub struct Registry {
    series: Mutex<Vec<Series>>,
}

impl Registry {
    /// Registers a counter `name{labels}`.
    pub fn counter(&self, name: &str, help: &str, labels: &[(&str, &str)]) -> Arc<Counter> {
        let counter = Arc::new(Counter::default());
        self.push(name, help, labels, Value::Counter(Arc::clone(&counter)));
        counter
    }

    /// Registers a gauge `name{labels}`.
    pub fn gauge(&self, name: &str, help: &str, labels: &[(&str, &str)]) -> Arc<Gauge> {
        let gauge = Arc::new(Gauge::default());
        self.push(name, help, labels, Value::Gauge(Arc::clone(&gauge)));
        gauge
    }

    fn push(&self, name: &str, help: &str, labels: &[(&str, &str)], value: Value) {
        let labels = labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"")))
            .collect::<Vec<_>>()
            .join(",");
        let series = Series {
            name: name.to_owned(),
            help: help.to_owned(),
            labels,
            value,
        };
        self.series
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(series);
    }

    /// The text exposition format: `# HELP` and `# TYPE` once per name, then its series.
    pub fn render(&self) -> String {
        let series = self.series.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = String::with_capacity(series.len() * 96);
        let mut described: Vec<&str> = Vec::new();
        for s in series.iter() {
            if !described.contains(&s.name.as_str()) {
                let kind = match s.value {
                    Value::Counter(_) => "counter",
                    Value::Gauge(_) => "gauge",
                };
                let _ = writeln!(
                    out,
                    "# HELP {} {}\n# TYPE {} {kind}",
                    s.name, s.help, s.name
                );
                described.push(&s.name);
            }
            let braces = if s.labels.is_empty() {
                String::new()
            } else {
                format!("{{{}}}", s.labels)
            };
            let _ = match &s.value {
                Value::Counter(c) => writeln!(out, "{}{braces} {}", s.name, c.get()),
                Value::Gauge(g) => writeln!(out, "{}{braces} {}", s.name, g.get()),
            };
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_help_and_type_once_per_name() {
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
        assert_eq!(
            registry.render(),
            "# HELP deliveries_total Deliveries.\n# TYPE deliveries_total counter\n\
             deliveries_total{outcome=\"accepted\"} 3\ndeliveries_total{outcome=\"failed\"} 1\n\
             # HELP pending Not final yet.\n# TYPE pending gauge\npending -2\n"
        );
    }
}
