//! Which pushes are canceled, as far as this sender knows, without a MongoDB read per
//! delivery.
//!
//! Every delivery asks [`CanceledPushes::check`] about its push. The answer comes from a
//! table of the pushes this sender has seen recently, which a background task
//! ([`CanceledPushes::run`]) refreshes every `SENDER_CANCEL_POLL_MS` with one `_id` lookup
//! per push (FerretDB answers plain `_id` equality from its index; `_id: {$in: [...]}` would
//! scan the collection). A push seen for the first time is looked up once, by the first of
//! its deliveries, which the others wait for (at most [`FIRST_LOOKUP_TIMEOUT`]), so a sender
//! that starts, or takes over partitions, after a cancel drops that push's backlog instead of
//! sending it until the next refresh.
//!
//! Each push also has a [`CancellationToken`], fired when the refresh finds it canceled, so
//! deliveries already past the check (waiting for a request slot, held until a retry is due,
//! or on the wire) stop there too.
//!
//! **MongoDB trouble never stops delivery**: a failed lookup keeps the last known answer (a
//! push never looked up counts as not canceled) and is logged; the next refresh tries again.
//!
//! **Bounded**: pushes not seen for [`FORGET_AFTER`] are no longer refreshed and are
//! forgotten, except canceled ones, which are kept (not refreshed) for [`KEEP_CANCELED`] so
//! that their retries, coming back from the retry topics minutes later, are dropped at once;
//! seen again, they are looked up afresh like new ones (keeping "canceled" if the lookup
//! fails). Pushes that are `done` or `failed` are refreshed every [`SETTLED_RECHECK`] only:
//! they can be canceled again only after being sent again. At most [`MAX_PUSHES`] pushes are
//! kept and [`MAX_LOOKUPS_PER_ROUND`] looked up per refresh, longest unchecked first.
//!
//! Left as it is: after `pushctl send --force` of a canceled push, the deliveries of the new
//! fan-out that arrive before the next refresh are dropped as canceled (the delivery message
//! does not say which trigger of a push it belongs to).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use pushservice_model::{PushStatus, parse_object_id};
use pushservice_store::Store;
use tokio::sync::OnceCell;
use tokio_util::sync::CancellationToken;

/// Longest the deliveries of a push seen for the first time wait for its status.
pub const FIRST_LOOKUP_TIMEOUT: Duration = Duration::from_millis(500);
/// Longest one refresh lookup may take before the round gives up (MongoDB is in trouble).
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);
/// Pushes not seen for this long are no longer refreshed.
pub const FORGET_AFTER: Duration = Duration::from_secs(60);
/// Canceled pushes not seen for this long are forgotten (retries come back after at most
/// the longest retry tier, and are retried for `SENDER_RETRY_MAX_AGE`).
pub const KEEP_CANCELED: Duration = Duration::from_secs(2 * 3600);
/// How often `done` and `failed` pushes are looked up again.
pub const SETTLED_RECHECK: Duration = Duration::from_secs(30);
/// Most pushes kept.
pub const MAX_PUSHES: usize = 10_000;
/// Most lookups per refresh.
pub const MAX_LOOKUPS_PER_ROUND: usize = 256;

/// What a delivery learns about its push.
#[derive(Debug, Clone)]
pub struct PushCancel {
    /// The push is canceled: drop the delivery.
    pub canceled: bool,
    /// Fires if the push is found canceled later.
    pub token: CancellationToken,
}

#[derive(Debug)]
struct Entry {
    /// Last asked about by a delivery.
    seen: Instant,
    /// Last looked up successfully.
    checked: Instant,
    /// The last status read; `None` until a lookup answered (or the push does not exist).
    status: Option<PushStatus>,
    /// Whether the push counts as canceled.
    canceled: bool,
    /// Whether the entry needs a lookup before its answer is used (new, or dormant).
    stale: bool,
    token: CancellationToken,
    /// The lookup of a stale entry, shared by the deliveries asking meanwhile.
    lookup: Arc<OnceCell<Option<Option<PushStatus>>>>,
}

impl Entry {
    fn new(now: Instant) -> Self {
        Entry {
            seen: now,
            checked: now,
            status: None,
            canceled: false,
            stale: true,
            token: CancellationToken::new(),
            lookup: Arc::default(),
        }
    }

    /// Records a status read from MongoDB (`None`: no such push).
    fn update(&mut self, status: Option<PushStatus>, now: Instant) -> bool {
        self.status = status;
        self.checked = now;
        self.stale = false;
        let canceled = status == Some(PushStatus::Canceled);
        let newly = canceled && !self.canceled;
        if self.canceled && !canceled {
            // Sent again: deliveries of the new fan-out go out.
            self.token = CancellationToken::new();
        }
        self.canceled = canceled;
        if newly {
            self.token.cancel();
        }
        newly
    }

    /// Whether a refresh should look it up now.
    fn due(&self, now: Instant) -> bool {
        match self.status {
            Some(PushStatus::Done | PushStatus::Failed) => {
                now.duration_since(self.checked) >= SETTLED_RECHECK
            }
            _ => true,
        }
    }
}

/// The pushes this sender has seen, and which of them are canceled.
#[derive(Debug)]
pub struct CanceledPushes {
    store: Store,
    pushes: Mutex<HashMap<String, Entry>>,
}

impl CanceledPushes {
    /// An empty table over `store`.
    pub fn new(store: Store) -> Self {
        CanceledPushes {
            store,
            pushes: Mutex::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        // Every change is a few plain assignments: consistent whatever panicked.
        self.pushes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether push `push_id` (hex) is canceled, and its token. Waits (at most
    /// [`FIRST_LOOKUP_TIMEOUT`]) only for a push this sender has not seen recently.
    pub async fn check(&self, push_id: &str) -> PushCancel {
        let now = Instant::now();
        let lookup = {
            let mut pushes = self.lock();
            if !pushes.contains_key(push_id) && pushes.len() >= MAX_PUSHES {
                make_room(&mut pushes, now);
            }
            let entry = pushes
                .entry(push_id.to_owned())
                .or_insert_with(|| Entry::new(now));
            if now.duration_since(entry.seen) >= FORGET_AFTER && !entry.stale {
                // Dormant (kept because canceled): not refreshed lately, so look again.
                entry.stale = true;
                entry.lookup = Arc::default();
            }
            entry.seen = now;
            if !entry.stale {
                return PushCancel {
                    canceled: entry.canceled,
                    token: entry.token.clone(),
                };
            }
            Arc::clone(&entry.lookup)
        };
        let answer = *lookup
            .get_or_init(|| async {
                let Ok(id) = parse_object_id("push", push_id) else {
                    return Some(None);
                };
                match tokio::time::timeout(FIRST_LOOKUP_TIMEOUT, self.store.push_status(id)).await
                {
                    Ok(Ok(status)) => Some(status),
                    Ok(Err(e)) => {
                        tracing::warn!(push_id, error = %e,
                            "could not read the push's status; delivering unless known canceled");
                        None
                    }
                    Err(_) => {
                        tracing::warn!(push_id, timeout = ?FIRST_LOOKUP_TIMEOUT,
                            "reading the push's status timed out; delivering unless known canceled");
                        None
                    }
                }
            })
            .await;
        let mut pushes = self.lock();
        let entry = pushes
            .entry(push_id.to_owned())
            .or_insert_with(|| Entry::new(now));
        if entry.stale {
            match answer {
                Some(status) => {
                    if entry.update(status, Instant::now()) {
                        tracing::info!(push_id, "push canceled: dropping its deliveries");
                    }
                }
                // Keep the last known answer; the next refresh looks again.
                None => entry.stale = false,
            }
        }
        PushCancel {
            canceled: entry.canceled,
            token: entry.token.clone(),
        }
    }

    /// Refreshes the table every `every` until `stop` fires.
    pub async fn run(self: Arc<Self>, every: Duration, stop: CancellationToken) {
        let mut failing = false;
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
            let ok = self.refresh().await;
            if ok && failing {
                tracing::info!("push statuses readable again");
            }
            failing = !ok;
        }
    }

    /// One refresh: forgets what is old, looks up what is due. Returns false when a lookup
    /// failed (the rest of the round is skipped: MongoDB is in trouble).
    pub async fn refresh(&self) -> bool {
        let now = Instant::now();
        let due = {
            let mut pushes = self.lock();
            pushes.retain(|_, e| {
                let idle = now.duration_since(e.seen);
                idle < FORGET_AFTER || (e.canceled && idle < KEEP_CANCELED)
            });
            let mut due: Vec<(Instant, String)> = pushes
                .iter()
                .filter(|(_, e)| now.duration_since(e.seen) < FORGET_AFTER && e.due(now))
                .map(|(id, e)| (e.checked, id.clone()))
                .collect();
            due.sort_unstable();
            due.truncate(MAX_LOOKUPS_PER_ROUND);
            due
        };
        for (_, push_id) in due {
            let Ok(id) = parse_object_id("push", &push_id) else {
                continue;
            };
            let status =
                match tokio::time::timeout(LOOKUP_TIMEOUT, self.store.push_status(id)).await {
                    Ok(Ok(status)) => status,
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e,
                        "could not refresh push statuses; keeping the last known cancels");
                        return false;
                    }
                    Err(_) => {
                        tracing::warn!(timeout = ?LOOKUP_TIMEOUT,
                        "refreshing push statuses timed out; keeping the last known cancels");
                        return false;
                    }
                };
            let mut pushes = self.lock();
            if let Some(entry) = pushes.get_mut(&push_id)
                && entry.update(status, Instant::now())
            {
                tracing::info!(push_id, "push canceled: dropping its deliveries");
            }
        }
        true
    }
}

/// Drops the pushes not seen for [`FORGET_AFTER`] (canceled ones too: room is needed), then,
/// if still full, the least recently seen eighth.
fn make_room(pushes: &mut HashMap<String, Entry>, now: Instant) {
    pushes.retain(|_, e| now.duration_since(e.seen) < FORGET_AFTER);
    if pushes.len() < MAX_PUSHES {
        return;
    }
    let mut seen: Vec<Instant> = pushes.values().map(|e| e.seen).collect();
    seen.sort_unstable();
    let cut = seen[seen.len() / 8];
    pushes.retain(|_, e| e.seen > cut);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_follows_its_push_through_cancel_and_resend() {
        let now = Instant::now();
        let mut entry = Entry::new(now);
        assert!(!entry.update(Some(PushStatus::Processing), now));
        let token = entry.token.clone();
        assert!(!entry.canceled && !token.is_cancelled());
        assert!(
            entry.update(Some(PushStatus::Canceled), now),
            "newly canceled"
        );
        assert!(entry.canceled && token.is_cancelled());
        assert!(!entry.update(Some(PushStatus::Canceled), now), "not twice");
        assert!(!entry.update(Some(PushStatus::Processing), now));
        assert!(!entry.canceled);
        assert!(
            !entry.token.is_cancelled(),
            "a push sent again gets a fresh token"
        );
        assert!(!entry.update(None, now), "a deleted push is not canceled");
    }

    #[test]
    fn settled_pushes_are_looked_up_less_often() {
        let now = Instant::now();
        let mut entry = Entry::new(now);
        assert!(entry.due(now));
        entry.update(Some(PushStatus::Done), now);
        assert!(!entry.due(now + Duration::from_secs(1)));
        assert!(entry.due(now + SETTLED_RECHECK));
        entry.update(Some(PushStatus::Canceled), now);
        assert!(entry.due(now), "a canceled push may be sent again");
    }

    #[test]
    fn making_room_drops_the_least_recently_seen() {
        let now = Instant::now();
        let mut pushes = HashMap::new();
        for i in 0..MAX_PUSHES {
            let mut entry = Entry::new(now);
            entry.seen = now - Duration::from_millis((MAX_PUSHES - i) as u64);
            pushes.insert(format!("{i}"), entry);
        }
        make_room(&mut pushes, now);
        assert!(
            (MAX_PUSHES * 7 / 8 - 1..MAX_PUSHES).contains(&pushes.len()),
            "{} kept",
            pushes.len()
        );
        assert!(!pushes.contains_key("0"), "the oldest goes first");
        assert!(pushes.contains_key(&format!("{}", MAX_PUSHES - 1)));
    }
}
