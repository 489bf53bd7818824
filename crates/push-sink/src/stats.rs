//! Counting what the sink saw, cheaply enough for tens of thousands of requests a second.
//!
//! `Counters` is a set of relaxed atomics, with status codes and verification failures as
//! fixed arrays indexed by code or reason, so counting needs no lock and no allocation.
//! [`Stats`] is a snapshot of them, serialisable for `GET /__sink/stats` and the binary's
//! final report. A snapshot taken while requests are in flight may be off by those requests.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// A snapshot of a sink's counters since start or the last reset.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Push requests received (admin requests under `/__sink/` are not counted).
    pub requests: u64,
    /// Push requests answered 201.
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
    /// Distinct subscribers with at least one accepted delivery.
    pub distinct_accepted: u64,
    /// Acceptances beyond the first for the same subscriber.
    pub duplicates: u64,
    /// When the first delivery was accepted (unix milliseconds).
    pub first_accepted_unix_ms: Option<u64>,
    /// When the last delivery was accepted (unix milliseconds).
    pub last_accepted_unix_ms: Option<u64>,
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

/// Why a push request failed verification; each reason has its own counter and status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyFailure {
    /// `Content-Encoding` is missing or not `aes128gcm` (400).
    ContentEncoding,
    /// `TTL` is missing or not a non-negative integer (400).
    Ttl,
    /// `Urgency` is not `very-low`, `low`, `normal` or `high` (400).
    Urgency,
    /// `Topic` is longer than 32 characters or not base64url (400).
    Topic,
    /// The body could not be decrypted with the subscriber's keys (400).
    Encryption,
    /// No `Authorization` header (401).
    MissingAuthorization,
    /// `Authorization` is not `vapid t=<jwt>, k=<key>` with a valid P-256 key (401).
    Authorization,
    /// The JWT is not three base64url parts of ES256 JSON (401).
    JwtMalformed,
    /// The ES256 signature does not verify with `k` (401).
    JwtSignature,
    /// `aud` is not the origin the request was sent to (401).
    JwtAudience,
    /// `exp` is in the past or more than 24 hours ahead (401).
    JwtExpiry,
    /// `sub` is missing or not a `mailto:` or `https:` URI (401).
    JwtSubject,
    /// `sub` is valid but not the subject the sink expects (403).
    SubjectMismatch,
}

impl VerifyFailure {
    /// Every reason, in counter order.
    pub const ALL: [VerifyFailure; 13] = [
        VerifyFailure::ContentEncoding,
        VerifyFailure::Ttl,
        VerifyFailure::Urgency,
        VerifyFailure::Topic,
        VerifyFailure::Encryption,
        VerifyFailure::MissingAuthorization,
        VerifyFailure::Authorization,
        VerifyFailure::JwtMalformed,
        VerifyFailure::JwtSignature,
        VerifyFailure::JwtAudience,
        VerifyFailure::JwtExpiry,
        VerifyFailure::JwtSubject,
        VerifyFailure::SubjectMismatch,
    ];

    /// The key in [`Stats::verify_failed`].
    pub fn label(self) -> &'static str {
        match self {
            VerifyFailure::ContentEncoding => "content_encoding",
            VerifyFailure::Ttl => "ttl",
            VerifyFailure::Urgency => "urgency",
            VerifyFailure::Topic => "topic",
            VerifyFailure::Encryption => "encryption",
            VerifyFailure::MissingAuthorization => "missing_authorization",
            VerifyFailure::Authorization => "authorization",
            VerifyFailure::JwtMalformed => "jwt_malformed",
            VerifyFailure::JwtSignature => "jwt_signature",
            VerifyFailure::JwtAudience => "jwt_audience",
            VerifyFailure::JwtExpiry => "jwt_expiry",
            VerifyFailure::JwtSubject => "jwt_subject",
            VerifyFailure::SubjectMismatch => "subject_mismatch",
        }
    }

    /// The status a strict push service answers: 400 for the message, 401 for missing or
    /// invalid VAPID (RFC 8292 §4.2), 403 for a valid token from an unexpected sender.
    pub fn status(self) -> u16 {
        match self {
            VerifyFailure::ContentEncoding
            | VerifyFailure::Ttl
            | VerifyFailure::Urgency
            | VerifyFailure::Topic
            | VerifyFailure::Encryption => 400,
            VerifyFailure::SubjectMismatch => 403,
            _ => 401,
        }
    }

    fn index(self) -> usize {
        // `ALL` lists every variant once, so the search always succeeds.
        Self::ALL.iter().position(|r| *r == self).unwrap_or(0)
    }
}

/// Status codes are counted in an array indexed by code; anything outside is clamped to 599.
const STATUS_SLOTS: usize = 600;

/// The live counters behind [`Stats`].
pub(crate) struct Counters {
    requests: AtomicU64,
    accepted: AtomicU64,
    resets: AtomicU64,
    bytes_in: AtomicU64,
    distinct_accepted: AtomicU64,
    duplicates: AtomicU64,
    /// Unix ms of the first acceptance; 0 until there is one.
    first_accepted_ms: AtomicU64,
    /// Unix ms of the latest acceptance; 0 until there is one.
    last_accepted_ms: AtomicU64,
    by_status: Box<[AtomicU64]>,
    verify_failed: [AtomicU64; VerifyFailure::ALL.len()],
}

impl Counters {
    pub(crate) fn new() -> Self {
        Counters {
            requests: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            resets: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            distinct_accepted: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            first_accepted_ms: AtomicU64::new(0),
            last_accepted_ms: AtomicU64::new(0),
            by_status: (0..STATUS_SLOTS).map(|_| AtomicU64::new(0)).collect(),
            verify_failed: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    pub(crate) fn request(&self) {
        self.requests.fetch_add(1, Relaxed);
    }

    pub(crate) fn bytes_in(&self, n: usize) {
        self.bytes_in.fetch_add(n as u64, Relaxed);
    }

    pub(crate) fn status(&self, code: u16) {
        let slot = usize::from(code).min(STATUS_SLOTS - 1);
        self.by_status[slot].fetch_add(1, Relaxed);
    }

    pub(crate) fn reset_stream(&self) {
        self.resets.fetch_add(1, Relaxed);
    }

    pub(crate) fn verify_failed(&self, reason: VerifyFailure) {
        self.verify_failed[reason.index()].fetch_add(1, Relaxed);
    }

    /// Counts an acceptance; `nth` is how many this subscriber has had, this one included.
    pub(crate) fn accepted(&self, nth: u32) {
        self.accepted.fetch_add(1, Relaxed);
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
            &self.requests,
            &self.accepted,
            &self.resets,
            &self.bytes_in,
            &self.distinct_accepted,
            &self.duplicates,
            &self.first_accepted_ms,
            &self.last_accepted_ms,
        ];
        for counter in scalars
            .into_iter()
            .chain(self.by_status.iter())
            .chain(self.verify_failed.iter())
        {
            counter.store(0, Relaxed);
        }
    }

    pub(crate) fn snapshot(&self) -> Stats {
        let nonzero = |ms: &AtomicU64| Some(ms.load(Relaxed)).filter(|&ms| ms != 0);
        Stats {
            requests: self.requests.load(Relaxed),
            accepted: self.accepted.load(Relaxed),
            by_status: self
                .by_status
                .iter()
                .enumerate()
                .filter_map(|(code, n)| {
                    let n = n.load(Relaxed);
                    // `code` < STATUS_SLOTS, which fits in u16.
                    (n > 0).then_some((code as u16, n))
                })
                .collect(),
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
        counters.request();
        counters.request();
        counters.status(201);
        counters.status(410);
        counters.accepted(1);
        counters.accepted(2);
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

        counters.reset();
        assert_eq!(counters.snapshot(), Stats::default());
    }

    #[test]
    fn stats_round_trip_through_json() {
        let stats = Stats {
            requests: 3,
            by_status: BTreeMap::from([(201, 2), (429, 1)]),
            ..Stats::default()
        };
        let json = serde_json::to_string(&stats).expect("serialises");
        assert!(json.contains(r#""201":2"#), "{json}");
        let back: Stats = serde_json::from_str(&json).expect("parses");
        assert_eq!(back, stats);
    }

    #[test]
    fn every_reason_has_a_distinct_label_and_an_http_error_status() {
        let mut labels: Vec<_> = VerifyFailure::ALL.iter().map(|r| r.label()).collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), VerifyFailure::ALL.len());
        for reason in VerifyFailure::ALL {
            assert!(matches!(reason.status(), 400 | 401 | 403), "{reason:?}");
        }
    }
}
