//! The hub: which connections are in which channel, each channel's recent messages, and how
//! far every partition has been dispatched.
//!
//! One lock guards it all. Dispatching a message and joining a channel both take it, which is
//! what makes recovery seamless: a connection that joins sees either a message in the
//! history snapshot it takes under the lock, or in its queue afterwards, never neither.
//! Dispatch does no I/O under the lock: it appends to the ring and `try_send`s a pointer to
//! every subscriber's bounded queue (about 50 ns each); a full queue marks that connection too
//! slow, and it is cut without holding anyone else up.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::extract::ws::Utf8Bytes;
use indexmap::IndexMap;
use tokio::sync::{Notify, mpsc};

/// One message of a channel, shared by every connection it goes to.
#[derive(Debug)]
pub struct Msg {
    /// Channel name.
    pub channel: Arc<str>,
    /// Kafka partition.
    pub partition: i32,
    /// Position in the channel (Kafka offset).
    pub offset: i64,
    /// Publish time, ms since the Unix epoch.
    pub ts_ms: i64,
    /// Whether the publisher asked for acks (its figures are tracked).
    pub ack: bool,
    /// The frame clients receive (JSON), built once.
    pub frame: Utf8Bytes,
}

/// Why a connection is being closed by the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum CloseReason {
    /// Its queue filled up.
    TooSlow = 1,
    /// A newer session of the same user took its place.
    SessionLimit = 2,
}

impl CloseReason {
    /// The `error` code clients see.
    pub fn code(self) -> &'static str {
        match self {
            CloseReason::TooSlow => "too_slow",
            CloseReason::SessionLimit => "session_limit",
        }
    }

    /// What it means.
    pub fn message(self) -> &'static str {
        match self {
            CloseReason::TooSlow => {
                "the connection could not keep up with its messages; reconnect and resume"
            }
            CloseReason::SessionLimit => {
                "too many sessions of this user; the oldest was closed (do not reconnect)"
            }
        }
    }
}

/// Tells a connection's task to close, from outside it.
#[derive(Debug, Default)]
pub struct Control {
    reason: AtomicU8,
    notify: Notify,
}

impl Control {
    /// Asks the connection to close for `reason` (the first reason wins).
    pub fn close(&self, reason: CloseReason) {
        if self
            .reason
            .compare_exchange(0, reason as u8, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            self.notify.notify_one();
        }
    }

    /// The reason it was asked to close, if it was.
    pub fn reason(&self) -> Option<CloseReason> {
        match self.reason.load(Ordering::Acquire) {
            1 => Some(CloseReason::TooSlow),
            2 => Some(CloseReason::SessionLimit),
            _ => None,
        }
    }

    /// Waits until the connection is asked to close.
    pub async fn closed(&self) -> CloseReason {
        loop {
            if let Some(reason) = self.reason() {
                return reason;
            }
            self.notify.notified().await;
        }
    }
}

/// A connection as the hub sees it.
#[derive(Debug, Clone)]
pub struct Subscriber {
    /// Connection id.
    pub conn: u64,
    /// Its user.
    pub user: Arc<str>,
    /// Its message queue.
    pub tx: mpsc::Sender<Arc<Msg>>,
    /// Its close signal.
    pub control: Arc<Control>,
}

struct Channel {
    partition: i32,
    /// By connection id. An index map: dispatch walks a dense vector, and a connection leaves
    /// in O(1) (`swap_remove`), so 20,000 connections leaving a channel at once (a gateway's
    /// clients all reconnecting elsewhere) cost 20,000 steps, not 200 million.
    subscribers: IndexMap<u64, Subscriber>,
    ring: VecDeque<Arc<Msg>>,
    ring_bytes: usize,
    /// Every message of this channel after this position is in `ring` (or still to come).
    floor: i64,
}

struct Inner {
    channels: HashMap<String, Channel>,
    /// Per partition: the last offset dispatched.
    positions: Vec<i64>,
    /// Per partition: the newest position of any ring dropped to save memory.
    dropped: Vec<i64>,
    /// Per partition: the offset before the first this gateway read.
    start: Vec<i64>,
    history_bytes: usize,
    /// Sessions per (site, user), oldest first.
    sessions: HashMap<String, VecDeque<(u64, Arc<Control>)>>,
}

/// Who is connected to one site on this gateway.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SitePresence {
    /// Open connections.
    pub connections: u64,
    /// Users and their connections.
    pub users: Vec<(String, u64)>,
    /// Channels: name, connections, distinct users.
    pub channels: Vec<(String, u64, Vec<String>)>,
}

/// What a join found for recovery.
#[derive(Debug)]
pub enum Recovery {
    /// No recovery was asked for.
    NotAsked,
    /// Everything after the position is here.
    Complete(Vec<Arc<Msg>>),
    /// Messages with `after < offset <= through` must come from the store; `tail` follows them.
    FromStore {
        /// The client's position.
        after: i64,
        /// Where the in-memory history starts.
        through: i64,
        /// In-memory messages after `through`.
        tail: Vec<Arc<Msg>>,
    },
}

/// The result of a join.
#[derive(Debug)]
pub struct Joined {
    /// The channel's partition.
    pub partition: i32,
    /// The channel's position at the moment of joining: every later message has a higher one.
    pub position: i64,
    /// What recovery needs.
    pub recovery: Recovery,
}

/// The hub. Shared by the Kafka reader and every connection.
pub struct Hub {
    inner: Mutex<Inner>,
    partitions: usize,
    memory_budget: usize,
}

/// The hub key of a site's channel.
pub fn channel_key(site: &str, channel: &str) -> String {
    let mut key = String::with_capacity(site.len() + 1 + channel.len());
    key.push_str(site);
    key.push('/');
    key.push_str(channel);
    key
}

impl Hub {
    /// A hub for a topic whose partitions were first read at `start` (next offsets).
    pub fn new(start: &[i64], memory_budget: usize) -> Self {
        let floors: Vec<i64> = start.iter().map(|next| next - 1).collect();
        Hub {
            inner: Mutex::new(Inner {
                channels: HashMap::new(),
                positions: floors.clone(),
                dropped: floors.clone(),
                start: floors,
                history_bytes: 0,
                sessions: HashMap::new(),
            }),
            partitions: start.len(),
            memory_budget,
        }
    }

    /// The topic's partition count.
    pub fn partitions(&self) -> usize {
        self.partitions
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Delivers `msg` to the channel's subscribers and keeps it in the channel's history (at
    /// most `history_size` messages). Returns how many connections it was queued for.
    pub fn dispatch(&self, key: &str, msg: Arc<Msg>, history_size: usize) -> usize {
        let mut inner = self.lock();
        let partition = usize::try_from(msg.partition).unwrap_or(0);
        if let Some(position) = inner.positions.get_mut(partition) {
            *position = (*position).max(msg.offset);
        }
        let floor = inner.fresh_floor(partition);
        let bytes = msg.frame.len() + 64;
        let channel = inner
            .channels
            .entry(key.to_owned())
            .or_insert_with(|| Channel {
                partition: msg.partition,
                subscribers: IndexMap::new(),
                ring: VecDeque::new(),
                ring_bytes: 0,
                floor,
            });
        let mut delivered = 0;
        channel.subscribers.retain(|_, subscriber| {
            match subscriber.tx.try_send(Arc::clone(&msg)) {
                Ok(()) => {
                    delivered += 1;
                    true
                }
                Err(mpsc::error::TrySendError::Full(_)) => {
                    subscriber.control.close(CloseReason::TooSlow);
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            }
        });
        let mut freed = 0;
        if history_size > 0 {
            channel.ring.push_back(msg);
            channel.ring_bytes += bytes;
        } else {
            channel.floor = channel.floor.max(msg.offset);
        }
        while channel.ring.len() > history_size {
            if let Some(old) = channel.ring.pop_front() {
                channel.floor = channel.floor.max(old.offset);
                channel.ring_bytes -= old.frame.len() + 64;
                freed += old.frame.len() + 64;
            }
        }
        let added = if history_size > 0 { bytes } else { 0 };
        inner.history_bytes = inner.history_bytes + added - freed;
        if inner.history_bytes > self.memory_budget {
            inner.shed_history(self.memory_budget / 10 * 9);
        }
        delivered
    }

    /// Adds a subscriber to a channel and takes what recovery after position `since` needs.
    pub fn join(
        &self,
        key: &str,
        partition: i32,
        subscriber: Subscriber,
        since: Option<i64>,
    ) -> Joined {
        let mut inner = self.lock();
        let index = usize::try_from(partition).unwrap_or(0);
        let position = inner.positions.get(index).copied().unwrap_or(-1);
        let floor = inner.fresh_floor(index);
        let channel = inner
            .channels
            .entry(key.to_owned())
            .or_insert_with(|| Channel {
                partition,
                subscribers: IndexMap::new(),
                ring: VecDeque::new(),
                ring_bytes: 0,
                floor,
            });
        channel.subscribers.insert(subscriber.conn, subscriber);
        let recovery = match since {
            None => Recovery::NotAsked,
            Some(after) if after >= channel.floor => Recovery::Complete(
                channel
                    .ring
                    .iter()
                    .filter(|m| m.offset > after)
                    .cloned()
                    .collect(),
            ),
            Some(after) => Recovery::FromStore {
                after,
                through: channel.floor,
                tail: channel.ring.iter().cloned().collect(),
            },
        };
        Joined {
            partition: channel.partition,
            position,
            recovery,
        }
    }

    /// Removes connection `conn` from a channel.
    pub fn leave(&self, key: &str, conn: u64) {
        let mut inner = self.lock();
        let remove = match inner.channels.get_mut(key) {
            Some(channel) => {
                channel.subscribers.swap_remove(&conn);
                channel.subscribers.is_empty() && channel.ring.is_empty()
            }
            None => false,
        };
        if remove {
            inner.channels.remove(key);
        }
    }

    /// Registers a session of a user; when the user then has more than `cap`, the oldest are
    /// told to close.
    pub fn add_session(&self, user_key: &str, conn: u64, control: Arc<Control>, cap: usize) {
        let mut inner = self.lock();
        let sessions = inner.sessions.entry(user_key.to_owned()).or_default();
        sessions.push_back((conn, control));
        while sessions.len() > cap {
            if let Some((_, oldest)) = sessions.pop_front() {
                oldest.close(CloseReason::SessionLimit);
            }
        }
    }

    /// Forgets a session.
    pub fn remove_session(&self, user_key: &str, conn: u64) {
        let mut inner = self.lock();
        if let Some(sessions) = inner.sessions.get_mut(user_key) {
            sessions.retain(|(c, _)| *c != conn);
            if sessions.is_empty() {
                inner.sessions.remove(user_key);
            }
        }
    }

    /// Who is here, per site: connections, users with their connection counts, and channels
    /// with their connections and distinct users.
    pub fn presence(&self) -> HashMap<String, SitePresence> {
        let inner = self.lock();
        let mut sites: HashMap<String, SitePresence> = HashMap::new();
        for (key, sessions) in &inner.sessions {
            let Some((site, user)) = key.split_once('/') else {
                continue;
            };
            let site = sites.entry(site.to_owned()).or_default();
            site.connections += sessions.len() as u64;
            site.users.push((user.to_owned(), sessions.len() as u64));
        }
        for (key, channel) in &inner.channels {
            if channel.subscribers.is_empty() {
                continue;
            }
            let Some((site, name)) = key.split_once('/') else {
                continue;
            };
            let mut users: Vec<String> = channel
                .subscribers
                .values()
                .map(|s| s.user.to_string())
                .collect();
            users.sort_unstable();
            users.dedup();
            sites.entry(site.to_owned()).or_default().channels.push((
                name.to_owned(),
                channel.subscribers.len() as u64,
                users,
            ));
        }
        sites
    }

    /// Bytes of in-memory history.
    pub fn history_bytes(&self) -> usize {
        self.lock().history_bytes
    }

    /// Channels with subscribers or history here.
    pub fn channel_count(&self) -> usize {
        self.lock().channels.len()
    }
}

impl Inner {
    /// The floor of a channel that gets its first message or subscriber now: this gateway saw
    /// every message of the partition since it started, except those of dropped rings.
    fn fresh_floor(&self, partition: usize) -> i64 {
        let start = self.start.get(partition).copied().unwrap_or(-1);
        let dropped = self.dropped.get(partition).copied().unwrap_or(-1);
        start.max(dropped)
    }

    /// Drops the history of channels without subscribers here until at most `target` bytes
    /// remain; their later recoveries read the store.
    fn shed_history(&mut self, target: usize) {
        let mut dropped: Vec<(usize, i64)> = Vec::new();
        let mut freed = 0;
        let over = self.history_bytes.saturating_sub(target);
        self.channels.retain(|_, channel| {
            if freed >= over || !channel.subscribers.is_empty() {
                return true;
            }
            if let Some(last) = channel.ring.back() {
                dropped.push((usize::try_from(channel.partition).unwrap_or(0), last.offset));
            }
            freed += channel.ring_bytes;
            false
        });
        for (partition, offset) in dropped {
            if let Some(slot) = self.dropped.get_mut(partition) {
                *slot = (*slot).max(offset);
            }
        }
        self.history_bytes -= freed;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(offset: i64) -> Arc<Msg> {
        Arc::new(Msg {
            channel: Arc::from("c"),
            partition: 0,
            offset,
            ts_ms: 0,
            ack: false,
            frame: Utf8Bytes::from(format!("{{\"offset\":{offset}}}")),
        })
    }

    fn subscriber(conn: u64, queue: usize) -> (Subscriber, mpsc::Receiver<Arc<Msg>>) {
        let (tx, rx) = mpsc::channel(queue);
        (
            Subscriber {
                conn,
                user: Arc::from("u"),
                tx,
                control: Arc::default(),
            },
            rx,
        )
    }

    #[test]
    fn recovery_from_memory_then_store() {
        let hub = Hub::new(&[10], 1 << 20);
        for offset in 10..20 {
            hub.dispatch("s/c", msg(offset), 5);
        }
        // The ring keeps 15..=19: after 16 is complete; after 12 needs the store for 13..=14.
        let (a, _rx) = subscriber(1, 8);
        let joined = hub.join("s/c", 0, a, Some(16));
        assert_eq!(joined.position, 19);
        match joined.recovery {
            Recovery::Complete(msgs) => {
                assert_eq!(
                    msgs.iter().map(|m| m.offset).collect::<Vec<_>>(),
                    [17, 18, 19]
                );
            }
            other => panic!("expected complete, got {other:?}"),
        }
        let (b, _rx) = subscriber(2, 8);
        match hub.join("s/c", 0, b, Some(12)).recovery {
            Recovery::FromStore {
                after,
                through,
                tail,
            } => {
                assert_eq!((after, through, tail.len()), (12, 14, 5));
            }
            other => panic!("expected store, got {other:?}"),
        }
        // A channel never seen is complete since the gateway started (offset 9).
        let (c, _rx) = subscriber(3, 8);
        assert!(matches!(
            hub.join("s/other", 0, c, Some(9)).recovery,
            Recovery::Complete(v) if v.is_empty()
        ));
    }

    #[test]
    fn slow_subscriber_is_cut_alone() {
        let hub = Hub::new(&[0], 1 << 20);
        let (slow, _slow_rx) = subscriber(1, 2);
        let slow_control = Arc::clone(&slow.control);
        let (fast, mut fast_rx) = subscriber(2, 64);
        hub.join("s/c", 0, slow, None);
        hub.join("s/c", 0, fast, None);
        for offset in 0..5 {
            hub.dispatch("s/c", msg(offset), 10);
            while fast_rx.try_recv().is_ok() {}
        }
        assert_eq!(slow_control.reason(), Some(CloseReason::TooSlow));
        assert_eq!(
            hub.dispatch("s/c", msg(5), 10),
            1,
            "only the fast one is left"
        );
    }

    #[test]
    fn a_connection_that_leaves_gets_nothing_more_and_the_others_keep_theirs() {
        let hub = Hub::new(&[0], 1 << 20);
        let mut queues = Vec::new();
        for conn in 0..5 {
            let (s, rx) = subscriber(conn, 8);
            hub.join("s/c", 0, s, None);
            queues.push(rx);
        }
        hub.leave("s/c", 1);
        hub.leave("s/c", 3);
        hub.leave("s/c", 3);
        hub.leave("s/other", 0);
        assert_eq!(hub.dispatch("s/c", msg(0), 10), 3);
        let got: Vec<bool> = queues.iter_mut().map(|rx| rx.try_recv().is_ok()).collect();
        assert_eq!(got, [true, false, true, false, true]);
        // Once the last one leaves and the history is gone, the channel is forgotten.
        let hub = Hub::new(&[0], 1 << 20);
        let (s, _rx) = subscriber(7, 8);
        hub.join("s/c", 0, s, None);
        hub.leave("s/c", 7);
        assert_eq!(hub.channel_count(), 0);
    }

    #[test]
    fn session_cap_closes_the_oldest() {
        let hub = Hub::new(&[0], 1 << 20);
        let controls: Vec<Arc<Control>> = (0..3).map(|_| Arc::default()).collect();
        for (conn, control) in controls.iter().enumerate() {
            hub.add_session("s/u", conn as u64, Arc::clone(control), 2);
        }
        assert_eq!(controls[0].reason(), Some(CloseReason::SessionLimit));
        assert_eq!(controls[1].reason(), None);
        assert_eq!(controls[2].reason(), None);
    }

    #[test]
    fn memory_budget_drops_unwatched_history() {
        let hub = Hub::new(&[0], 2_000);
        for offset in 0..100 {
            hub.dispatch(&format!("s/c{}", offset % 10), msg(offset), 100);
        }
        assert!(hub.history_bytes() <= 2_000);
        // History was dropped, so memory no longer covers the partition from its start: a
        // recovery in a channel not seen since must read the store.
        let (a, _rx) = subscriber(1, 8);
        assert!(matches!(
            hub.join("s/new", 0, a, Some(0)).recovery,
            Recovery::FromStore { .. }
        ));
    }
}
