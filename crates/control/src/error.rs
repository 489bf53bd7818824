//! Why an operation was refused or failed.

use pushservice_kafka::KafkaError;
use pushservice_model::InvalidId;
use pushservice_store::StoreError;

/// Why an operation was refused or failed. Front ends map the variant: `pushctl` to an exit
/// code, `pushapi` to an HTTP status (in brackets).
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// A field of the request is malformed (400).
    #[error("{field}: {message}")]
    Invalid {
        /// The field at fault, as the caller named it (`subject`, `allowedOrigins[1]`).
        field: String,
        /// What is wrong and what to do.
        message: String,
    },
    /// A well-formed value that cannot be used: a key that is not a P-256 point, an
    /// endpoint the policy refuses, a credentials file that does not parse (422).
    #[error("{field}: {message}")]
    Unusable {
        /// The field at fault.
        field: String,
        /// Why it cannot be used.
        message: String,
    },
    /// Something named does not exist (404).
    #[error("{0}")]
    NotFound(String),
    /// Not possible in the current state, for example a push already sending (409).
    #[error("{0}")]
    Conflict(String),
    /// A send of a push that is not `pending`, without force (409; each front end says how
    /// to force it).
    #[error("push {push_id} is {status}, not pending")]
    NotPending {
        /// The push.
        push_id: pushservice_model::ObjectId,
        /// Its status.
        status: pushservice_model::PushStatus,
    },
    /// MongoDB failed or is unreachable (503).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Kafka failed or is unreachable (503).
    #[error(transparent)]
    Kafka(#[from] KafkaError),
    /// Anything else (500).
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl ControlError {
    /// A malformed field.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        ControlError::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }

    /// A well-formed but unusable field.
    pub fn unusable(field: impl Into<String>, message: impl Into<String>) -> Self {
        ControlError::Unusable {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl From<InvalidId> for ControlError {
    fn from(e: InvalidId) -> Self {
        ControlError::NotFound(e.to_string())
    }
}
