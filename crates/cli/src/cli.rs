//! Flags and subcommands of `pushctl`.

use clap::{Args, Parser, Subcommand};
use pushservice_config::{KafkaArgs, LogArgs, MongoArgs, TopicArgs};

/// Trigger pushes and administer pushservice.
///
/// Settings come from the environment and a `.env` file in the working directory (see
/// `.env.example`); flags override them.
#[derive(Debug, Parser)]
#[command(name = "pushctl", version, propagate_version = true)]
pub struct Cli {
    /// Logging.
    #[command(flatten)]
    pub log: LogArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// `pushctl` subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Trigger a stored push: mark it processing and publish it on the raw-push topic.
    Send(SendArgs),
    /// Cancel a pending or processing push: fan-out stops within a second or two, senders
    /// drop its remaining deliveries (counted as canceled).
    Cancel(StatusArgs),
    /// Show a push's status and counters.
    Status(StatusArgs),
    /// Show a site, or set its APNs and FCM credentials.
    Site(SiteArgs),
    /// Kafka topic administration.
    Topics(TopicsArgs),
    /// Prepare an installation: create the Kafka topics and the MongoDB indexes.
    Setup(SetupArgs),
    /// Print messages of a topic as JSON lines (like `kcat -C`).
    Tail(TailArgs),
    /// Follow a push's progress until every delivery has an outcome.
    Watch(WatchArgs),
    /// Dead letters: deliveries that failed for good (counts, listing, replay).
    Dlq(DlqArgs),
    /// Publish a realtime message to a site's channel (connected clients get it from the
    /// gateways at once).
    Publish(PublishArgs),
    /// Mint a realtime connection token for a user of a site (creates the site's realtime
    /// secret on first use).
    RealtimeToken(RealtimeTokenArgs),
    /// The fleet at a glance: pushes in progress (rate, ETA), consumer lag per group,
    /// outcomes by platform and reason over the last minutes, dead letters by reason.
    Stats(StatsArgs),
    /// Check the configuration as the daemons load it, against Kafka and MongoDB.
    Config(ConfigArgs),
}

/// `pushctl stats`.
///
/// Consumer group names are the daemons' own settings (`PARSER_GROUP`, `SENDER_GROUP`,
/// `SENDER_RECORDER_GROUP`, `GATEWAY_HISTORY_GROUP`), read from the environment and `.env`.
#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Outcomes of the last this many minutes.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=10_080))]
    pub window_mins: u64,
    /// Read at most this many records of the outcome topic (and of the dead-letter topic);
    /// beyond it, the newest of each partition, and the output says so.
    #[arg(long, default_value_t = 200_000, value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    pub max_records: u64,
    /// Print JSON instead of tables.
    #[arg(long)]
    pub json: bool,
    /// Show it again every this many seconds, until interrupted.
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub watch: Option<u64>,
    /// MongoDB settings.
    #[command(flatten)]
    pub mongo: MongoArgs,
    /// Kafka and topic settings.
    #[command(flatten)]
    pub kafka: KafkaTopicArgs,
}

/// `pushctl config`.
#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// What to do with the configuration.
    #[command(subcommand)]
    pub action: ConfigAction,
}

/// `pushctl config` subcommands.
#[derive(Debug, Subcommand)]
pub enum ConfigAction {
    /// Load every daemon's settings from the environment and `.env` exactly as the daemons
    /// do, connect to Kafka and MongoDB, check every topic and its partition count and every
    /// site's credentials, and list every problem with the setting or field to fix. Exit 0
    /// when clean, 1 with problems, 2 when something could not be checked.
    Check(ConfigCheckArgs),
}

/// A daemon whose settings `pushctl config check` loads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Daemon {
    /// The fan-out daemon.
    Parser,
    /// The delivery daemon.
    Sender,
    /// The HTTP API.
    Pushapi,
    /// The realtime gateway.
    Gateway,
}

/// `pushctl config check`.
#[derive(Debug, Args)]
pub struct ConfigCheckArgs {
    /// The daemons this installation runs (their settings are checked), comma-separated.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "parser,sender,pushapi,gateway"
    )]
    pub daemons: Vec<Daemon>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `pushctl publish`.
#[derive(Debug, Args)]
pub struct PublishArgs {
    /// The site id.
    pub site_id: String,
    /// The channel, e.g. `room:1` or `user:<id>`.
    pub channel: String,
    /// The message: any JSON value, e.g. '{"text":"hello"}'.
    pub data: String,
    /// Ask clients to acknowledge it.
    #[arg(long)]
    pub ack: bool,
    /// MongoDB.
    #[command(flatten)]
    pub mongo: MongoArgs,
    /// Kafka.
    #[command(flatten)]
    pub kafka: KafkaArgs,
    /// Topics.
    #[command(flatten)]
    pub topics: TopicArgs,
}

/// `pushctl realtime-token`.
#[derive(Debug, Args)]
pub struct RealtimeTokenArgs {
    /// The site id.
    pub site_id: String,
    /// The user (the token's `sub`; its channel is `user:<id>`).
    pub user: String,
    /// Channels or `prefix*` patterns the user may join, comma-separated.
    #[arg(long, default_value = "")]
    pub channels: String,
    /// Validity in seconds.
    #[arg(long, default_value_t = 3_600)]
    pub ttl_secs: u64,
    /// MongoDB.
    #[command(flatten)]
    pub mongo: MongoArgs,
}

/// `pushctl watch`.
#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Id of the push.
    pub push_id: String,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 600)]
    pub timeout_secs: u64,
    /// Poll interval, milliseconds.
    #[arg(long, default_value_t = 1_000)]
    pub interval_ms: u64,
    /// MongoDB settings.
    #[command(flatten)]
    pub mongo: MongoArgs,
}

/// `pushctl send`.
#[derive(Debug, Args)]
pub struct SendArgs {
    /// Id of the push to send (24 hexadecimal characters).
    pub push_id: String,
    /// Send even when the push is already processing, done, failed or canceled.
    #[arg(long)]
    pub force: bool,
    /// MongoDB settings.
    #[command(flatten)]
    pub mongo: MongoArgs,
    /// Kafka settings.
    #[command(flatten)]
    pub kafka: KafkaArgs,
    /// Topic settings.
    #[command(flatten)]
    pub topics: TopicArgs,
}

/// `pushctl status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Id of the push.
    pub push_id: String,
    /// MongoDB settings.
    #[command(flatten)]
    pub mongo: MongoArgs,
}

/// `pushctl site`.
#[derive(Debug, clap::Args)]
pub struct SiteArgs {
    /// What to do with the site.
    #[command(subcommand)]
    pub action: SiteAction,
    /// MongoDB settings.
    #[command(flatten)]
    pub mongo: MongoArgs,
}

/// `pushctl site` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum SiteAction {
    /// Print the site as JSON, without its private keys.
    Show {
        /// Id of the site.
        site_id: String,
    },
    /// Set the APNs token-authentication key its iOS subscribers are reached with.
    Apns {
        /// Id of the site.
        site_id: String,
        /// The signing key Apple issued (`AuthKey_<KEYID>.p8`).
        #[arg(long, required_unless_present = "remove")]
        key_file: Option<std::path::PathBuf>,
        /// Key id; default: the `<KEYID>` of the file name.
        #[arg(long)]
        key_id: Option<String>,
        /// Apple developer team id.
        #[arg(long, required_unless_present = "remove")]
        team_id: Option<String>,
        /// The iOS app's bundle id (sent as `apns-topic`).
        #[arg(long, required_unless_present = "remove")]
        topic: Option<String>,
        /// Send through Apple's development environment.
        #[arg(long)]
        sandbox: bool,
        /// Remove the site's APNs credentials instead.
        #[arg(long, conflicts_with_all = ["key_file", "key_id", "team_id", "topic", "sandbox"])]
        remove: bool,
    },
    /// Set the FCM service account its Android subscribers are reached with.
    Fcm {
        /// Id of the site.
        site_id: String,
        /// The service-account JSON key file from the Firebase console.
        #[arg(long, required_unless_present = "remove")]
        service_account: Option<std::path::PathBuf>,
        /// Remove the site's FCM credentials instead.
        #[arg(long, conflicts_with = "service_account")]
        remove: bool,
    },
}

/// `pushctl topics`.
#[derive(Debug, Args)]
pub struct TopicsArgs {
    /// What to do with the topics.
    #[command(subcommand)]
    pub action: TopicsAction,
}

/// `pushctl topics` subcommands.
#[derive(Debug, Subcommand)]
pub enum TopicsAction {
    /// Create the raw-push and push topics if they do not exist (safe to run twice).
    Create(KafkaTopicArgs),
    /// Show the configured topics and their partition counts.
    Describe(KafkaTopicArgs),
}

/// Kafka and topic settings together.
#[derive(Debug, Args)]
pub struct KafkaTopicArgs {
    /// Kafka settings.
    #[command(flatten)]
    pub kafka: KafkaArgs,
    /// Topic settings.
    #[command(flatten)]
    pub topics: TopicArgs,
}

/// `pushctl setup`.
#[derive(Debug, Args)]
pub struct SetupArgs {
    /// MongoDB settings.
    #[command(flatten)]
    pub mongo: MongoArgs,
    /// Kafka and topic settings.
    #[command(flatten)]
    pub kafka: KafkaTopicArgs,
}

/// `pushctl tail`.
#[derive(Debug, Args)]
pub struct TailArgs {
    /// Topic to read.
    pub topic: String,
    /// Start at the oldest retained message instead of only new ones.
    #[arg(long)]
    pub from_beginning: bool,
    /// Stop after this many messages.
    #[arg(long, default_value_t = 100)]
    pub max: usize,
    /// Stop once nothing arrived for this many milliseconds.
    #[arg(long, default_value_t = 3_000)]
    pub idle_ms: u64,
    /// Only print messages with this key (a push id on raw-push, a subscriber id on push).
    #[arg(long)]
    pub key: Option<String>,
    /// Kafka settings.
    #[command(flatten)]
    pub kafka: KafkaArgs,
}

/// `pushctl dlq`.
#[derive(Debug, Args)]
pub struct DlqArgs {
    /// What to do with the dead letters.
    #[command(subcommand)]
    pub action: DlqAction,
}

/// `pushctl dlq` subcommands.
#[derive(Debug, Subcommand)]
pub enum DlqAction {
    /// Count the dead letters (the topic from its beginning to its end when the command
    /// started) by push and by reason, with the oldest and newest failure times.
    Stats(DlqStatsArgs),
    /// Print dead letters as JSON lines: the last ones, all of them, or new ones as they come.
    Tail(DlqTailArgs),
    /// Put dead letters back onto the push topic with a fresh retry budget, each at most once
    /// (recorded in the MongoDB collection `deadLetterReplays`) unless `--again`.
    Replay(DlqReplayArgs),
}

/// `pushctl dlq stats`.
#[derive(Debug, Args)]
pub struct DlqStatsArgs {
    /// Only dead letters of this push.
    #[arg(long = "push", value_name = "PUSH_ID")]
    pub push_id: Option<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Kafka and topic settings.
    #[command(flatten)]
    pub kafka: KafkaTopicArgs,
}

/// `pushctl dlq tail`.
#[derive(Debug, Args)]
pub struct DlqTailArgs {
    /// Print every dead letter from the oldest retained, not only the last ones.
    #[arg(long)]
    pub from_beginning: bool,
    /// How many of the most recent dead letters to print (without `--from-beginning`).
    #[arg(long, default_value_t = 10, conflicts_with = "from_beginning")]
    pub last: usize,
    /// Only dead letters of this push.
    #[arg(long = "push", value_name = "PUSH_ID")]
    pub push_id: Option<String>,
    /// Then keep printing new dead letters as they arrive, until interrupted.
    #[arg(long)]
    pub follow: bool,
    /// Kafka and topic settings.
    #[command(flatten)]
    pub kafka: KafkaTopicArgs,
}

/// `pushctl dlq replay`.
#[derive(Debug, Args)]
pub struct DlqReplayArgs {
    /// Only dead letters of this push.
    #[arg(long = "push", value_name = "PUSH_ID")]
    pub push_id: Option<String>,
    /// Only dead letters whose reason contains this text (case-insensitive).
    #[arg(long)]
    pub reason: Option<String>,
    /// Count what would be replayed; write nothing to Kafka or MongoDB.
    #[arg(long)]
    pub dry_run: bool,
    /// Replay dead letters even if an earlier run already replayed them.
    #[arg(long)]
    pub again: bool,
    /// MongoDB settings (where replays are recorded).
    #[command(flatten)]
    pub mongo: MongoArgs,
    /// Kafka and topic settings.
    #[command(flatten)]
    pub kafka: KafkaTopicArgs,
}
