//! MongoDB settings.

use std::time::Duration;

use crate::ConfigError;

/// MongoDB flags and environment keys.
#[derive(Debug, Clone, clap::Args)]
pub struct MongoArgs {
    /// MongoDB connection string. The database is the URL's path (`pushservice` when absent),
    /// as in the original service.
    #[arg(
        long = "mongodb-url",
        env = "MONGODB_URL",
        default_value = "mongodb://127.0.0.1:27017/pushservice",
        hide_env_values = true
    )]
    pub mongodb_url: String,

    /// How long to wait for MongoDB to answer before giving up, in milliseconds.
    #[arg(
        long = "mongodb-timeout-ms",
        env = "MONGODB_TIMEOUT_MS",
        default_value_t = 5_000
    )]
    pub mongodb_timeout_ms: u64,

    /// Documents per batch when streaming subscribers (parser) or inserting them (seed).
    #[arg(
        long = "query-batch-size",
        env = "QUERY_BATCH_SIZE",
        default_value_t = 1_000
    )]
    pub query_batch_size: u32,
}

/// Validated MongoDB settings.
#[derive(Clone, PartialEq, Eq)]
pub struct MongoSettings {
    /// Connection string, as given.
    pub url: String,
    /// Server selection and connect timeout.
    pub timeout: Duration,
    /// Batch size for streaming and bulk inserts.
    pub batch_size: u32,
}

impl MongoArgs {
    /// Checks the arguments.
    pub fn settings(&self) -> Result<MongoSettings, ConfigError> {
        let url = self.mongodb_url.trim();
        if !(url.starts_with("mongodb://") || url.starts_with("mongodb+srv://")) {
            return Err(ConfigError::new(
                "MONGODB_URL",
                format!(
                    "{:?} is not a MongoDB connection string; expected mongodb://host:port/database",
                    redact_url(url)
                ),
            ));
        }
        if self.mongodb_timeout_ms == 0 {
            return Err(ConfigError::new("MONGODB_TIMEOUT_MS", "must be at least 1"));
        }
        if !(1..=100_000).contains(&self.query_batch_size) {
            return Err(ConfigError::new(
                "QUERY_BATCH_SIZE",
                "must be between 1 and 100000",
            ));
        }
        Ok(MongoSettings {
            url: url.to_owned(),
            timeout: Duration::from_millis(self.mongodb_timeout_ms),
            batch_size: self.query_batch_size,
        })
    }
}

impl MongoSettings {
    /// The URL with any password replaced by `***`, fit for logs and error messages.
    pub fn redacted_url(&self) -> String {
        redact_url(&self.url)
    }
}

/// Debug output never shows the password inside the URL.
impl std::fmt::Debug for MongoSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MongoSettings")
            .field("url", &self.redacted_url())
            .field("timeout", &self.timeout)
            .field("batch_size", &self.batch_size)
            .finish()
    }
}

/// Replaces the password of `scheme://user:password@host` with `***`.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let rest = &url[scheme_end..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => match rest[..at].find(':') {
            Some(colon) => format!(
                "{}{}:***{}",
                &url[..scheme_end],
                &rest[..colon],
                &rest[at..]
            ),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(url: &str) -> MongoArgs {
        MongoArgs {
            mongodb_url: url.into(),
            mongodb_timeout_ms: 100,
            query_batch_size: 10,
        }
    }

    #[test]
    fn rejects_non_mongodb_url_naming_key() {
        let err = args("postgres://x").settings().expect_err("rejected");
        assert_eq!(err.key, "MONGODB_URL");
    }

    #[test]
    fn redacts_password() {
        assert_eq!(
            redact_url("mongodb://app:s3cret@db:27017/push"),
            "mongodb://app:***@db:27017/push"
        );
        assert_eq!(
            redact_url("mongodb://db:27017/push"),
            "mongodb://db:27017/push"
        );
        let settings = args("mongodb://a:b@h/d").settings().expect("valid");
        assert!(!format!("{settings:?}").contains(":b@"));
    }
}
