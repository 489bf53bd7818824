//! What each sender's breakers saw recently, shared with the fleet.
//!
//! A sender judges an answer that may mean "this device is gone" or "the site's settings are
//! wrong" by what the same site and platform answered recently (`pushservice_sender::breaker`).
//! A sender that delivers little of a site (it joined the group late, or it holds only the
//! retry partitions) has too little evidence of its own: it would retry such answers until
//! they expire, or trip on a handful of retried dead tokens while another sender saw hundreds
//! of successes. So every sender writes its current evidence window here (collection
//! `senderBreakerEvidence`, one document per sender, site and platform, written only by that
//! sender, so a plain replace is safe on every MongoDB-protocol server), and reads the other
//! senders' recent windows for the sites it cannot judge alone.

use std::time::Duration;

use bson::{DateTime, doc};
use futures::TryStreamExt as _;
use mongodb::Collection;
use serde::{Deserialize, Serialize};

use crate::error::StoreError;
use crate::store::Store;

/// Collection of the senders' breaker evidence.
pub const SENDER_BREAKER_EVIDENCE: &str = "senderBreakerEvidence";

/// One sender's evidence window for one site and platform.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BreakerEvidence {
    /// `<sender>:<site>:<platform>`.
    #[serde(rename = "_id")]
    pub id: String,
    /// The sender's instance id.
    pub sender: String,
    /// Site id (hex).
    pub site_id: String,
    /// Platform name as the breakers name it (`Web Push`, `APNs`, `FCM`).
    pub platform: String,
    /// Deliveries accepted in the window.
    pub successes: u32,
    /// Answers that may mean a misconfiguration, in the window.
    pub suspects: u32,
    /// Whether the sender's breaker is tripped.
    pub tripped: bool,
    /// When the sender wrote it.
    pub updated_at: DateTime,
}

impl BreakerEvidence {
    /// The document of `sender`'s evidence for `site_id` on `platform`.
    pub fn new(
        sender: &str,
        site_id: &str,
        platform: &str,
        successes: u32,
        suspects: u32,
        tripped: bool,
    ) -> Self {
        BreakerEvidence {
            id: format!("{sender}:{site_id}:{platform}"),
            sender: sender.to_owned(),
            site_id: site_id.to_owned(),
            platform: platform.to_owned(),
            successes,
            suspects,
            tripped,
            updated_at: DateTime::now(),
        }
    }
}

impl Store {
    fn breaker_evidence(&self) -> Collection<BreakerEvidence> {
        self.database.collection(SENDER_BREAKER_EVIDENCE)
    }

    /// Writes a sender's current evidence windows.
    pub async fn write_breaker_evidence(
        &self,
        evidence: &[BreakerEvidence],
    ) -> Result<(), StoreError> {
        for entry in evidence {
            self.breaker_evidence()
                .replace_one(doc! { "_id": &entry.id }, entry)
                .upsert(true)
                .await
                .map_err(StoreError::query("writing sender breaker evidence"))?;
        }
        Ok(())
    }

    /// The evidence other senders than `sender` wrote for `sites` in the last `within`.
    pub async fn fleet_breaker_evidence(
        &self,
        sender: &str,
        sites: &[&str],
        within: Duration,
    ) -> Result<Vec<BreakerEvidence>, StoreError> {
        let since = ago(within);
        if sites.is_empty() {
            return Ok(Vec::new());
        }
        self.breaker_evidence()
            .find(doc! {
                "siteId": { "$in": sites },
                "sender": { "$ne": sender },
                "updatedAt": { "$gte": since },
            })
            .await
            .map_err(StoreError::query("reading sender breaker evidence"))?
            .try_collect()
            .await
            .map_err(StoreError::query("reading sender breaker evidence"))
    }

    /// Removes evidence nobody wrote for `older_than` (senders that stopped or moved on).
    pub async fn remove_stale_breaker_evidence(
        &self,
        older_than: Duration,
    ) -> Result<u64, StoreError> {
        let removed = self
            .breaker_evidence()
            .delete_many(doc! { "updatedAt": { "$lt": ago(older_than) } })
            .await
            .map_err(StoreError::query("removing stale sender breaker evidence"))?;
        Ok(removed.deleted_count)
    }
}

/// The time `span` before now.
fn ago(span: Duration) -> DateTime {
    let millis = i64::try_from(span.as_millis()).unwrap_or(i64::MAX);
    DateTime::from_millis(DateTime::now().timestamp_millis().saturating_sub(millis))
}
