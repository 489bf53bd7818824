//! The run: raise the open-file limit, open the connections, measure the gateway at rest,
//! publish, wait for the deliveries, measure again, report.
//!
//! Phases and what each measures:
//! 1. connect — N tasks, `--connect-concurrency` handshakes at a time, until every connection
//!    is subscribed or has failed (bounded by `--connect-timeout`). The gateway's RSS is read
//!    before the first connection and `--rss-pause` after the last one: the difference divided
//!    by the connections is its memory per connection. Its CPU over the phase is reported too.
//! 2. deliver — `--messages` rounds to every channel at `--rate`; ends when every subscribed
//!    connection has every message, or nothing arrived for `--settle` after the last publish.
//!    Gateway CPU over this phase divided by the messages delivered is its CPU per delivered
//!    message. It includes what the gateway does anyway (heartbeats, reading Kafka, the
//!    history recorder), so at a low delivery rate it overstates the cost of a delivery: use a
//!    run of many deliveries per second for that figure. rtbench's own CPU is shown next to
//!    it: both share the machine's cores, so a slow client shows up as latency.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use pushservice_bench::procstat;
use tokio::sync::Semaphore;

use crate::config::{PublishVia, Settings, SiteChoice};
use crate::connection::{self, Transport};
use crate::publish::Publisher;
use crate::report::{GatewayFigures, Report};
use crate::stats::{Shared, now_us};
use crate::token::Minter;

/// CPU ticks of a process, or `None` when it cannot be read.
fn cpu_ticks(pid: u32) -> Option<u64> {
    procstat::read_stat(pid).map(|stat| stat.cpu_ticks)
}

/// Current RSS of a process, KiB.
fn rss_kb(pid: u32) -> Option<u64> {
    procstat::read_memory(pid).map(|(_, rss)| rss)
}

/// Runs the benchmark; `Ok(report)` even when deliveries are missing (the report says so).
pub async fn run(settings: Settings) -> anyhow::Result<Report> {
    // Each connection is one descriptor; the producer, MongoDB client and runtime need a few
    // dozen more.
    let open_files = crate::net::raise_open_files(settings.connections as u64 + 64)?;
    let clk_tck = procstat::clock_ticks_per_second();
    let pid = settings.gateway_pid;
    if let Some(pid) = pid
        && cpu_ticks(pid).is_none()
    {
        anyhow::bail!("--gateway-pid {pid}: no such process (cannot read /proc/{pid}/stat)");
    }
    let publisher = Publisher::new(&settings.publish).await?;
    let (site, secret) = match &settings.site {
        SiteChoice::Given { site, secret } => (site.clone(), secret.clone()),
        SiteChoice::Create(mongo) => {
            let (site, secret) = crate::site::create(mongo).await?;
            eprintln!("rtbench: created site {site} with realtime secret {secret}");
            (site, secret)
        }
    };

    let run_id = format!("{:06x}", fastrand::u32(..0x100_0000));
    let channels: Vec<String> = (0..settings.channel_count())
        .map(|n| format!("{}:{run_id}-{n}", settings.channel_prefix))
        .collect();
    let minter = Arc::new(Minter::new(&site, &secret, settings.token_ttl));
    let shared = Arc::new(Shared::default());
    let connecting = Arc::new(Semaphore::new(settings.connect_concurrency));
    eprintln!(
        "rtbench {run_id}: {} connections to {} channel(s) of {} on {} gateway(s), from {} source \
         address(es); open-file limit {open_files}",
        settings.connections,
        channels.len(),
        settings.channel_size,
        settings.gateways.len(),
        settings.sources.len()
    );

    // Phase 1: connect.
    let rss_before = pid.and_then(rss_kb);
    let cpu_before_connect = pid.and_then(cpu_ticks);
    let connect_started = Instant::now();
    let mut sse = 0;
    for i in 0..settings.connections {
        let spec = connection::spec(&settings, &run_id, &channels, i);
        if spec.transport == Transport::Sse {
            sse += 1;
        }
        tokio::spawn(connection::run(
            spec,
            minter.clone(),
            shared.clone(),
            connecting.clone(),
        ));
    }
    let deadline = connect_started + settings.connect_timeout;
    let mut last_print = Instant::now();
    loop {
        let ready = shared.ready.load(Ordering::Relaxed);
        let failed = shared.failed.load(Ordering::Relaxed);
        if ready + failed >= settings.connections || Instant::now() >= deadline {
            break;
        }
        if last_print.elapsed() >= Duration::from_secs(2) {
            eprintln!(
                "  connected {ready}/{}, failed {failed}",
                settings.connections
            );
            last_print = Instant::now();
        }
        let _ = tokio::time::timeout(Duration::from_millis(200), shared.progress.notified()).await;
    }
    let connect_seconds = connect_started.elapsed().as_secs_f64();
    let cpu_after_connect = pid.and_then(cpu_ticks);
    let connected = shared.ready.load(Ordering::Relaxed);
    eprintln!(
        "  connected {connected}/{} in {connect_seconds:.1} s, failed {}",
        settings.connections,
        shared.failed.load(Ordering::Relaxed)
    );
    tokio::time::sleep(settings.rss_pause).await;
    let rss_connected = pid.and_then(rss_kb);

    // Phase 2: publish and deliver.
    let expected = connected as u64 * settings.messages;
    let cpu_before_delivery = pid.and_then(cpu_ticks);
    let self_before = cpu_ticks(std::process::id());
    let delivery_started = Instant::now();
    let publish = publisher.publish_all(
        &site,
        &channels,
        settings.messages,
        settings.publish_interval,
        settings.payload_bytes,
    );
    tokio::pin!(publish);
    let mut summary = None;
    let mut last_count = 0;
    let mut last_change = Instant::now();
    let mut last_print = Instant::now();
    loop {
        tokio::select! {
            done = &mut publish, if summary.is_none() => {
                eprintln!("  published {} ({} failed)", done.published, done.failed);
                summary = Some(done);
                last_change = Instant::now();
            }
            () = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
        let delivered = shared.delivered.load(Ordering::Relaxed);
        if delivered != last_count {
            last_count = delivered;
            last_change = Instant::now();
        }
        if summary.is_some() && (delivered >= expected || last_change.elapsed() >= settings.settle)
        {
            break;
        }
        if last_print.elapsed() >= Duration::from_secs(2) {
            eprintln!("  delivered {delivered}/{expected}");
            last_print = Instant::now();
        }
    }
    let cpu_after_delivery = pid.and_then(cpu_ticks);
    let self_after = cpu_ticks(std::process::id());
    let summary = summary.unwrap_or_default();
    let delivered = shared.delivered.load(Ordering::Relaxed);
    // Publish start to the last delivery: the settle wait is not part of the throughput.
    let delivery_seconds = (shared
        .last_delivery_us
        .load(Ordering::Relaxed)
        .saturating_sub(summary.started_us) as f64
        / 1e6)
        .max(delivery_started.elapsed().as_secs_f64().min(1e-3));
    connecting.close();

    let ticks_to_s = |a: Option<u64>, b: Option<u64>| match (a, b) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a) as f64 / clk_tck as f64),
        _ => None,
    };
    let gateway = pid.map(|pid| {
        let cpu_connect_s = ticks_to_s(cpu_before_connect, cpu_after_connect);
        let cpu_delivery_s = ticks_to_s(cpu_before_delivery, cpu_after_delivery);
        let rss_per_connection_bytes = match (rss_before, rss_connected) {
            (Some(before), Some(after)) if connected > 0 => {
                Some(after.saturating_sub(before) * 1024 / connected as u64)
            }
            _ => None,
        };
        GatewayFigures {
            pid,
            rss_before_kb: rss_before,
            rss_connected_kb: rss_connected,
            rss_per_connection_bytes,
            cpu_connect_s,
            cpu_us_per_connection: cpu_connect_s
                .filter(|_| connected > 0)
                .map(|s| s * 1e6 / connected as f64),
            cpu_delivery_s,
            cpu_us_per_delivered: cpu_delivery_s
                .filter(|_| delivered > 0)
                .map(|s| s * 1e6 / delivered as f64),
        }
    });
    Ok(Report {
        run_id,
        site: site.clone(),
        gateways: settings
            .gateways
            .iter()
            .map(|g| g.authority.clone())
            .collect(),
        connections: settings.connections,
        sse_connections: sse,
        ws_connections: settings.connections - sse,
        channels: channels.len(),
        channel_size: settings.channel_size,
        messages_per_channel: settings.messages,
        publish_rate: if settings.publish_interval.is_zero() {
            0.0
        } else {
            1.0 / settings.publish_interval.as_secs_f64()
        },
        payload_bytes: settings.payload_bytes,
        publish_via: match settings.publish {
            PublishVia::Kafka { .. } => "kafka",
            PublishVia::Pushapi { .. } => "pushapi",
        },
        source_addresses: settings.sources.len(),
        connected,
        failed: shared.failed.load(Ordering::Relaxed),
        dropped: shared.dropped.load(Ordering::Relaxed),
        connect_seconds,
        publish: summary,
        expected_deliveries: expected,
        delivered,
        out_of_order: shared.out_of_order.load(Ordering::Relaxed),
        untimed: shared.untimed.load(Ordering::Relaxed),
        latency_us: shared.latency.percentiles(),
        delivery_seconds,
        delivered_per_second: delivered as f64 / delivery_seconds.max(1e-6),
        gateway,
        rtbench_cpu_delivery_s: ticks_to_s(self_before, self_after),
        reasons: shared.reasons(),
        finished_us: now_us(),
        machine: procstat::Machine::read(clk_tck),
    })
}
