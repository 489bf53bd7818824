//! Logging set-up.

use tracing_subscriber::EnvFilter;

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// Logging flags and environment keys.
#[derive(Debug, Clone, clap::Args)]
pub struct LogArgs {
    /// Log line format.
    #[arg(
        long = "log-format",
        env = "LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    pub log_format: LogFormat,

    /// Log filter, `tracing` syntax (for example `info` or `info,librdkafka=debug`); each
    /// binary has its own default (daemons `info`, commands `warn`).
    #[arg(long = "log-level", env = "LOG_LEVEL")]
    pub log_level: Option<String>,
}

/// Installs the global `tracing` subscriber, writing to stderr so stdout stays for results.
///
/// `RUST_LOG`, when set, takes precedence over `LOG_LEVEL`, which takes precedence over
/// `default_filter`.
pub fn init_logging(args: &LogArgs, default_filter: &str) -> Result<(), crate::ConfigError> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(value) if !value.trim().is_empty() => EnvFilter::try_new(value)
            .map_err(|e| crate::ConfigError::new("RUST_LOG", e.to_string()))?,
        _ => EnvFilter::try_new(args.log_level.as_deref().unwrap_or(default_filter))
            .map_err(|e| crate::ConfigError::new("LOG_LEVEL", e.to_string()))?,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second initialisation (tests calling run twice) keeps the first subscriber.
    let _ = match args.log_format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    Ok(())
}
