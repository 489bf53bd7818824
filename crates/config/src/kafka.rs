//! Kafka connection settings.

use std::time::Duration;

use clap::ArgAction;
use clap::builder::BoolishValueParser;

use crate::ConfigError;

/// Kafka flags and environment keys.
#[derive(Debug, Clone, clap::Args)]
pub struct KafkaArgs {
    /// Comma-separated bootstrap brokers, `host:port`.
    #[arg(
        long = "kafka-brokers",
        env = "KAFKA_BROKERS",
        default_value = "127.0.0.1:9092"
    )]
    pub kafka_brokers: String,

    /// Use SASL over TLS (`true`/`false`), as the original service's hosted Kafka did.
    #[arg(
        long = "kafka-security-enabled",
        env = "KAFKA_SECURITY_ENABLED",
        default_value = "false",
        action = ArgAction::Set,
        value_parser = BoolishValueParser::new()
    )]
    pub kafka_security_enabled: bool,

    /// SASL user name; required when KAFKA_SECURITY_ENABLED is true.
    #[arg(long = "kafka-username", env = "KAFKA_USERNAME")]
    pub kafka_username: Option<String>,

    /// SASL password; required when KAFKA_SECURITY_ENABLED is true.
    #[arg(
        long = "kafka-password",
        env = "KAFKA_PASSWORD",
        hide_env_values = true
    )]
    pub kafka_password: Option<String>,

    /// SASL mechanism: SCRAM-SHA-256 (the original service's), SCRAM-SHA-512 or PLAIN.
    #[arg(
        long = "kafka-sasl-mechanism",
        env = "KAFKA_SASL_MECHANISM",
        default_value = "SCRAM-SHA-256"
    )]
    pub kafka_sasl_mechanism: String,

    /// PEM file of CA certificates to trust for the brokers' TLS; the system store when unset.
    #[arg(long = "kafka-ca-location", env = "KAFKA_CA_LOCATION")]
    pub kafka_ca_location: Option<String>,

    /// How long a command waits for the brokers (metadata, acknowledgements), in milliseconds.
    #[arg(
        long = "kafka-timeout-ms",
        env = "KAFKA_TIMEOUT_MS",
        default_value_t = 10_000
    )]
    pub kafka_timeout_ms: u64,

    /// A consumer-group member silent for this long is removed and its partitions move, in
    /// milliseconds. Longer than a broker restart takes, so a restart does not make senders
    /// hand their partitions over (and deliver again what they could not commit meanwhile);
    /// short enough that a crashed member's partitions move soon.
    #[arg(
        long = "kafka-session-timeout-ms",
        env = "KAFKA_SESSION_TIMEOUT_MS",
        default_value_t = KafkaSettings::DEFAULT_SESSION_TIMEOUT_MS
    )]
    pub kafka_session_timeout_ms: u64,
}

/// SASL over TLS credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct KafkaSecurity {
    /// SASL user name.
    pub username: String,
    /// SASL password.
    pub password: String,
    /// SASL mechanism name as librdkafka spells it.
    pub mechanism: String,
    /// CA bundle for the brokers' certificates.
    pub ca_location: Option<String>,
}

impl std::fmt::Debug for KafkaSecurity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSecurity")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("mechanism", &self.mechanism)
            .field("ca_location", &self.ca_location)
            .finish()
    }
}

/// Validated Kafka settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaSettings {
    /// Bootstrap brokers, `host:port,host:port`.
    pub brokers: String,
    /// SASL/TLS, when enabled.
    pub security: Option<KafkaSecurity>,
    /// Bound on waiting for the brokers.
    pub timeout: Duration,
    /// Consumer-group session timeout (`session.timeout.ms`).
    pub session_timeout: Duration,
}

impl KafkaSettings {
    /// `KAFKA_SESSION_TIMEOUT_MS` when unset: Kafka's own default since 3.0, and above the
    /// 20–30 s a single broker with a few thousand partitions takes to restart here.
    pub const DEFAULT_SESSION_TIMEOUT_MS: u64 = 45_000;
}

/// The brokers' default bounds of a session timeout (`group.min.session.timeout.ms`,
/// `group.max.session.timeout.ms`); a member asking for more or less cannot join.
const SESSION_TIMEOUT_MS: std::ops::RangeInclusive<u64> = 6_000..=1_800_000;

const MECHANISMS: [&str; 3] = ["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"];

impl KafkaArgs {
    /// Checks the arguments.
    pub fn settings(&self) -> Result<KafkaSettings, ConfigError> {
        let brokers: Vec<&str> = self
            .kafka_brokers
            .split(',')
            .map(str::trim)
            .filter(|b| !b.is_empty())
            .collect();
        if brokers.is_empty() {
            return Err(ConfigError::new(
                "KAFKA_BROKERS",
                "is empty; expected host:port[,host:port]",
            ));
        }
        for broker in &brokers {
            let port = broker
                .rsplit_once(':')
                .map(|(host, port)| (host, port.parse::<u16>()));
            if !matches!(port, Some((host, Ok(_))) if !host.is_empty()) {
                return Err(ConfigError::new(
                    "KAFKA_BROKERS",
                    format!("{broker:?} is not host:port (for example 127.0.0.1:9092)"),
                ));
            }
        }
        let security = if self.kafka_security_enabled {
            let username = non_empty(&self.kafka_username).ok_or_else(|| {
                ConfigError::new(
                    "KAFKA_USERNAME",
                    "is required when KAFKA_SECURITY_ENABLED is true",
                )
            })?;
            let password = non_empty(&self.kafka_password).ok_or_else(|| {
                ConfigError::new(
                    "KAFKA_PASSWORD",
                    "is required when KAFKA_SECURITY_ENABLED is true",
                )
            })?;
            let mechanism = self.kafka_sasl_mechanism.trim().to_uppercase();
            if !MECHANISMS.contains(&mechanism.as_str()) {
                return Err(ConfigError::new(
                    "KAFKA_SASL_MECHANISM",
                    format!("{mechanism:?} is not one of {}", MECHANISMS.join(", ")),
                ));
            }
            Some(KafkaSecurity {
                username,
                password,
                mechanism,
                ca_location: non_empty(&self.kafka_ca_location),
            })
        } else {
            None
        };
        if self.kafka_timeout_ms == 0 {
            return Err(ConfigError::new("KAFKA_TIMEOUT_MS", "must be at least 1"));
        }
        if !SESSION_TIMEOUT_MS.contains(&self.kafka_session_timeout_ms) {
            return Err(ConfigError::new(
                "KAFKA_SESSION_TIMEOUT_MS",
                format!(
                    "{} is outside {}..={}, the range brokers accept by default \
                     (group.min.session.timeout.ms, group.max.session.timeout.ms)",
                    self.kafka_session_timeout_ms,
                    SESSION_TIMEOUT_MS.start(),
                    SESSION_TIMEOUT_MS.end()
                ),
            ));
        }
        Ok(KafkaSettings {
            brokers: brokers.join(","),
            security,
            timeout: Duration::from_millis(self.kafka_timeout_ms),
            session_timeout: Duration::from_millis(self.kafka_session_timeout_ms),
        })
    }
}

fn non_empty(value: &Option<String>) -> Option<String> {
    value
        .as_deref()
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        kafka: KafkaArgs,
    }

    fn parse(args: &[&str]) -> Result<KafkaSettings, ConfigError> {
        let cli = Cli::try_parse_from(std::iter::once("test").chain(args.iter().copied()))
            .expect("flags parse");
        cli.kafka.settings()
    }

    #[test]
    fn defaults_to_local_plaintext() {
        let settings = parse(&[]).expect("valid");
        assert_eq!(settings.brokers, "127.0.0.1:9092");
        assert_eq!(settings.security, None);
    }

    #[test]
    fn security_needs_credentials() {
        let err = parse(&["--kafka-security-enabled", "true"]).expect_err("missing user");
        assert_eq!(err.key, "KAFKA_USERNAME");
        let err = parse(&["--kafka-security-enabled", "true", "--kafka-username", "u"])
            .expect_err("missing password");
        assert_eq!(err.key, "KAFKA_PASSWORD");
        let settings = parse(&[
            "--kafka-security-enabled",
            "yes",
            "--kafka-username",
            "u",
            "--kafka-password",
            "p",
        ])
        .expect("valid");
        let security = settings.security.expect("enabled");
        assert_eq!(security.mechanism, "SCRAM-SHA-256");
        assert!(!format!("{security:?}").contains("\"p\""));
    }

    #[test]
    fn session_timeout_defaults_above_a_broker_restart_and_stays_in_the_brokers_bounds() {
        assert_eq!(
            parse(&[]).expect("valid").session_timeout,
            Duration::from_secs(45)
        );
        assert_eq!(
            parse(&["--kafka-session-timeout-ms", "6000"])
                .expect("the brokers' minimum")
                .session_timeout,
            Duration::from_secs(6)
        );
        for bad in ["5999", "1800001", "0"] {
            let err = parse(&["--kafka-session-timeout-ms", bad]).expect_err(bad);
            assert_eq!(err.key, "KAFKA_SESSION_TIMEOUT_MS");
            assert!(err.problem.contains("6000..=1800000"), "{}", err.problem);
        }
    }

    #[test]
    fn rejects_broker_without_port() {
        let err = parse(&["--kafka-brokers", "localhost"]).expect_err("no port");
        assert_eq!(err.key, "KAFKA_BROKERS");
        assert!(err.problem.contains("\"localhost\""), "{}", err.problem);
    }

    #[test]
    fn rejects_non_boolean_security_flag() {
        let result = Cli::try_parse_from(["test", "--kafka-security-enabled", "maybe"]);
        let Err(err) = result else {
            panic!("accepted a non-boolean")
        };
        assert!(err.to_string().contains("kafka-security-enabled"), "{err}");
    }
}
