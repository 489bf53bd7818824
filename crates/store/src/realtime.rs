//! What the realtime gateway keeps in MongoDB: each site's realtime settings (token secrets,
//! history limits), the durable history of channel messages, how far the history recorder has
//! stored each partition, and the epoch that makes positions comparable.
//!
//! History documents are written only by the recorder that owns their partition (one consumer
//! group over all gateways), with `_id` = the message id `<partition>-<offset>`, so a batch
//! written twice after a rebalance is stored once. Only the recorder deletes them, and it
//! records per channel the newest position it deleted (`trimmedThrough`): a client whose
//! position is older than that cannot be recovered, and is told so.

use std::time::Duration;

use bson::{Document, doc};
use futures::TryStreamExt as _;
use mongodb::options::IndexOptions;
use mongodb::{Collection, IndexModel};
use pushservice_model::{DateTime, ObjectId};
use serde::{Deserialize, Serialize};

use crate::error::{StoreError, is_duplicate_key};
use crate::store::{SITES, Store};

/// Stored channel messages.
pub const REALTIME_HISTORY: &str = "realtimeHistory";
/// Per channel: the newest position removed from the history.
pub const REALTIME_CHANNELS: &str = "realtimeChannels";
/// Per topic: its epoch; per partition: how far the history is stored.
pub const REALTIME_PROGRESS: &str = "realtimeProgress";

/// Default number of messages kept per channel.
pub const DEFAULT_HISTORY_SIZE: u32 = 100;
/// Default age of the oldest message kept, in seconds.
pub const DEFAULT_HISTORY_TTL_SECONDS: u32 = 86_400;

/// A site's realtime settings (field `realtime` of its `sites` document).
#[derive(Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RealtimeSettings {
    /// HS256 secrets that sign connection tokens, newest first; the second one stays valid
    /// until the next rotation so tokens signed just before a rotation keep working.
    #[serde(default)]
    pub secrets: Vec<String>,
    /// Messages kept per channel for recovery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history_size: Option<u32>,
    /// Age of the oldest message recovery may return.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history_ttl_seconds: Option<u32>,
}

impl std::fmt::Debug for RealtimeSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RealtimeSettings")
            .field("secrets", &self.secrets.len())
            .field("history_size", &self.history_size)
            .field("history_ttl_seconds", &self.history_ttl_seconds)
            .finish()
    }
}

impl RealtimeSettings {
    /// Messages kept per channel.
    pub fn history_size(&self) -> u32 {
        self.history_size.unwrap_or(DEFAULT_HISTORY_SIZE)
    }

    /// Age of the oldest message recovery may return.
    pub fn history_ttl(&self) -> Duration {
        Duration::from_secs(u64::from(
            self.history_ttl_seconds
                .unwrap_or(DEFAULT_HISTORY_TTL_SECONDS),
        ))
    }
}

/// One stored message.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEntry {
    /// Message id, `<partition>-<offset>`.
    #[serde(rename = "_id")]
    pub id: String,
    /// Site id (hex).
    pub site_id: String,
    /// Channel name.
    pub channel: String,
    /// Kafka partition.
    pub partition: i32,
    /// Kafka offset: the message's position in its channel.
    pub offset: i64,
    /// Publish time.
    pub ts: DateTime,
    /// The message frame as clients receive it (JSON text).
    pub frame: String,
}

impl Store {
    fn history(&self) -> Collection<HistoryEntry> {
        self.database.collection(REALTIME_HISTORY)
    }

    fn realtime_channels(&self) -> Collection<Document> {
        self.database.collection(REALTIME_CHANNELS)
    }

    fn realtime_progress(&self) -> Collection<Document> {
        self.database.collection(REALTIME_PROGRESS)
    }

    /// Creates the indexes recovery and trimming read by.
    pub async fn ensure_realtime_indexes(&self) -> Result<(), StoreError> {
        let by_channel = IndexModel::builder()
            .keys(doc! { "siteId": 1, "channel": 1, "offset": 1 })
            .options(
                IndexOptions::builder()
                    .name("siteId_1_channel_1_offset_1".to_owned())
                    .build(),
            )
            .build();
        let by_time = IndexModel::builder()
            .keys(doc! { "ts": 1 })
            .options(IndexOptions::builder().name("ts_1".to_owned()).build())
            .build();
        // One at a time: FerretDB 1.24 drops the connection when a multi-index
        // createIndexes names an index that already exists.
        for index in [by_channel, by_time] {
            self.history()
                .create_index(index)
                .await
                .map_err(StoreError::query("creating realtimeHistory indexes"))?;
        }
        Ok(())
    }

    /// A site's realtime settings: `None` when there is no such site, default settings (no
    /// secret) when it has none.
    pub async fn realtime_settings(
        &self,
        site: ObjectId,
    ) -> Result<Option<RealtimeSettings>, StoreError> {
        Ok(self
            .realtime_site(site)
            .await?
            .map(|(settings, _)| settings))
    }

    /// A site's realtime settings and allowed origins; `None` when there is no such site.
    pub async fn realtime_site(
        &self,
        site: ObjectId,
    ) -> Result<Option<(RealtimeSettings, Vec<String>)>, StoreError> {
        let options = mongodb::options::FindOneOptions::builder()
            .projection(doc! { "realtime": 1, "allowedOrigins": 1 })
            .build();
        let found = self
            .sites
            .find_one(doc! { "_id": site })
            .with_options(options)
            .await
            .map_err(StoreError::query(format!(
                "loading realtime settings of site {site}"
            )))?;
        let Some(document) = found else {
            return Ok(None);
        };
        let origins = document
            .get_array("allowedOrigins")
            .map(|list| {
                list.iter()
                    .filter_map(|o| o.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        let settings = match document.get_document("realtime") {
            Ok(realtime) => {
                bson::from_document(realtime.clone()).map_err(StoreError::decode(SITES, &site))?
            }
            Err(_) => RealtimeSettings::default(),
        };
        Ok(Some((settings, origins)))
    }

    /// Makes `secret` the site's newest realtime secret, keeping the previous one valid.
    /// False when there is no such site.
    pub async fn rotate_realtime_secret(
        &self,
        site: ObjectId,
        secret: &str,
    ) -> Result<bool, StoreError> {
        let Some(mut settings) = self.realtime_settings(site).await? else {
            return Ok(false);
        };
        settings.secrets.insert(0, secret.to_owned());
        settings.secrets.truncate(2);
        self.set_realtime_settings(site, &settings).await
    }

    /// Replaces the site's realtime settings. False when there is no such site.
    pub async fn set_realtime_settings(
        &self,
        site: ObjectId,
        settings: &RealtimeSettings,
    ) -> Result<bool, StoreError> {
        let value = bson::to_bson(settings).map_err(StoreError::encode("realtime settings"))?;
        let updated = self
            .sites
            .update_one(
                doc! { "_id": site },
                doc! { "$set": { "realtime": value, "updatedAt": DateTime::now() } },
            )
            .await
            .map_err(StoreError::query(format!(
                "setting realtime settings of site {site}"
            )))?;
        Ok(updated.matched_count == 1)
    }

    /// The epoch of `topic`'s positions, created (random) on first use. Concurrent first
    /// uses agree: the first insert wins and the others read it.
    pub async fn realtime_epoch(&self, topic: &str, candidate: &str) -> Result<String, StoreError> {
        let id = format!("epoch:{topic}");
        match self
            .realtime_progress()
            .insert_one(doc! { "_id": &id, "epoch": candidate })
            .await
        {
            Ok(_) => return Ok(candidate.to_owned()),
            Err(e) if is_duplicate_key(&e) => {}
            Err(e) => return Err(StoreError::query("creating the realtime epoch")(e)),
        }
        let found = self
            .realtime_progress()
            .find_one(doc! { "_id": &id })
            .await
            .map_err(StoreError::query("reading the realtime epoch"))?;
        Ok(found
            .and_then(|d| d.get_str("epoch").ok().map(str::to_owned))
            .unwrap_or_else(|| candidate.to_owned()))
    }

    /// Starts a new epoch for `topic` (its positions restarted: the topic was recreated) and
    /// forgets the history and progress of the old one.
    pub async fn new_realtime_epoch(&self, topic: &str, epoch: &str) -> Result<(), StoreError> {
        self.history()
            .delete_many(doc! {})
            .await
            .map_err(StoreError::query("clearing realtime history"))?;
        self.realtime_channels()
            .delete_many(doc! {})
            .await
            .map_err(StoreError::query("clearing realtime channels"))?;
        self.realtime_progress()
            .delete_many(doc! {})
            .await
            .map_err(StoreError::query("clearing realtime progress"))?;
        self.realtime_progress()
            .update_one(
                doc! { "_id": format!("epoch:{topic}") },
                doc! { "$set": { "epoch": epoch } },
            )
            .upsert(true)
            .await
            .map_err(StoreError::query("writing the realtime epoch"))?;
        Ok(())
    }

    /// Stores history entries; ones already stored (a batch replayed after a rebalance) are
    /// skipped.
    pub async fn store_history(&self, entries: &[HistoryEntry]) -> Result<(), StoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        match self.history().insert_many(entries).ordered(false).await {
            Ok(_) => Ok(()),
            Err(e) if only_duplicates(&e) => Ok(()),
            Err(e) => Err(StoreError::query("storing realtime history")(e)),
        }
    }

    /// Records that partition `partition` of `topic` is stored through `offset`.
    pub async fn set_history_stored_through(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> Result<(), StoreError> {
        self.realtime_progress()
            .update_one(
                doc! { "_id": format!("stored:{topic}:{partition}") },
                doc! { "$max": { "storedThrough": offset } },
            )
            .upsert(true)
            .await
            .map_err(StoreError::query("recording realtime history progress"))?;
        Ok(())
    }

    /// How far partition `partition` of `topic` is stored (`-1` when nothing is).
    pub async fn history_stored_through_partition(
        &self,
        topic: &str,
        partition: i32,
    ) -> Result<i64, StoreError> {
        let found = self
            .realtime_progress()
            .find_one(doc! { "_id": format!("stored:{topic}:{partition}") })
            .await
            .map_err(StoreError::query("reading realtime history progress"))?;
        Ok(found
            .and_then(|d| d.get_i64("storedThrough").ok())
            .unwrap_or(-1))
    }

    /// How far each partition of `topic` is stored (`-1` where nothing is).
    pub async fn history_stored_through(
        &self,
        topic: &str,
        partitions: usize,
    ) -> Result<Vec<i64>, StoreError> {
        let prefix = format!("stored:{topic}:");
        let mut stored = vec![-1; partitions];
        let mut cursor = self
            .realtime_progress()
            .find(doc! { "_id": { "$regex": format!("^{}", regex_escape(&prefix)) } })
            .await
            .map_err(StoreError::query("reading realtime history progress"))?;
        while let Some(document) = cursor
            .try_next()
            .await
            .map_err(StoreError::query("reading realtime history progress"))?
        {
            let partition = document
                .get_str("_id")
                .ok()
                .and_then(|id| id.strip_prefix(&prefix))
                .and_then(|p| p.parse::<usize>().ok());
            let offset = document.get_i64("storedThrough").ok();
            if let (Some(partition), Some(offset)) = (partition, offset)
                && let Some(slot) = stored.get_mut(partition)
            {
                *slot = offset;
            }
        }
        Ok(stored)
    }

    /// Stored messages of a channel with `after < offset <= through`, oldest first, at most
    /// `limit`.
    pub async fn history_range(
        &self,
        site: &str,
        channel: &str,
        after: i64,
        through: i64,
        limit: u32,
    ) -> Result<Vec<HistoryEntry>, StoreError> {
        self.history()
            .find(doc! {
                "siteId": site,
                "channel": channel,
                "offset": { "$gt": after, "$lte": through },
            })
            .sort(doc! { "offset": 1 })
            .limit(i64::from(limit))
            .await
            .map_err(StoreError::query(format!("reading history of {channel:?}")))?
            .try_collect()
            .await
            .map_err(StoreError::query(format!("reading history of {channel:?}")))
    }

    /// The newest position removed from a channel's history (`-1` when none was).
    pub async fn history_trimmed_through(
        &self,
        site: &str,
        channel: &str,
    ) -> Result<i64, StoreError> {
        let found = self
            .realtime_channels()
            .find_one(doc! { "_id": channel_key(site, channel) })
            .await
            .map_err(StoreError::query(format!(
                "reading trim position of {channel:?}"
            )))?;
        Ok(found
            .and_then(|d| d.get_i64("trimmedThrough").ok())
            .unwrap_or(-1))
    }

    /// Removes a channel's messages beyond the newest `keep`, recording the newest position
    /// removed first (so a reader never sees a gap without knowing). Returns how many went.
    pub async fn trim_history_to(
        &self,
        site: &str,
        channel: &str,
        keep: u32,
    ) -> Result<u64, StoreError> {
        let cutoff = self
            .history()
            .find(doc! { "siteId": site, "channel": channel })
            .sort(doc! { "offset": -1 })
            .skip(u64::from(keep))
            .limit(1)
            .await
            .map_err(StoreError::query(format!(
                "trimming history of {channel:?}"
            )))?
            .try_next()
            .await
            .map_err(StoreError::query(format!(
                "trimming history of {channel:?}"
            )))?;
        let Some(cutoff) = cutoff else { return Ok(0) };
        self.remove_history_through(site, channel, cutoff.offset)
            .await
    }

    /// Removes a channel's messages up to and including `offset`, recording it as trimmed
    /// first.
    pub async fn remove_history_through(
        &self,
        site: &str,
        channel: &str,
        offset: i64,
    ) -> Result<u64, StoreError> {
        self.realtime_channels()
            .update_one(
                doc! { "_id": channel_key(site, channel) },
                doc! { "$max": { "trimmedThrough": offset } },
            )
            .upsert(true)
            .await
            .map_err(StoreError::query(format!(
                "recording trim position of {channel:?}"
            )))?;
        let deleted = self
            .history()
            .delete_many(doc! { "siteId": site, "channel": channel, "offset": { "$lte": offset } })
            .await
            .map_err(StoreError::query(format!(
                "trimming history of {channel:?}"
            )))?;
        Ok(deleted.deleted_count)
    }

    /// Up to `limit` stored messages published before `before`: candidates for removal by age.
    pub async fn history_older_than(
        &self,
        before: DateTime,
        limit: i64,
    ) -> Result<Vec<HistoryEntry>, StoreError> {
        let old: Collection<Document> = self.database.collection(REALTIME_HISTORY);
        let documents: Vec<Document> = old
            .find(doc! { "ts": { "$lt": before } })
            .projection(doc! { "frame": 0 })
            .limit(limit)
            .await
            .map_err(StoreError::query("reading old realtime history"))?
            .try_collect()
            .await
            .map_err(StoreError::query("reading old realtime history"))?;
        Ok(documents
            .into_iter()
            .filter_map(|mut d| {
                d.insert("frame", "");
                bson::from_document(d).ok()
            })
            .collect())
    }
}

fn channel_key(site: &str, channel: &str) -> String {
    format!("{site}:{channel}")
}

fn regex_escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if !c.is_ascii_alphanumeric() && c != '_' && c != ':' {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// Whether a bulk insert failed only because some documents were already there.
fn only_duplicates(error: &mongodb::error::Error) -> bool {
    use mongodb::error::ErrorKind;
    match error.kind.as_ref() {
        ErrorKind::InsertMany(failure) => {
            failure.write_concern_error.is_none()
                && failure
                    .write_errors
                    .as_ref()
                    .is_some_and(|errors| errors.iter().all(|e| e.code == 11000))
        }
        _ => is_duplicate_key(error),
    }
}

/// Connections of one gateway to one site (collection `realtimePresence`), rewritten every
/// few seconds by the gateway and ignored once `expiresAt` has passed (a gateway that died).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PresenceSnapshot {
    /// `<gateway>:<site>`.
    #[serde(rename = "_id")]
    pub id: String,
    /// The gateway instance.
    pub gateway: String,
    /// Site id (hex).
    pub site_id: String,
    /// Until when this snapshot counts.
    pub expires_at: DateTime,
    /// Open connections.
    pub connections: u64,
    /// Users online, with their connections.
    pub users: Vec<PresenceCount>,
    /// Channels with subscribers: connections and distinct users.
    pub channels: Vec<ChannelPresence>,
}

/// A user and its connections on one gateway.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PresenceCount {
    /// The user.
    pub id: String,
    /// Its connections.
    pub connections: u64,
}

/// A channel's presence on one gateway.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ChannelPresence {
    /// Channel name.
    pub name: String,
    /// Connections in it.
    pub connections: u64,
    /// Users in it.
    pub users: Vec<String>,
}

/// Collection of presence snapshots.
pub const REALTIME_PRESENCE: &str = "realtimePresence";

impl Store {
    fn presence_collection(&self) -> Collection<PresenceSnapshot> {
        self.database.collection(REALTIME_PRESENCE)
    }

    /// Writes a gateway's snapshots (one per site) and removes its snapshots of sites it no
    /// longer has connections to.
    pub async fn write_presence(
        &self,
        gateway: &str,
        snapshots: &[PresenceSnapshot],
    ) -> Result<(), StoreError> {
        for snapshot in snapshots {
            self.presence_collection()
                .replace_one(doc! { "_id": &snapshot.id }, snapshot)
                .upsert(true)
                .await
                .map_err(StoreError::query("writing realtime presence"))?;
        }
        let keep: Vec<&str> = snapshots.iter().map(|s| s.id.as_str()).collect();
        self.presence_collection()
            .delete_many(doc! { "gateway": gateway, "_id": { "$nin": keep } })
            .await
            .map_err(StoreError::query("removing stale realtime presence"))?;
        Ok(())
    }

    /// The live snapshots of a site, from every gateway.
    pub async fn presence(&self, site: &str) -> Result<Vec<PresenceSnapshot>, StoreError> {
        self.presence_collection()
            .find(doc! { "siteId": site, "expiresAt": { "$gt": DateTime::now() } })
            .await
            .map_err(StoreError::query("reading realtime presence"))?
            .try_collect()
            .await
            .map_err(StoreError::query("reading realtime presence"))
    }
}

/// Per message and gateway: connections written to and acks (collection `realtimeAcks`).
pub const REALTIME_ACKS: &str = "realtimeAcks";
/// Per site, period bucket and gateway: messages, writes, acks (collection `realtimeStats`).
pub const REALTIME_STATS: &str = "realtimeStats";

/// One gateway's figures of one message that asked for acks.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AckCounts {
    /// `<message id>:<gateway>`.
    #[serde(rename = "_id")]
    pub id: String,
    /// Site id (hex).
    pub site_id: String,
    /// The message id.
    pub message_id: String,
    /// Connections it was written to on this gateway.
    pub written: u64,
    /// Acks received on this gateway.
    pub acked: u64,
}

/// One gateway's figures of one site in one period.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PeriodCounts {
    /// `<site>:<period>:<start ms>:<gateway>`.
    #[serde(rename = "_id")]
    pub id: String,
    /// Site id (hex).
    pub site_id: String,
    /// `minute`, `hour` or `day`.
    pub period: String,
    /// Start of the period.
    pub start: DateTime,
    /// Messages published (every gateway sees all: take the largest, not the sum).
    pub messages: u64,
    /// Deliveries queued for connections on this gateway.
    pub written: u64,
    /// Acks received on this gateway.
    pub acks: u64,
}

impl Store {
    /// Writes a gateway's cumulative figures (absolute values: writing twice is harmless).
    pub async fn write_ack_figures(
        &self,
        acks: &[AckCounts],
        periods: &[PeriodCounts],
    ) -> Result<(), StoreError> {
        let ack_docs: Collection<AckCounts> = self.database.collection(REALTIME_ACKS);
        for counts in acks {
            ack_docs
                .replace_one(doc! { "_id": &counts.id }, counts)
                .upsert(true)
                .await
                .map_err(StoreError::query("writing message ack figures"))?;
        }
        let period_docs: Collection<PeriodCounts> = self.database.collection(REALTIME_STATS);
        for counts in periods {
            period_docs
                .replace_one(doc! { "_id": &counts.id }, counts)
                .upsert(true)
                .await
                .map_err(StoreError::query("writing realtime figures"))?;
        }
        Ok(())
    }

    /// Every gateway's figures of one message.
    pub async fn ack_figures(
        &self,
        site: &str,
        message_id: &str,
    ) -> Result<Vec<AckCounts>, StoreError> {
        let docs: Collection<AckCounts> = self.database.collection(REALTIME_ACKS);
        docs.find(doc! { "siteId": site, "messageId": message_id })
            .await
            .map_err(StoreError::query("reading message ack figures"))?
            .try_collect()
            .await
            .map_err(StoreError::query("reading message ack figures"))
    }

    /// Every gateway's figures of a site's periods of one kind since `since`.
    pub async fn period_figures(
        &self,
        site: &str,
        period: &str,
        since: DateTime,
    ) -> Result<Vec<PeriodCounts>, StoreError> {
        let docs: Collection<PeriodCounts> = self.database.collection(REALTIME_STATS);
        docs.find(doc! { "siteId": site, "period": period, "start": { "$gte": since } })
            .await
            .map_err(StoreError::query("reading realtime figures"))?
            .try_collect()
            .await
            .map_err(StoreError::query("reading realtime figures"))
    }
}

/// Offline fallbacks waiting for their deadline (collection `realtimeFallbacks`).
pub const REALTIME_FALLBACKS: &str = "realtimeFallbacks";
/// Claims of fallbacks: a unique `_id` per message decides which gateway sends its push, once.
pub const REALTIME_FALLBACK_CLAIMS: &str = "realtimeFallbackClaims";

/// A message's offline fallback.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PendingFallback {
    /// The message id.
    #[serde(rename = "_id")]
    pub id: String,
    /// Site id (hex).
    pub site_id: String,
    /// The push to send when nobody acks.
    pub push_id: String,
    /// When to decide.
    pub due_at: DateTime,
    /// `pending`, `acked`, `sent` or `failed`.
    pub state: String,
}

impl Store {
    fn fallbacks(&self) -> Collection<PendingFallback> {
        self.database.collection(REALTIME_FALLBACKS)
    }

    /// Records a fallback (once: a replayed record finds it there).
    pub async fn add_fallback(&self, fallback: &PendingFallback) -> Result<(), StoreError> {
        match self.fallbacks().insert_one(fallback).await {
            Ok(_) => Ok(()),
            Err(e) if is_duplicate_key(&e) => Ok(()),
            Err(e) => Err(StoreError::query("recording a realtime fallback")(e)),
        }
    }

    /// Pending fallbacks due at `now`, at most `limit`.
    pub async fn due_fallbacks(
        &self,
        now: DateTime,
        limit: i64,
    ) -> Result<Vec<PendingFallback>, StoreError> {
        self.fallbacks()
            .find(doc! { "state": "pending", "dueAt": { "$lte": now } })
            .limit(limit)
            .await
            .map_err(StoreError::query("reading due fallbacks"))?
            .try_collect()
            .await
            .map_err(StoreError::query("reading due fallbacks"))
    }

    /// Claims a fallback's push for this caller: true for exactly one caller.
    pub async fn claim_fallback(&self, message_id: &str) -> Result<bool, StoreError> {
        let claims: Collection<Document> = self.database.collection(REALTIME_FALLBACK_CLAIMS);
        match claims
            .insert_one(doc! { "_id": message_id, "at": DateTime::now() })
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if is_duplicate_key(&e) => Ok(false),
            Err(e) => Err(StoreError::query("claiming a realtime fallback")(e)),
        }
    }

    /// Gives a claim back (its push could not be sent; another attempt may claim it).
    pub async fn release_fallback(&self, message_id: &str) -> Result<(), StoreError> {
        let claims: Collection<Document> = self.database.collection(REALTIME_FALLBACK_CLAIMS);
        claims
            .delete_one(doc! { "_id": message_id })
            .await
            .map_err(StoreError::query("releasing a realtime fallback"))?;
        Ok(())
    }

    /// Records how a fallback ended.
    pub async fn settle_fallback(&self, message_id: &str, state: &str) -> Result<(), StoreError> {
        self.fallbacks()
            .update_one(
                doc! { "_id": message_id },
                doc! { "$set": { "state": state, "settledAt": DateTime::now() } },
            )
            .await
            .map_err(StoreError::query("settling a realtime fallback"))?;
        Ok(())
    }
}
