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
