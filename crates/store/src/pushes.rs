//! The `pushes` collection.

use bson::oid::ObjectId;
use bson::{DateTime, doc};
use mongodb::options::ReturnDocument;
use pushservice_model::{Push, PushStatus};

use crate::error::StoreError;
use crate::store::{PUSHES, Store};

/// The result of a conditional status change.
#[derive(Debug, Clone, PartialEq)]
pub enum Transition {
    /// The push was in the expected state and now has the new one; here it is after the change.
    Done(Box<Push>),
    /// The push was not in the expected state (someone else moved it first); its current state.
    Conflict(Option<PushStatus>),
}

impl Store {
    /// Inserts a new push.
    pub async fn insert_push(&self, push: &Push) -> Result<(), StoreError> {
        let document = bson::to_document(push).map_err(StoreError::encode("push"))?;
        self.pushes
            .insert_one(document)
            .await
            .map_err(StoreError::query(format!("inserting push {}", push.id)))?;
        Ok(())
    }

    /// Loads a push by id; `None` when there is no such push.
    pub async fn push(&self, id: ObjectId) -> Result<Option<Push>, StoreError> {
        let found = self
            .pushes
            .find_one(doc! { "_id": id })
            .await
            .map_err(StoreError::query(format!("loading push {id}")))?;
        found
            .map(|d| bson::from_document(d).map_err(StoreError::decode(PUSHES, &id)))
            .transpose()
    }

    /// Moves push `id` from status `from` to `to` atomically: when two commands race, exactly
    /// one of them sees [`Transition::Done`].
    pub async fn transition_push(
        &self,
        id: ObjectId,
        from: PushStatus,
        to: PushStatus,
    ) -> Result<Transition, StoreError> {
        let context = format!("moving push {id} from {from} to {to}");
        let updated = self
            .pushes
            .find_one_and_update(
                doc! { "_id": id, "status": from.as_str() },
                doc! { "$set": { "status": to.as_str(), "updatedAt": DateTime::now() } },
            )
            .return_document(ReturnDocument::After)
            .await
            .map_err(StoreError::query(context))?;
        match updated {
            Some(document) => {
                let push =
                    bson::from_document(document).map_err(StoreError::decode(PUSHES, &id))?;
                Ok(Transition::Done(Box::new(push)))
            }
            None => Ok(Transition::Conflict(self.push(id).await?.map(|p| p.status))),
        }
    }
}

impl Store {
    /// Triggers push `id`: moves it from `from` to `processing`, counts the trigger and
    /// forgets any fan-out checkpoint, so the next parser starts from the first subscriber.
    ///
    /// Exactly one of several racing callers gets [`Transition::Done`]: each trigger first
    /// claims its number by inserting `"<push id>:<n>"` into `pushTriggers`, and a unique
    /// `_id` is enforced atomically by every MongoDB-protocol server, whereas a conditional
    /// update is not (FerretDB 1.x applies updates as read-modify-write; two racing
    /// `findOneAndUpdate` calls both "won" in a test).
    pub async fn restart_push(
        &self,
        id: ObjectId,
        from: PushStatus,
    ) -> Result<Transition, StoreError> {
        let Some(push) = self.push(id).await? else {
            return Ok(Transition::Conflict(None));
        };
        if push.status != from {
            return Ok(Transition::Conflict(Some(push.status)));
        }
        let trigger = push.trigger_count + 1;
        let claim = doc! {
            "_id": format!("{}:{trigger}", id.to_hex()),
            "pushId": id,
            "from": from.as_str(),
            "at": DateTime::now(),
        };
        if let Err(e) = self.triggers.insert_one(claim).await {
            if is_duplicate_key(&e) {
                return Ok(Transition::Conflict(self.push(id).await?.map(|p| p.status)));
            }
            return Err(StoreError::Query {
                context: format!("claiming trigger {trigger} of push {id}"),
                source: e,
            });
        }
        let updated = self
            .pushes
            .find_one_and_update(
                doc! { "_id": id },
                doc! {
                    "$set": {
                        "status": PushStatus::Processing.as_str(),
                        "triggerCount": trigger,
                        "updatedAt": DateTime::now(),
                    },
                    "$unset": { "fanout": "", "failureReason": "" },
                },
            )
            .return_document(ReturnDocument::After)
            .await
            .map_err(StoreError::query(format!("restarting push {id}")))?;
        match updated {
            Some(document) => {
                let push =
                    bson::from_document(document).map_err(StoreError::decode(PUSHES, &id))?;
                Ok(Transition::Done(Box::new(push)))
            }
            None => Ok(Transition::Conflict(None)),
        }
    }

    /// Records how far the fan-out of push `id` got (see [`FanoutProgress`]), and brings its
    /// delivery totals up to the senders' sum: while the push is `processing` its parser is
    /// the only writer of the document (see `delivery_stats`).
    pub async fn checkpoint_fanout(
        &self,
        id: ObjectId,
        last_subscriber_id: ObjectId,
        produced: i64,
        skipped: i64,
    ) -> Result<(), StoreError> {
        let mut set = doc! {
            "fanout.lastSubscriberId": last_subscriber_id,
            "fanout.produced": produced,
            "fanout.skipped": skipped,
            "fanout.updatedAt": DateTime::now(),
        };
        set.extend(self.delivery_counts(id).await?.push_totals());
        self.pushes
            .update_one(
                doc! { "_id": id, "status": PushStatus::Processing.as_str() },
                doc! { "$set": set },
            )
            .await
            .map_err(StoreError::query(format!("checkpointing push {id}")))?;
        Ok(())
    }

    /// Marks push `id` `done` with `totalSent` once every subscriber has been fanned out, and
    /// sets its delivery totals to the senders' sum so far (senders keep them up to date from
    /// then on; see `delivery_stats`). Returns false when the push was no longer `processing`
    /// (canceled meanwhile).
    pub async fn finish_fanout(
        &self,
        id: ObjectId,
        produced: i64,
        skipped: i64,
    ) -> Result<bool, StoreError> {
        let now = DateTime::now();
        let mut set = doc! {
            "status": PushStatus::Done.as_str(),
            "totalSent": produced,
            "fanout.produced": produced,
            "fanout.skipped": skipped,
            "fanout.updatedAt": now,
            "fanout.finishedAt": now,
            "updatedAt": now,
        };
        set.extend(self.delivery_counts(id).await?.push_totals());
        let result = self
            .pushes
            .update_one(
                doc! { "_id": id, "status": PushStatus::Processing.as_str() },
                doc! { "$set": set },
            )
            .await
            .map_err(StoreError::query(format!("finishing push {id}")))?;
        Ok(result.matched_count == 1)
    }

    /// Marks push `id` `failed` with `reason`, from whatever non-final state it is in. Returns
    /// false when it was in none (done, failed or canceled meanwhile, or no such push). Works on
    /// a push document that does not fit the model, as long as its `status` is readable.
    pub async fn fail_push(&self, id: ObjectId, reason: &str) -> Result<bool, StoreError> {
        let result = self
            .pushes
            .update_one(
                doc! { "_id": id, "status": { "$in": [PushStatus::Pending.as_str(), PushStatus::Processing.as_str()] } },
                doc! { "$set": {
                    "status": PushStatus::Failed.as_str(),
                    "failureReason": reason,
                    "updatedAt": DateTime::now(),
                } },
            )
            .await
            .map_err(StoreError::query(format!("failing push {id}")))?;
        Ok(result.matched_count == 1)
    }
}

/// Whether `error` is a duplicate-key (E11000) write error.
fn is_duplicate_key(error: &mongodb::error::Error) -> bool {
    use mongodb::error::{ErrorKind, WriteFailure};
    match error.kind.as_ref() {
        ErrorKind::Write(WriteFailure::WriteError(e)) => e.code == 11000,
        ErrorKind::InsertMany(e) => e.write_errors.iter().flatten().any(|w| w.code == 11000),
        _ => false,
    }
}
