//! The `pushes` collection.
//!
//! # Claims
//!
//! FerretDB 1.x applies a conditional update as read-modify-write of the whole document, so
//! two racing writers can both match their condition, and the later write puts back what the
//! earlier one changed. Where exactly one of several racing state changes must win, the
//! change first *claims* it by inserting a document with a deterministic `_id` into
//! `pushTriggers`: a unique `_id` is enforced atomically by every MongoDB-protocol server.
//!
//! - `"<push id>:<n>"`: trigger `n` of the push (`pushctl send`, [`Store::restart_push`]); a
//!   cancel of a `pending` push claims the next trigger too, so a racing send loses.
//! - `"<push id>:<n>:end"` (`to`: `done` or `canceled`): how the fan-out of trigger `n` ends.
//!   [`Store::finish_fanout`] claims `done`, [`Store::cancel_push`] claims `canceled`; the one
//!   that loses leaves the status alone. The claim outlives any status write a racing
//!   checkpoint undoes: the parser reads it ([`Store::cancel_requested`]) and confirms the
//!   cancel on the push after its last write ([`Store::settle_canceled_push`]).

use bson::oid::ObjectId;
use bson::{Bson, DateTime, Document, doc};
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
    /// or a cancel claimed the end of its current trigger first (see the module
    /// documentation).
    pub async fn finish_fanout(
        &self,
        id: ObjectId,
        produced: i64,
        skipped: i64,
    ) -> Result<bool, StoreError> {
        let Some(push) = self.push(id).await? else {
            return Ok(false);
        };
        // A cancel that claimed this trigger's end first wins, even if its status write was
        // lost to one of our checkpoints (see the module documentation).
        match self
            .claim_end(id, push.trigger_count, PushStatus::Done, DateTime::now())
            .await?
        {
            Claimed::Won | Claimed::Held(PushStatus::Done) => {}
            Claimed::Held(..) => return Ok(false),
        }
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

/// How the fan-out of one trigger of a push ended, as far as the parser knows when it stops.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FanoutEnd {
    /// Delivery messages produced, in total.
    pub produced: i64,
    /// Subscribers skipped (unusable subscriptions).
    pub skipped: i64,
    /// Last subscriber streamed (produced or skipped), if any.
    pub last_subscriber_id: Option<ObjectId>,
    /// Subscribers never fanned out because the push was canceled first.
    pub canceled: i64,
}

/// The outcome of a claim (see the module documentation).
enum Claimed {
    /// This caller inserted the claim.
    Won,
    /// The claim was there already, for this state.
    Held(PushStatus),
}

fn end_claim_id(id: ObjectId, trigger: i64) -> String {
    format!("{}:{trigger}:end", id.to_hex())
}

fn trigger_claim_id(id: ObjectId, trigger: i64) -> String {
    format!("{}:{trigger}", id.to_hex())
}

/// The state a claim document stands for: its `to` (end claims, cancels), or `processing`
/// for the trigger claims `restart_push` writes (they have none).
fn claimed_state(claim: &Document) -> PushStatus {
    match claim.get_str("to") {
        Ok("done") => PushStatus::Done,
        Ok("canceled") => PushStatus::Canceled,
        Ok("failed") => PushStatus::Failed,
        _ => PushStatus::Processing,
    }
}

fn parse_status(value: Option<&Bson>) -> Option<PushStatus> {
    value
        .cloned()
        .and_then(|v| bson::from_bson::<PushStatus>(v).ok())
}

impl Store {
    /// Inserts claim `claim_id` for `to`; if someone holds it already, what they claimed.
    async fn claim(
        &self,
        claim_id: String,
        push_id: ObjectId,
        to: PushStatus,
        from: Option<PushStatus>,
        at: DateTime,
    ) -> Result<Claimed, StoreError> {
        let mut claim = doc! {
            "_id": &claim_id,
            "pushId": push_id,
            "to": to.as_str(),
            "at": at,
        };
        if let Some(from) = from {
            claim.insert("from", from.as_str());
        }
        match self.triggers.insert_one(claim).await {
            Ok(_) => Ok(Claimed::Won),
            Err(e) if is_duplicate_key(&e) => {
                let held = self
                    .triggers
                    .find_one(doc! { "_id": &claim_id })
                    .await
                    .map_err(StoreError::query(format!("reading claim {claim_id}")))?
                    .unwrap_or_default();
                Ok(Claimed::Held(claimed_state(&held)))
            }
            Err(e) => Err(StoreError::Query {
                context: format!("claiming {claim_id} for push {push_id}"),
                source: e,
            }),
        }
    }

    async fn claim_end(
        &self,
        id: ObjectId,
        trigger: i64,
        to: PushStatus,
        at: DateTime,
    ) -> Result<Claimed, StoreError> {
        self.claim(end_claim_id(id, trigger), id, to, None, at)
            .await
    }

    /// The status of push `id` alone (an `_id` lookup with a projection); `None` when there is
    /// no such push or its status is not one we know.
    pub async fn push_status(&self, id: ObjectId) -> Result<Option<PushStatus>, StoreError> {
        let found = self
            .pushes
            .find_one(doc! { "_id": id })
            .projection(doc! { "status": 1 })
            .await
            .map_err(StoreError::query(format!(
                "reading the status of push {id}"
            )))?;
        Ok(found.and_then(|d| parse_status(d.get("status"))))
    }

    /// Cancels push `id`: a `pending` or `processing` push becomes `canceled` with
    /// `canceledAt` and `updatedAt` set. [`Transition::Conflict`] with the current status when
    /// it is `done`, `failed` or `canceled` already (or claimed `done` by its parser), or
    /// missing. Calling it again after an error is safe.
    ///
    /// Race safety (see the module documentation): a `processing` push's cancel claims the
    /// end of its current trigger, so of a cancel and the parser's
    /// [`Store::finish_fanout`] exactly one wins; a `pending` push's cancel claims its next
    /// trigger, so of a cancel and a send exactly one wins (a send that claimed first is
    /// canceled as its fan-out starts). What is left on FerretDB 1.x: a parser checkpoint
    /// racing this status write can put `processing` back for up to about a second, until
    /// the parser sees the claim and writes `canceled` again ([`Store::settle_canceled_push`]);
    /// senders drop the push's deliveries once they see `canceled`. A `failed` written by a
    /// parser giving the push up at the same moment may also win over the cancel (nothing is
    /// delivered either way).
    pub async fn cancel_push(&self, id: ObjectId) -> Result<Transition, StoreError> {
        let Some(push) = self.push(id).await? else {
            return Ok(Transition::Conflict(None));
        };
        let at = DateTime::now();
        // A pending push canceled before any send was never fanned out: nothing will settle
        // it later, so the cancel itself marks its fan-out finished (with nothing sent).
        let mut never_sent = false;
        let trigger = match push.status {
            PushStatus::Pending => {
                let next = push.trigger_count + 1;
                let claimed = self
                    .claim(
                        trigger_claim_id(id, next),
                        id,
                        PushStatus::Canceled,
                        Some(PushStatus::Pending),
                        at,
                    )
                    .await?;
                match claimed {
                    Claimed::Won | Claimed::Held(PushStatus::Canceled) => {
                        never_sent = true;
                        next
                    }
                    Claimed::Held(..) => {
                        // A send claimed this trigger first: cancel the fan-out it starts.
                        match self.claim_end(id, next, PushStatus::Canceled, at).await? {
                            Claimed::Won | Claimed::Held(PushStatus::Canceled) => next,
                            Claimed::Held(state) => {
                                return Ok(Transition::Conflict(Some(state)));
                            }
                        }
                    }
                }
            }
            PushStatus::Processing => {
                let current = push.trigger_count;
                match self
                    .claim_end(id, current, PushStatus::Canceled, at)
                    .await?
                {
                    Claimed::Won | Claimed::Held(PushStatus::Canceled) => current,
                    // Its parser finished first; the push is (about to be) done.
                    Claimed::Held(state) => return Ok(Transition::Conflict(Some(state))),
                }
            }
            other => return Ok(Transition::Conflict(Some(other))),
        };
        let result = self
            .pushes
            .update_one(
                doc! {
                    "_id": id,
                    "status": { "$in": [PushStatus::Pending.as_str(), PushStatus::Processing.as_str()] },
                },
                doc! { "$set": if never_sent {
                    doc! {
                        "status": PushStatus::Canceled.as_str(),
                        "canceledAt": at,
                        "updatedAt": at,
                        "triggerCount": trigger,
                        "fanout.finishedAt": at,
                    }
                } else {
                    doc! {
                        "status": PushStatus::Canceled.as_str(),
                        "canceledAt": at,
                        "updatedAt": at,
                        "triggerCount": trigger,
                    }
                } },
            )
            .await
            .map_err(StoreError::query(format!("canceling push {id}")))?;
        if result.matched_count == 0 {
            return Ok(Transition::Conflict(self.push_status(id).await?));
        }
        let Some(mut push) = self.push(id).await? else {
            return Ok(Transition::Conflict(None));
        };
        // A racing checkpoint may have put `processing` back; the claim makes the cancel
        // final all the same, and the parser writes it again within a second.
        if push.status == PushStatus::Processing && push.trigger_count == trigger {
            push.status = PushStatus::Canceled;
            push.canceled_at = Some(at);
        }
        Ok(Transition::Done(Box::new(push)))
    }

    /// Whether trigger `trigger` of push `id` was canceled: its end claimed `canceled`, or
    /// its status `canceled`. Two `_id` lookups; the parser asks about once a second while it
    /// fans the push out.
    pub async fn cancel_requested(&self, id: ObjectId, trigger: i64) -> Result<bool, StoreError> {
        let claim_id = end_claim_id(id, trigger);
        let claim = self
            .triggers
            .find_one(doc! { "_id": &claim_id })
            .await
            .map_err(StoreError::query(format!("reading claim {claim_id}")))?;
        if let Some(claim) = claim {
            return Ok(claimed_state(&claim) == PushStatus::Canceled);
        }
        Ok(self.push_status(id).await? == Some(PushStatus::Canceled))
    }

    /// Records on push `id`, canceled while trigger `trigger` was being fanned out, how far
    /// the fan-out got (`totalSent`, `fanout`) and its delivery totals (the senders' and the
    /// parser's counter documents summed), and makes sure its status is `canceled` (a racing
    /// checkpoint may have undone the cancel's write; see [`Store::cancel_push`]). Called by
    /// the parser once it has stopped writing the push; returns false when the push is neither
    /// `processing` nor `canceled` at that trigger any more (sent again meanwhile).
    /// `counted`: `end.canceled` is the final count of subscribers never fanned out, so the
    /// fan-out is finished (`fanout.finishedAt`); false while that count is not known yet.
    ///
    /// After this, the outcome recorders keep the totals up to date like for a `done` push.
    pub async fn settle_canceled_push(
        &self,
        id: ObjectId,
        trigger: i64,
        end: FanoutEnd,
        counted: bool,
    ) -> Result<bool, StoreError> {
        let claim_id = end_claim_id(id, trigger);
        let claim = self
            .triggers
            .find_one(doc! { "_id": &claim_id })
            .await
            .map_err(StoreError::query(format!("reading claim {claim_id}")))?;
        let now = DateTime::now();
        let mut set = doc! {
            "status": PushStatus::Canceled.as_str(),
            "totalSent": end.produced,
            "fanout.produced": end.produced,
            "fanout.skipped": end.skipped,
            "fanout.canceled": end.canceled,
            "fanout.updatedAt": now,
            "updatedAt": now,
        };
        if counted {
            // Settled: nothing more will be fanned out or counted as never sent.
            set.insert("fanout.finishedAt", now);
        }
        if let Some(last) = end.last_subscriber_id {
            set.insert("fanout.lastSubscriberId", last);
        }
        if let Some(at) = claim.as_ref().and_then(|c| c.get_datetime("at").ok()) {
            // The same instant `cancel_push` wrote, in case a checkpoint undid its write.
            set.insert("canceledAt", *at);
        }
        let summary = self.delivery_summary(id).await?;
        set.extend(summary.counts.push_totals());
        let failures: Vec<Document> = summary
            .failures
            .iter()
            .map(|r| doc! { "reason": &r.reason, "count": r.count })
            .collect();
        set.insert("deliveryFailures", failures);
        let result = self
            .pushes
            .update_one(
                doc! {
                    "_id": id,
                    "triggerCount": trigger,
                    "status": { "$in": [PushStatus::Processing.as_str(), PushStatus::Canceled.as_str()] },
                },
                doc! { "$set": set },
            )
            .await
            .map_err(StoreError::query(format!("settling canceled push {id}")))?;
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
