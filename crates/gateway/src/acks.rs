//! Delivery figures: per message that asked for acks, the connections it was written to and
//! the acks that came back; per site and minute, hour and day, messages, deliveries and acks
//! (the "arrival rate"). Counted in memory and written every second as this gateway's
//! cumulative figures (absolute values, so a write repeated after a failure counts once);
//! `pushapi` sums the gateways.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use pushservice_model::DateTime;
use pushservice_store::{AckCounts, PeriodCounts, Store};
use tokio_util::sync::CancellationToken;

/// How long a tracked message's figures are kept in memory (acks after that are not counted).
const TRACK_FOR: Duration = Duration::from_secs(600);
/// The periods counted, with their length in milliseconds.
const PERIODS: [(&str, i64); 3] = [("minute", 60_000), ("hour", 3_600_000), ("day", 86_400_000)];

#[derive(Debug)]
struct Tracked {
    site: String,
    written: u64,
    acked: u64,
    since: Instant,
    dirty: bool,
}

#[derive(Debug, Default, Clone, Copy)]
struct Period {
    messages: u64,
    written: u64,
    acks: u64,
    dirty: bool,
}

#[derive(Debug, Default)]
struct Book {
    tracked: HashMap<String, Tracked>,
    /// (site, period index, start ms).
    periods: HashMap<(String, usize, i64), Period>,
}

impl Book {
    /// Applies `change` to the site's current minute, hour and day.
    fn bump_periods(&mut self, site: &str, change: impl Fn(&mut Period)) {
        let now = now_ms();
        for (index, (_, length)) in PERIODS.iter().enumerate() {
            let start = now - now.rem_euclid(*length);
            let period = self
                .periods
                .entry((site.to_owned(), index, start))
                .or_default();
            change(period);
            period.dirty = true;
        }
    }
}

/// The figures of this gateway.
#[derive(Debug, Default)]
pub struct AckBook {
    book: Mutex<Book>,
}

fn now_ms() -> i64 {
    DateTime::now().timestamp_millis()
}

impl AckBook {
    fn lock(&self) -> std::sync::MutexGuard<'_, Book> {
        self.book.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Tracks the figures of message `id` of `site` (one that asked for acks). Called before
    /// the message is dispatched, so writes to connections find it.
    pub fn track(&self, site: &str, id: String) {
        self.lock().tracked.insert(
            id,
            Tracked {
                site: site.to_owned(),
                written: 0,
                acked: 0,
                since: Instant::now(),
                dirty: true,
            },
        );
    }

    /// A message of `site` was read and queued for `queued` connections.
    pub fn published(&self, site: &str, queued: u64) {
        self.lock().bump_periods(site, |period| {
            period.messages += 1;
            period.written += queued;
        });
    }

    /// A tracked message was written to a connection.
    pub fn written(&self, id: &str) {
        if let Some(tracked) = self.lock().tracked.get_mut(id) {
            tracked.written += 1;
            tracked.dirty = true;
        }
    }

    /// Acks from a connection of `site`; ids of other sites' messages are ignored. Returns how
    /// many counted.
    pub fn acked(&self, site: &str, ids: &[String]) -> u64 {
        let mut book = self.lock();
        let mut counted = 0;
        for id in ids {
            if let Some(tracked) = book.tracked.get_mut(id)
                && tracked.site == site
            {
                tracked.acked += 1;
                tracked.dirty = true;
                counted += 1;
            }
        }
        if counted > 0 {
            book.bump_periods(site, |period| period.acks += counted);
        }
        counted
    }

    /// What changed since the last call, as documents of `gateway`; forgets what is old.
    fn changes(&self, gateway: &str) -> (Vec<AckCounts>, Vec<PeriodCounts>) {
        let now = now_ms();
        let mut book = self.lock();
        let mut acks = Vec::new();
        for (id, tracked) in &mut book.tracked {
            if tracked.dirty {
                tracked.dirty = false;
                acks.push(AckCounts {
                    id: format!("{id}:{gateway}"),
                    site_id: tracked.site.clone(),
                    message_id: id.clone(),
                    written: tracked.written,
                    acked: tracked.acked,
                });
            }
        }
        book.tracked
            .retain(|_, tracked| tracked.dirty || tracked.since.elapsed() < TRACK_FOR);
        let mut periods = Vec::new();
        for ((site, index, start), period) in &mut book.periods {
            if period.dirty {
                period.dirty = false;
                periods.push(PeriodCounts {
                    id: format!("{site}:{}:{start}:{gateway}", PERIODS[*index].0),
                    site_id: site.clone(),
                    period: PERIODS[*index].0.to_owned(),
                    start: DateTime::from_millis(*start),
                    messages: period.messages,
                    written: period.written,
                    acks: period.acks,
                });
            }
        }
        book.periods.retain(|(_, index, start), period| {
            period.dirty || now < start + PERIODS[*index].1 + 60_000
        });
        (acks, periods)
    }

    /// Writes the changes every `interval` until `stop` (and once more then).
    pub async fn run(
        &self,
        store: Store,
        gateway: String,
        interval: Duration,
        stop: CancellationToken,
    ) {
        let mut ticks = tokio::time::interval(interval);
        loop {
            let stopping = tokio::select! {
                () = stop.cancelled() => true,
                _ = ticks.tick() => false,
            };
            let (acks, periods) = self.changes(&gateway);
            if let Err(e) = store.write_ack_figures(&acks, &periods).await {
                tracing::warn!(error = %e, "writing delivery figures");
                // Written again next time: mark them changed.
                let mut book = self.lock();
                for a in &acks {
                    if let Some(t) = book.tracked.get_mut(&a.message_id) {
                        t.dirty = true;
                    }
                }
                for p in &periods {
                    if let Some(index) = PERIODS.iter().position(|(n, _)| *n == p.period)
                        && let Some(period) = book.periods.get_mut(&(
                            p.site_id.clone(),
                            index,
                            p.start.timestamp_millis(),
                        ))
                    {
                        period.dirty = true;
                    }
                }
            }
            if stopping {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_only_its_sites_acks_and_reports_changes_once() {
        let book = AckBook::default();
        book.track("s1", "0-5".into());
        book.published("s1", 2);
        book.written("0-5");
        book.written("0-5");
        assert_eq!(book.acked("s2", &["0-5".into()]), 0, "another site's ack");
        assert_eq!(book.acked("s1", &["0-5".into(), "9-9".into()]), 1);
        let (acks, periods) = book.changes("g");
        assert_eq!(acks.len(), 1);
        assert_eq!((acks[0].written, acks[0].acked), (2, 1));
        assert_eq!(periods.len(), 3);
        assert!(
            periods
                .iter()
                .all(|p| (p.messages, p.written, p.acks) == (1, 2, 1))
        );
        let (acks, periods) = book.changes("g");
        assert!(acks.is_empty() && periods.is_empty());
    }
}
