//! Counting what the sink saw, cheaply enough for tens of thousands of requests a second.
//!
//! `Counters` is a set of relaxed atomics, with status codes and verification failures as
//! fixed arrays indexed by code or reason, so counting needs no lock and no allocation. Each
//! [`Kind`] of endpoint has its own small set beside the totals. [`Stats`] is a snapshot of
//! them, serialisable for `GET /__sink/stats` and the binary's final report. A snapshot taken
//! while requests are in flight may be off by those requests.
//!
//! The top-level counts are *push* requests of every kind (Web Push, APNs, FCM): benchmarks
//! wait on [`Stats::accepted`] whatever the provider. OAuth token requests are not pushes and
//! are counted only under [`Stats::by_kind`]`["oauth"]`.

mod failure;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

pub use failure::VerifyFailure;

use crate::outage::OutageStatus;

/// A snapshot of a sink's counters since start or the last reset.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Push requests received, of every kind (admin requests under `/__sink/` and OAuth token
    /// requests are not counted).
    pub requests: u64,
    /// Push requests accepted: 201 for Web Push, 200 for APNs and FCM.
    pub accepted: u64,
    /// Push requests per response status (JSON keys are the codes as strings).
    pub by_status: BTreeMap<u16, u64>,
    /// Push requests answered with a reset instead of a response.
    pub resets: u64,
    /// Verification failures per reason (see [`VerifyFailure::label`]); empty when all
    /// deliveries verified or verification is off.
    pub verify_failed: BTreeMap<String, u64>,
    /// Request body bytes received on push requests.
    pub bytes_in: u64,
    /// Distinct subscribers (device tokens, for APNs and FCM) with at least one accepted
    /// delivery.
    pub distinct_accepted: u64,
    /// Acceptances beyond the first for the same subscriber.
    pub duplicates: u64,
    /// When the first delivery was accepted (unix milliseconds).
    pub first_accepted_unix_ms: Option<u64>,
    /// When the last delivery was accepted (unix milliseconds).
    pub last_accepted_unix_ms: Option<u64>,
    /// The same counts per kind of endpoint: `webpush`, `apns`, `fcm` and `oauth` (token
    /// requests); kinds without requests are left out.
    #[serde(default)]
    pub by_kind: BTreeMap<String, KindStats>,
    /// Push requests answered by an outage (see [`crate::outage`]) rather than by their
    /// planned fate; they are also in `requests` and `by_status`, never in `accepted`.
    #[serde(default)]
    pub outage_answered: u64,
    /// The outage in force, if any (`null` when the service is up).
    #[serde(default)]
    pub outage: Option<OutageStatus>,
    /// Connections accepted.
    #[serde(default)]
    pub connections: u64,
    /// Connections closed with a GOAWAY after their configured number of requests.
    #[serde(default)]
    pub goaways: u64,
    /// Push requests that arrived while their connection already had as many in progress as
    /// it advertised (`SETTINGS_MAX_CONCURRENT_STREAMS`): a client ignoring the limit.
    #[serde(default)]
    pub streams_over_limit: u64,
    /// Most push requests in progress at once on one connection.
    #[serde(default)]
    pub peak_streams: u64,
}

impl Stats {
    /// Acceptances per second between the first and the last one (`None` before two
    /// acceptances a millisecond apart).
    pub fn accept_rate(&self) -> Option<f64> {
        let (first, last) = (self.first_accepted_unix_ms?, self.last_accepted_unix_ms?);
        (last > first).then(|| self.accepted as f64 * 1000.0 / (last - first) as f64)
    }

    /// Total of [`Stats::verify_failed`].
    pub fn verify_failures(&self) -> u64 {
        self.verify_failed.values().sum()
    }
}

/// Counts of one kind of endpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KindStats {
    /// Requests received.
    pub requests: u64,
    /// Requests accepted (pushes delivered; for `oauth`, access tokens issued).
    pub accepted: u64,
    /// Requests per response status.
    pub by_status: BTreeMap<u16, u64>,
    /// Of the requests, those answered by an outage.
    #[serde(default)]
    pub outage_answered: u64,
}

/// The kinds of endpoint a sink serves, each counted apart in [`Stats::by_kind`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Web Push (RFC 8030).
    WebPush,
    /// Apple Push Notification service.
    Apns,
    /// Firebase Cloud Messaging HTTP v1.
    Fcm,
    /// The OAuth2 token endpoint FCM senders get access tokens from.
    Oauth,
}

impl Kind {
    /// Every kind, in counter order.
    const ALL: [Kind; 4] = [Kind::WebPush, Kind::Apns, Kind::Fcm, Kind::Oauth];

    /// The key in [`Stats::by_kind`].
    pub(crate) fn label(self) -> &'static str {
        match self {
            Kind::WebPush => "webpush",
            Kind::Apns => "apns",
            Kind::Fcm => "fcm",
            Kind::Oauth => "oauth",
        }
    }

    /// Whether its requests are pushes, counted in the top-level totals too.
    pub(crate) fn is_push(self) -> bool {
        !matches!(self, Kind::Oauth)
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Status codes are counted in an array indexed by code; anything outside is clamped to 599.
const STATUS_SLOTS: usize = 600;

/// A request count, an acceptance count, a status histogram and outage answers.
struct Tallies {
    requests: AtomicU64,
    accepted: AtomicU64,
    by_status: Box<[AtomicU64]>,
    outage_answered: AtomicU64,
}

impl Tallies {
    fn new() -> Self {
        Tallies {
            requests: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            by_status: (0..STATUS_SLOTS).map(|_| AtomicU64::new(0)).collect(),
            outage_answered: AtomicU64::new(0),
        }
    }

    fn status(&self, code: u16) {
        let slot = usize::from(code).min(STATUS_SLOTS - 1);
        self.by_status[slot].fetch_add(1, Relaxed);
    }

    fn by_status(&self) -> BTreeMap<u16, u64> {
        self.by_status
            .iter()
            .enumerate()
            .filter_map(|(code, n)| {
                let n = n.load(Relaxed);
                // `code` < STATUS_SLOTS, which fits in u16.
                (n > 0).then_some((code as u16, n))
            })
            .collect()
    }

    fn counters(&self) -> impl Iterator<Item = &AtomicU64> {
        [&self.requests, &self.accepted, &self.outage_answered]
            .into_iter()
            .chain(self.by_status.iter())
    }
}

/// The live counters behind [`Stats`].
pub(crate) struct Counters {
    /// Push requests of every kind (and requests no kind matched).
    pushes: Tallies,
    resets: AtomicU64,
    bytes_in: AtomicU64,
    distinct_accepted: AtomicU64,
    duplicates: AtomicU64,
    /// Unix ms of the first acceptance; 0 until there is one.
    first_accepted_ms: AtomicU64,
    /// Unix ms of the latest acceptance; 0 until there is one.
    last_accepted_ms: AtomicU64,
    verify_failed: [AtomicU64; VerifyFailure::ALL.len()],
    by_kind: [Tallies; Kind::ALL.len()],
    connections: AtomicU64,
    goaways: AtomicU64,
    streams_over_limit: AtomicU64,
    peak_streams: AtomicU64,
}

impl Counters {
    pub(crate) fn new() -> Self {
        Counters {
            pushes: Tallies::new(),
            resets: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            distinct_accepted: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            first_accepted_ms: AtomicU64::new(0),
            last_accepted_ms: AtomicU64::new(0),
            verify_failed: std::array::from_fn(|_| AtomicU64::new(0)),
            by_kind: std::array::from_fn(|_| Tallies::new()),
            connections: AtomicU64::new(0),
            goaways: AtomicU64::new(0),
            streams_over_limit: AtomicU64::new(0),
            peak_streams: AtomicU64::new(0),
        }
    }

    pub(crate) fn connection(&self) {
        self.connections.fetch_add(1, Relaxed);
    }

    pub(crate) fn goaway(&self) {
        self.goaways.fetch_add(1, Relaxed);
    }

    /// A push request started on a connection that now has `active` in progress and
    /// advertises `limit`.
    pub(crate) fn streams_active(&self, active: u32, limit: u32) {
        if active > limit {
            self.streams_over_limit.fetch_add(1, Relaxed);
        }
        self.peak_streams.fetch_max(u64::from(active), Relaxed);
    }

    /// Counts a request of `kind`; `None` is a request no kind matched (counted as a push).
    pub(crate) fn request(&self, kind: Option<Kind>) {
        if let Some(kind) = kind {
            self.by_kind[kind.index()].requests.fetch_add(1, Relaxed);
        }
        if kind.is_none_or(Kind::is_push) {
            self.pushes.requests.fetch_add(1, Relaxed);
        }
    }

    pub(crate) fn bytes_in(&self, n: usize) {
        self.bytes_in.fetch_add(n as u64, Relaxed);
    }

    /// Counts an answer with status `code` to a request of `kind` (see [`Counters::request`]).
    pub(crate) fn status(&self, kind: Option<Kind>, code: u16) {
        if let Some(kind) = kind {
            self.by_kind[kind.index()].status(code);
        }
        if kind.is_none_or(Kind::is_push) {
            self.pushes.status(code);
        }
    }

    pub(crate) fn reset_stream(&self) {
        self.resets.fetch_add(1, Relaxed);
    }

    /// Counts a push request of `kind` answered by an outage (its status is counted by
    /// [`Counters::status`] as any answer's).
    pub(crate) fn outage_answered(&self, kind: Kind) {
        self.by_kind[kind.index()]
            .outage_answered
            .fetch_add(1, Relaxed);
        self.pushes.outage_answered.fetch_add(1, Relaxed);
    }

    pub(crate) fn verify_failed(&self, reason: VerifyFailure) {
        self.verify_failed[reason.index()].fetch_add(1, Relaxed);
    }

    /// Counts an acceptance of `kind`; for pushes `nth` is how many this subscriber has had,
    /// this one included.
    pub(crate) fn accepted(&self, kind: Kind, nth: u32) {
        self.by_kind[kind.index()].accepted.fetch_add(1, Relaxed);
        if !kind.is_push() {
            return;
        }
        self.pushes.accepted.fetch_add(1, Relaxed);
        if nth <= 1 {
            self.distinct_accepted.fetch_add(1, Relaxed);
        } else {
            self.duplicates.fetch_add(1, Relaxed);
        }
        let now = unix_ms();
        let _ = self
            .first_accepted_ms
            .compare_exchange(0, now, Relaxed, Relaxed);
        self.last_accepted_ms.fetch_max(now, Relaxed);
    }

    /// Zeroes every counter.
    pub(crate) fn reset(&self) {
        let scalars = [
            &self.resets,
            &self.bytes_in,
            &self.distinct_accepted,
            &self.duplicates,
            &self.first_accepted_ms,
            &self.last_accepted_ms,
            &self.connections,
            &self.goaways,
            &self.streams_over_limit,
            &self.peak_streams,
        ];
        for counter in scalars
            .into_iter()
            .chain(self.pushes.counters())
            .chain(self.by_kind.iter().flat_map(Tallies::counters))
            .chain(self.verify_failed.iter())
        {
            counter.store(0, Relaxed);
        }
    }

    pub(crate) fn snapshot(&self) -> Stats {
        let nonzero = |ms: &AtomicU64| Some(ms.load(Relaxed)).filter(|&ms| ms != 0);
        Stats {
            requests: self.pushes.requests.load(Relaxed),
            accepted: self.pushes.accepted.load(Relaxed),
            by_status: self.pushes.by_status(),
            resets: self.resets.load(Relaxed),
            verify_failed: VerifyFailure::ALL
                .iter()
                .zip(self.verify_failed.iter())
                .filter_map(|(reason, n)| {
                    let n = n.load(Relaxed);
                    (n > 0).then(|| (reason.label().to_owned(), n))
                })
                .collect(),
            bytes_in: self.bytes_in.load(Relaxed),
            distinct_accepted: self.distinct_accepted.load(Relaxed),
            duplicates: self.duplicates.load(Relaxed),
            first_accepted_unix_ms: nonzero(&self.first_accepted_ms),
            last_accepted_unix_ms: nonzero(&self.last_accepted_ms),
            by_kind: Kind::ALL
                .iter()
                .zip(self.by_kind.iter())
                .filter_map(|(kind, tallies)| {
                    let requests = tallies.requests.load(Relaxed);
                    (requests > 0).then(|| {
                        let stats = KindStats {
                            requests,
                            accepted: tallies.accepted.load(Relaxed),
                            by_status: tallies.by_status(),
                            outage_answered: tallies.outage_answered.load(Relaxed),
                        };
                        (kind.label().to_owned(), stats)
                    })
                })
                .collect(),
            outage_answered: self.pushes.outage_answered.load(Relaxed),
            // The counters do not know the switch: `Shared::stats` fills it in.
            outage: None,
            connections: self.connections.load(Relaxed),
            goaways: self.goaways.load(Relaxed),
            streams_over_limit: self.streams_over_limit.load(Relaxed),
            peak_streams: self.peak_streams.load(Relaxed),
        }
    }
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_reports_what_was_counted_and_reset_zeroes_it() {
        let counters = Counters::new();
        let web = Some(Kind::WebPush);
        counters.request(web);
        counters.request(web);
        counters.status(web, 201);
        counters.status(web, 410);
        counters.accepted(Kind::WebPush, 1);
        counters.accepted(Kind::WebPush, 2);
        counters.bytes_in(100);
        counters.verify_failed(VerifyFailure::JwtExpiry);
        let stats = counters.snapshot();
        assert_eq!(stats.requests, 2);
        assert_eq!(stats.accepted, 2);
        assert_eq!((stats.distinct_accepted, stats.duplicates), (1, 1));
        assert_eq!(stats.by_status, BTreeMap::from([(201, 1), (410, 1)]));
        assert_eq!(
            stats.verify_failed,
            BTreeMap::from([("jwt_expiry".to_owned(), 1)])
        );
        assert!(stats.first_accepted_unix_ms.is_some());
        assert!(stats.first_accepted_unix_ms <= stats.last_accepted_unix_ms);
        let web_stats = KindStats {
            requests: 2,
            accepted: 2,
            by_status: BTreeMap::from([(201, 1), (410, 1)]),
            outage_answered: 0,
        };
        assert_eq!(
            stats.by_kind,
            BTreeMap::from([("webpush".to_owned(), web_stats)])
        );

        counters.reset();
        assert_eq!(counters.snapshot(), Stats::default());
    }

    #[test]
    fn token_requests_are_counted_apart_from_pushes() {
        let counters = Counters::new();
        counters.request(Some(Kind::Oauth));
        counters.status(Some(Kind::Oauth), 200);
        counters.accepted(Kind::Oauth, 1);
        counters.request(Some(Kind::Apns));
        counters.status(Some(Kind::Apns), 200);
        counters.accepted(Kind::Apns, 1);
        counters.request(None);
        counters.status(None, 404);
        let stats = counters.snapshot();
        assert_eq!((stats.requests, stats.accepted), (2, 1), "{stats:?}");
        assert_eq!(stats.by_status, BTreeMap::from([(200, 1), (404, 1)]));
        let kinds: Vec<(&str, u64, u64)> = stats
            .by_kind
            .iter()
            .map(|(kind, s)| (kind.as_str(), s.requests, s.accepted))
            .collect();
        assert_eq!(kinds, vec![("apns", 1, 1), ("oauth", 1, 1)]);
    }

    #[test]
    fn stats_round_trip_through_json_and_older_json_still_parses() {
        let stats = Stats {
            requests: 3,
            by_status: BTreeMap::from([(201, 2), (429, 1)]),
            by_kind: BTreeMap::from([(
                "fcm".to_owned(),
                KindStats {
                    requests: 1,
                    accepted: 1,
                    by_status: BTreeMap::from([(200, 1)]),
                    outage_answered: 0,
                },
            )]),
            ..Stats::default()
        };
        let json = serde_json::to_string(&stats).expect("serialises");
        assert!(json.contains(r#""201":2"#), "{json}");
        let back: Stats = serde_json::from_str(&json).expect("parses");
        assert_eq!(back, stats);

        let mut older = serde_json::to_value(Stats::default()).expect("serialises");
        if let Some(fields) = older.as_object_mut() {
            fields.remove("by_kind");
        }
        let parsed: Stats = serde_json::from_value(older).expect("parses without by_kind");
        assert_eq!(parsed, Stats::default());
    }
}
