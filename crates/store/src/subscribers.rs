//! The `subscribers` collection.

use bson::oid::ObjectId;
use bson::{Bson, Document, doc};
use mongodb::error::{ErrorKind, WriteError, WriteFailure};
use pushservice_model::Subscriber;

use crate::error::StoreError;
use crate::store::{SUBSCRIBERS, Store};

impl Store {
    /// Inserts subscribers in one unordered bulk write; returns how many were inserted.
    ///
    /// Unordered, so the server may apply the batch in parallel and one duplicate does not stop
    /// the rest.
    pub async fn insert_subscribers(&self, subscribers: &[Subscriber]) -> Result<u64, StoreError> {
        if subscribers.is_empty() {
            return Ok(0);
        }
        let documents = subscribers
            .iter()
            .map(bson::to_document)
            .collect::<Result<Vec<_>, _>>()
            .map_err(StoreError::encode("subscriber"))?;
        let result = self
            .subscribers
            .insert_many(documents)
            .ordered(false)
            .await
            .map_err(StoreError::query(format!(
                "inserting {} subscribers",
                subscribers.len()
            )))?;
        Ok(result.inserted_ids.len() as u64)
    }

    /// Counts a site's subscribers, only the subscribed ones when `subscribed_only`.
    pub async fn count_subscribers(
        &self,
        site_id: ObjectId,
        subscribed_only: bool,
    ) -> Result<u64, StoreError> {
        let filter = if subscribed_only {
            doc! { "siteId": site_id, "subscribed": true }
        } else {
            doc! { "siteId": site_id }
        };
        self.subscribers
            .count_documents(filter)
            .await
            .map_err(StoreError::query(format!(
                "counting subscribers of site {site_id}"
            )))
    }

    /// Batch size configured for streaming and bulk writes (`QUERY_BATCH_SIZE`).
    pub fn batch_size(&self) -> u32 {
        self.batch_size
    }
}

/// Statements per `update` command in [`Store::unsubscribe`].
///
/// FerretDB 1.x keeps each statement's backend query, and with it one pooled database
/// connection, open until the whole command ends (the local build is patched, see
/// `scripts/ferretdb/`; a server someone else runs may not be). A command with more statements
/// than its pool has connections (100 on SQLite, fewer on PostgreSQL) then waits for itself
/// forever and takes every other client down with it. 32 statements keep three concurrent
/// unsubscribe commands within a 100-connection pool; MongoDB takes up to 100,000 a command,
/// so the split costs real MongoDB only round trips.
pub const UNSUBSCRIBE_STATEMENTS_PER_COMMAND: usize = 32;

impl Store {
    /// Marks subscribers `subscribed: false` (their push service said the subscription is
    /// gone) and stamps `updatedAt`; returns how many documents were modified.
    ///
    /// One `update` command per [`UNSUBSCRIBE_STATEMENTS_PER_COMMAND`] ids, one statement per
    /// id, `{q: {_id: <id>}, u: {$set: {subscribed: false, updatedAt: <now>}}}`, unordered: a
    /// filter on `_id` alone is what FerretDB answers from the `_id` index, where
    /// `_id: {$in: [...]}` (or anything added next to `_id`) scans the whole collection once per
    /// batch. Ids not in the collection are skipped. A subscriber that was already unsubscribed
    /// counts as modified too (its `updatedAt` moves), so the count is an upper bound on the
    /// subscribers that changed state. Writing the same batch again is harmless.
    ///
    /// A failed command or a statement the server refused is an error naming how many ids were
    /// in the batch, which statements, and the first subscriber refused; the commands before
    /// it have been applied.
    pub async fn unsubscribe(&self, ids: &[ObjectId]) -> Result<u64, StoreError> {
        let now = bson::DateTime::now();
        let mut modified = 0;
        for (chunk_index, chunk) in ids.chunks(UNSUBSCRIBE_STATEMENTS_PER_COMMAND).enumerate() {
            let first = chunk_index * UNSUBSCRIBE_STATEMENTS_PER_COMMAND;
            let context = || {
                format!(
                    "unsubscribing {} subscribers (update statements {}..{} of the batch, by _id)",
                    ids.len(),
                    first,
                    first + chunk.len()
                )
            };
            let updates: Vec<Document> = chunk
                .iter()
                .map(|id| {
                    doc! {
                        "q": { "_id": id },
                        "u": { "$set": { "subscribed": false, "updatedAt": now } },
                    }
                })
                .collect();
            let reply = self
                .database
                .run_command(doc! {
                    "update": SUBSCRIBERS,
                    "updates": updates,
                    "ordered": false,
                })
                .await
                .map_err(StoreError::query(context()))?;
            if let Some(error) = first_write_error(&reply, chunk) {
                let (refused, source) = error;
                return Err(StoreError::Query {
                    context: format!("{}: subscriber {refused} refused", context()),
                    source,
                });
            }
            modified += count(&reply, "nModified");
        }
        Ok(modified)
    }
}

/// A numeric field of a command reply (servers answer int32 or int64), 0 when absent.
fn count(reply: &Document, field: &str) -> u64 {
    match reply.get(field) {
        Some(Bson::Int32(n)) => u64::try_from(*n).unwrap_or(0),
        Some(Bson::Int64(n)) => u64::try_from(*n).unwrap_or(0),
        Some(Bson::Double(n)) if *n >= 0.0 => *n as u64,
        _ => 0,
    }
}

/// The first entry of a reply's `writeErrors` as the subscriber it refused and a driver error
/// carrying the server's code and message.
fn first_write_error(
    reply: &Document,
    chunk: &[ObjectId],
) -> Option<(String, mongodb::error::Error)> {
    let errors = reply.get_array("writeErrors").ok()?;
    let raw = errors.iter().find_map(Bson::as_document)?;
    let refused = raw
        .get("index")
        .and_then(|index| match index {
            Bson::Int32(i) => usize::try_from(*i).ok(),
            Bson::Int64(i) => usize::try_from(*i).ok(),
            _ => None,
        })
        .and_then(|i| chunk.get(i))
        .map_or_else(|| "(unknown index)".to_owned(), |id| id.to_hex());
    let source = match bson::from_document::<WriteError>(raw.clone()) {
        Ok(error) => ErrorKind::Write(WriteFailure::WriteError(error)).into(),
        Err(_) => mongodb::error::Error::custom(format!("{raw}")),
    };
    let more = errors.len() - 1;
    let refused = if more > 0 {
        format!("{refused} (and {more} more)")
    } else {
        refused
    };
    Some((refused, source))
}
