//! A push service that is down for a while: started and ended at run time, so a test can play
//! an outage in the middle of a push.
//!
//! While an [`Outage`] is in force, every push request (of its kind, or of every kind) is
//! answered with its status (503 unless told otherwise), a `Retry-After` header when it has
//! one, and a body shaped like that platform's error (see each kind's `unavailable`). Those
//! answers are told apart from planned fates:
//!
//! - they are counted as requests and by status like any answer, and also in
//!   [`crate::Stats::outage_answered`] (and per kind), so `by_status` minus
//!   `outage_answered` is what the planned fates and verification answered;
//! - they never touch the per-subscriber attempt table, so a subscriber's planned fate (a 429
//!   "once", say) plays out on the first request the service actually handles after the
//!   outage, and nothing answered by the outage counts as that subscriber's delivery;
//! - the OAuth token endpoint is not a push service and stays up.
//!
//! Controlled over HTTP (`POST`, `GET`, `DELETE /__sink/outage`, see `service`) or in
//! process ([`crate::Sink::start_outage`], [`crate::Sink::end_outage`]).
//!
//! The hot path (no outage) is one relaxed atomic load per request; only while an outage is
//! set is a mutex taken, to read it and to notice that its time is over.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper::StatusCode;
use serde::{Deserialize, Serialize};

use crate::stats::{Kind, unix_ms};

/// Longest outage accepted: a day. Anything longer is a forgotten switch, not a test.
pub const MAX_OUTAGE: Duration = Duration::from_secs(24 * 3600);

/// Which push services an outage takes down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PushKind {
    /// Web Push endpoints.
    WebPush,
    /// APNs.
    Apns,
    /// FCM HTTP v1.
    Fcm,
}

impl PushKind {
    /// The counting kind.
    pub(crate) fn kind(self) -> Kind {
        match self {
            PushKind::WebPush => Kind::WebPush,
            PushKind::Apns => Kind::Apns,
            PushKind::Fcm => Kind::Fcm,
        }
    }
}

/// An outage to start: how long, what every push request is answered, and which kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outage {
    /// How long it lasts from now.
    pub duration: Duration,
    /// The status every push request gets (400–599).
    pub status: StatusCode,
    /// `Retry-After` seconds sent with each answer; none when `None`.
    pub retry_after_secs: Option<u32>,
    /// Only this kind is down; every push kind when `None`.
    pub kind: Option<PushKind>,
}

impl Outage {
    /// A 503 outage of every push kind for `duration`, without `Retry-After`.
    pub fn unavailable(duration: Duration) -> Self {
        Outage {
            duration,
            status: StatusCode::SERVICE_UNAVAILABLE,
            retry_after_secs: None,
            kind: None,
        }
    }

    /// Parses and checks the body of `POST /__sink/outage`:
    /// `{"seconds": 60, "status": 503, "retryAfter": 5, "kind": "webpush"}` where only
    /// `seconds` is required (it may have a fraction); the error says what is wrong.
    pub fn from_json(body: &[u8]) -> Result<Self, String> {
        /// The request body as sent.
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase", deny_unknown_fields)]
        struct Request {
            seconds: f64,
            #[serde(default)]
            status: Option<u16>,
            #[serde(default, alias = "retry_after_secs")]
            retry_after: Option<u32>,
            #[serde(default)]
            kind: Option<PushKind>,
        }
        let request: Request = serde_json::from_slice(body).map_err(|e| {
            format!(
                "outage body: {e}; expected JSON like {{\"seconds\": 60, \"status\": 503, \
                 \"retryAfter\": 5, \"kind\": \"webpush|apns|fcm\"}} (only seconds required)"
            )
        })?;
        let max = MAX_OUTAGE.as_secs_f64();
        if !(request.seconds > 0.0 && request.seconds <= max) {
            return Err(format!(
                "outage seconds {} must be above 0 and at most {max}",
                request.seconds
            ));
        }
        let status = request.status.unwrap_or(503);
        let status = StatusCode::from_u16(status)
            .ok()
            .filter(|s| s.is_client_error() || s.is_server_error())
            .ok_or_else(|| format!("outage status {status} must be an error status, 400-599"))?;
        if let Some(secs) = request.retry_after
            && u64::from(secs) > MAX_OUTAGE.as_secs()
        {
            return Err(format!(
                "outage retryAfter {secs} must be at most {} seconds",
                MAX_OUTAGE.as_secs()
            ));
        }
        Ok(Outage {
            duration: Duration::from_secs_f64(request.seconds),
            status,
            retry_after_secs: request.retry_after,
            kind: request.kind,
        })
    }
}

/// An outage as reported by `GET /__sink/stats` (`outage`) and the outage endpoints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutageStatus {
    /// The status every push request gets.
    pub status: u16,
    /// `Retry-After` seconds sent, if any.
    pub retry_after_secs: Option<u32>,
    /// The kind that is down (`webpush`, `apns`, `fcm`); every push kind when absent.
    pub kind: Option<PushKind>,
    /// When it started (unix milliseconds).
    pub started_unix_ms: u64,
    /// When it ends (unix milliseconds).
    pub ends_unix_ms: u64,
    /// Milliseconds left (0 once over or ended).
    pub remaining_ms: u64,
    /// Push requests this outage answered.
    pub answered: u64,
}

/// An outage in force.
pub(crate) struct Active {
    /// What it answers.
    pub(crate) outage: Outage,
    started_unix_ms: u64,
    /// When it is over, on the monotonic clock.
    until: Instant,
    /// Requests it answered.
    answered: AtomicU64,
}

impl Active {
    /// Counts one request answered by this outage.
    pub(crate) fn answered_one(&self) {
        self.answered.fetch_add(1, Relaxed);
    }

    fn status_at(&self, now: Instant) -> OutageStatus {
        let total_ms = self.outage.duration.as_millis() as u64;
        OutageStatus {
            status: self.outage.status.as_u16(),
            retry_after_secs: self.outage.retry_after_secs,
            kind: self.outage.kind,
            started_unix_ms: self.started_unix_ms,
            ends_unix_ms: self.started_unix_ms + total_ms,
            remaining_ms: self.until.saturating_duration_since(now).as_millis() as u64,
            answered: self.answered.load(Relaxed),
        }
    }
}

/// The switch: at most one outage at a time; starting one replaces any in force.
pub(crate) struct OutageSwitch {
    /// Whether an outage is set (maybe already over): lets requests skip the lock.
    set: AtomicBool,
    current: Mutex<Option<Arc<Active>>>,
}

impl OutageSwitch {
    pub(crate) fn new() -> Self {
        OutageSwitch {
            set: AtomicBool::new(false),
            current: Mutex::new(None),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Arc<Active>>> {
        // A poisoned lock only means a panic while swapping an Option; its value is whole.
        self.current.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts `outage` now, replacing any in force.
    pub(crate) fn start(&self, outage: Outage) -> OutageStatus {
        let now = Instant::now();
        let active = Arc::new(Active {
            outage,
            started_unix_ms: unix_ms(),
            until: now + outage.duration,
            answered: AtomicU64::new(0),
        });
        let status = active.status_at(now);
        *self.lock() = Some(active);
        self.set.store(true, Relaxed);
        status
    }

    /// Ends the outage in force at once; what it was, if one was in force.
    pub(crate) fn end(&self) -> Option<OutageStatus> {
        let now = Instant::now();
        let ended = self.lock().take();
        self.set.store(false, Relaxed);
        ended
            .filter(|active| active.until > now)
            .map(|active| OutageStatus {
                remaining_ms: 0,
                ..active.status_at(now)
            })
    }

    /// The outage in force, if any.
    pub(crate) fn status(&self) -> Option<OutageStatus> {
        let now = Instant::now();
        self.current_at(now).map(|active| active.status_at(now))
    }

    /// The outage that answers a request of `kind` arriving now, if any.
    pub(crate) fn in_force(&self, kind: Kind) -> Option<Arc<Active>> {
        if !self.set.load(Relaxed) {
            return None;
        }
        self.in_force_at(kind, Instant::now())
    }

    fn in_force_at(&self, kind: Kind, now: Instant) -> Option<Arc<Active>> {
        self.current_at(now)
            .filter(|active| active.outage.kind.is_none_or(|k| k.kind() == kind))
            .filter(|_| kind.is_push())
    }

    /// The outage set and not yet over at `now`; forgets one that is over.
    fn current_at(&self, now: Instant) -> Option<Arc<Active>> {
        let mut current = self.lock();
        match current.as_ref() {
            Some(active) if active.until > now => Some(active.clone()),
            Some(_) => {
                *current = None;
                self.set.store(false, Relaxed);
                None
            }
            None => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_takes_defaults_and_refuses_nonsense() {
        let outage = Outage::from_json(br#"{"seconds": 60}"#).expect("valid");
        assert_eq!(outage, Outage::unavailable(Duration::from_secs(60)));

        let outage = Outage::from_json(
            br#"{"seconds": 0.5, "status": 500, "retryAfter": 5, "kind": "apns"}"#,
        )
        .expect("valid");
        assert_eq!(outage.duration, Duration::from_millis(500));
        assert_eq!(outage.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(outage.retry_after_secs, Some(5));
        assert_eq!(outage.kind, Some(PushKind::Apns));

        for (body, expected) in [
            (r#"{"status": 503}"#, "seconds"),
            (r#"{"seconds": 0}"#, "above 0"),
            (r#"{"seconds": -1}"#, "above 0"),
            (r#"{"seconds": 100000}"#, "at most"),
            (r#"{"seconds": 5, "status": 201}"#, "400-599"),
            (r#"{"seconds": 5, "status": 700}"#, "400-599"),
            (r#"{"seconds": 5, "kind": "mqtt"}"#, "webpush|apns|fcm"),
            (r#"{"seconds": 5, "retry": 5}"#, "unknown field"),
            ("not json", "expected JSON"),
        ] {
            let error = Outage::from_json(body.as_bytes()).expect_err(body);
            assert!(error.contains(expected), "{body}: {error}");
        }
    }

    #[test]
    fn an_outage_answers_its_kinds_until_its_time_is_over() {
        let switch = OutageSwitch::new();
        assert!(switch.in_force(Kind::WebPush).is_none());
        let status = switch.start(Outage {
            kind: Some(PushKind::Fcm),
            ..Outage::unavailable(Duration::from_secs(30))
        });
        assert_eq!(status.status, 503);
        assert_eq!(status.ends_unix_ms - status.started_unix_ms, 30_000);

        let now = Instant::now();
        assert!(switch.in_force_at(Kind::Fcm, now).is_some());
        assert!(switch.in_force_at(Kind::WebPush, now).is_none());
        assert!(switch.in_force_at(Kind::Apns, now).is_none());
        let later = now + Duration::from_secs(31);
        assert!(switch.in_force_at(Kind::Fcm, later).is_none());
        assert!(!switch.set.load(Relaxed), "forgotten once over");
        assert_eq!(switch.status(), None);
    }

    #[test]
    fn every_push_kind_but_never_oauth_and_end_stops_it_at_once() {
        let switch = OutageSwitch::new();
        switch.start(Outage::unavailable(Duration::from_secs(30)));
        for kind in [Kind::WebPush, Kind::Apns, Kind::Fcm] {
            let active = switch.in_force(kind).expect("down");
            active.answered_one();
        }
        assert!(switch.in_force(Kind::Oauth).is_none());
        assert_eq!(switch.status().map(|s| s.answered), Some(3));

        let ended = switch.end().expect("was in force");
        assert_eq!((ended.answered, ended.remaining_ms), (3, 0));
        assert!(switch.in_force(Kind::WebPush).is_none());
        assert_eq!(switch.end(), None, "nothing left to end");
    }
}
