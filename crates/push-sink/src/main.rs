//! `push-sink`: run the push-service simulator as a process, for load tests of a real sender
//! fleet and for local development.
//!
//! Thin by design: flags and environment (a `.env` file is read first) are parsed into a
//! [`SinkConfig`] (loading trusted APNs keys and service accounts from their files; a file that
//! cannot be loaded exits 2 naming it), the sink starts, an optional one-line stats log runs every few seconds on
//! stderr, and on Ctrl-C or SIGTERM the final stats go to stdout as JSON.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use pushservice_push_sink::{
    ApnsKey, Behaviour, FcmAccount, KindLatency, Latency, Protocol, Sink, SinkConfig, Stats,
    StreamRule, Streams, Verify,
};

/// A push-service simulator: answers Web Push (`/wp/<id>`), APNs (`/3/device/<token>`) and FCM
/// HTTP v1 (`/v1/projects/<project>/messages:send`) requests as those services would (or with
/// planned failures), issues FCM access tokens at `/token`, counts everything, and optionally
/// verifies: VAPID and decryption with seeded subscriber keys, APNs provider tokens against
/// trusted `.p8` keys, FCM access tokens and token assertions against trusted service accounts.
///
/// Control endpoints (not counted as pushes): `GET /__sink/stats` (counters as JSON, with
/// `outage` and `outage_answered`), `POST /__sink/reset` (zero them), `POST /__sink/outage`
/// with `{"seconds": 60, "status": 503, "retryAfter": 5, "kind": "webpush|apns|fcm"}` (every
/// push request, or those of one kind, answered that status, default 503, with `Retry-After`
/// when given, until the time is over), `GET /__sink/outage`, `DELETE /__sink/outage` (end it
/// now).
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
    /// Delay before every push answer, in milliseconds: `0` (none), a fixed delay such as
    /// `5000` (a slow push service), or a uniform random range such as `50-150` (a realistic
    /// one). Concurrent requests wait side by side.
    /// `lognormal:80/400/2000` is long-tailed (median 80, 99th percentile 400, never over
    /// 2000), as real push services answer.
    #[arg(long, env = "PUSH_SINK_LATENCY_MS", default_value = "0")]
    latency_ms: Latency,
    /// Delay for Web Push answers only (same forms as `--latency-ms`, which it overrides).
    #[arg(long, env = "PUSH_SINK_WEBPUSH_LATENCY_MS")]
    webpush_latency_ms: Option<Latency>,
    /// Delay for APNs answers only (overrides `--latency-ms`).
    #[arg(long, env = "PUSH_SINK_APNS_LATENCY_MS")]
    apns_latency_ms: Option<Latency>,
    /// Delay for FCM answers only (overrides `--latency-ms`).
    #[arg(long, env = "PUSH_SINK_FCM_LATENCY_MS")]
    fcm_latency_ms: Option<Latency>,
    /// HTTP/2 concurrent streams a Web Push connection allows: `100` (Google's front ends),
    /// or `<initial>:<after the first success>`.
    #[arg(long, env = "PUSH_SINK_WEBPUSH_STREAMS", default_value = "100")]
    webpush_streams: StreamRule,
    /// HTTP/2 concurrent streams an APNs connection allows: Apple's `1:1000` (one until a
    /// request succeeds, then 1,000).
    #[arg(long, env = "PUSH_SINK_APNS_STREAMS", default_value = "1:1000")]
    apns_streams: StreamRule,
    /// HTTP/2 concurrent streams an FCM connection allows.
    #[arg(long, env = "PUSH_SINK_FCM_STREAMS", default_value = "100")]
    fcm_streams: StreamRule,
    /// Close each HTTP/2 connection gracefully (GOAWAY) after this many push requests, as
    /// Google's front ends do; 0: never.
    #[arg(long, env = "PUSH_SINK_GOAWAY_AFTER_REQUESTS", default_value_t = 0)]
    goaway_after_requests: u64,
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
    /// In verify mode, the Apple team id of the `--apns-key-files` keys.
    #[arg(long, env = "PUSH_SINK_APNS_TEAM_ID")]
    apns_team_id: Option<String>,
    /// In verify mode, APNs signing keys to trust: comma-separated paths of Apple's
    /// `AuthKey_<KEYID>.p8` files (the key id comes from the file name).
    #[arg(long, env = "PUSH_SINK_APNS_KEY_FILES", value_delimiter = ',')]
    apns_key_files: Vec<PathBuf>,
    /// In verify mode, Google service accounts to trust for FCM: comma-separated paths of
    /// service-account JSON files.
    #[arg(long, env = "PUSH_SINK_FCM_SERVICE_ACCOUNTS", value_delimiter = ',')]
    fcm_service_accounts: Vec<PathBuf>,
    /// Log a one-line stats summary every this many seconds (0: never).
    #[arg(long, env = "PUSH_SINK_STATS_INTERVAL_SECS", default_value_t = 0)]
    stats_interval_secs: u64,
    #[command(flatten)]
    log: pushservice_config::LogArgs,
}

impl Cli {
    /// The sink configuration these flags describe, with the key and account files loaded
    /// (in verify mode only); the error names the file and what is wrong with it.
    fn sink_config(&self) -> Result<SinkConfig, String> {
        let verify = match self.verify {
            true => Some(Verify {
                key_seed: self.key_seed.clone().into_bytes(),
                expected_subject: self.expected_subject.clone(),
                apns_keys: self.apns_keys()?,
                fcm_accounts: self
                    .fcm_service_accounts
                    .iter()
                    .map(|path| FcmAccount::from_service_account_file(path))
                    .collect::<Result<_, _>>()?,
            }),
            false => None,
        };
        Ok(SinkConfig {
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
            verify,
            latency: self.latency_ms,
            kind_latency: KindLatency {
                web_push: self.webpush_latency_ms,
                apns: self.apns_latency_ms,
                fcm: self.fcm_latency_ms,
            },
            streams: Streams {
                web_push: self.webpush_streams,
                apns: self.apns_streams,
                fcm: self.fcm_streams,
            },
            goaway_after: (self.goaway_after_requests > 0).then_some(self.goaway_after_requests),
        })
    }

    /// The `--apns-key-files` keys, of team `--apns-team-id`.
    fn apns_keys(&self) -> Result<Vec<ApnsKey>, String> {
        if self.apns_key_files.is_empty() {
            return Ok(Vec::new());
        }
        let team_id = self.apns_team_id.as_deref().ok_or(
            "--apns-key-files needs --apns-team-id (PUSH_SINK_APNS_TEAM_ID), the keys' team",
        )?;
        self.apns_key_files
            .iter()
            .map(|path| ApnsKey::from_p8_file(team_id, path))
            .collect()
    }

    /// Key and account flags that are set but unused because verification is off.
    fn unused_credentials(&self) -> bool {
        let credentials = !self.apns_key_files.is_empty() || !self.fcm_service_accounts.is_empty();
        credentials && !self.verify
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
    let config = match cli.sink_config() {
        Ok(config) => config,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(2);
        }
    };
    if cli.unused_credentials() {
        tracing::warn!(
            "APNs keys and FCM service accounts are only used with --verify; ignoring them"
        );
    }
    let sink = match Sink::start(config).await {
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
        outage_answered = stats.outage_answered,
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
        let config = cli.sink_config().expect("valid config");
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
        assert!(cli.sink_config().expect("valid config").verify.is_none());
    }

    /// A fresh directory under the system temp dir for one test's files.
    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("push-sink-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir
    }

    #[test]
    fn key_and_account_files_are_loaded_in_verify_mode() {
        use aws_lc_rs::rand::SystemRandom;
        use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
        use base64::Engine as _;

        let dir = temp_dir("keys");
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .expect("generates");
        let pem = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            base64::engine::general_purpose::STANDARD.encode(pkcs8.as_ref())
        );
        let key_file = dir.join("AuthKey_ABCDE12345.p8");
        std::fs::write(&key_file, &pem).expect("writes");
        let badly_named = dir.join("key.p8");
        std::fs::write(&badly_named, &pem).expect("writes");
        let not_json = dir.join("account.json");
        std::fs::write(&not_json, "{").expect("writes");
        let key_arg = key_file.display().to_string();

        let config = |args: &[&str]| {
            let mut argv = vec!["push-sink", "--verify"];
            argv.extend_from_slice(args);
            Cli::try_parse_from(argv)
                .expect("valid flags")
                .sink_config()
        };
        let verify = config(&["--apns-team-id", "TEAM123456", "--apns-key-files", &key_arg])
            .expect("loads")
            .verify
            .expect("verify mode");
        assert_eq!(verify.apns_keys.len(), 1);
        assert_eq!(verify.apns_keys[0].key_id, "ABCDE12345");
        assert_eq!(verify.apns_keys[0].team_id, "TEAM123456");

        let err = config(&["--apns-key-files", &key_arg]).expect_err("no team");
        assert!(err.contains("--apns-team-id"), "{err}");
        let two = format!("{key_arg},{}", badly_named.display());
        let err = config(&["--apns-team-id", "TEAM123456", "--apns-key-files", &two])
            .expect_err("bad name");
        assert!(err.contains("key.p8") && err.contains("AuthKey_"), "{err}");
        let err = config(&["--fcm-service-accounts", &not_json.display().to_string()])
            .expect_err("not JSON");
        assert!(err.contains("account.json"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
