//! Settings shared by every pushservice binary.
//!
//! Configuration comes from the environment, which a `.env` file in the working directory
//! fills in first (the original service's keys keep working), and command-line flags override
//! both. It is read in two steps, as ripgrep does: clap parses the raw [`MongoArgs`],
//! [`KafkaArgs`] and [`TopicArgs`]; their `settings()` methods validate them into plain
//! settings that the store and Kafka crates build clients from. A wrong or missing setting
//! fails at start with a [`ConfigError`] that names its environment key.
//!
//! # Layout
//!
//! - [`env`] — loading `.env`.
//! - [`mongo`], [`kafka`], [`topics`] — one group of settings each.
//! - [`logging`] — `tracing` set up from `LOG_FORMAT` and `RUST_LOG`.

pub mod env;
pub mod kafka;
pub mod logging;
pub mod mongo;
pub mod topics;

pub use env::load_dotenv;
pub use kafka::{KafkaArgs, KafkaSecurity, KafkaSettings};
pub use logging::{LogArgs, LogFormat, init_logging};
pub use mongo::{MongoArgs, MongoSettings};
pub use topics::{RETRY_TIERS, SENDER_GROUP_MEMBERS_PER_SENDER, TopicArgs, TopicSpec, Topics};

/// A setting that is missing or wrong; the message names its environment key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {problem}")]
pub struct ConfigError {
    /// The environment key (flags are named after it).
    pub key: &'static str,
    /// What is wrong and what to do about it.
    pub problem: String,
}

impl ConfigError {
    pub(crate) fn new(key: &'static str, problem: impl Into<String>) -> Self {
        ConfigError {
            key,
            problem: problem.into(),
        }
    }
}
