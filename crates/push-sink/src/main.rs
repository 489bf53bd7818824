//! `push-sink`: run the push-service simulator as a process, for load tests of a real sender
//! fleet and for local development.
//!
//! Thin by design: flags and environment (a `.env` file is read first) are parsed into a
//! [`SinkConfig`], the sink starts, an optional one-line stats log runs every few seconds on
//! stderr, and on Ctrl-C or SIGTERM the final stats go to stdout as JSON.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use pushservice_push_sink::{Behaviour, Latency, Protocol, Sink, SinkConfig, Stats, Verify};

/// A push-service simulator: answers Web Push requests with 201 (or planned failures), counts
/// them, and optionally verifies VAPID and decrypts payloads with seeded subscriber keys.
#[derive(Debug, Parser)]
#[command(name = "push-sink", version)]
struct Cli {
    /// Address to listen on.
    #[arg(long, env = "PUSH_SINK_LISTEN", default_value = "127.0.0.1:9090")]
    listen: SocketAddr,
    /// `h1` (HTTP/1.1 only), `h2c` (cleartext HTTP/2 prior knowledge, HTTP/1.1 detected on the
    /// same port) or `tls` (self-signed, HTTP/2 or HTTP/1.1 by ALPN).
    #[arg(long, env = "PUSH_SINK_PROTOCOL", default_value = "h2c")]
    protocol: Protocol,
    /// Write the self-signed certificate (PEM) here in `tls` mode, for clients to trust.
    #[arg(long, env = "PUSH_SINK_CERT_OUT")]
    cert_out: Option<PathBuf>,
    /// Subscribers (per mille) answered 410 Gone, always.
    #[arg(long, env = "PUSH_SINK_GONE_PER_MILLE", default_value_t = 0)]
    gone_per_mille: u32,
    /// Subscribers (per mille) answered 404 Not Found, always.
    #[arg(long, env = "PUSH_SINK_NOT_FOUND_PER_MILLE", default_value_t = 0)]
    not_found_per_mille: u32,
    /// Subscribers (per mille) answered 429 on their first attempt.
    #[arg(long, env = "PUSH_SINK_THROTTLE_PER_MILLE", default_value_t = 0)]
    throttle_per_mille: u32,
    /// `Retry-After` seconds on 429 answers.
    #[arg(long, env = "PUSH_SINK_RETRY_AFTER_SECS", default_value_t = 1)]
    retry_after_secs: u32,
    /// Subscribers (per mille) answered 500 on their first attempt.
    #[arg(long, env = "PUSH_SINK_ERROR_ONCE_PER_MILLE", default_value_t = 0)]
    error_once_per_mille: u32,
    /// Subscribers (per mille) whose first attempt is reset without a response.
    #[arg(long, env = "PUSH_SINK_RESET_PER_MILLE", default_value_t = 0)]
    reset_per_mille: u32,
    /// Answer delay in milliseconds: `0`, `20`, or a uniform range `10-50`.
    #[arg(long, env = "PUSH_SINK_LATENCY_MS", default_value = "0")]
    latency_ms: Latency,
    /// Verify VAPID and headers and decrypt every payload (costs CPU; keeps deliveries).
    #[arg(
        long,
        env = "PUSH_SINK_VERIFY",
        default_value_t = false,
        num_args = 0..=1,
        default_missing_value = "true",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    verify: bool,
    /// Seed the subscribers' keys were derived from (the `seed` command's `SEED_KEY_SEED`).
    #[arg(
        long,
        env = "SEED_KEY_SEED",
        default_value = "pushservice-seed",
        hide_env_values = true
    )]
    key_seed: String,
    /// In verify mode, the VAPID `sub` every request must carry.
    #[arg(long, env = "PUSH_SINK_EXPECTED_SUBJECT")]
    expected_subject: Option<String>,
    /// Log a one-line stats summary every this many seconds (0: never).
    #[arg(long, env = "PUSH_SINK_STATS_INTERVAL_SECS", default_value_t = 0)]
    stats_interval_secs: u64,
    #[command(flatten)]
    log: pushservice_config::LogArgs,
}

impl Cli {
    /// The sink configuration these flags describe.
    fn sink_config(&self) -> SinkConfig {
        SinkConfig {
            listen: self.listen,
            protocol: self.protocol,
            cert_out: self.cert_out.clone(),
            behaviour: Behaviour {
                gone_per_mille: self.gone_per_mille,
                not_found_per_mille: self.not_found_per_mille,
                throttle_per_mille: self.throttle_per_mille,
                retry_after_secs: self.retry_after_secs,
                error_once_per_mille: self.error_once_per_mille,
                reset_per_mille: self.reset_per_mille,
            },
            verify: self.verify.then(|| Verify {
                key_seed: self.key_seed.clone().into_bytes(),
                expected_subject: self.expected_subject.clone(),
            }),
            latency: self.latency_ms,
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    if let Err(message) = pushservice_config::load_dotenv() {
        eprintln!("error: {message}");
        return ExitCode::from(2);
    }
    let cli = Cli::parse();
    if let Err(e) = pushservice_config::init_logging(&cli.log, "info") {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    let sink = match Sink::start(cli.sink_config()).await {
        Ok(sink) => sink,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    let reporter = (cli.stats_interval_secs > 0).then(|| {
        let interval = Duration::from_secs(cli.stats_interval_secs);
        let stats_url = format!("{}/__sink/stats", sink.base_url());
        tracing::info!(%stats_url, "stats endpoint");
        let snapshot = sink.stats_source();
        tokio::spawn(async move {
            let mut previous = Stats::default();
            let mut ticker = tokio::time::interval(interval);
            ticker.tick().await;
            loop {
                ticker.tick().await;
                let stats = snapshot();
                log_stats(&stats, &previous, interval);
                previous = stats;
            }
        })
    });
    if let Err(e) = shutdown_signal().await {
        eprintln!("error: cannot wait for signals: {e}");
    }
    if let Some(reporter) = reporter {
        reporter.abort();
    }
    let stats = sink.finish().await;
    match serde_json::to_string_pretty(&stats) {
        Ok(json) => println!("{json}"),
        Err(e) => eprintln!("error: cannot print stats: {e}"),
    }
    ExitCode::SUCCESS
}

/// One line of stats with the rate since the previous line.
fn log_stats(stats: &Stats, previous: &Stats, interval: Duration) {
    let per_sec = stats.requests.saturating_sub(previous.requests) as f64 / interval.as_secs_f64();
    tracing::info!(
        requests = stats.requests,
        accepted = stats.accepted,
        req_per_sec = per_sec.round() as u64,
        by_status = ?stats.by_status,
        resets = stats.resets,
        verify_failed = stats.verify_failures(),
        distinct = stats.distinct_accepted,
        duplicates = stats.duplicates,
        "push sink stats"
    );
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() -> std::io::Result<()> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result,
        _ = terminate.recv() => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_build_the_sink_config() {
        let cli = Cli::try_parse_from([
            "push-sink",
            "--listen",
            "127.0.0.1:0",
            "--protocol",
            "tls",
            "--gone-per-mille",
            "100",
            "--throttle-per-mille",
            "50",
            "--retry-after-secs",
            "7",
            "--latency-ms",
            "10-50",
            "--verify",
            "--key-seed",
            "s3",
        ])
        .expect("valid flags");
        let config = cli.sink_config();
        assert_eq!(config.protocol, Protocol::Tls);
        assert_eq!(config.behaviour.gone_per_mille, 100);
        assert_eq!(config.behaviour.throttle_per_mille, 50);
        assert_eq!(config.behaviour.retry_after_secs, 7);
        assert_eq!(
            config.latency,
            Latency::Uniform {
                min: Duration::from_millis(10),
                max: Duration::from_millis(50)
            }
        );
        assert_eq!(config.verify.map(|v| v.key_seed), Some(b"s3".to_vec()));
    }

    #[test]
    fn bad_values_are_refused_at_parse_time() {
        assert!(Cli::try_parse_from(["push-sink", "--protocol", "h3"]).is_err());
        assert!(Cli::try_parse_from(["push-sink", "--latency-ms", "fast"]).is_err());
        assert!(Cli::try_parse_from(["push-sink", "--verify", "maybe"]).is_err());
        let cli = Cli::try_parse_from(["push-sink", "--verify", "false"]).expect("valid");
        assert!(cli.sink_config().verify.is_none());
    }
}
