//! What a benchmark run is asked to do: flags and environment, then a validated [`BenchConfig`].
//!
//! Two steps, as everywhere in the workspace: clap parses [`BenchArgs`] (every flag also has
//! an environment key where that is useful), and [`BenchArgs::settings`] checks them and
//! derives the per-run names (database URL, output directory, topics, consumer groups) in one
//! place, so the rest of the benchmark never invents a name of its own.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use crate::clock::utc_stamp;

use clap::ArgAction;
use clap::builder::BoolishValueParser;
use pushservice_config::{KafkaArgs, KafkaSettings};
use pushservice_model::Platform;
use pushservice_push_sink::{Latency, Protocol, StreamRule};

/// End-to-end benchmark of pushservice: seeds (or reuses) N subscribers whose endpoints point at
/// a push-service simulator, starts the simulator, a parser and K senders as processes, sends
/// one push with `pushctl send` and measures until the simulator has accepted every delivery.
/// Writes `result.json` and `throughput.svg` to the output directory.
///
/// `pushbench api` measures the HTTP API instead: subscription registrations and tracking
/// events per second through a `pushapi` process (see `pushbench api --help`).
#[derive(Debug, clap::Parser)]
#[command(name = "pushbench", version, args_conflicts_with_subcommands = true)]
pub struct BenchArgs {
    /// A mode other than the end-to-end push (which runs when none is given).
    #[command(subcommand)]
    pub mode: Option<Mode>,
    /// Subscribers in the audience (one delivery each).
    #[arg(long, env = "PUSHBENCH_SUBSCRIBERS", default_value_t = 1_000_000)]
    pub subscribers: u64,
    /// Sender processes sharing the push topic.
    #[arg(long, env = "PUSHBENCH_SENDERS", default_value_t = 2)]
    pub senders: u32,
    /// Backlog mode: fan the whole push out with no sender running, then start the senders
    /// and measure them draining the backlog (times and CPU count from their start).
    #[arg(
        long,
        env = "PUSHBENCH_BACKLOG",
        default_value = "false",
        num_args = 0..=1,
        default_missing_value = "true",
        action = ArgAction::Set,
        value_parser = BoolishValueParser::new()
    )]
    pub backlog: bool,
    /// Platform of the audience: `web` (Web Push), `ios` (APNs) or `android` (FCM). The site
    /// gets generated APNs and FCM test credentials; the simulator plays Apple or Google.
    #[arg(long, env = "PUSHBENCH_PLATFORM", default_value = "web", value_parser = parse_platform)]
    pub platform: Platform,
    /// Directory holding the release binaries `push-sink`, `pushctl`, `seed`, `parser`,
    /// `sender`; default: the directory of this executable.
    #[arg(long, env = "PUSHBENCH_BIN_DIR")]
    pub bin_dir: Option<PathBuf>,
    /// Where results, logs and the simulator's certificate go; default
    /// `target/bench/<UTC timestamp>/`.
    #[arg(long, env = "PUSHBENCH_OUT_DIR")]
    pub out_dir: Option<PathBuf>,
    /// MongoDB server; its database part is replaced by `--database`.
    #[arg(
        long = "mongodb-url",
        env = "MONGODB_URL",
        default_value = "mongodb://127.0.0.1:27017",
        hide_env_values = true
    )]
    pub mongodb_url: String,
    /// Database holding the benchmark's site, pushes and audience; default `pushbench_<N>`.
    #[arg(long, env = "PUSHBENCH_DATABASE")]
    pub database: Option<String>,
    /// Reuse the audience a previous run seeded in the database when its marker matches (N
    /// subscribers, endpoints at this simulator, same key seed, none unsubscribed since);
    /// otherwise drop the database and seed. Pass false if anything else changed the database.
    #[arg(
        long,
        env = "PUSHBENCH_REUSE",
        default_value = "true",
        action = ArgAction::Set,
        value_parser = BoolishValueParser::new()
    )]
    pub reuse: bool,
    /// Simulator protocol: `tls` (HTTP/2 over TLS, as real push services), `h2c` (cleartext
    /// HTTP/2; senders get SENDER_HTTP2_PRIOR_KNOWLEDGE=true) or `h1`.
    #[arg(long, env = "PUSHBENCH_SINK_PROTOCOL", default_value = "tls")]
    pub sink_protocol: Protocol,
    /// Simulator port on 127.0.0.1.
    #[arg(long, env = "PUSHBENCH_SINK_PORT", default_value_t = 9445)]
    pub sink_port: u16,
    /// Let the simulator verify VAPID and decrypt every payload (costs it CPU); off: it only
    /// counts, so the machine's cores go to the pipeline.
    #[arg(
        long,
        env = "PUSHBENCH_SINK_VERIFY",
        default_value = "false",
        action = ArgAction::Set,
        value_parser = BoolishValueParser::new()
    )]
    pub sink_verify: bool,
    /// How the simulator behaves: `ideal` (answers at once, 1,000 HTTP/2 streams per
    /// connection for every kind, nobody gone or throttled: the simulator of earlier runs) or
    /// `realistic` (answers in 50-150 ms, 100 streams per Web Push and FCM connection, APNs'
    /// one stream until the first success then 1,000, 2% gone, 1% throttled once). The
    /// `--sink-*` flags below override single parts of it.
    #[arg(long, value_enum, default_value_t = Profile::Ideal)]
    pub profile: Profile,
    /// Subscribers (per mille) the simulator answers 410 Gone (profile: 0 / 20).
    #[arg(long)]
    pub sink_gone_per_mille: Option<u32>,
    /// Subscribers (per mille) the simulator answers 429 on the first attempt (profile: 0 /
    /// 10).
    #[arg(long)]
    pub sink_throttle_per_mille: Option<u32>,
    /// Simulator answer delay, milliseconds: `0`, `20`, a range `10-50` or
    /// `lognormal:80/400/2000` (profile: 0 / 50-150).
    #[arg(long, value_parser = parse_latency)]
    pub sink_latency_ms: Option<String>,
    /// HTTP/2 streams per connection the simulator allows for every kind: `100`, or
    /// `1:1000` (one until a request succeeds); profile: 1000 / 100 (APNs 1:1000).
    #[arg(long, value_parser = parse_streams)]
    pub sink_streams: Option<String>,
    /// The simulator closes each connection with a GOAWAY after this many requests, as
    /// Google's front ends do (0: never, the default of both profiles).
    #[arg(long, default_value_t = 0)]
    pub sink_goaway_after: u64,
    /// Give up waiting for the deliveries after this many seconds (partial report, exit 1).
    #[arg(long, env = "PUSHBENCH_TIMEOUT_SECS", default_value_t = 900)]
    pub timeout_secs: u64,
    /// Sampling interval of counters, CPU and memory, milliseconds.
    #[arg(long, env = "PUSHBENCH_SAMPLE_MS", default_value_t = 250)]
    pub sample_ms: u64,
    /// Partitions of the per-run push topic.
    #[arg(long, default_value_t = 200)]
    pub push_partitions: i32,
    /// Seed the subscribers' keys derive from (shared with the simulator for `--sink-verify`).
    #[arg(
        long,
        env = "SEED_KEY_SEED",
        default_value = "pushservice-bench",
        hide_env_values = true
    )]
    pub key_seed: String,
    /// Give each daemon a `METRICS_ADDR` and wait for its `/readyz` too (readiness is
    /// otherwise judged by its consumer group alone).
    #[arg(
        long,
        env = "PUSHBENCH_DAEMON_METRICS",
        default_value = "false",
        action = ArgAction::Set,
        value_parser = BoolishValueParser::new()
    )]
    pub daemon_metrics: bool,
    /// Log filter for the daemons (their logs go to the output directory).
    #[arg(long, env = "PUSHBENCH_LOG_LEVEL", default_value = "warn")]
    pub log_level: String,
    /// Kafka.
    #[command(flatten)]
    pub kafka: KafkaArgs,
}

/// The benchmark's other modes.
#[derive(Debug, clap::Subcommand)]
pub enum Mode {
    /// The HTTP API: N browser registrations (`POST /v1/sites/{siteId}/subscribers`) and M
    /// tracking events (`POST /v1/events`) through a release `pushapi` process, over HTTP/1.1
    /// keep-alive from C concurrent connections; registrations/s, events accepted/s, the time
    /// until the push's totals count them, latency percentiles, pushapi CPU and peak RSS.
    Api(crate::api::ApiArgs),
}

fn parse_latency(text: &str) -> Result<String, String> {
    text.parse::<Latency>().map(|_| text.trim().to_owned())
}

fn parse_streams(text: &str) -> Result<String, String> {
    text.parse::<StreamRule>().map(|rule| rule.to_string())
}

/// The simulator's behaviour as a whole (`--profile`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Profile {
    /// Answers at once, 1,000 streams per connection, no failures.
    Ideal,
    /// Real push services: 50-150 ms, 100 streams (APNs 1 then 1,000), 2% gone, 1% throttled.
    Realistic,
}

impl Profile {
    /// `--profile` as given.
    pub fn name(self) -> &'static str {
        match self {
            Profile::Ideal => "ideal",
            Profile::Realistic => "realistic",
        }
    }
}

/// The simulator's settings a run uses: the profile's, with the `--sink-*` overrides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkBehaviour {
    /// Gone band, per mille.
    pub gone_per_mille: u32,
    /// Throttle band, per mille.
    pub throttle_per_mille: u32,
    /// Answer delay, as the simulator parses it.
    pub latency_ms: String,
    /// Streams per connection of Web Push, APNs and FCM, as the simulator parses them.
    pub streams: [String; 3],
    /// GOAWAY after this many requests per connection (0: never).
    pub goaway_after: u64,
}

impl BenchArgs {
    /// The simulator's settings: `--profile`, then the explicit `--sink-*` flags.
    pub fn sink_behaviour(&self) -> SinkBehaviour {
        let mut behaviour = match self.profile {
            Profile::Ideal => SinkBehaviour {
                gone_per_mille: 0,
                throttle_per_mille: 0,
                latency_ms: "0".to_owned(),
                streams: ["1000".to_owned(), "1000".to_owned(), "1000".to_owned()],
                goaway_after: 0,
            },
            Profile::Realistic => SinkBehaviour {
                gone_per_mille: 20,
                throttle_per_mille: 10,
                latency_ms: "50-150".to_owned(),
                streams: ["100".to_owned(), "1:1000".to_owned(), "100".to_owned()],
                goaway_after: 0,
            },
        };
        if let Some(gone) = self.sink_gone_per_mille {
            behaviour.gone_per_mille = gone;
        }
        if let Some(throttle) = self.sink_throttle_per_mille {
            behaviour.throttle_per_mille = throttle;
        }
        if let Some(latency) = &self.sink_latency_ms {
            behaviour.latency_ms = latency.clone();
        }
        if let Some(streams) = &self.sink_streams {
            behaviour.streams = [streams.clone(), streams.clone(), streams.clone()];
        }
        behaviour.goaway_after = self.sink_goaway_after;
        behaviour
    }
}

/// A validated run description, with every per-run name decided.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// Subscribers.
    pub subscribers: u64,
    /// Platform of the audience.
    pub platform: Platform,
    /// Senders start only once the push is fanned out.
    pub backlog: bool,
    /// Sender processes.
    pub senders: u32,
    /// Where the binaries are.
    pub bin_dir: PathBuf,
    /// Where results go (created).
    pub out_dir: PathBuf,
    /// `MONGODB_URL` of the benchmark database.
    pub mongodb_url: String,
    /// Its database name.
    pub database: String,
    /// Reuse a matching audience.
    pub reuse: bool,
    /// Simulator protocol.
    pub sink_protocol: Protocol,
    /// Simulator port.
    pub sink_port: u16,
    /// Simulator verification.
    pub sink_verify: bool,
    /// `--profile`.
    pub profile: Profile,
    /// The simulator's behaviour (profile and overrides).
    pub sink: SinkBehaviour,
    /// Deadline of the delivery phase.
    pub timeout: Duration,
    /// Sampling interval.
    pub sample: Duration,
    /// Push topic partitions.
    pub push_partitions: i32,
    /// Subscriber key seed.
    pub key_seed: String,
    /// Daemon log filter.
    pub log_level: String,
    /// Serve and poll the daemons' health endpoints.
    pub daemon_metrics: bool,
    /// Kafka connection.
    pub kafka: KafkaSettings,
    /// The Kafka flags as given, re-exported to the child processes.
    pub kafka_args: KafkaArgs,
    /// UTC timestamp naming this run (`20250102T030405Z`).
    pub stamp: String,
}

impl BenchConfig {
    /// Base URL clients use for the simulator (what `push-sink` itself announces for a
    /// loopback listener: `localhost` under TLS because its certificate names it).
    pub fn sink_base_url(&self) -> String {
        match self.sink_protocol {
            Protocol::Tls => format!("https://localhost:{}", self.sink_port),
            other => format!("{}://127.0.0.1:{}", other.scheme(), self.sink_port),
        }
    }

    /// Endpoint base the audience is seeded with: `{base}/wp`, so endpoints are
    /// `{base}/wp/{subscriber id}` as the simulator expects.
    pub fn endpoint_base(&self) -> String {
        format!("{}/wp", self.sink_base_url())
    }

    /// Whether the simulator will answer 404/410 to some subscribers, so that the senders
    /// unsubscribe them (`--sink-gone-per-mille`, or an inherited
    /// `PUSH_SINK_NOT_FOUND_PER_MILLE`).
    pub fn may_unsubscribe(&self) -> bool {
        let not_found = std::env::var("PUSH_SINK_NOT_FOUND_PER_MILLE")
            .ok()
            .and_then(|v| v.trim().parse::<u32>().ok())
            .unwrap_or(0);
        self.sink.gone_per_mille > 0 || not_found > 0
    }

    /// Per-run Kafka topic names: raw-push, push, dead letters, the retry topics' prefix,
    /// outcomes.
    pub fn topics(&self) -> [String; 5] {
        run_topics(&self.stamp)
    }

    /// Every topic a run creates (the retry prefix expanded to its tiers), for clean-up.
    pub fn all_topics(&self) -> Vec<String> {
        all_run_topics(&self.stamp)
    }

    /// Per-run consumer groups: parser, sender, outcome recorder.
    pub fn groups(&self) -> [String; 3] {
        let s = self.stamp.to_ascii_lowercase();
        [
            format!("pushbench-parser-{s}"),
            format!("pushbench-sender-{s}"),
            format!("pushbench-recorder-{s}"),
        ]
    }
}

impl BenchArgs {
    /// Checks the flags and decides the run's names; `exe_dir` is the directory of the running
    /// executable (the default `--bin-dir`).
    pub fn settings(&self, exe_dir: Option<PathBuf>) -> anyhow::Result<BenchConfig> {
        anyhow::ensure!(self.subscribers > 0, "--subscribers must be at least 1");
        anyhow::ensure!(
            (1..=64).contains(&self.senders),
            "--senders must be between 1 and 64"
        );
        anyhow::ensure!(
            (10..=10_000).contains(&self.sample_ms),
            "--sample-ms must be between 10 and 10000"
        );
        anyhow::ensure!(self.timeout_secs > 0, "--timeout-secs must be at least 1");
        let sink = self.sink_behaviour();
        anyhow::ensure!(
            sink.gone_per_mille + sink.throttle_per_mille <= 1000,
            "--sink-gone-per-mille plus --sink-throttle-per-mille must not exceed 1000"
        );
        anyhow::ensure!(
            (1..=10_000).contains(&self.push_partitions),
            "--push-partitions must be between 1 and 10000"
        );
        let bin_dir = match (&self.bin_dir, exe_dir) {
            (Some(dir), _) => dir.clone(),
            (None, Some(dir)) => dir,
            (None, None) => anyhow::bail!("cannot tell where pushbench runs from; pass --bin-dir"),
        };
        let stamp = utc_stamp(SystemTime::now());
        let database = match (&self.database, self.platform) {
            (Some(name), _) => name.trim().to_owned(),
            (None, Platform::Web) => format!("pushbench_{}", self.subscribers),
            (None, platform) => {
                format!("pushbench_{}_{}", platform_name(platform), self.subscribers)
            }
        };
        anyhow::ensure!(
            !database.is_empty()
                && database.len() <= 63
                && database
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'),
            "--database {database:?}: use 1-63 of a-z A-Z 0-9 _ -"
        );
        let mongodb_url = with_database(&self.mongodb_url, &database)?;
        let out_dir = self
            .out_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("target/bench").join(&stamp));
        Ok(BenchConfig {
            subscribers: self.subscribers,
            platform: self.platform,
            backlog: self.backlog,
            senders: self.senders,
            bin_dir,
            out_dir,
            mongodb_url,
            database,
            reuse: self.reuse,
            sink_protocol: self.sink_protocol,
            sink_port: self.sink_port,
            sink_verify: self.sink_verify,
            profile: self.profile,
            sink,
            timeout: Duration::from_secs(self.timeout_secs),
            sample: Duration::from_millis(self.sample_ms),
            push_partitions: self.push_partitions,
            key_seed: self.key_seed.clone(),
            log_level: self.log_level.clone(),
            daemon_metrics: self.daemon_metrics,
            kafka: self.kafka.settings()?,
            kafka_args: self.kafka.clone(),
            stamp,
        })
    }
}

/// The Kafka topic names of the run named `stamp`: raw-push, push, dead letters, the retry
/// topics' prefix, outcomes. Every mode names its topics this way.
pub fn run_topics(stamp: &str) -> [String; 5] {
    let s = stamp.to_ascii_lowercase();
    [
        format!("bench-raw-{s}"),
        format!("bench-push-{s}"),
        format!("bench-dlq-{s}"),
        format!("bench-retry-{s}"),
        format!("bench-outcomes-{s}"),
    ]
}

/// Every topic of the run named `stamp` (the retry prefix expanded to its tiers), for
/// clean-up.
pub fn all_run_topics(stamp: &str) -> Vec<String> {
    let [raw, push, dlq, retry, outcomes] = run_topics(stamp);
    let mut all = vec![raw, push, dlq, outcomes];
    all.extend(
        pushservice_config::RETRY_TIERS
            .iter()
            .map(|(suffix, _)| format!("{retry}-{suffix}")),
    );
    all
}

/// `web`, `ios` or `android`.
fn parse_platform(value: &str) -> Result<Platform, String> {
    match value.trim().to_ascii_lowercase().as_str() {
        "web" => Ok(Platform::Web),
        "ios" | "apns" => Ok(Platform::Ios),
        "android" | "fcm" => Ok(Platform::Android),
        other => Err(format!(
            "unknown platform {other:?}: use web, ios or android"
        )),
    }
}

/// The name `seed subscribers --platform` takes.
pub fn platform_name(platform: Platform) -> &'static str {
    match platform {
        Platform::Web => "web",
        Platform::Ios => "ios",
        Platform::Android => "android",
    }
}

/// `url` with its database path replaced by `database`, options kept:
/// `mongodb://u:p@h1,h2/old?x=1` → `mongodb://u:p@h1,h2/new?x=1`.
pub fn with_database(url: &str, database: &str) -> anyhow::Result<String> {
    let url = url.trim();
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        anyhow::bail!("MONGODB_URL is not a mongodb:// connection string");
    };
    anyhow::ensure!(
        url.starts_with("mongodb://") || url.starts_with("mongodb+srv://"),
        "MONGODB_URL is not a mongodb:// connection string"
    );
    let rest = &url[scheme_end..];
    let hosts_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (hosts, tail) = rest.split_at(hosts_end);
    let options = tail.find('?').map_or("", |i| &tail[i..]);
    Ok(format!("{}{hosts}/{database}{options}", &url[..scheme_end]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    #[test]
    fn database_replaces_the_path_and_keeps_options() {
        let cases = [
            ("mongodb://127.0.0.1:27017", "mongodb://127.0.0.1:27017/b"),
            ("mongodb://127.0.0.1:27017/", "mongodb://127.0.0.1:27017/b"),
            ("mongodb://h/pushservice", "mongodb://h/b"),
            (
                "mongodb://u:p@h1,h2/old?x=1&y=2",
                "mongodb://u:p@h1,h2/b?x=1&y=2",
            ),
            ("mongodb://h?x=1", "mongodb://h/b?x=1"),
        ];
        for (url, expected) in cases {
            assert_eq!(with_database(url, "b").expect("valid"), expected, "{url}");
        }
        assert!(with_database("postgres://h/db", "b").is_err());
    }

    #[test]
    fn defaults_name_the_run() {
        let args =
            BenchArgs::try_parse_from(["pushbench", "--subscribers", "1000"]).expect("valid flags");
        let config = args
            .settings(Some(PathBuf::from("/opt/bin")))
            .expect("valid settings");
        assert_eq!(config.database, "pushbench_1000");
        assert!(
            config.mongodb_url.ends_with("/pushbench_1000"),
            "{}",
            config.mongodb_url
        );
        assert_eq!(config.bin_dir, PathBuf::from("/opt/bin"));
        assert_eq!(config.endpoint_base(), "https://localhost:9445/wp");
        let [raw, push, dlq, _, _] = config.topics();
        assert!(
            raw.starts_with("bench-raw-") && push.starts_with("bench-push-"),
            "{raw} {push}"
        );
        assert!(dlq.starts_with("bench-dlq-"));
        assert!(config.out_dir.starts_with("target/bench"));
    }

    #[test]
    fn bad_flags_are_refused() {
        let parse = |extra: &[&str]| {
            let mut argv = vec!["pushbench"];
            argv.extend_from_slice(extra);
            BenchArgs::try_parse_from(argv)
                .map_err(|e| e.to_string())
                .and_then(|a| {
                    a.settings(Some(PathBuf::from(".")))
                        .map_err(|e| e.to_string())
                })
        };
        assert!(parse(&["--subscribers", "0"]).is_err());
        assert!(parse(&["--senders", "0"]).is_err());
        assert!(parse(&["--sink-protocol", "h3"]).is_err());
        assert!(parse(&["--sink-latency-ms", "fast"]).is_err());
        assert!(parse(&["--database", "a.b"]).is_err());
        assert!(parse(&["--sink-protocol", "h2c"]).is_ok());
        assert!(parse(&["--sink-streams", "0"]).is_err());
        assert!(parse(&["--profile", "slow"]).is_err());
    }

    #[test]
    fn profiles_set_the_simulator_and_flags_override_them() {
        let sink = |extra: &[&str]| {
            let mut argv = vec!["pushbench"];
            argv.extend_from_slice(extra);
            BenchArgs::try_parse_from(argv)
                .expect("valid flags")
                .sink_behaviour()
        };
        let ideal = sink(&[]);
        assert_eq!((ideal.gone_per_mille, ideal.latency_ms.as_str()), (0, "0"));
        assert_eq!(ideal.streams, ["1000", "1000", "1000"]);
        let realistic = sink(&["--profile", "realistic"]);
        assert_eq!(
            (
                realistic.gone_per_mille,
                realistic.throttle_per_mille,
                realistic.latency_ms.as_str()
            ),
            (20, 10, "50-150")
        );
        assert_eq!(realistic.streams, ["100", "1:1000", "100"]);
        let overridden = sink(&[
            "--profile",
            "realistic",
            "--sink-gone-per-mille",
            "0",
            "--sink-streams",
            "250",
        ]);
        assert_eq!(overridden.gone_per_mille, 0);
        assert_eq!(overridden.throttle_per_mille, 10);
        assert_eq!(overridden.streams, ["250", "250", "250"]);
    }
}
