//! Sender settings.

use std::time::Duration;

use clap::ArgAction;
use clap::builder::BoolishValueParser;
use pushservice_apns::ApnsConfig;
use pushservice_config::{
    ConfigError, KafkaArgs, KafkaSettings, LogArgs, MongoArgs, MongoSettings, TopicArgs, Topics,
};
use pushservice_daemon::TelemetryArgs;
use pushservice_fcm::FcmConfig;
use pushservice_provider::{EndpointPolicy, HttpConfig, PoolConfig};
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
    /// Requests to push services in flight at once, all of them together. At 100 ms an
    /// answer, 2,048 in flight is up to 20,000 deliveries a second.
    #[arg(
        long = "sender-concurrency",
        env = "SENDER_CONCURRENCY",
        default_value_t = 2_048
    )]
    pub concurrency: usize,
    /// Messages taken from Kafka and not committed yet (in flight, waiting for an earlier
    /// message of their partition, or in the next transaction); when reached, the sender
    /// pauses its partitions (and keeps polling) until some are committed. Each costs a few
    /// KiB of memory.
    #[arg(
        long = "sender-max-pending",
        env = "SENDER_MAX_PENDING",
        default_value_t = 8_192
    )]
    pub max_pending: usize,
    /// Requests in flight to one push service origin (or one APNs or FCM credential) at
    /// most. What a push service takes at once is otherwise its connections × the streams it
    /// allows on each (Google: 100); this bound keeps one slow push service from holding
    /// all of SENDER_CONCURRENCY.
    #[arg(
        long = "sender-origin-concurrency",
        env = "SENDER_ORIGIN_CONCURRENCY",
        default_value_t = 1_024
    )]
    pub origin_concurrency: usize,
    /// HTTP/2 connections to one push service origin at most. A new one is opened when
    /// every stream of the open ones is taken (servers allow 100 or so each).
    #[arg(
        long = "sender-origin-connections",
        env = "SENDER_ORIGIN_CONNECTIONS",
        default_value_t = 16
    )]
    pub origin_connections: usize,
    /// How long a delivery that keeps failing transiently (429, 5xx, timeouts) is retried,
    /// seconds from its first attempt, unless the notification's TTL ends sooner; then it
    /// fails and is dead-lettered.
    #[arg(
        long = "sender-retry-max-age",
        env = "SENDER_RETRY_MAX_AGE",
        default_value_t = 3_600
    )]
    pub retry_max_age_secs: u64,
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
    /// How often finished deliveries are committed: their outcomes, retries and dead letters
    /// written and their offsets committed in one Kafka transaction, milliseconds. Longer
    /// means fewer transactions and more redelivered (duplicate) messages after a crash.
    #[arg(
        long = "sender-commit-interval-ms",
        env = "SENDER_COMMIT_INTERVAL_MS",
        default_value_t = 200
    )]
    pub commit_interval_ms: u64,
    /// A transaction open this long is aborted by the broker (a sender killed in the middle
    /// of one holds back readers of the retry and outcome topics until then), milliseconds.
    #[arg(
        long = "sender-transaction-timeout-ms",
        env = "SENDER_TRANSACTION_TIMEOUT_MS",
        default_value_t = 15_000
    )]
    pub transaction_timeout_ms: u64,
    /// A name for this sender that stays the same across restarts (systemd's instance
    /// number, a pod name): it becomes the Kafka transactional id, so a restarted sender
    /// aborts what its previous run left open at once instead of after the transaction
    /// timeout. Empty: a fresh random name per start. Two running senders must never share
    /// one.
    #[arg(long = "sender-instance-id", env = "SENDER_INSTANCE_ID")]
    pub instance_id: Option<String>,
    /// Consumer group of the outcome recorders (one runs in every sender) that apply the
    /// outcome topic to MongoDB: unsubscribes and per-push counters.
    #[arg(
        long = "sender-recorder-group",
        env = "SENDER_RECORDER_GROUP",
        default_value = "OutcomeRecorderGroup"
    )]
    pub recorder_group: String,
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
    /// How often the sender reads the status of the pushes it is delivering, to drop the
    /// deliveries of canceled ones, milliseconds (one `_id` lookup per push in progress).
    #[arg(
        long = "sender-cancel-poll-ms",
        env = "SENDER_CANCEL_POLL_MS",
        default_value_t = 1_000
    )]
    pub cancel_poll_ms: u64,
    /// When partitions are taken from this sender (another sender joined, or this one is
    /// stopping), how long its deliveries of them under way may take to finish before their
    /// offsets are committed, milliseconds. What is still under way then is delivered again
    /// by the new owner (duplicates); the whole group waits for this handover, so keep it
    /// short. 0 hands over at once.
    #[arg(
        long = "sender-handover-grace-ms",
        env = "SENDER_HANDOVER_GRACE_MS",
        default_value_t = 5_000
    )]
    pub handover_grace_ms: u64,
}

/// Validated sender settings.
#[derive(Debug, Clone)]
pub struct SenderConfig {
    /// MongoDB.
    pub mongo: MongoSettings,
    /// Kafka.
    pub kafka: KafkaSettings,
    /// Topics: push, retry tiers, outcomes, dead letters.
    pub topics: Topics,
    /// Consumer group.
    pub group: String,
    /// Consumer group of the outcome recorders.
    pub recorder_group: String,
    /// This sender's stable name (the transactional id's suffix).
    pub instance_id: String,
    /// How often finished deliveries are committed.
    pub commit_interval: Duration,
    /// Transaction timeout.
    pub transaction_timeout: Duration,
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
    /// Site credential cache lifetime.
    pub site_cache: Duration,
    /// Shutdown grace period.
    pub shutdown_grace: Duration,
    /// How often the statuses of the pushes in progress are read (cancels).
    pub cancel_poll: Duration,
    /// How long revoked partitions' deliveries under way may take to finish.
    pub handover_grace: Duration,
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
        if !(1..=1_000).contains(&self.origin_connections) {
            return Err(bad(
                "SENDER_ORIGIN_CONNECTIONS",
                "must be between 1 and 1000",
            ));
        }
        if self.retry_max_age_secs == 0 {
            return Err(bad("SENDER_RETRY_MAX_AGE", "must be at least 1 second"));
        }
        if !(10..=60_000).contains(&self.commit_interval_ms) {
            return Err(bad(
                "SENDER_COMMIT_INTERVAL_MS",
                "must be between 10 and 60000",
            ));
        }
        if self.transaction_timeout_ms < self.commit_interval_ms.saturating_mul(10).max(5_000) {
            return Err(bad(
                "SENDER_TRANSACTION_TIMEOUT_MS",
                "must be at least 5000 and ten times SENDER_COMMIT_INTERVAL_MS",
            ));
        }
        if self.recorder_group.trim().is_empty() {
            return Err(bad("SENDER_RECORDER_GROUP", "is empty"));
        }
        let instance_id = match self.instance_id.as_deref().map(str::trim) {
            None | Some("") => pushservice_model::ObjectId::new().to_hex(),
            Some(id)
                if id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)) =>
            {
                id.to_owned()
            }
            Some(_) => {
                return Err(bad(
                    "SENDER_INSTANCE_ID",
                    "may only contain letters, digits, '.', '_' and '-'",
                ));
            }
        };
        if self.retry_base_ms == 0 || self.retry_max_ms < self.retry_base_ms {
            return Err(bad(
                "SENDER_RETRY_MAX_MS",
                "must be at least SENDER_RETRY_BASE_MS (> 0)",
            ));
        }
        if !(50..=60_000).contains(&self.cancel_poll_ms) {
            return Err(bad("SENDER_CANCEL_POLL_MS", "must be between 50 and 60000"));
        }
        if self.handover_grace_ms > 60_000 {
            return Err(bad(
                "SENDER_HANDOVER_GRACE_MS",
                "must be at most 60000: every sender of the group waits for a handover",
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
        let allowed_hosts = self
            .endpoint_allowed_hosts
            .as_deref()
            .map(EndpointPolicy::parse_allowed_hosts)
            .transpose()
            .map_err(|e| bad("SENDER_ENDPOINT_ALLOWED_HOSTS", &e))?
            .unwrap_or_default();
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
        let pool = PoolConfig {
            max_connections: self.origin_connections,
        };
        let web_push = WebPushConfig {
            http: http.clone(),
            concurrency: self.concurrency,
            per_origin_concurrency: self.origin_concurrency,
            pool,
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
            pool,
            ..ApnsConfig::default()
        };
        let fcm = FcmConfig {
            http,
            base_url: url("SENDER_FCM_URL", &self.fcm_url)?,
            token_url: url("SENDER_FCM_TOKEN_URL", &self.fcm_token_url)?
                .unwrap_or_else(|| pushservice_fcm::GOOGLE_TOKEN_URI.to_owned()),
            concurrency: self.concurrency,
            per_credential_concurrency: self.origin_concurrency,
            pool,
        };
        Ok(SenderConfig {
            mongo: self.mongo.settings()?,
            kafka: self.kafka.settings()?,
            topics,
            group: self.group.trim().to_owned(),
            recorder_group: self.recorder_group.trim().to_owned(),
            instance_id,
            commit_interval: Duration::from_millis(self.commit_interval_ms),
            transaction_timeout: Duration::from_millis(self.transaction_timeout_ms),
            concurrency: self.concurrency,
            max_pending: self.max_pending,
            retry: RetryPolicy {
                base: Duration::from_millis(self.retry_base_ms),
                max: Duration::from_millis(self.retry_max_ms),
                max_age: Duration::from_secs(self.retry_max_age_secs),
            },
            web_push,
            apns,
            fcm,
            site_cache: Duration::from_secs(self.site_cache_secs),
            shutdown_grace: Duration::from_secs(self.shutdown_grace_secs),
            cancel_poll: Duration::from_millis(self.cancel_poll_ms),
            handover_grace: Duration::from_millis(self.handover_grace_ms),
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
    fn the_cancel_poll_is_a_second_by_default_and_bounded() {
        let config = settings(&[]).expect("defaults");
        assert_eq!(config.cancel_poll, Duration::from_secs(1));
        let err = settings(&["--sender-cancel-poll-ms", "0"]).expect_err("too often");
        assert_eq!(err.key, "SENDER_CANCEL_POLL_MS");
    }

    #[test]
    fn the_handover_grace_is_five_seconds_by_default_and_bounded() {
        let config = settings(&[]).expect("defaults");
        assert_eq!(config.handover_grace, Duration::from_secs(5));
        let config = settings(&["--sender-handover-grace-ms", "0"]).expect("at once");
        assert_eq!(config.handover_grace, Duration::ZERO);
        let err =
            settings(&["--sender-handover-grace-ms", "60001"]).expect_err("the group would wait");
        assert_eq!(err.key, "SENDER_HANDOVER_GRACE_MS");
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
