//! `pushapi` settings.

use std::net::SocketAddr;
use std::time::Duration;

use clap::ArgAction;
use clap::builder::BoolishValueParser;
use pushservice_config::{
    ConfigError, KafkaArgs, KafkaSettings, LogArgs, MongoArgs, MongoSettings, TopicArgs, Topics,
};
use pushservice_provider::EndpointPolicy;

/// The HTTP API: sites, API keys, subscribers, pushes, direct sends and tracking events, the
/// browser SDK under `/sdk/`, and its OpenAPI document at `/openapi.json`.
#[derive(Debug, clap::Parser)]
#[command(name = "pushapi", version)]
pub struct ApiArgs {
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
    /// Separate metrics and health endpoint (they are also served on `API_LISTEN`).
    #[command(flatten)]
    pub telemetry: pushservice_daemon::TelemetryArgs,
    /// Address to serve the API on.
    #[arg(
        long = "api-listen",
        env = "API_LISTEN",
        default_value = "127.0.0.1:8080"
    )]
    pub listen: String,
    /// Token for the admin routes (`POST /v1/sites`), sent as `Authorization: Bearer ...`;
    /// at least 24 characters. Required.
    #[arg(
        long = "api-admin-token",
        env = "API_ADMIN_TOKEN",
        hide_env_values = true
    )]
    pub admin_token: Option<String>,
    /// Largest request body accepted, in bytes (larger: 413).
    #[arg(long = "api-body-limit-bytes", env = "API_BODY_LIMIT_BYTES", default_value_t = 256 * 1024)]
    pub body_limit_bytes: usize,
    /// A request taking longer than this is answered 408, in milliseconds.
    #[arg(
        long = "api-request-timeout-ms",
        env = "API_REQUEST_TIMEOUT_MS",
        default_value_t = 30_000
    )]
    pub request_timeout_ms: u64,
    /// Requests per second one client (IP address) may make to the public routes
    /// (subscribe, unsubscribe, VAPID key, events), sustained.
    #[arg(
        long = "api-public-rate-per-sec",
        env = "API_PUBLIC_RATE_PER_SEC",
        default_value_t = 20
    )]
    pub public_rate_per_sec: u32,
    /// Requests one client may make to the public routes in a burst.
    #[arg(
        long = "api-public-burst",
        env = "API_PUBLIC_BURST",
        default_value_t = 100
    )]
    pub public_burst: u32,
    /// Take the client address for rate limiting from the last `X-Forwarded-For` entry
    /// (set it when pushapi runs behind a load balancer that appends it, never otherwise:
    /// clients could then choose their own address).
    #[arg(
        long = "api-trust-forwarded-for",
        env = "API_TRUST_FORWARDED_FOR",
        default_value = "false",
        action = ArgAction::Set,
        value_parser = BoolishValueParser::new()
    )]
    pub trust_forwarded_for: bool,
    /// How long a site (its keys, origins) is cached, in milliseconds: a revoked key or a
    /// changed origin takes effect on other instances within this time.
    #[arg(
        long = "api-site-cache-ms",
        env = "API_SITE_CACHE_MS",
        default_value_t = 2_000
    )]
    pub site_cache_ms: u64,
    /// Tracking events are written to MongoDB in batches at least this often, in ms.
    #[arg(
        long = "api-events-flush-ms",
        env = "API_EVENTS_FLUSH_MS",
        default_value_t = 500
    )]
    pub events_flush_ms: u64,
    /// Tracking events waiting to be written at most; beyond it `POST /v1/events` answers
    /// 503 (MongoDB is not keeping up) instead of growing memory.
    #[arg(
        long = "api-events-queue",
        env = "API_EVENTS_QUEUE",
        default_value_t = 100_000
    )]
    pub events_queue: usize,
    /// Largest realtime message data `POST .../channels/{channel}/messages` accepts, in
    /// bytes (the gateways refuse larger records).
    #[arg(
        long = "realtime-max-message-bytes",
        env = "REALTIME_MAX_MESSAGE_BYTES",
        default_value_t = 65_536
    )]
    pub realtime_max_bytes: usize,
    /// Accept `http://` and non-public addresses as subscription endpoints (simulators only;
    /// the same setting the senders read).
    #[arg(
        long = "sender-allow-private-endpoints",
        env = "SENDER_ALLOW_PRIVATE_ENDPOINTS",
        default_value = "false",
        action = ArgAction::Set,
        value_parser = BoolishValueParser::new()
    )]
    pub allow_private_endpoints: bool,
    /// Host suffixes Web Push endpoints must match (the senders' setting); empty: any.
    #[arg(
        long = "sender-endpoint-allowed-hosts",
        env = "SENDER_ENDPOINT_ALLOWED_HOSTS"
    )]
    pub endpoint_allowed_hosts: Option<String>,
}

/// Validated settings.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// MongoDB.
    pub mongo: MongoSettings,
    /// Kafka.
    pub kafka: KafkaSettings,
    /// Topics.
    pub topics: Topics,
    /// Separate telemetry address.
    pub metrics_addr: Option<SocketAddr>,
    /// API address.
    pub listen: SocketAddr,
    /// The admin token.
    pub admin_token: String,
    /// Body limit.
    pub body_limit_bytes: usize,
    /// Request timeout.
    pub request_timeout: Duration,
    /// Public routes: sustained rate per client.
    pub public_rate_per_sec: u32,
    /// Public routes: burst per client.
    pub public_burst: u32,
    /// Use `X-Forwarded-For`.
    pub trust_forwarded_for: bool,
    /// Site cache lifetime.
    pub site_cache: Duration,
    /// Event batch interval.
    pub events_flush: Duration,
    /// Event queue bound.
    pub events_queue: usize,
    /// What subscription endpoints are accepted.
    pub endpoint_policy: EndpointPolicy,
    /// Largest realtime message data.
    pub realtime_max_bytes: usize,
}

fn bad(key: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        key,
        problem: problem.into(),
    }
}

impl ApiArgs {
    /// Validates the settings.
    pub fn settings(&self) -> Result<ApiConfig, ConfigError> {
        let listen = self.listen.trim().parse().map_err(|e| {
            bad(
                "API_LISTEN",
                format!(
                    "{:?} is not host:port ({e}), e.g. 127.0.0.1:8080",
                    self.listen
                ),
            )
        })?;
        let admin_token = self
            .admin_token
            .as_deref()
            .map(str::trim)
            .unwrap_or_default()
            .to_owned();
        if admin_token.is_empty() {
            return Err(bad(
                "API_ADMIN_TOKEN",
                "is required: set a random secret of at least 24 characters (for example \
                 `openssl rand -hex 24`) in .env; it authorizes creating sites",
            ));
        }
        if admin_token.len() < 24 {
            return Err(bad(
                "API_ADMIN_TOKEN",
                "is shorter than 24 characters; use a random secret (openssl rand -hex 24)",
            ));
        }
        if self.body_limit_bytes < 1024 {
            return Err(bad("API_BODY_LIMIT_BYTES", "must be at least 1024"));
        }
        if self.public_rate_per_sec == 0 || self.public_burst == 0 {
            return Err(bad(
                "API_PUBLIC_RATE_PER_SEC",
                "API_PUBLIC_RATE_PER_SEC and API_PUBLIC_BURST must be at least 1",
            ));
        }
        if self.events_queue == 0 {
            return Err(bad("API_EVENTS_QUEUE", "must be at least 1"));
        }
        let allowed_hosts = self
            .endpoint_allowed_hosts
            .as_deref()
            .map(EndpointPolicy::parse_allowed_hosts)
            .transpose()
            .map_err(|e| bad("SENDER_ENDPOINT_ALLOWED_HOSTS", e))?
            .unwrap_or_default();
        Ok(ApiConfig {
            mongo: self.mongo.settings()?,
            kafka: self.kafka.settings()?,
            topics: self.topics.settings()?,
            metrics_addr: self.telemetry.addr(),
            listen,
            admin_token,
            body_limit_bytes: self.body_limit_bytes,
            request_timeout: Duration::from_millis(self.request_timeout_ms.max(100)),
            public_rate_per_sec: self.public_rate_per_sec,
            public_burst: self.public_burst,
            trust_forwarded_for: self.trust_forwarded_for,
            site_cache: Duration::from_millis(self.site_cache_ms),
            events_flush: Duration::from_millis(self.events_flush_ms.max(10)),
            events_queue: self.events_queue,
            realtime_max_bytes: self.realtime_max_bytes.max(16),
            endpoint_policy: EndpointPolicy {
                allow_private: self.allow_private_endpoints,
                allowed_hosts,
            },
        })
    }
}
