//! Sender settings.

use std::time::Duration;

use clap::ArgAction;
use clap::builder::BoolishValueParser;
use pushservice_apns::ApnsConfig;
use pushservice_config::{
    ConfigError, KafkaArgs, KafkaSettings, LogArgs, MongoArgs, MongoSettings, TopicArgs,
};
use pushservice_daemon::TelemetryArgs;
use pushservice_fcm::FcmConfig;
use pushservice_provider::{EndpointPolicy, HttpConfig};
use pushservice_webpush::WebPushConfig;

use crate::retry::RetryPolicy;

/// The sender daemon: delivers the messages of the push topic to the push services. Run as
/// many as you like; they share the topic's partitions.
#[derive(Debug, clap::Parser)]
#[command(name = "sender", version)]
pub struct SenderArgs {
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
    /// Metrics and health endpoint.
    #[command(flatten)]
    pub telemetry: TelemetryArgs,
    /// Consumer group the senders share (the original service's name).
    #[arg(
        long = "sender-group",
        env = "SENDER_GROUP",
        default_value = "SenderGroup"
    )]
    pub group: String,
    /// Requests to push services in flight at once.
    #[arg(
        long = "sender-concurrency",
        env = "SENDER_CONCURRENCY",
        default_value_t = 512
    )]
    pub concurrency: usize,
    /// Messages taken from Kafka and not final yet (in flight or waiting for a retry); when
    /// reached, the sender stops fetching until some finish. Each costs a few KiB of memory.
    #[arg(
        long = "sender-max-pending",
        env = "SENDER_MAX_PENDING",
        default_value_t = 4_096
    )]
    pub max_pending: usize,
    /// Requests in flight to one push service origin at once.
    #[arg(
        long = "sender-origin-concurrency",
        env = "SENDER_ORIGIN_CONCURRENCY",
        default_value_t = 256
    )]
    pub origin_concurrency: usize,
    /// Attempts per delivery before a transient failure counts as failed.
    #[arg(
        long = "sender-max-attempts",
        env = "SENDER_MAX_ATTEMPTS",
        default_value_t = 5
    )]
    pub max_attempts: u32,
    /// Bound of the first retry delay, milliseconds; doubles per attempt (with jitter).
    #[arg(
        long = "sender-retry-base-ms",
        env = "SENDER_RETRY_BASE_MS",
        default_value_t = 1_000
    )]
    pub retry_base_ms: u64,
    /// Longest retry delay, milliseconds (a longer Retry-After is honoured up to an hour).
    #[arg(
        long = "sender-retry-max-ms",
        env = "SENDER_RETRY_MAX_MS",
        default_value_t = 60_000
    )]
    pub retry_max_ms: u64,
    /// Timeout of one request to a push service, milliseconds.
    #[arg(
        long = "sender-request-timeout-ms",
        env = "SENDER_REQUEST_TIMEOUT_MS",
        default_value_t = 30_000
    )]
    pub request_timeout_ms: u64,
    /// Timeout of opening a connection to a push service, milliseconds.
    #[arg(
        long = "sender-connect-timeout-ms",
        env = "SENDER_CONNECT_TIMEOUT_MS",
        default_value_t = 10_000
    )]
    pub connect_timeout_ms: u64,
    /// PEM file of extra CA certificates to trust (a simulator's self-signed certificate).
    #[arg(long = "sender-extra-ca-file", env = "SENDER_EXTRA_CA_FILE")]
    pub extra_ca_file: Option<std::path::PathBuf>,
    /// Speak HTTP/2 without TLS negotiation to http:// endpoints (h2c simulators only).
    #[arg(
        long = "sender-http2-prior-knowledge",
        env = "SENDER_HTTP2_PRIOR_KNOWLEDGE",
        default_value = "false",
        action = ArgAction::Set,
        value_parser = BoolishValueParser::new()
    )]
    pub http2_prior_knowledge: bool,
    /// Allow http:// and loopback, private, link-local and other non-public addresses as
    /// push endpoints and provider URLs. For simulators only (tests, the demo, benchmarks):
    /// with it, a subscription can make the senders reach the network they run in.
    #[arg(
        long = "sender-allow-private-endpoints",
        env = "SENDER_ALLOW_PRIVATE_ENDPOINTS",
        default_value = "false",
        action = ArgAction::Set,
        value_parser = BoolishValueParser::new()
    )]
    pub allow_private_endpoints: bool,
    /// Comma-separated host suffixes Web Push endpoints must match (`mozilla.com` allows
    /// `updates.push.services.mozilla.com`); empty allows any public host.
    #[arg(
        long = "sender-endpoint-allowed-hosts",
        env = "SENDER_ENDPOINT_ALLOWED_HOSTS"
    )]
    pub endpoint_allowed_hosts: Option<String>,
    /// Send APNs requests here instead of Apple's endpoints (a simulator such as push-sink).
    #[arg(long = "sender-apns-url", env = "SENDER_APNS_URL")]
    pub apns_url: Option<String>,
    /// Send FCM requests here instead of https://fcm.googleapis.com (a simulator).
    #[arg(long = "sender-fcm-url", env = "SENDER_FCM_URL")]
    pub fcm_url: Option<String>,
    /// The OAuth endpoint FCM access tokens are fetched from. A site's service account must
    /// name exactly this `token_uri`, or its deliveries fail as misconfigured (a key file does
    /// not choose where the senders POST). Set it to a simulator's /token for tests.
    #[arg(
        long = "sender-fcm-token-url",
        env = "SENDER_FCM_TOKEN_URL",
        default_value = pushservice_fcm::GOOGLE_TOKEN_URI
    )]
    pub fcm_token_url: Option<String>,
    /// How often per-push counters are written to MongoDB, milliseconds.
    #[arg(
        long = "sender-counter-flush-ms",
        env = "SENDER_COUNTER_FLUSH_MS",
        default_value_t = 1_000
    )]
    pub counter_flush_ms: u64,
    /// How long site credentials stay cached, seconds.
    #[arg(
        long = "sender-site-cache-secs",
        env = "SENDER_SITE_CACHE_SECS",
        default_value_t = 300
    )]
    pub site_cache_secs: u64,
    /// On SIGTERM, how long in-flight requests may take to finish, seconds.
    #[arg(
        long = "sender-shutdown-grace-secs",
        env = "SENDER_SHUTDOWN_GRACE_SECS",
        default_value_t = 30
    )]
    pub shutdown_grace_secs: u64,
}

/// Validated sender settings.
#[derive(Debug, Clone)]
pub struct SenderConfig {
    /// MongoDB.
    pub mongo: MongoSettings,
    /// Kafka.
    pub kafka: KafkaSettings,
    /// Topic of delivery messages.
    pub push_topic: String,
    /// Dead-letter topic.
    pub dead_letter_topic: String,
    /// Consumer group.
    pub group: String,
    /// Requests in flight.
    pub concurrency: usize,
    /// Messages not final yet.
    pub max_pending: usize,
    /// Retry budget and pacing.
    pub retry: RetryPolicy,
    /// Web Push client settings.
    pub web_push: WebPushConfig,
    /// APNs client settings.
    pub apns: ApnsConfig,
    /// FCM client settings.
    pub fcm: FcmConfig,
    /// Counter flush interval.
    pub counter_flush: Duration,
    /// Site credential cache lifetime.
    pub site_cache: Duration,
    /// Shutdown grace period.
    pub shutdown_grace: Duration,
    /// Where to serve `/metrics`, `/healthz`, `/readyz`.
    pub metrics_addr: Option<std::net::SocketAddr>,
}

impl SenderArgs {
    /// Checks the arguments and reads the extra CA file.
    pub fn settings(&self) -> Result<SenderConfig, ConfigError> {
        let topics = self.topics.settings()?;
        let bad = |key: &'static str, problem: &str| ConfigError {
            key,
            problem: problem.into(),
        };
        if self.group.trim().is_empty() {
            return Err(bad("SENDER_GROUP", "is empty"));
        }
        if !(1..=100_000).contains(&self.concurrency) {
            return Err(bad("SENDER_CONCURRENCY", "must be between 1 and 100000"));
        }
        if self.max_pending < self.concurrency {
            return Err(bad(
                "SENDER_MAX_PENDING",
                "must be at least SENDER_CONCURRENCY",
            ));
        }
        if self.origin_concurrency == 0 {
            return Err(bad("SENDER_ORIGIN_CONCURRENCY", "must be at least 1"));
        }
        if !(1..=100).contains(&self.max_attempts) {
            return Err(bad("SENDER_MAX_ATTEMPTS", "must be between 1 and 100"));
        }
        if self.retry_base_ms == 0 || self.retry_max_ms < self.retry_base_ms {
            return Err(bad(
                "SENDER_RETRY_MAX_MS",
                "must be at least SENDER_RETRY_BASE_MS (> 0)",
            ));
        }
        if self.request_timeout_ms == 0 || self.connect_timeout_ms == 0 {
            return Err(bad(
                "SENDER_REQUEST_TIMEOUT_MS",
                "timeouts must be at least 1 ms",
            ));
        }
        let mut extra_roots = Vec::new();
        if let Some(path) = &self.extra_ca_file {
            let pem = std::fs::read(path).map_err(|e| ConfigError {
                key: "SENDER_EXTRA_CA_FILE",
                problem: format!("cannot read {}: {e}", path.display()),
            })?;
            extra_roots.push(pem);
        }
        let mut allowed_hosts = Vec::new();
        let listed = self.endpoint_allowed_hosts.iter();
        for host in listed.flat_map(|list| list.split(',')) {
            let host = host.trim().trim_matches('.').to_ascii_lowercase();
            if host.is_empty() {
                continue;
            }
            if !host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
            {
                return Err(bad(
                    "SENDER_ENDPOINT_ALLOWED_HOSTS",
                    "must be comma-separated host names such as push.services.mozilla.com",
                ));
            }
            allowed_hosts.push(host);
        }
        let endpoint_policy = EndpointPolicy {
            allow_private: self.allow_private_endpoints,
            allowed_hosts,
        };
        let http = HttpConfig {
            request_timeout: Duration::from_millis(self.request_timeout_ms),
            connect_timeout: Duration::from_millis(self.connect_timeout_ms),
            extra_root_certificates: extra_roots,
            http2_prior_knowledge: self.http2_prior_knowledge,
            endpoint_policy: endpoint_policy.clone(),
            ..HttpConfig::default()
        };
        let web_push = WebPushConfig {
            http: http.clone(),
            concurrency: self.concurrency,
            per_origin_concurrency: self.origin_concurrency,
            ..WebPushConfig::default()
        };
        let url = |key: &'static str, value: &Option<String>| match value.as_deref().map(str::trim)
        {
            None | Some("") => Ok(None),
            // Provider URLs are configuration, so the host list does not apply; the scheme
            // and address rules do (a simulator on loopback needs the private setting).
            Some(url) => match endpoint_policy.addresses_only().check_url(url) {
                Ok(_) => Ok(Some(url.to_owned())),
                Err(refused) => Err(ConfigError {
                    key,
                    problem: format!(
                        "{refused} (SENDER_ALLOW_PRIVATE_ENDPOINTS=true allows http:// and \
                         loopback simulators)"
                    ),
                }),
            },
        };
        let apns = ApnsConfig {
            http: http.clone(),
            base_url: url("SENDER_APNS_URL", &self.apns_url)?,
            concurrency: self.concurrency,
            per_credential_concurrency: self.origin_concurrency,
            ..ApnsConfig::default()
        };
        let fcm = FcmConfig {
            http,
            base_url: url("SENDER_FCM_URL", &self.fcm_url)?,
            token_url: url("SENDER_FCM_TOKEN_URL", &self.fcm_token_url)?
                .unwrap_or_else(|| pushservice_fcm::GOOGLE_TOKEN_URI.to_owned()),
            concurrency: self.concurrency,
            per_credential_concurrency: self.origin_concurrency,
        };
        Ok(SenderConfig {
            mongo: self.mongo.settings()?,
            kafka: self.kafka.settings()?,
            push_topic: topics.push.name,
            dead_letter_topic: topics.dead_letter.name,
            group: self.group.trim().to_owned(),
            concurrency: self.concurrency,
            max_pending: self.max_pending,
            retry: RetryPolicy {
                max_attempts: self.max_attempts,
                base: Duration::from_millis(self.retry_base_ms),
                max: Duration::from_millis(self.retry_max_ms),
            },
            web_push,
            apns,
            fcm,
            counter_flush: Duration::from_millis(self.counter_flush_ms.max(50)),
            site_cache: Duration::from_secs(self.site_cache_secs),
            shutdown_grace: Duration::from_secs(self.shutdown_grace_secs),
            metrics_addr: self.telemetry.addr(),
        })
    }
}

#[cfg(test)]
mod endpoint_policy_tests {
    use clap::Parser as _;

    use super::*;

    fn settings(flags: &[&str]) -> Result<SenderConfig, ConfigError> {
        let argv = std::iter::once("sender").chain(flags.iter().copied());
        let args = SenderArgs::try_parse_from(argv).expect("flags parse");
        args.settings()
    }

    #[test]
    fn simulators_on_loopback_need_the_private_endpoints_setting() {
        let err = settings(&["--sender-fcm-url", "http://127.0.0.1:9090"])
            .expect_err("http on loopback is refused by default");
        assert_eq!(err.key, "SENDER_FCM_URL");
        let problem = &err.problem;
        assert!(problem.contains("endpoint not allowed"), "{problem}");
        assert!(
            problem.contains("SENDER_ALLOW_PRIVATE_ENDPOINTS"),
            "{problem}"
        );
        let config = settings(&[
            "--sender-allow-private-endpoints",
            "true",
            "--sender-fcm-url",
            "http://127.0.0.1:9090",
            "--sender-fcm-token-url",
            "http://127.0.0.1:9090/token",
            "--sender-endpoint-allowed-hosts",
            " Push.Services.Mozilla.com, ,fcm.googleapis.com.",
        ])
        .expect("allowed");
        let policy = &config.web_push.http.endpoint_policy;
        assert!(policy.allow_private);
        assert_eq!(
            policy.allowed_hosts,
            ["push.services.mozilla.com", "fcm.googleapis.com"]
        );
        assert_eq!(config.fcm.token_url, "http://127.0.0.1:9090/token");
        assert_eq!(config.apns.http.endpoint_policy, *policy);
    }

    #[test]
    fn the_fcm_token_endpoint_is_googles_by_default() {
        let config = settings(&[]).expect("defaults");
        assert_eq!(config.fcm.token_url, "https://oauth2.googleapis.com/token");
        assert!(!config.fcm.http.endpoint_policy.allow_private);
        let err = settings(&["--sender-endpoint-allowed-hosts", "a/b"]).expect_err("not a host");
        assert_eq!(err.key, "SENDER_ENDPOINT_ALLOWED_HOSTS");
    }
}
