//! The results: a JSON-serializable record and the human table printed from it.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use pushservice_bench::procstat::Machine;

use crate::histogram::Percentiles;
use crate::publish::PublishSummary;

/// Figures about the gateway process, when its pid was given.
#[derive(Debug, Clone, serde::Serialize)]
pub struct GatewayFigures {
    /// Its pid.
    pub pid: u32,
    /// RSS before the first connection, KiB.
    pub rss_before_kb: Option<u64>,
    /// RSS with every connection up, KiB.
    pub rss_connected_kb: Option<u64>,
    /// (connected − before) / connections, bytes.
    pub rss_per_connection_bytes: Option<u64>,
    /// CPU seconds during the connect phase.
    pub cpu_connect_s: Option<f64>,
    /// CPU µs per connection set up.
    pub cpu_us_per_connection: Option<f64>,
    /// CPU seconds from the first publish to the end of the deliveries.
    pub cpu_delivery_s: Option<f64>,
    /// CPU µs per delivered message.
    pub cpu_us_per_delivered: Option<f64>,
}

/// Everything a run measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    /// Random id of the run (in user and channel names).
    pub run_id: String,
    /// The site used.
    pub site: String,
    /// Gateways connected to.
    pub gateways: Vec<String>,
    /// Connections asked for.
    pub connections: usize,
    /// Of which SSE.
    pub sse_connections: usize,
    /// Of which WebSocket.
    pub ws_connections: usize,
    /// Channels.
    pub channels: usize,
    /// Subscribers per channel (the last channel may have fewer).
    pub channel_size: usize,
    /// Messages published to each channel.
    pub messages_per_channel: u64,
    /// Publish rate asked for, messages/s (0: unlimited).
    pub publish_rate: f64,
    /// Filler bytes per message.
    pub payload_bytes: usize,
    /// `kafka` or `pushapi`.
    pub publish_via: &'static str,
    /// Source addresses used.
    pub source_addresses: usize,
    /// Connections subscribed.
    pub connected: usize,
    /// Connections that failed before subscribing.
    pub failed: usize,
    /// Connections ended by the server during the run.
    pub dropped: usize,
    /// Seconds to set up every connection.
    pub connect_seconds: f64,
    /// Publishing outcome.
    pub publish: PublishSummary,
    /// connected × messages per channel.
    pub expected_deliveries: u64,
    /// Messages received.
    pub delivered: u64,
    /// Deliveries whose offset did not increase on their connection (duplicates).
    pub out_of_order: u64,
    /// Deliveries without a readable publish time.
    pub untimed: u64,
    /// Publish-to-receive latency, µs.
    pub latency_us: Percentiles,
    /// First publish to last delivery, seconds.
    pub delivery_seconds: f64,
    /// Delivered messages per second over that time.
    pub delivered_per_second: f64,
    /// Gateway figures.
    pub gateway: Option<GatewayFigures>,
    /// rtbench's own CPU seconds over the delivery phase.
    pub rtbench_cpu_delivery_s: Option<f64>,
    /// Why connections failed or were dropped.
    pub reasons: BTreeMap<String, u64>,
    /// End of the run, µs since the epoch.
    pub finished_us: u64,
    /// The machine.
    pub machine: Machine,
}

impl Report {
    /// Whether every expected message arrived once and nothing failed.
    pub fn complete(&self) -> bool {
        self.failed == 0
            && self.connected == self.connections
            && self.publish.failed == 0
            && self.delivered == self.expected_deliveries
            && self.out_of_order == 0
    }

    /// The human table.
    pub fn table(&self) -> String {
        let ms = |us: u64| format!("{:.1} ms", us as f64 / 1000.0);
        let opt = |value: Option<f64>, unit: &str, digits: usize| match value {
            Some(v) => format!("{v:.digits$} {unit}"),
            None => "n/a".to_owned(),
        };
        let mut out = String::new();
        let mut row = |name: &str, value: String| {
            let _ = writeln!(out, "  {name:<34} {value}");
        };
        row(
            "connections (sse / ws)",
            format!(
                "{} ({} / {}), {} source address(es)",
                self.connections, self.sse_connections, self.ws_connections, self.source_addresses
            ),
        );
        row(
            "channels × subscribers",
            format!("{} × {}", self.channels, self.channel_size),
        );
        row(
            "connected / failed / dropped",
            format!(
                "{} / {} / {} in {:.1} s",
                self.connected, self.failed, self.dropped, self.connect_seconds
            ),
        );
        row(
            "published (via)",
            format!(
                "{} per channel, {} ok, {} failed ({}, {} msg/s asked)",
                self.messages_per_channel,
                self.publish.published,
                self.publish.failed,
                self.publish_via,
                if self.publish_rate == 0.0 {
                    "unlimited".to_owned()
                } else {
                    format!("{:.0}", self.publish_rate)
                }
            ),
        );
        row(
            "delivered / expected",
            format!(
                "{} / {} ({} out of order or twice, {} untimed)",
                self.delivered, self.expected_deliveries, self.out_of_order, self.untimed
            ),
        );
        let l = &self.latency_us;
        row(
            "latency p50 / p90 / p99 / max",
            format!(
                "{} / {} / {} / {}",
                ms(l.p50),
                ms(l.p90),
                ms(l.p99),
                ms(l.max)
            ),
        );
        row(
            "delivered per second",
            format!(
                "{:.0} msg/s over {:.2} s",
                self.delivered_per_second, self.delivery_seconds
            ),
        );
        if let Some(g) = &self.gateway {
            row(
                "gateway RSS before / connected",
                format!(
                    "{} / {}",
                    opt(g.rss_before_kb.map(|kb| kb as f64 / 1024.0), "MiB", 1),
                    opt(g.rss_connected_kb.map(|kb| kb as f64 / 1024.0), "MiB", 1)
                ),
            );
            row(
                "gateway memory per connection",
                opt(
                    g.rss_per_connection_bytes.map(|b| b as f64 / 1024.0),
                    "KiB",
                    1,
                ),
            );
            row(
                "gateway CPU per connection",
                format!(
                    "{} ({} in all)",
                    opt(g.cpu_us_per_connection, "µs", 1),
                    opt(g.cpu_connect_s, "s", 2)
                ),
            );
            row(
                "gateway CPU per delivered message",
                format!(
                    "{} ({} in all)",
                    opt(g.cpu_us_per_delivered, "µs", 2),
                    opt(g.cpu_delivery_s, "s", 2)
                ),
            );
        }
        row(
            "rtbench CPU while delivering",
            opt(self.rtbench_cpu_delivery_s, "s", 2),
        );
        for (reason, count) in &self.reasons {
            row("  connections", format!("{count} × {reason}"));
        }
        for (error, count) in &self.publish.errors {
            row("  publish errors", format!("{count} × {error}"));
        }
        out
    }
}
