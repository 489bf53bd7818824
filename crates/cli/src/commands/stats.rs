//! `pushctl stats [--window-mins N] [--json] [--watch SECS]`: the fleet at a glance.
//!
//! What is read and how it is bounded is [`pushservice_control::stats`]; this module loads the
//! consumer group names the way the daemons do (their own flags, from the environment) and
//! prints tables or JSON.

use std::fmt::Write as _;
use std::io::IsTerminal as _;
use std::time::Duration;

use pushservice_control::stats::{
    FleetStats, GroupSpec, PushProgress, StatsQuery, collect, fleet_groups,
};
use pushservice_store::Store;

use crate::cli::StatsArgs;
use crate::error::CommandError;

/// Runs `pushctl stats`.
pub async fn run(args: StatsArgs) -> Result<(), CommandError> {
    let kafka = args.kafka.kafka.settings()?;
    let topics = args.kafka.topics.settings()?;
    let query = StatsQuery {
        window: Duration::from_secs(args.window_mins * 60),
        max_records: usize::try_from(args.max_records).unwrap_or(usize::MAX),
        groups: groups(&topics)?,
    };
    let store = Store::connect(&args.mongo.settings()?).await?;
    let result = async {
        loop {
            let stats = collect(&store, &kafka, &topics, &query).await?;
            let output = if args.json && args.watch.is_some() {
                // One line per refresh, for scripts that follow it.
                format!("{}\n", to_json(&stats, &query))
            } else if args.json {
                format!("{:#}\n", to_json(&stats, &query))
            } else {
                to_text(&stats, &query)
            };
            let Some(every) = args.watch else {
                print!("{output}");
                return Ok(());
            };
            if args.json {
                print!("{output}");
            } else if std::io::stdout().is_terminal() {
                // Clear the screen and go home: one view that refreshes in place.
                print!("\x1b[2J\x1b[H{output}");
            } else {
                println!("{output}");
            }
            // Shown now, not when the buffer fills (stdout is block-buffered into a pipe).
            let _ = std::io::Write::flush(&mut std::io::stdout());
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(every)) => {}
                _ = tokio::signal::ctrl_c() => return Ok(()),
            }
        }
    }
    .await;
    store.close().await;
    result
}

/// The fleet's consumer groups, named by the daemons' own settings as they would read them.
fn groups(topics: &pushservice_config::Topics) -> Result<Vec<GroupSpec>, CommandError> {
    fn load<A: clap::Parser>(daemon: &str) -> Result<A, CommandError> {
        A::try_parse_from([daemon]).map_err(|e| {
            let message = e.to_string();
            let first = message.lines().next().unwrap_or_default().trim();
            CommandError::InvalidInput(format!(
                "the {daemon} settings in the environment do not load ({first}); \
                 `pushctl config check` lists every problem"
            ))
        })
    }
    let parser: pushservice_parser::ParserArgs = load("parser")?;
    let sender: pushservice_sender::SenderArgs = load("sender")?;
    let gateway: pushservice_gateway::GatewayArgs = load("gateway")?;
    Ok(fleet_groups(
        topics,
        parser.parser_group.trim(),
        sender.group.trim(),
        sender.recorder_group.trim(),
        gateway.history_group.trim(),
    ))
}

/// `1234567` as `1,234,567`.
fn thousands(n: impl Into<i128>) -> String {
    let n: i128 = n.into();
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

/// Seconds as `1h02m`, `3m05s` or `12s`.
fn duration(secs: f64) -> String {
    let secs = secs.round().max(0.0) as u64;
    match secs {
        s if s >= 3_600 => format!("{}h{:02}m", s / 3_600, s % 3_600 / 60),
        s if s >= 60 => format!("{}m{:02}s", s / 60, s % 60),
        s => format!("{s}s"),
    }
}

/// Columns padded to their widest cell; columns from `numbers_from` on aligned right.
fn table(headers: &[&str], rows: &[Vec<String>], numbers_from: usize) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(width) = widths.get_mut(i) {
                *width = (*width).max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let mut text = String::from(" ");
        for (i, cell) in cells.iter().enumerate() {
            let width = widths.get(i).copied().unwrap_or(0);
            if i >= numbers_from {
                let _ = write!(text, " {cell:>width$}");
            } else {
                let _ = write!(text, " {cell:<width$}");
            }
        }
        format!("{}\n", text.trim_end())
    };
    let mut text = line(headers.to_vec());
    for row in rows {
        text += &line(row.iter().map(String::as_str).collect());
    }
    text
}

fn rfc3339(ms: i64) -> String {
    bson::DateTime::from_millis(ms)
        .try_to_rfc3339_string()
        .unwrap_or_else(|_| format!("{ms} ms"))
}

fn eta(progress: &PushProgress) -> String {
    let base = match progress.eta_secs {
        Some(secs) => duration(secs),
        None if progress.outcomes >= progress.fanned_out => "-".to_owned(),
        None => "?".to_owned(),
    };
    if progress.fanning_out() {
        format!("{base} (fan-out running)")
    } else {
        base
    }
}

/// The tables.
pub fn to_text(stats: &FleetStats, query: &StatsQuery) -> String {
    let minutes = query.window.as_secs() / 60;
    let mut text = format!("pushservice fleet at {}\n\n", rfc3339(stats.at_ms));

    text += "PUSHES IN PROGRESS\n";
    if stats.pushes.is_empty() {
        text += "  none\n";
    } else {
        let rows: Vec<Vec<String>> = stats
            .pushes
            .iter()
            .map(|p| {
                vec![
                    p.push.id.to_hex(),
                    p.push.site_id.to_hex(),
                    p.push.status.to_string(),
                    thousands(p.fanned_out),
                    thousands(p.outcomes),
                    thousands(p.push.total_accepted),
                    thousands(p.push.total_unsubscribed),
                    thousands(p.push.total_failed),
                    p.rate_per_sec.map_or("-".into(), |r| format!("{r:.0}")),
                    eta(p),
                ]
            })
            .collect();
        text += &table(
            &[
                "push",
                "site",
                "status",
                "fanned out",
                "outcomes",
                "accepted",
                "unsubscribed",
                "failed",
                "per sec",
                "ETA",
            ],
            &rows,
            3,
        );
    }

    text += "\nCONSUMER LAG (high watermark - committed offset)\n";
    let rows: Vec<Vec<String>> = stats
        .lag
        .iter()
        .map(|row| {
            let group = format!("{} ({})", row.spec.group, row.spec.role);
            match &row.lag {
                Ok(lag) => vec![
                    group,
                    row.topic.clone(),
                    lag.partitions.len().to_string(),
                    if lag.never_committed() {
                        "never".to_owned()
                    } else {
                        lag.committed_partitions().to_string()
                    },
                    thousands(lag.total()),
                    thousands(lag.max_partition_lag()),
                ],
                Err(e) => vec![
                    group,
                    row.topic.clone(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    format!("({e})"),
                ],
            }
        })
        .collect();
    let lag_table = table(
        &[
            "group (role)",
            "topic",
            "partitions",
            "committed",
            "lag",
            "max/partition",
        ],
        &rows,
        2,
    );
    text += &lag_table;
    text += "  (topics written in transactions - retries, outcomes - keep 1 per partition at rest: \
             the commit marker)\n";

    let outcomes = &stats.outcomes;
    let _ = writeln!(
        text,
        "\nOUTCOMES, last {minutes} min ({}: {} records read{})",
        outcomes.topic,
        thousands(outcomes.records_read),
        if outcomes.capped {
            format!(
                "; CAPPED at --max-records {}: only the newest of each partition, of {} in \
                 the window",
                thousands(u64::try_from(query.max_records).unwrap_or(u64::MAX)),
                thousands(outcomes.offsets_in_window)
            )
        } else {
            String::new()
        }
    );
    if outcomes.by_platform.is_empty() {
        text += "  none\n";
    } else {
        let mut rows: Vec<Vec<String>> = outcomes
            .by_platform
            .iter()
            .map(|(platform, c)| {
                vec![
                    platform.clone(),
                    thousands(c.accepted),
                    thousands(c.gone),
                    thousands(c.failed),
                    thousands(c.canceled),
                    thousands(c.total()),
                ]
            })
            .collect();
        let total = outcomes.total();
        rows.push(vec![
            "all".into(),
            thousands(total.accepted),
            thousands(total.gone),
            thousands(total.failed),
            thousands(total.canceled),
            thousands(total.total()),
        ]);
        text += &table(
            &[
                "platform", "accepted", "gone", "failed", "canceled", "total",
            ],
            &rows,
            1,
        );
    }
    if outcomes.unreadable > 0 {
        let _ = writeln!(
            text,
            "  ({} records were not outcome records)",
            thousands(outcomes.unreadable)
        );
    }
    if !outcomes.failure_reasons.is_empty() {
        text += "failures by reason:\n";
        let mut reasons: Vec<(&(String, String), &u64)> = outcomes.failure_reasons.iter().collect();
        reasons.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let rows: Vec<Vec<String>> = reasons
            .into_iter()
            .map(|((platform, reason), n)| vec![thousands(*n), platform.clone(), reason.clone()])
            .collect();
        text += &table(&["count", "platform", "reason"], &rows, 9);
    }

    let dead = &stats.dead_letters;
    let _ = writeln!(
        text,
        "\nDEAD LETTERS ({}: {} retained{})",
        dead.topic,
        thousands(dead.retained),
        if dead.capped {
            format!(
                "; reasons of the newest {} read (CAPPED at --max-records)",
                thousands(dead.stats.total)
            )
        } else {
            String::new()
        }
    );
    if dead.stats.by_reason.is_empty() {
        text += "  none\n";
    } else {
        let mut reasons: Vec<(&String, &u64)> = dead.stats.by_reason.iter().collect();
        reasons.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let rows: Vec<Vec<String>> = reasons
            .into_iter()
            .map(|(reason, n)| vec![thousands(*n), reason.clone()])
            .collect();
        text += &table(&["count", "reason"], &rows, 9);
        if let Some(newest) = dead.stats.newest_failed_at {
            let _ = writeln!(
                text,
                "  newest failure {} (`pushctl dlq stats` for more, `pushctl dlq replay` to retry)",
                rfc3339(i64::try_from(newest).unwrap_or(i64::MAX))
            );
        }
    }
    text
}

/// The JSON `--json` prints.
pub fn to_json(stats: &FleetStats, query: &StatsQuery) -> serde_json::Value {
    use serde_json::json;
    let pushes: Vec<_> = stats
        .pushes
        .iter()
        .map(|p| {
            json!({
                "pushId": p.push.id.to_hex(),
                "siteId": p.push.site_id.to_hex(),
                "title": p.push.title,
                "status": p.push.status,
                "fannedOut": p.fanned_out,
                "totalSent": p.push.total_sent,
                "outcomes": p.outcomes,
                "accepted": p.push.total_accepted,
                "unsubscribed": p.push.total_unsubscribed,
                "failed": p.push.total_failed,
                "canceled": p.push.total_canceled,
                "fanningOut": p.fanning_out(),
                "ratePerSec": p.rate_per_sec,
                "etaSecs": p.eta_secs,
            })
        })
        .collect();
    let lag: Vec<_> = stats
        .lag
        .iter()
        .map(|row| {
            let mut value = json!({
                "group": row.spec.group,
                "role": row.spec.role,
                "setting": row.spec.setting,
                "topic": row.topic,
            });
            match &row.lag {
                Ok(lag) => {
                    value["partitions"] = json!(lag.partitions.len());
                    value["committedPartitions"] = json!(lag.committed_partitions());
                    value["lag"] = json!(lag.total());
                    value["maxPartitionLag"] = json!(lag.max_partition_lag());
                }
                Err(e) => value["error"] = json!(e.to_string()),
            }
            value
        })
        .collect();
    let outcomes = &stats.outcomes;
    let counts = |c: &pushservice_control::stats::ResultCounts| {
        json!({
            "accepted": c.accepted,
            "gone": c.gone,
            "failed": c.failed,
            "canceled": c.canceled,
            "total": c.total(),
        })
    };
    let by_platform: serde_json::Map<String, serde_json::Value> = outcomes
        .by_platform
        .iter()
        .map(|(platform, c)| (platform.clone(), counts(c)))
        .collect();
    let failures: Vec<_> = outcomes
        .failure_reasons
        .iter()
        .map(|((platform, reason), n)| json!({"platform": platform, "reason": reason, "count": n}))
        .collect();
    let dead = &stats.dead_letters;
    json!({
        "at": stats.at_ms,
        "pushes": pushes,
        "lag": lag,
        "outcomes": {
            "topic": outcomes.topic,
            "windowMins": query.window.as_secs() / 60,
            "since": outcomes.since_ms,
            "recordsRead": outcomes.records_read,
            "offsetsInWindow": outcomes.offsets_in_window,
            "capped": outcomes.capped,
            "maxRecords": query.max_records,
            "unreadable": outcomes.unreadable,
            "byPlatform": by_platform,
            "total": counts(&outcomes.total()),
            "failures": failures,
        },
        "deadLetters": {
            "topic": dead.topic,
            "retained": dead.retained,
            "read": dead.stats.total,
            "capped": dead.capped,
            "byReason": dead.stats.by_reason,
            "newestFailedAt": dead.stats.newest_failed_at,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_durations_read_well() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(thousands(-1_000), "-1,000");
        assert_eq!(duration(12.4), "12s");
        assert_eq!(duration(185.0), "3m05s");
        assert_eq!(duration(3_720.0), "1h02m");
    }

    #[test]
    fn tables_align() {
        let text = table(
            &["name", "n"],
            &[
                vec!["a".into(), "1".into()],
                vec!["bbb".into(), "1,000".into()],
            ],
            1,
        );
        assert_eq!(text, "  name     n\n  a        1\n  bbb  1,000\n");
    }
}
