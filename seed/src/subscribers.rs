//! Bulk seeding of subscribers in bounded memory.
//!
//! A generator thread builds batches (key derivation is the CPU-heavy part) and hands them
//! through a channel of two slots to the inserter, which keeps at most two bulk writes in
//! flight. Memory is therefore bounded by about four batches, whatever the count.

use std::time::{Duration, Instant};

use futures::StreamExt as _;
use pushservice_model::{ObjectId, Platform};
use pushservice_store::{Store, StoreError};
use tokio::sync::mpsc;

use crate::generate::subscriber_batch;

/// What to seed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriberSeed {
    /// Site the subscribers belong to.
    pub site_id: ObjectId,
    /// How many to create.
    pub count: u64,
    /// Which platform they subscribe on (Web Push, or iOS/Android device tokens).
    pub platform: Platform,
    /// Web Push endpoints are `{endpoint_base}/{subscriber id}`.
    pub endpoint_base: String,
    /// Seed the subscribers' keys are derived from.
    pub key_seed: Vec<u8>,
    /// Subscribers per bulk insert.
    pub batch_size: usize,
}

/// How seeding went.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SeedReport {
    /// Subscribers inserted.
    pub inserted: u64,
    /// Wall time.
    pub elapsed: Duration,
}

impl SeedReport {
    /// Subscribers per second.
    pub fn rate(&self) -> f64 {
        self.inserted as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Inserts `seed.count` subscribers; `on_progress` is called with the running total after
/// every batch.
pub async fn seed_subscribers(
    store: &Store,
    seed: &SubscriberSeed,
    on_progress: impl Fn(u64),
) -> Result<SeedReport, StoreError> {
    let started = Instant::now();
    let batch_size = seed.batch_size.max(1);
    let (batch_tx, batch_rx) = mpsc::channel(2);
    let generator = {
        let seed = seed.clone();
        tokio::task::spawn_blocking(move || {
            let mut left = seed.count;
            while left > 0 {
                let n = usize::try_from(left).unwrap_or(usize::MAX).min(batch_size);
                let batch = subscriber_batch(
                    seed.site_id,
                    n,
                    seed.platform,
                    &seed.endpoint_base,
                    &seed.key_seed,
                );
                if batch_tx.blocking_send(batch).is_err() {
                    return; // The inserter stopped on an error; it reports it.
                }
                left -= n as u64;
            }
        })
    };

    let batches = futures::stream::unfold(batch_rx, |mut rx| async move {
        rx.recv().await.map(|batch| (batch, rx))
    });
    let mut inserts = std::pin::pin!(
        batches
            .map(|batch| {
                let store = store.clone();
                async move { store.insert_subscribers(&batch).await }
            })
            .buffer_unordered(2)
    );

    let mut inserted = 0;
    while let Some(result) = inserts.next().await {
        inserted += result?;
        on_progress(inserted);
    }
    // The generator ends when the channel is drained; a panic there is a bug worth surfacing.
    if let Err(e) = generator.await {
        std::panic::resume_unwind(e.into_panic());
    }
    Ok(SeedReport {
        inserted,
        elapsed: started.elapsed(),
    })
}
