//! Store errors.

use bson::oid::ObjectId;

/// What went wrong talking to MongoDB.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No server answered within the timeout.
    #[error(
        "could not reach MongoDB at {url} within {timeout:?}: {source}; is it running and MONGODB_URL right?"
    )]
    Unreachable {
        /// Redacted URL that was tried.
        url: String,
        /// How long we waited.
        timeout: std::time::Duration,
        /// The driver's error.
        source: mongodb::error::Error,
    },
    /// `MONGODB_URL` could not be parsed by the driver.
    #[error("MONGODB_URL {url} is not a usable connection string: {source}")]
    BadUrl {
        /// Redacted URL.
        url: String,
        /// The driver's error.
        source: mongodb::error::Error,
    },
    /// A stored document does not fit the model.
    #[error("{collection} document {id} cannot be read: {source}")]
    Decode {
        /// Collection name.
        collection: &'static str,
        /// The document's `_id`.
        id: String,
        /// What did not fit.
        source: Box<bson::de::Error>,
    },
    /// A document could not be encoded (a bug: the model always encodes).
    #[error("cannot encode {what}: {source}")]
    Encode {
        /// What was being encoded.
        what: &'static str,
        /// The encoder's error.
        source: Box<bson::ser::Error>,
    },
    /// A query or write failed.
    #[error("MongoDB {context}: {source}")]
    Query {
        /// What was being done.
        context: String,
        /// The driver's error.
        source: mongodb::error::Error,
    },
}

impl StoreError {
    pub(crate) fn query(context: impl Into<String>) -> impl FnOnce(mongodb::error::Error) -> Self {
        let context = context.into();
        move |source| StoreError::Query { context, source }
    }

    pub(crate) fn encode(what: &'static str) -> impl FnOnce(bson::ser::Error) -> Self {
        move |source| StoreError::Encode {
            what,
            source: Box::new(source),
        }
    }

    pub(crate) fn decode(
        collection: &'static str,
        id: &ObjectId,
    ) -> impl FnOnce(bson::de::Error) -> Self {
        let id = id.to_hex();
        move |source| StoreError::Decode {
            collection,
            id,
            source: Box::new(source),
        }
    }
}

/// Whether `error` is MongoDB's duplicate key error (code 11000), however the server
/// reported it (a write error, a bulk write error, or a command error).
pub(crate) fn is_duplicate_key(error: &mongodb::error::Error) -> bool {
    use mongodb::error::{ErrorKind, WriteFailure};
    match error.kind.as_ref() {
        ErrorKind::Write(WriteFailure::WriteError(e)) => e.code == 11000,
        ErrorKind::InsertMany(e) => e.write_errors.iter().flatten().any(|w| w.code == 11000),
        ErrorKind::Command(e) => e.code == 11000,
        _ => false,
    }
}
