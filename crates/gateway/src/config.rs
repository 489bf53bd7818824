//! `gateway` settings (`GATEWAY_*`).

use std::net::SocketAddr;
use std::time::Duration;

use pushservice_config::{
    ConfigError, KafkaArgs, KafkaSettings, LogArgs, MongoArgs, MongoSettings, TopicArgs, Topics,
};

/// Flags and environment keys of `gateway`.
#[derive(Debug, clap::Parser)]
#[command(
    name = "gateway",
    version,
    about = "Realtime channels over WebSocket and SSE"
)]
pub struct GatewayArgs {
    /// Logging.
    #[command(flatten)]
    pub log: LogArgs,
    /// MongoDB.
    #[command(flatten)]
    pub mongo: MongoArgs,
    /// Kafka.
    #[command(flatten)]
    pub kafka: KafkaArgs,
    /// Topics.
    #[command(flatten)]
    pub topics: TopicArgs,
    /// Metrics and health.
    #[command(flatten)]
    pub telemetry: pushservice_daemon::TelemetryArgs,

    /// Address the realtime endpoints listen on.
    #[arg(
        long = "gateway-listen",
        env = "GATEWAY_LISTEN",
        default_value = "127.0.0.1:8090"
    )]
    pub listen: String,

    /// Heartbeat interval (SSE comment lines, WebSocket pings), in milliseconds.
    #[arg(
        long = "gateway-heartbeat-ms",
        env = "GATEWAY_HEARTBEAT_MS",
        default_value_t = 25_000
    )]
    pub heartbeat_ms: u64,

    /// A WebSocket that answers nothing for this long after a ping is closed, in milliseconds.
    #[arg(
        long = "gateway-pong-timeout-ms",
        env = "GATEWAY_PONG_TIMEOUT_MS",
        default_value_t = 10_000
    )]
    pub pong_timeout_ms: u64,

    /// A WebSocket must authenticate within this many milliseconds.
    #[arg(
        long = "gateway-auth-timeout-ms",
        env = "GATEWAY_AUTH_TIMEOUT_MS",
        default_value_t = 5_000
    )]
    pub auth_timeout_ms: u64,

    /// Connections older than this (± 10 % at random) are asked to reconnect, so they spread
    /// over the gateways again after a deploy; in seconds, 0 for never.
    #[arg(
        long = "gateway-max-lifetime-secs",
        env = "GATEWAY_MAX_LIFETIME_SECS",
        default_value_t = 3_600
    )]
    pub max_lifetime_secs: u64,

    /// On SIGTERM, clients are told to reconnect after a random delay up to this, in
    /// milliseconds, so they do not all land on the other gateways at once.
    #[arg(
        long = "gateway-shutdown-spread-ms",
        env = "GATEWAY_SHUTDOWN_SPREAD_MS",
        default_value_t = 5_000
    )]
    pub shutdown_spread_ms: u64,

    /// Connections per user on this gateway; a new one beyond it closes the oldest.
    #[arg(
        long = "gateway-max-sessions-per-user",
        env = "GATEWAY_MAX_SESSIONS_PER_USER",
        default_value_t = 10
    )]
    pub max_sessions_per_user: usize,

    /// Messages queued for one connection; a client that lets it fill is disconnected.
    #[arg(
        long = "gateway-send-queue",
        env = "GATEWAY_SEND_QUEUE",
        default_value_t = 256
    )]
    pub send_queue: usize,

    /// Channels one connection may be in.
    #[arg(
        long = "gateway-max-channels",
        env = "GATEWAY_MAX_CHANNELS",
        default_value_t = 64
    )]
    pub max_channels: usize,

    /// Client frames per second per connection (sustained).
    #[arg(
        long = "gateway-client-rate-per-sec",
        env = "GATEWAY_CLIENT_RATE_PER_SEC",
        default_value_t = 20
    )]
    pub client_rate_per_sec: u32,

    /// Client frames a connection may send in a burst.
    #[arg(
        long = "gateway-client-burst",
        env = "GATEWAY_CLIENT_BURST",
        default_value_t = 40
    )]
    pub client_burst: u32,

    /// Consumer group of the history recorders (one over all gateways).
    #[arg(
        long = "gateway-history-group",
        env = "GATEWAY_HISTORY_GROUP",
        default_value = "pushservice-gateway-history"
    )]
    pub history_group: String,

    /// Messages older than this are removed from the stored history, in seconds; a site's
    /// `historyTtlSeconds` cannot reach further back.
    #[arg(
        long = "gateway-history-retention-secs",
        env = "GATEWAY_HISTORY_RETENTION_SECS",
        default_value_t = 86_400
    )]
    pub history_retention_secs: u64,

    /// Memory for in-memory history (all channels), in MiB; beyond it, the history of channels
    /// nobody here listens to is dropped (recovery then reads MongoDB).
    #[arg(
        long = "gateway-history-memory-mib",
        env = "GATEWAY_HISTORY_MEMORY_MIB",
        default_value_t = 256
    )]
    pub history_memory_mib: usize,

    /// How long recovery waits for the history recorder to catch up, in milliseconds.
    #[arg(
        long = "gateway-recovery-wait-ms",
        env = "GATEWAY_RECOVERY_WAIT_MS",
        default_value_t = 5_000
    )]
    pub recovery_wait_ms: u64,

    /// How long a site's realtime settings are cached, in milliseconds.
    #[arg(
        long = "gateway-site-cache-ms",
        env = "GATEWAY_SITE_CACHE_MS",
        default_value_t = 5_000
    )]
    pub site_cache_ms: u64,

    /// How often this gateway writes who is connected (presence) to MongoDB, in
    /// milliseconds; a snapshot counts for three intervals, so a dead gateway drops out.
    #[arg(
        long = "gateway-presence-interval-ms",
        env = "GATEWAY_PRESENCE_INTERVAL_MS",
        default_value_t = 5_000
    )]
    pub presence_interval_ms: u64,

    /// Largest message data accepted from the realtime topic, in bytes.
    #[arg(
        long = "realtime-max-message-bytes",
        env = "REALTIME_MAX_MESSAGE_BYTES",
        default_value_t = 65_536
    )]
    pub max_message_bytes: usize,
}

/// Validated settings.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// MongoDB.
    pub mongo: MongoSettings,
    /// Kafka.
    pub kafka: KafkaSettings,
    /// Topics (the realtime one is read).
    pub topics: Topics,
    /// Telemetry address.
    pub metrics_addr: Option<SocketAddr>,
    /// Where the realtime endpoints listen.
    pub listen: SocketAddr,
    /// Heartbeat interval.
    pub heartbeat: Duration,
    /// Pong timeout.
    pub pong_timeout: Duration,
    /// WebSocket authentication deadline.
    pub auth_timeout: Duration,
    /// Connection lifetime (None: unlimited).
    pub max_lifetime: Option<Duration>,
    /// Reconnect spread at shutdown.
    pub shutdown_spread: Duration,
    /// Sessions per user.
    pub max_sessions_per_user: usize,
    /// Send queue per connection.
    pub send_queue: usize,
    /// Channels per connection.
    pub max_channels: usize,
    /// Client frame rate.
    pub client_rate_per_sec: u32,
    /// Client frame burst.
    pub client_burst: u32,
    /// History recorders' group.
    pub history_group: String,
    /// Stored history retention.
    pub history_retention: Duration,
    /// In-memory history budget in bytes.
    pub history_memory_bytes: usize,
    /// Recovery's wait for the recorder.
    pub recovery_wait: Duration,
    /// Site settings cache.
    pub site_cache: Duration,
    /// Presence snapshot interval.
    pub presence_interval: Duration,
    /// Largest message data.
    pub max_message_bytes: usize,
}

fn bad(key: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        key,
        problem: problem.into(),
    }
}

impl GatewayArgs {
    /// Checks the settings.
    pub fn settings(&self) -> Result<GatewayConfig, ConfigError> {
        let listen = self.listen.trim().parse().map_err(|e| {
            bad(
                "GATEWAY_LISTEN",
                format!(
                    "{:?} is not host:port ({e}), e.g. 127.0.0.1:8090",
                    self.listen
                ),
            )
        })?;
        if self.heartbeat_ms < 100 {
            return Err(bad("GATEWAY_HEARTBEAT_MS", "must be at least 100"));
        }
        if self.max_sessions_per_user == 0 {
            return Err(bad("GATEWAY_MAX_SESSIONS_PER_USER", "must be at least 1"));
        }
        if self.send_queue < 8 {
            return Err(bad("GATEWAY_SEND_QUEUE", "must be at least 8"));
        }
        if self.max_channels == 0 {
            return Err(bad("GATEWAY_MAX_CHANNELS", "must be at least 1"));
        }
        if self.client_rate_per_sec == 0 || self.client_burst == 0 {
            return Err(bad(
                "GATEWAY_CLIENT_RATE_PER_SEC",
                "GATEWAY_CLIENT_RATE_PER_SEC and GATEWAY_CLIENT_BURST must be at least 1",
            ));
        }
        if self.history_group.trim().is_empty() {
            return Err(bad("GATEWAY_HISTORY_GROUP", "must not be empty"));
        }
        if self.max_message_bytes < 16 {
            return Err(bad("REALTIME_MAX_MESSAGE_BYTES", "must be at least 16"));
        }
        Ok(GatewayConfig {
            mongo: self.mongo.settings()?,
            kafka: self.kafka.settings()?,
            topics: self.topics.settings()?,
            metrics_addr: self.telemetry.addr(),
            listen,
            heartbeat: Duration::from_millis(self.heartbeat_ms),
            pong_timeout: Duration::from_millis(self.pong_timeout_ms.max(100)),
            auth_timeout: Duration::from_millis(self.auth_timeout_ms.max(100)),
            max_lifetime: (self.max_lifetime_secs > 0)
                .then(|| Duration::from_secs(self.max_lifetime_secs)),
            shutdown_spread: Duration::from_millis(self.shutdown_spread_ms),
            max_sessions_per_user: self.max_sessions_per_user,
            send_queue: self.send_queue,
            max_channels: self.max_channels,
            client_rate_per_sec: self.client_rate_per_sec,
            client_burst: self.client_burst,
            history_group: self.history_group.trim().to_owned(),
            history_retention: Duration::from_secs(self.history_retention_secs.max(60)),
            history_memory_bytes: self.history_memory_mib.max(1) * 1024 * 1024,
            recovery_wait: Duration::from_millis(self.recovery_wait_ms),
            site_cache: Duration::from_millis(self.site_cache_ms),
            presence_interval: Duration::from_millis(self.presence_interval_ms.max(100)),
            max_message_bytes: self.max_message_bytes,
        })
    }
}
