//! The run's own processes: the simulator, a parser and K senders, started as an operator
//! would start them, and stopped with SIGTERM the same way.
//!
//! The fleet is a `Vec<Proc>` in a fixed order — simulator, parser, senders — which is also
//! the order of their CPU columns in the samples. The run waits until both consumer groups are
//! stable with every partition assigned (and, with `--daemon-metrics`, until each daemon's
//! `/readyz` on its own free `METRICS_ADDR` answers 200), so the measurement starts with a
//! settled fleet. Stopping goes in
//! the opposite direction of the data: parser and senders first (they finish in-flight work,
//! flush counters and commit), the simulator last.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use pushservice_push_sink::Protocol;

use crate::config::BenchConfig;
use crate::launch::{Launcher, RAW_PUSH_PARTITIONS, log_tail};
use crate::procs::{Exit, Proc};
use crate::seed::MobileKeys;
use crate::services::KafkaAdmin;
use crate::sink::SinkClient;

/// Name of the simulator in reports and logs.
pub const SINK: &str = "push-sink";

/// How long stopped daemons may take before SIGKILL (the sender's own grace is 30 s).
const STOP_GRACE: Duration = Duration::from_secs(45);

/// How long daemons may take to join their groups.
const READY_TIMEOUT: Duration = Duration::from_secs(90);

/// The simulator's certificate in `tls` mode.
pub fn cert_path(config: &BenchConfig) -> PathBuf {
    config.out_dir.join("sink.pem")
}

/// Starts the simulator and returns it with a client once it answers.
pub async fn start_sink(
    config: &BenchConfig,
    launcher: &Launcher,
    mobile_keys: Option<&MobileKeys>,
) -> anyhow::Result<(Proc, SinkClient)> {
    TcpListener::bind(("127.0.0.1", config.sink_port)).with_context(|| {
        format!(
            "port {} is taken (another push-sink?); pass --sink-port",
            config.sink_port
        )
    })?;
    let tls = config.sink_protocol == Protocol::Tls;
    let cert = cert_path(config);
    let _ = std::fs::remove_file(&cert);
    let final_stats = std::fs::File::create(config.out_dir.join("sink-final-stats.json"))
        .context("creating sink-final-stats.json")?;
    let log = std::fs::File::create(launcher.log(SINK)).context("creating push-sink.log")?;
    let mut command = launcher.command(SINK);
    command
        .env(
            "PUSH_SINK_LISTEN",
            format!("127.0.0.1:{}", config.sink_port),
        )
        .env("PUSH_SINK_PROTOCOL", config.sink_protocol.to_string())
        .env("PUSH_SINK_VERIFY", config.sink_verify.to_string())
        .env(
            "PUSH_SINK_GONE_PER_MILLE",
            config.sink.gone_per_mille.to_string(),
        )
        .env(
            "PUSH_SINK_THROTTLE_PER_MILLE",
            config.sink.throttle_per_mille.to_string(),
        )
        .env("PUSH_SINK_LATENCY_MS", &config.sink.latency_ms)
        .env("PUSH_SINK_WEBPUSH_STREAMS", &config.sink.streams[0])
        .env("PUSH_SINK_APNS_STREAMS", &config.sink.streams[1])
        .env("PUSH_SINK_FCM_STREAMS", &config.sink.streams[2])
        .env(
            "PUSH_SINK_GOAWAY_AFTER_REQUESTS",
            config.sink.goaway_after.to_string(),
        )
        .stdin(Stdio::null())
        // On SIGTERM the simulator prints its final counters on stdout.
        .stdout(final_stats)
        .stderr(log);
    if tls {
        command.env("PUSH_SINK_CERT_OUT", &cert);
    }
    // The simulator only reads them to verify; they name the site's keys either way.
    if let Some(keys) = mobile_keys {
        command
            .env("PUSH_SINK_APNS_TEAM_ID", crate::seed::APNS_TEAM)
            .env("PUSH_SINK_APNS_KEY_FILES", &keys.apns_key_file)
            .env("PUSH_SINK_FCM_SERVICE_ACCOUNTS", &keys.fcm_service_account);
    }
    let sink = Proc::spawn_configured(SINK, command)?;
    let pem = if tls {
        let started = Instant::now();
        loop {
            match std::fs::read(&cert) {
                Ok(pem) if !pem.is_empty() => break Some(pem),
                _ if sink.has_ended() => anyhow::bail!(
                    "push-sink exited at start: {}",
                    log_tail(&launcher.log(SINK), 10)
                ),
                _ if started.elapsed() > Duration::from_secs(10) => {
                    anyhow::bail!(
                        "push-sink wrote no certificate to {} in 10 s",
                        cert.display()
                    )
                }
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    } else {
        None
    };
    let client = SinkClient::new(&config.sink_base_url(), pem.as_deref())?;
    client.wait_up(Duration::from_secs(10)).await?;
    Ok((sink, client))
}

/// Which daemons [`start_daemons`] starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Daemons {
    /// The parser and the senders.
    All,
    /// The parser alone (backlog mode, before the fan-out).
    Parser,
    /// The senders alone (backlog mode, after the fan-out).
    Senders,
}

/// Starts `which` daemons, adds them to `fleet`, and waits until they are ready and their
/// consumer groups are settled.
pub async fn start_daemons(
    config: &BenchConfig,
    launcher: &Launcher,
    http: &SinkClient,
    admin: &KafkaAdmin,
    fleet: &mut Vec<Proc>,
    which: Daemons,
) -> anyhow::Result<()> {
    let [parser_group, sender_group, _] = config.groups();
    let mut ready_urls = Vec::new();
    let mut metrics = |command: &mut std::process::Command| -> anyhow::Result<()> {
        // An inherited METRICS_ADDR would be shared by every daemon: never pass it on.
        command.env_remove("METRICS_ADDR");
        if config.daemon_metrics {
            let port = free_port()?;
            command.env("METRICS_ADDR", format!("127.0.0.1:{port}"));
            ready_urls.push(format!("http://127.0.0.1:{port}/readyz"));
        }
        Ok(())
    };
    let (with_parser, with_senders) = match which {
        Daemons::All => (true, true),
        Daemons::Parser => (true, false),
        Daemons::Senders => (false, true),
    };
    if with_parser {
        let mut parser = launcher.command("parser");
        parser.env("PARSER_GROUP", &parser_group);
        metrics(&mut parser)?;
        fleet.push(Proc::spawn("parser", parser, &launcher.log("parser"))?);
    }
    let senders = if with_senders { config.senders } else { 0 };
    for i in 1..=senders {
        let name = format!("sender-{i}");
        let mut sender = launcher.command("sender");
        sender.env("SENDER_GROUP", &sender_group);
        // The simulator plays Apple and Google too.
        let base = config.sink_base_url();
        sender
            .env("SENDER_APNS_URL", &base)
            .env("SENDER_FCM_URL", &base)
            .env("SENDER_FCM_TOKEN_URL", format!("{base}/token"))
            // The simulator listens on loopback, which the endpoint policy refuses otherwise.
            .env("SENDER_ALLOW_PRIVATE_ENDPOINTS", "true");
        metrics(&mut sender)?;
        match config.sink_protocol {
            Protocol::Tls => {
                sender.env("SENDER_EXTRA_CA_FILE", cert_path(config));
            }
            Protocol::H2c => {
                sender.env("SENDER_HTTP2_PRIOR_KNOWLEDGE", "true");
            }
            Protocol::Http1 => {}
        }
        fleet.push(Proc::spawn(&name, sender, &launcher.log(&name))?);
    }

    // Ready means: each daemon's consumer group is stable with every partition assigned (so
    // they are connected and no rebalance is pending), and with --daemon-metrics, /readyz.
    let started = Instant::now();
    // Senders hold the push topic's partitions and those of every retry tier.
    let partitions = usize::try_from(config.push_partitions).unwrap_or(0)
        + pushservice_config::RETRY_TIERS.len() * crate::launch::RETRY_PARTITIONS;
    let mut groups = Vec::new();
    if with_parser {
        groups.push((parser_group, 1, RAW_PUSH_PARTITIONS));
    }
    if with_senders {
        groups.push((
            sender_group,
            config.senders as usize * pushservice_config::SENDER_GROUP_MEMBERS_PER_SENDER,
            partitions,
        ));
    }
    let mut waiting = ready_urls;
    loop {
        if let Some(dead) = fleet.iter().find(|p| p.has_ended()) {
            anyhow::bail!(
                "{} exited at start: {}",
                dead.name,
                log_tail(&launcher.log(&dead.name), 10)
            );
        }
        let mut still_waiting = Vec::new();
        for url in std::mem::take(&mut waiting) {
            if !http.is_ok(&url).await {
                still_waiting.push(url);
            }
        }
        waiting = still_waiting;
        let mut unsettled = Vec::new();
        for (group, members, partitions) in std::mem::take(&mut groups) {
            if !admin.group_settled(&group, members, partitions).await {
                unsettled.push((group, members, partitions));
            }
        }
        groups = unsettled;
        if waiting.is_empty() && groups.is_empty() {
            break;
        }
        if started.elapsed() >= READY_TIMEOUT {
            let mut what = waiting.clone();
            what.extend(groups.iter().map(|(group, members, partitions)| {
                format!("group {group} ({members} members holding {partitions} partitions)")
            }));
            anyhow::bail!(
                "daemons not ready after {READY_TIMEOUT:?}: {}",
                what.join(", ")
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!(
        "{} ready in {:.1} s",
        match which {
            Daemons::All => format!("parser and {senders} senders"),
            Daemons::Parser => "parser".to_owned(),
            Daemons::Senders => format!("{senders} senders"),
        },
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Stops the fleet: SIGTERM to parser and senders together, wait for them, then the
/// simulator. Returns each process's exit, in fleet order.
pub async fn stop(fleet: &mut [Proc]) -> Vec<anyhow::Result<Exit>> {
    let (sink, daemons) = match fleet.split_first_mut() {
        Some((first, rest)) if first.name == SINK => (Some(first), rest),
        _ => (None, fleet),
    };
    for daemon in daemons.iter() {
        daemon.terminate();
    }
    let mut exits = Vec::new();
    for daemon in daemons.iter_mut() {
        exits.push(daemon.wait(STOP_GRACE).await);
    }
    if let Some(sink) = sink {
        exits.insert(0, sink.stop(STOP_GRACE).await);
    }
    exits
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr().context("finding a free port")?.port())
}
