//! Tracking events: accepted at once (202), written to MongoDB in batches.
//!
//! A bounded queue between the handlers and one writer task: when MongoDB cannot keep up the
//! queue fills and `POST /v1/events` answers 503 (the service worker may retry), so memory
//! never grows without bound. The writer checks each event before counting it: the
//! subscriber must exist and belong to the push's site, so invented ids count nothing (sites
//! of known subscribers are remembered). Batches gather for `API_EVENTS_FLUSH_MS`, unless the
//! writer is behind: then they follow each other at once. A
//! batch that fails to be written is kept and tried again; on shutdown the queue is
//! drained. Events still queued when the process is killed are lost (at most
//! `API_EVENTS_FLUSH_MS` worth, plus the queue when MongoDB was down).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use pushservice_model::ObjectId;
use pushservice_store::{Event, Store, StoreError};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::metrics::ApiMetrics;

/// Most events written in one batch.
const BATCH: usize = 2_000;

/// Most subscribers whose site the writer remembers. A subscriber's site never changes, and
/// its service worker reports up to three events (shown, clicked, closed): remembering it
/// saves the lookups of the later ones. Emptied when full (entries are cheap to relearn).
const KNOWN_SUBSCRIBERS: usize = 200_000;

/// The sending side of the event queue.
#[derive(Debug, Clone)]
pub struct EventQueue {
    sender: mpsc::Sender<Event>,
}

/// The queue is full: MongoDB is not keeping up.
#[derive(Debug)]
pub struct QueueFull;

impl EventQueue {
    /// Queues an event.
    pub fn push(&self, event: Event) -> Result<(), QueueFull> {
        self.sender.try_send(event).map_err(|_| QueueFull)
    }
}

/// Creates the queue and its writer. Run the writer with [`EventWriter::run`].
pub fn queue(
    capacity: usize,
    store: Store,
    instance: ObjectId,
    flush: Duration,
) -> (EventQueue, EventWriter) {
    let (sender, receiver) = mpsc::channel(capacity);
    (
        EventQueue { sender },
        EventWriter {
            receiver,
            store,
            instance: instance.to_hex(),
            flush,
            known: HashMap::new(),
        },
    )
}

/// Writes queued events to MongoDB.
pub struct EventWriter {
    receiver: mpsc::Receiver<Event>,
    store: Store,
    instance: String,
    flush: Duration,
    /// Sites of subscribers seen in earlier batches (only those that exist).
    known: HashMap<ObjectId, ObjectId>,
}

impl EventWriter {
    /// Writes batches until `stop`, then drains the queue (trying each remaining batch a
    /// few times).
    pub async fn run(mut self, metrics: Arc<ApiMetrics>, stop: CancellationToken) {
        let mut pending: Vec<Event> = Vec::new();
        let mut failures = 0u32;
        // Behind (the last batch was full, or more events wait): write the next batch at once
        // instead of letting it gather for API_EVENTS_FLUSH_MS.
        let mut behind = false;
        loop {
            let stopping = stop.is_cancelled();
            if pending.is_empty() {
                tokio::select! {
                    received = self.receiver.recv_many(&mut pending, BATCH) => {
                        if received == 0 { return; }
                    }
                    () = stop.cancelled(), if !stopping => {
                        self.receiver.close();
                        continue;
                    }
                }
                // Let a batch gather, unless stopping or behind.
                if !stopping && !behind {
                    tokio::select! {
                        () = tokio::time::sleep(self.flush) => {}
                        () = stop.cancelled() => { self.receiver.close(); }
                    }
                }
            }
            while pending.len() < BATCH {
                match self.receiver.try_recv() {
                    Ok(event) => pending.push(event),
                    Err(_) => break,
                }
            }
            let batch: Vec<Event> = pending.drain(..pending.len().min(BATCH)).collect();
            match self.write(&batch).await {
                Ok(counted) => {
                    failures = 0;
                    metrics.events_counted.add(counted);
                    behind = batch.len() == BATCH || !self.receiver.is_empty();
                }
                Err(e) => {
                    failures += 1;
                    metrics.events_write_errors.inc();
                    tracing::warn!(error = %e, events = batch.len(), failures, "writing events failed; will retry");
                    if stop.is_cancelled() && failures >= 3 {
                        tracing::error!(
                            events = batch.len() + pending.len(),
                            "giving up on events at shutdown"
                        );
                        return;
                    }
                    // Put the batch back in front and wait before the next try.
                    pending.splice(0..0, batch);
                    tokio::time::sleep(Duration::from_millis(500 * u64::from(failures.min(10))))
                        .await;
                }
            }
        }
    }

    /// Checks and counts one batch; returns how many events were new.
    async fn write(&mut self, batch: &[Event]) -> Result<u64, StoreError> {
        let store = &self.store;
        // Every push and subscriber of the batch, looked up once each. A push that was never
        // sent (still pending) cannot have been shown: its events are ignored too.
        let mut push_sites: HashMap<ObjectId, Option<ObjectId>> = HashMap::new();
        for event in batch {
            if let std::collections::hash_map::Entry::Vacant(entry) =
                push_sites.entry(event.push_id)
            {
                let push = store.push(event.push_id).await?;
                entry.insert(
                    push.filter(|p| p.status != pushservice_model::PushStatus::Pending)
                        .map(|p| p.site_id),
                );
            }
        }
        let mut subscribers: Vec<ObjectId> = batch
            .iter()
            .map(|e| e.subscriber_id)
            .filter(|id| !self.known.contains_key(id))
            .collect();
        subscribers.sort();
        subscribers.dedup();
        // `_id` equality lookups, several at a time: FerretDB answers those from its index,
        // an `$in` over many ids would scan.
        let looked_up: Vec<(ObjectId, Result<Option<ObjectId>, StoreError>)> =
            futures::stream::iter(subscribers)
                .map(|id| async move { (id, store.subscriber_site(id).await) })
                .buffer_unordered(16)
                .collect()
                .await;
        if self.known.len() + looked_up.len() > KNOWN_SUBSCRIBERS {
            self.known.clear();
        }
        let mut subscriber_sites: HashMap<ObjectId, Option<ObjectId>> =
            HashMap::with_capacity(looked_up.len());
        for (id, site) in looked_up {
            let site = site?;
            if let Some(site) = site {
                self.known.insert(id, site);
            }
            subscriber_sites.insert(id, site);
        }
        let valid: Vec<Event> = batch
            .iter()
            .filter(|e| {
                let push_site = push_sites.get(&e.push_id).copied().flatten();
                let subscriber_site = self
                    .known
                    .get(&e.subscriber_id)
                    .copied()
                    .or_else(|| subscriber_sites.get(&e.subscriber_id).copied().flatten());
                push_site.is_some() && push_site == subscriber_site
            })
            .copied()
            .collect();
        if valid.len() < batch.len() {
            tracing::debug!(
                ignored = batch.len() - valid.len(),
                "events naming unknown or mismatched pushes/subscribers ignored"
            );
        }
        store.record_events(&self.instance, &valid).await
    }
}
