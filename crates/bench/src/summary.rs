//! The human summary printed at the end of a run: the figures of `result.json` that people
//! compare, as a short table, plus where the files are.

use std::fmt::Write as _;
use std::path::Path;

use crate::report::BenchResult;

/// Renders the summary of `result`, naming `json` and `svg`.
pub fn render(result: &BenchResult, subscribers: u64, json: &Path, svg: &Path) -> String {
    let mut out = String::new();
    let secs = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.2} s"));
    let wall = &result.wall;
    let rate = |r: Option<f64>| r.map_or_else(|| "-".to_owned(), |r| thousands(r.round() as u64));
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "pushbench {}: {} subscribers — {}",
        result.run,
        thousands(subscribers),
        result.outcome
    );
    let _ = writeln!(out, "  seeding       {}", seeding_line(result));
    if result.config.backlog {
        let _ = writeln!(
            out,
            "  total wall    {}  (senders start on the fanned-out backlog → last acceptance)",
            secs(wall.total_s)
        );
    } else {
        let _ = writeln!(
            out,
            "  total wall    {}  (pushctl send → last acceptance)",
            secs(wall.total_s)
        );
        let _ = writeln!(
            out,
            "  fan-out wall  {}  (pushctl send → push done)",
            secs(wall.fanout_s)
        );
    }
    let _ = writeln!(
        out,
        "  throughput    {}/s average, {}/s from first to last acceptance, {}/s peak (1 s window)",
        rate(wall.average_rate_per_s),
        rate(wall.flow_rate_per_s),
        thousands(wall.peak_rate_per_s.round() as u64)
    );
    let latency: Vec<String> = ["min", "p50", "p90", "p99", "p99.9", "max"]
        .iter()
        .map(|key| {
            let value = result.latency_s.get(*key).copied().flatten();
            format!(
                "{key} {}",
                value.map_or_else(|| "-".to_owned(), |v| format!("{v:.2}s"))
            )
        })
        .collect();
    let _ = writeln!(out, "  latency       {}", latency.join("  "));
    let sink = &result.sink;
    let statuses: Vec<String> = sink
        .by_status
        .iter()
        .map(|(code, n)| format!("{code}: {}", thousands(*n)))
        .collect();
    let _ = writeln!(
        out,
        "  simulator     distinct accepted {}  duplicates {}  requests {}  [{}]{}",
        thousands(sink.distinct_accepted),
        thousands(sink.duplicates),
        thousands(sink.requests),
        statuses.join(", "),
        if sink.verify_failed.is_empty() {
            String::new()
        } else {
            format!("  verify failures {:?}", sink.verify_failed)
        }
    );
    if let Some(push) = &result.push {
        let field = |k: &str| match push.get(k) {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(v) => v.to_string(),
            None => "-".to_owned(),
        };
        let _ = writeln!(
            out,
            "  push          {}  totalSent {}  totalAccepted {}  totalUnsubscribed {}  totalFailed {}",
            field("status"),
            field("totalSent"),
            field("totalAccepted"),
            field("totalUnsubscribed"),
            field("totalFailed")
        );
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "  {:<12} {:>8} {:>9} {:>10} {:>7} {:>11}  exit",
        "process", "pid", "cpu s", "µs/msg", "cores", "peak RSS"
    );
    for p in &result.processes {
        let rss = p.peak_rss_kb.map_or_else(
            || "-".to_owned(),
            |kb| format!("{:.1} MiB", kb as f64 / 1024.0),
        );
        let exit = p.exit.map_or_else(String::new, |e| e.to_string());
        let _ = writeln!(
            out,
            "  {:<12} {:>8} {:>9.2} {:>10.1} {:>7.2} {:>11}  {}",
            p.name, p.pid, p.cpu_s, p.cpu_us_per_msg, p.cores, rss, exit
        );
    }
    let senders: Vec<_> = result
        .processes
        .iter()
        .filter(|p| p.name.starts_with("sender-"))
        .collect();
    if senders.len() > 1 {
        let cpu_s: f64 = senders.iter().map(|p| p.cpu_s).sum();
        let _ = writeln!(
            out,
            "  {:<12} {:>8} {:>9.2} {:>10.1} {:>7.2}",
            "all senders",
            "",
            cpu_s,
            senders.iter().map(|p| p.cpu_us_per_msg).sum::<f64>(),
            senders.iter().map(|p| p.cores).sum::<f64>(),
        );
    }
    for warning in &result.warnings {
        let _ = writeln!(out, "\n  WARNING: {warning}");
    }
    if !result.cleanup_problems.is_empty() {
        let _ = writeln!(out, "\n  clean-up: {}", result.cleanup_problems.join("; "));
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "  result: {}", json.display());
    let _ = writeln!(out, "  chart:  {}", svg.display());
    out
}

fn seeding_line(result: &BenchResult) -> String {
    let seeding = &result.seeding;
    if seeding.reused {
        return format!(
            "reused the existing audience (checked in {:.1} s)",
            seeding.check_s
        );
    }
    let or_dash =
        |v: Option<f64>, unit: &str| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.1}{unit}"));
    format!(
        "{} wall, {}/s, seed peak RSS {}, seed CPU {}, MongoDB server CPU {}",
        or_dash(seeding.wall_s, " s"),
        seeding
            .rate_per_s
            .map_or_else(|| "-".to_owned(), |r| thousands(r.round() as u64)),
        or_dash(seeding.peak_rss_kb.map(|kb| kb as f64 / 1024.0), " MiB"),
        or_dash(seeding.cpu_s, " s"),
        or_dash(seeding.mongo_server_cpu_s, " s"),
    )
}

/// `1234567` → `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }
}
