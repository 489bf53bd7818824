//! Command errors and their exit codes.

use pushservice_config::ConfigError;
use pushservice_kafka::KafkaError;
use pushservice_model::InvalidId;
use pushservice_store::StoreError;

/// Why a command failed. The variant decides the exit code (see [`CommandError::exit_code`]).
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// A setting or an argument is wrong (exit 2).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// An id is malformed (exit 2).
    #[error(transparent)]
    InvalidId(#[from] InvalidId),
    /// An argument or a file it names is unusable (exit 2).
    #[error("{0}")]
    InvalidInput(String),
    /// Something named does not exist (exit 3).
    #[error("{0}")]
    NotFound(String),
    /// The push is not in a state that allows the command (exit 4).
    #[error("{0}")]
    Conflict(String),
    /// MongoDB failed or is unreachable (exit 5).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Kafka failed or is unreachable (exit 5).
    #[error(transparent)]
    Kafka(#[from] KafkaError),
    /// Anything else (exit 1).
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl From<pushservice_control::ControlError> for CommandError {
    fn from(e: pushservice_control::ControlError) -> Self {
        use pushservice_control::ControlError as C;
        match e {
            C::Invalid { .. } | C::Unusable { .. } => CommandError::InvalidInput(e.to_string()),
            C::NotFound(m) => CommandError::NotFound(m),
            C::Conflict(m) => CommandError::Conflict(m),
            C::NotPending { .. } => {
                CommandError::Conflict(format!("{e}; pass --force to send it again"))
            }
            C::Store(e) => CommandError::Store(e),
            C::Kafka(e) => CommandError::Kafka(e),
            C::Other(e) => CommandError::Other(e),
        }
    }
}

impl CommandError {
    /// Process exit code: 2 bad input or configuration, 3 not found, 4 wrong state,
    /// 5 MongoDB or Kafka unavailable, 1 anything else.
    pub fn exit_code(&self) -> u8 {
        match self {
            CommandError::Config(_)
            | CommandError::InvalidId(_)
            | CommandError::InvalidInput(_) => 2,
            CommandError::NotFound(_) => 3,
            CommandError::Conflict(_) => 4,
            CommandError::Store(_) | CommandError::Kafka(_) => 5,
            CommandError::Other(_) => 1,
        }
    }
}
