//! A connection's session, whatever its transport: its identity, its channels and positions,
//! joining with recovery, and the de-duplication that makes the recovery seam clean.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::extract::ws::Utf8Bytes;
use pushservice_realtime::{partition_of, record_key, user_channel, validate_channel};
use pushservice_store::Store;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::Identity;
use crate::config::GatewayConfig;
use crate::hub::{CloseReason, Control, Hub, Msg, Recovery, Subscriber, channel_key};
use crate::metrics::GatewayMetrics;
use crate::sites::SiteCache;

/// What every connection shares.
pub struct Shared {
    /// Settings.
    pub config: GatewayConfig,
    /// The hub.
    pub hub: Arc<Hub>,
    /// Site settings.
    pub sites: Arc<SiteCache>,
    /// MongoDB (stored history).
    pub store: Store,
    /// Counters.
    pub metrics: Arc<GatewayMetrics>,
    /// The current epoch.
    pub epoch: String,
    /// Cancelled on SIGTERM: every connection is told to reconnect.
    pub shutdown: CancellationToken,
    /// Delivery and ack figures.
    pub acks: Arc<crate::acks::AckBook>,
    /// WebSocket and SSE connections' tasks, waited for at shutdown.
    pub tracker: TaskTracker,
    next_conn: AtomicU64,
}

impl Shared {
    /// The shared state.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        config: GatewayConfig,
        hub: Arc<Hub>,
        sites: Arc<SiteCache>,
        store: Store,
        metrics: Arc<GatewayMetrics>,
        acks: Arc<crate::acks::AckBook>,
        epoch: String,
        shutdown: CancellationToken,
    ) -> Self {
        Shared {
            config,
            hub,
            sites,
            store,
            metrics,
            acks,
            epoch,
            shutdown,
            tracker: TaskTracker::new(),
            next_conn: AtomicU64::new(1),
        }
    }

    /// This connection's lifetime: the configured one ± 10 %.
    pub fn lifetime(&self) -> Option<Duration> {
        self.config
            .max_lifetime
            .map(|l| l.mul_f64(0.9 + fastrand::f64() * 0.2))
    }

    /// A random reconnect delay at shutdown.
    pub fn shutdown_delay_ms(&self) -> u64 {
        let spread = u64::try_from(self.config.shutdown_spread.as_millis()).unwrap_or(0);
        fastrand::u64(0..=spread)
    }
}

/// Why the gateway ends a connection (other than its client leaving).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// Asked to close from outside: too slow, or over the user's session cap.
    Closed(CloseReason),
    /// The gateway is stopping.
    Shutdown,
    /// The connection reached its maximum lifetime.
    Lifetime,
}

/// Resolves when the connection must end; see [`Session::ending`].
pub type Ending = Pin<Box<dyn Future<Output = End> + Send>>;

/// Why a join was refused.
#[derive(Debug, Clone)]
pub struct JoinError {
    /// Machine-readable reason.
    pub code: &'static str,
    /// What is wrong.
    pub message: String,
}

/// One channel of a session.
#[derive(Debug)]
pub struct ChannelPos {
    /// Channel name.
    pub name: String,
    key: String,
    /// Last position delivered (or the join position).
    pub position: i64,
}

/// The outcome of joining a channel.
#[derive(Debug)]
pub struct Join {
    /// Missed messages to send first, in order.
    pub messages: Vec<Arc<Msg>>,
    /// Whether recovery reached back far enough (`None` when not asked).
    pub recovered: Option<bool>,
    /// The channel's position after those messages.
    pub position: i64,
}

/// A session.
pub struct Session {
    /// Connection id.
    pub conn: u64,
    /// Who it is.
    pub identity: Identity,
    /// Its channels, in join order (the user's channel first).
    pub channels: Vec<ChannelPos>,
    /// Its queue of live messages.
    pub rx: mpsc::Receiver<Arc<Msg>>,
    tx: mpsc::Sender<Arc<Msg>>,
    /// Closed from outside (too slow, session cap).
    pub control: Arc<Control>,
    shared: Arc<Shared>,
    user_key: String,
    user: Arc<str>,
    /// When it began.
    pub started: Instant,
}

impl Session {
    /// A new session of `identity`, counted against the user's session cap.
    pub fn new(shared: &Arc<Shared>, identity: Identity) -> Self {
        let conn = shared.next_conn.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(shared.config.send_queue);
        let control = Arc::new(Control::default());
        let user_key = channel_key(&identity.site, &identity.user);
        let identity_user = identity.user.clone();
        shared.hub.add_session(
            &user_key,
            conn,
            Arc::clone(&control),
            shared.config.max_sessions_per_user,
        );
        Session {
            conn,
            identity,
            channels: Vec::new(),
            rx,
            tx,
            control,
            shared: Arc::clone(shared),
            user_key,
            user: Arc::from(identity_user.as_str()),
            started: Instant::now(),
        }
    }

    /// Resolves when the gateway ends this connection: closed from outside, the gateway
    /// stopping, or the connection's lifetime (from now) over.
    ///
    /// Built once per connection and kept pinned by its transport: polling it again after a
    /// delivery's wake-up finds its waiters already registered, where a fresh
    /// `shutdown.cancelled()` per wake-up would register and unregister in the one token all
    /// connections share, 20,000 times per message to a channel of 20,000.
    pub fn ending(&self) -> Ending {
        let control = Arc::clone(&self.control);
        let shutdown = self.shared.shutdown.clone();
        let lifetime = self.shared.lifetime();
        Box::pin(async move {
            tokio::select! {
                biased;
                reason = control.closed() => End::Closed(reason),
                () = shutdown.cancelled() => End::Shutdown,
                () = async {
                    match lifetime {
                        Some(lifetime) => tokio::time::sleep(lifetime).await,
                        None => std::future::pending().await,
                    }
                } => End::Lifetime,
            }
        })
    }

    /// Whether the connection was asked to close: checked before every write, since a
    /// connection cut for being too slow has a full queue that would otherwise keep it busy.
    pub fn closing(&self) -> bool {
        self.control.reason().is_some()
    }

    /// The user's own channel.
    pub fn user_channel(&self) -> String {
        user_channel(&self.identity.user)
    }

    /// Joins `channel`, recovering what came after `since` (a position of `epoch`).
    pub async fn join(
        &mut self,
        channel: &str,
        since: Option<(i64, &str)>,
    ) -> Result<Join, JoinError> {
        validate_channel(channel).map_err(|e| JoinError {
            code: "bad_channel",
            message: e.to_string(),
        })?;
        if !self.identity.grants.allows(channel) {
            return Err(JoinError {
                code: "channel_not_allowed",
                message: format!("the token does not allow channel {channel:?}"),
            });
        }
        if self.channels.iter().any(|c| c.name == channel) {
            // Joining again with a position is how a client re-syncs its own channel.
            self.leave(channel);
        }
        if self.channels.len() >= self.shared.config.max_channels {
            return Err(JoinError {
                code: "too_many_channels",
                message: format!(
                    "a connection may be in at most {} channels (GATEWAY_MAX_CHANNELS)",
                    self.shared.config.max_channels
                ),
            });
        }
        let key = channel_key(&self.identity.site, channel);
        let partition = partition_of(
            &record_key(&self.identity.site, channel),
            self.shared.hub.partitions(),
        );
        let epoch_matches = since.is_none_or(|(_, epoch)| epoch == self.shared.epoch);
        let subscriber = Subscriber {
            conn: self.conn,
            user: Arc::clone(&self.user),
            tx: self.tx.clone(),
            control: Arc::clone(&self.control),
        };
        let joined = self.shared.hub.join(
            &key,
            partition,
            subscriber,
            since.filter(|_| epoch_matches).map(|(p, _)| p),
        );
        let settings = &self.identity.info.realtime;
        let size = settings.history_size() as usize;
        let ttl = settings.history_ttl();
        let (messages, recovered) = match joined.recovery {
            Recovery::NotAsked => (Vec::new(), since.map(|_| false)),
            Recovery::Complete(messages) => {
                let ok = messages.len() <= size && within_ttl(&messages, ttl);
                (messages, Some(ok))
            }
            Recovery::FromStore {
                after,
                through,
                tail,
            } => {
                self.recover_from_store(channel, joined.partition, after, through, tail, size, ttl)
                    .await
            }
        };
        let messages = if recovered == Some(true) {
            messages
        } else {
            Vec::new()
        };
        match recovered {
            Some(true) => self.shared.metrics.recovered.inc(),
            Some(false) => self.shared.metrics.not_recovered.inc(),
            None => {}
        }
        let position = messages
            .last()
            .map_or(joined.position, |m| m.offset.max(joined.position));
        self.channels.push(ChannelPos {
            name: channel.to_owned(),
            key,
            position,
        });
        Ok(Join {
            messages,
            recovered,
            position,
        })
    }

    #[allow(clippy::too_many_arguments)]
    async fn recover_from_store(
        &self,
        channel: &str,
        partition: i32,
        after: i64,
        through: i64,
        tail: Vec<Arc<Msg>>,
        size: usize,
        ttl: Duration,
    ) -> (Vec<Arc<Msg>>, Option<bool>) {
        let store: &Store = &self.shared.store;
        let site = &self.identity.site;
        let topic = &self.shared.config.topics.realtime.name;
        // Everything up to `through` must be stored before the store can be read for it.
        let deadline = Instant::now() + self.shared.config.recovery_wait;
        loop {
            let stored = store
                .history_stored_through_partition(topic, partition)
                .await
                .ok();
            if stored.is_some_and(|s| s >= through) {
                break;
            }
            if Instant::now() >= deadline {
                tracing::warn!(
                    channel,
                    partition,
                    through,
                    "recovery gave up waiting for the history recorder"
                );
                return (Vec::new(), Some(false));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        match store.history_trimmed_through(site, channel).await {
            Ok(trimmed) if trimmed > after => return (Vec::new(), Some(false)),
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "reading history trim position");
                return (Vec::new(), Some(false));
            }
        }
        let limit = u32::try_from(size + 1).unwrap_or(u32::MAX);
        let stored = match store
            .history_range(site, channel, after, through, limit)
            .await
        {
            Ok(stored) => stored,
            Err(e) => {
                tracing::warn!(error = %e, "reading stored history");
                return (Vec::new(), Some(false));
            }
        };
        let shared_channel: Arc<str> = Arc::from(channel);
        let mut messages: Vec<Arc<Msg>> = stored
            .into_iter()
            .map(|entry| {
                Arc::new(Msg {
                    channel: Arc::clone(&shared_channel),
                    partition: entry.partition,
                    offset: entry.offset,
                    ts_ms: entry.ts.timestamp_millis(),
                    ack: entry.frame.contains(",\"ack\":true}"),
                    frame: Utf8Bytes::from(entry.frame),
                })
            })
            .collect();
        messages.extend(tail.into_iter().filter(|m| m.offset > through));
        let ok = messages.len() <= size && within_ttl(&messages, ttl);
        (messages, Some(ok))
    }

    /// Leaves `channel`; false when the session was not in it.
    pub fn leave(&mut self, channel: &str) -> bool {
        let Some(index) = self.channels.iter().position(|c| c.name == channel) else {
            return false;
        };
        let removed = self.channels.remove(index);
        self.shared.hub.leave(&removed.key, self.conn);
        true
    }

    /// Whether a live message should be sent (it is past the channel's position), moving the
    /// position. Messages already sent by recovery, or of a channel just left, are not.
    pub fn accept(&mut self, msg: &Msg) -> bool {
        match self.channels.iter_mut().find(|c| *c.name == *msg.channel) {
            Some(channel) if msg.offset > channel.position => {
                channel.position = msg.offset;
                true
            }
            _ => false,
        }
    }

    /// Marks a recovered message as sent.
    pub fn sent(&mut self, channel: &str, offset: i64) {
        if let Some(c) = self.channels.iter_mut().find(|c| c.name == channel) {
            c.position = c.position.max(offset);
        }
    }

    /// The SSE event id: the epoch and every channel's position, in order.
    pub fn resume_id(&self) -> String {
        let mut id = String::with_capacity(16 + self.channels.len() * 8);
        self.write_resume_id(&mut id);
        id
    }

    /// Writes [`Session::resume_id`] into `out` (every SSE message carries one, so no
    /// allocation of its own).
    pub fn write_resume_id(&self, out: &mut impl std::fmt::Write) {
        let _ = out.write_str(&self.shared.epoch);
        let _ = out.write_char('~');
        for (i, channel) in self.channels.iter().enumerate() {
            if i > 0 {
                let _ = out.write_char(',');
            }
            if channel.position >= 0 {
                let _ = write!(out, "{}", channel.position);
            } else {
                let _ = out.write_char('-');
            }
        }
    }

    /// Counts a message written to this connection.
    pub fn count_written(&self, msg: &Msg) {
        self.shared.metrics.written.inc();
        if msg.ack {
            self.shared
                .acks
                .written(&pushservice_realtime::message_id(msg.partition, msg.offset));
        }
    }

    /// Counts acks from this connection.
    pub fn count_acks(&self, ids: &[String]) {
        let counted = self.shared.acks.acked(&self.identity.site, ids);
        self.shared.metrics.acks.add(counted);
    }

    /// The shared state.
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        for channel in &self.channels {
            self.shared.hub.leave(&channel.key, self.conn);
        }
        self.shared.hub.remove_session(&self.user_key, self.conn);
    }
}

/// Parses an SSE resume id: the epoch and one position per channel (`None` for `-`).
pub fn parse_resume_id(id: &str) -> Option<(String, Vec<Option<i64>>)> {
    let (epoch, positions) = id.split_once('~')?;
    let positions = positions
        .split(',')
        .map(|p| {
            if p == "-" {
                Some(None)
            } else {
                p.parse::<i64>().ok().map(Some)
            }
        })
        .collect::<Option<Vec<_>>>()?;
    Some((epoch.to_owned(), positions))
}

fn within_ttl(messages: &[Arc<Msg>], ttl: Duration) -> bool {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    let oldest_allowed = now - i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
    messages.iter().all(|m| m.ts_ms >= oldest_allowed)
}

/// A token bucket for client frames.
#[derive(Debug)]
pub struct FrameLimit {
    tokens: f64,
    rate: f64,
    burst: f64,
    at: Instant,
}

impl FrameLimit {
    /// `rate` frames a second, bursts of `burst`.
    pub fn new(rate: u32, burst: u32) -> Self {
        FrameLimit {
            tokens: f64::from(burst),
            rate: f64::from(rate),
            burst: f64::from(burst),
            at: Instant::now(),
        }
    }

    /// Takes one frame's token; false when there is none.
    pub fn take(&mut self) -> bool {
        let now = Instant::now();
        self.tokens =
            (self.tokens + now.duration_since(self.at).as_secs_f64() * self.rate).min(self.burst);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resume_ids_round_trip() {
        assert_eq!(
            parse_resume_id("ab12~5,-,17"),
            Some(("ab12".into(), vec![Some(5), None, Some(17)]))
        );
        assert_eq!(parse_resume_id("nonsense"), None);
        assert_eq!(parse_resume_id("e~x"), None);
    }

    #[test]
    fn frame_limit_allows_a_burst_then_the_rate() {
        let mut limit = FrameLimit::new(1, 3);
        assert!(limit.take() && limit.take() && limit.take());
        assert!(!limit.take());
    }
}
