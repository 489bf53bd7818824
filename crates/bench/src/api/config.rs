//! `pushbench api` flags, validated into an [`ApiBenchConfig`] with the run's names decided
//! in one place: a database and Kafka topics of its own (`pushbench_api_<stamp>`,
//! `bench-*-<stamp>`), so runs never see each other's subscribers or events.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use clap::ArgAction;
use clap::builder::BoolishValueParser;
use pushservice_config::{KafkaArgs, KafkaSettings};

use crate::clock::utc_stamp;
use crate::config::{all_run_topics, run_topics, with_database};

/// Registrations and tracking events per second through `pushapi`: starts a release `pushapi`
/// on the local services, creates a site (`POST /v1/sites`), registers N browser subscriptions
/// from C concurrent HTTP/1.1 keep-alive connections, checks that registering a sample again
/// answers 200 with the same id, creates and sends a push (to the run's raw-push topic, which
/// no parser reads) and posts M events for registered subscribers (some duplicated on
/// purpose), then waits until the push's totals count exactly the distinct ones. Writes
/// `result.json` and prints a summary.
#[derive(Debug, clap::Args)]
pub struct ApiArgs {
    /// Browser subscriptions registered in phase 1 (`POST /v1/sites/{siteId}/subscribers`).
    #[arg(long, default_value_t = 20_000)]
    pub subscribers: u64,
    /// Tracking events posted in phase 2 (`POST /v1/events`).
    #[arg(long, default_value_t = 50_000)]
    pub events: u64,
    /// Concurrent requests, each worker on its own keep-alive connection.
    #[arg(long, default_value_t = 64)]
    pub concurrency: u32,
    /// Events (per mille) that repeat a (subscriber, type) pair sent before, at least; more
    /// when M exceeds two pairs (delivered, click) per registered subscriber.
    #[arg(long, default_value_t = 100)]
    pub duplicate_per_mille: u32,
    /// Registrations sent again after phase 1 to check idempotency (200, same id).
    #[arg(long, default_value_t = 1_000)]
    pub idempotency_sample: u64,
    /// Directory holding the release binaries `pushapi` and `pushctl`; default: the directory
    /// of this executable.
    #[arg(long, env = "PUSHBENCH_BIN_DIR")]
    pub bin_dir: Option<PathBuf>,
    /// Where the result and pushapi's log go; default `target/bench/<UTC timestamp>-api/`.
    #[arg(long, env = "PUSHBENCH_OUT_DIR")]
    pub out_dir: Option<PathBuf>,
    /// MongoDB server; the run uses a database of its own on it (`pushbench_api_<stamp>`).
    #[arg(
        long = "mongodb-url",
        env = "MONGODB_URL",
        default_value = "mongodb://127.0.0.1:27017",
        hide_env_values = true
    )]
    pub mongodb_url: String,
    /// Keep the run's database afterwards (it is dropped by default).
    #[arg(
        long,
        default_value = "false",
        num_args = 0..=1,
        default_missing_value = "true",
        action = ArgAction::Set,
        value_parser = BoolishValueParser::new()
    )]
    pub keep_database: bool,
    /// pushapi's `API_PUBLIC_RATE_PER_SEC`: all the load comes from one address, so the
    /// per-client limit of the public routes must not be what is measured.
    #[arg(long, default_value_t = 1_000_000)]
    pub public_rate_per_sec: u32,
    /// pushapi's `API_PUBLIC_BURST`.
    #[arg(long, default_value_t = 1_000_000)]
    pub public_burst: u32,
    /// Port of pushapi on 127.0.0.1; 0: a free one.
    #[arg(long, default_value_t = 0)]
    pub api_port: u16,
    /// Give up waiting for the totals after this many seconds (partial result, exit 1).
    #[arg(long, env = "PUSHBENCH_TIMEOUT_SECS", default_value_t = 600)]
    pub timeout_secs: u64,
    /// Interval of the totals poll (`GET /v1/pushes/{pushId}`) in phase 2, milliseconds.
    #[arg(long, default_value_t = 100)]
    pub poll_ms: u64,
    /// Log filter for pushapi (its log goes to the output directory).
    #[arg(long, env = "PUSHBENCH_LOG_LEVEL", default_value = "warn")]
    pub log_level: String,
    /// Kafka (pushapi checks its raw-push topic at start).
    #[command(flatten)]
    pub kafka: KafkaArgs,
}

/// A validated `pushbench api` run.
#[derive(Debug, Clone)]
pub struct ApiBenchConfig {
    /// Registrations.
    pub subscribers: u64,
    /// Events.
    pub events: u64,
    /// Concurrent requests.
    pub concurrency: usize,
    /// Duplicate events, per mille, at least.
    pub duplicate_per_mille: u32,
    /// Registrations repeated.
    pub idempotency_sample: u64,
    /// Where the binaries are.
    pub bin_dir: PathBuf,
    /// Where results go.
    pub out_dir: PathBuf,
    /// `MONGODB_URL` of the run's database.
    pub mongodb_url: String,
    /// Its name.
    pub database: String,
    /// Keep it afterwards.
    pub keep_database: bool,
    /// pushapi's `API_PUBLIC_RATE_PER_SEC`.
    pub public_rate_per_sec: u32,
    /// pushapi's `API_PUBLIC_BURST`.
    pub public_burst: u32,
    /// pushapi's port (0: choose).
    pub api_port: u16,
    /// Deadline of each phase.
    pub timeout: Duration,
    /// Totals poll interval.
    pub poll: Duration,
    /// pushapi's log filter.
    pub log_level: String,
    /// Kafka connection.
    pub kafka: KafkaSettings,
    /// The Kafka flags as given, for the children.
    pub kafka_args: KafkaArgs,
    /// UTC timestamp naming this run.
    pub stamp: String,
}

impl ApiBenchConfig {
    /// The run's topic names (as every mode names them): raw-push, push, dead letters, retry
    /// prefix, outcomes.
    pub fn topics(&self) -> [String; 5] {
        run_topics(&self.stamp)
    }

    /// Every topic `pushctl setup` creates for the run.
    pub fn all_topics(&self) -> Vec<String> {
        all_run_topics(&self.stamp)
    }
}

impl ApiArgs {
    /// Checks the flags and names the run; `exe_dir` is the default `--bin-dir`.
    pub fn settings(&self, exe_dir: Option<PathBuf>) -> anyhow::Result<ApiBenchConfig> {
        anyhow::ensure!(
            (1..=10_000_000).contains(&self.subscribers),
            "--subscribers must be between 1 and 10000000"
        );
        anyhow::ensure!(
            (1..=100_000_000).contains(&self.events),
            "--events must be between 1 and 100000000"
        );
        anyhow::ensure!(
            (1..=4096).contains(&self.concurrency),
            "--concurrency must be between 1 and 4096"
        );
        anyhow::ensure!(
            self.duplicate_per_mille <= 900,
            "--duplicate-per-mille must be at most 900"
        );
        anyhow::ensure!(
            self.idempotency_sample <= self.subscribers,
            "--idempotency-sample must not exceed --subscribers"
        );
        anyhow::ensure!(self.timeout_secs > 0, "--timeout-secs must be at least 1");
        anyhow::ensure!(
            self.public_rate_per_sec > 0 && self.public_burst > 0,
            "--public-rate-per-sec and --public-burst must be at least 1"
        );
        anyhow::ensure!(
            (10..=10_000).contains(&self.poll_ms),
            "--poll-ms must be between 10 and 10000"
        );
        let bin_dir = match (&self.bin_dir, exe_dir) {
            (Some(dir), _) => dir.clone(),
            (None, Some(dir)) => dir,
            (None, None) => anyhow::bail!("cannot tell where pushbench runs from; pass --bin-dir"),
        };
        let stamp = utc_stamp(SystemTime::now());
        let database = format!("pushbench_api_{}", stamp.to_ascii_lowercase());
        let mongodb_url = with_database(&self.mongodb_url, &database)?;
        let out_dir = self
            .out_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("target/bench").join(format!("{stamp}-api")));
        Ok(ApiBenchConfig {
            subscribers: self.subscribers,
            events: self.events,
            concurrency: self.concurrency as usize,
            duplicate_per_mille: self.duplicate_per_mille,
            idempotency_sample: self.idempotency_sample,
            bin_dir,
            out_dir,
            mongodb_url,
            database,
            keep_database: self.keep_database,
            public_rate_per_sec: self.public_rate_per_sec,
            public_burst: self.public_burst,
            api_port: self.api_port,
            timeout: Duration::from_secs(self.timeout_secs),
            poll: Duration::from_millis(self.poll_ms),
            log_level: self.log_level.clone(),
            kafka: self.kafka.settings()?,
            kafka_args: self.kafka.clone(),
            stamp,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{BenchArgs, Mode};
    use clap::Parser as _;
    use std::path::PathBuf;

    fn parse(argv: &[&str]) -> Result<BenchArgs, String> {
        BenchArgs::try_parse_from(argv).map_err(|e| e.to_string())
    }

    #[test]
    fn the_api_mode_is_a_subcommand_with_its_own_names() {
        let args = parse(&[
            "pushbench",
            "api",
            "--subscribers",
            "5000",
            "--events",
            "20000",
            "--concurrency",
            "16",
        ])
        .expect("valid");
        let Some(Mode::Api(api)) = args.mode else {
            panic!("no api mode: {args:?}");
        };
        let config = api
            .settings(Some(PathBuf::from("/opt/bin")))
            .expect("valid settings");
        assert_eq!(
            (config.subscribers, config.events, config.concurrency),
            (5_000, 20_000, 16)
        );
        assert!(
            config.database.starts_with("pushbench_api_2"),
            "{}",
            config.database
        );
        assert!(config.mongodb_url.ends_with(&config.database));
        assert!(config.topics()[0].starts_with("bench-raw-"));
        assert!(config.out_dir.to_string_lossy().ends_with("-api"));
    }

    #[test]
    fn the_push_mode_still_takes_its_flags_without_a_subcommand() {
        let args = parse(&["pushbench", "--subscribers", "1000"]).expect("valid");
        assert!(args.mode.is_none());
        assert_eq!(args.subscribers, 1000);
        // The push mode's flags do not mix with a subcommand.
        assert!(parse(&["pushbench", "--senders", "2", "api"]).is_err());
    }

    #[test]
    fn bad_api_flags_are_refused() {
        let settings = |extra: &[&str]| {
            let mut argv = vec!["pushbench", "api"];
            argv.extend_from_slice(extra);
            match parse(&argv)?.mode {
                Some(Mode::Api(api)) => api
                    .settings(Some(PathBuf::from(".")))
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
                None => Err("no mode".to_owned()),
            }
        };
        assert!(settings(&[]).is_ok());
        assert!(settings(&["--subscribers", "0"]).is_err());
        assert!(settings(&["--concurrency", "0"]).is_err());
        assert!(settings(&["--duplicate-per-mille", "950"]).is_err());
        assert!(settings(&["--subscribers", "10", "--idempotency-sample", "11"]).is_err());
    }
}
