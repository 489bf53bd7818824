//! Batched unsubscribes.
//!
//! A push to a large, old audience finds many subscriptions gone (404/410) at once. Each is
//! queued here and written with one `updateMany` per batch (up to `max_batch` ids or `linger`
//! after the first). The delivery waits for its batch to be written before its outcome is
//! final, so a crash never loses an unsubscribe: the message is redelivered and answers 410
//! again. A failed write is retried with backoff until it succeeds or the sender stops.

use std::time::Duration;

use pushservice_model::ObjectId;
use pushservice_store::Store;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// Handle to the unsubscribe batcher; cheap to clone.
#[derive(Debug, Clone)]
pub struct Unsubscriber {
    queue_tx: mpsc::Sender<(ObjectId, oneshot::Sender<()>)>,
}

/// The batcher stopped (sender shutting down); the unsubscribe was not written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("unsubscribe batcher stopped")]
pub struct Stopped;

impl Unsubscriber {
    /// Starts the batcher. It ends once every handle is dropped and the queue is written.
    pub fn start(
        store: Store,
        max_batch: usize,
        linger: Duration,
    ) -> (Unsubscriber, JoinHandle<()>) {
        let (queue_tx, queue_rx) = mpsc::channel(max_batch.max(1) * 4);
        let task = tokio::spawn(batch_loop(store, queue_rx, max_batch.max(1), linger));
        (Unsubscriber { queue_tx }, task)
    }

    /// Queues `subscriber_id` and waits until its batch is written.
    pub async fn unsubscribe(&self, subscriber_id: ObjectId) -> Result<(), Stopped> {
        let (done_tx, done_rx) = oneshot::channel();
        self.queue_tx
            .send((subscriber_id, done_tx))
            .await
            .map_err(|_| Stopped)?;
        done_rx.await.map_err(|_| Stopped)
    }
}

async fn batch_loop(
    store: Store,
    mut queue_rx: mpsc::Receiver<(ObjectId, oneshot::Sender<()>)>,
    max_batch: usize,
    linger: Duration,
) {
    while let Some(first) = queue_rx.recv().await {
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + linger;
        while batch.len() < max_batch {
            tokio::select! {
                next = queue_rx.recv() => match next {
                    Some(item) => batch.push(item),
                    None => break,
                },
                () = tokio::time::sleep_until(deadline) => break,
            }
        }
        let ids: Vec<ObjectId> = batch.iter().map(|(id, _)| *id).collect();
        let mut backoff = Duration::from_millis(200);
        loop {
            match store.unsubscribe(&ids).await {
                Ok(changed) => {
                    tracing::debug!(batch = ids.len(), changed, "subscribers unsubscribed");
                    break;
                }
                Err(e) => {
                    tracing::warn!(batch = ids.len(), error = %e, retry_in = ?backoff,
                        "unsubscribe write failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
        for (_, done_tx) in batch {
            let _ = done_tx.send(());
        }
    }
}
