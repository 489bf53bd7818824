//! The per-site breaker: no mass unsubscribe from a misconfiguration.
//!
//! Some answers mean either "this device is gone" or "the site's settings are wrong": APNs
//! answers `BadDeviceToken` for *every* token when a site's sandbox flag does not match its
//! app, FCM answers 404 for every token of another project. Acting on them one by one would
//! unsubscribe a whole iOS or Android audience, irreversibly, because of one wrong flag. So
//! the sender judges such a [`Suspect`](Verdict) answer by what the same site and platform
//! answered recently:
//!
//! - among clear successes (more accepted than suspect answers, at least
//!   [`MIN_SUCCESSES`]), it is one dead token: unsubscribe it;
//! - when suspect answers reach [`TRIP_AFTER`] and outnumber successes, the breaker trips:
//!   from then on those answers fail the delivery with a reason naming the setting to check,
//!   and nobody is unsubscribed;
//! - with too little evidence either way, the delivery is retried a little later (on the
//!   retry topic), when the evidence is in.
//!
//! An answer that can only mean "the credentials are wrong" (`TopicDisallowed`,
//! `SENDER_ID_MISMATCH`, ...) trips the breaker at once. Evidence is counted in windows of
//! [`WINDOW`]; a tripped breaker stays tripped until a window has more successes than
//! suspect answers (the operator fixed the setting, and new deliveries succeed). Each sender
//! judges on its own evidence; the state is small (one entry per active site and platform)
//! and bounded by [`MAX_SITES`].

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Suspect answers that, outnumbering successes, trip the breaker.
pub const TRIP_AFTER: u32 = 5;
/// Successes needed before a suspect answer counts as one dead token.
pub const MIN_SUCCESSES: u32 = 3;
/// Length of an evidence window.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Most (site, platform) entries kept; the least recently seen are dropped beyond it.
pub const MAX_SITES: usize = 10_000;

/// What a suspect answer means for this delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// One dead token among successes: unsubscribe it.
    Gone,
    /// The site's settings are at fault: fail the delivery with this reason.
    Misconfigured(String),
    /// Not enough evidence yet: retry the delivery later.
    Undecided,
}

/// The breakers of every (site, platform) this sender delivered for recently.
#[derive(Debug, Default)]
pub struct Breakers {
    sites: Mutex<HashMap<(String, &'static str), Evidence>>,
}

#[derive(Debug)]
struct Evidence {
    window_start: Instant,
    last_seen: Instant,
    successes: u32,
    suspects: u32,
    /// Why the breaker tripped, while it is tripped.
    tripped: Option<String>,
}

impl Evidence {
    fn new(now: Instant) -> Self {
        Evidence {
            window_start: now,
            last_seen: now,
            successes: 0,
            suspects: 0,
            tripped: None,
        }
    }

    /// Starts a new window when the current one is over; a tripped breaker closes at the
    /// end of a window that had more successes than suspect answers.
    fn roll(&mut self, now: Instant) {
        self.last_seen = now;
        if now.duration_since(self.window_start) < WINDOW {
            return;
        }
        if self.successes > self.suspects {
            self.tripped = None;
        }
        self.window_start = now;
        self.successes = 0;
        self.suspects = 0;
    }
}

impl Breakers {
    /// Records an accepted delivery for `site` on `platform`.
    pub fn success(&self, site: &str, platform: &'static str) {
        self.with(site, platform, Instant::now(), |e| {
            e.successes = e.successes.saturating_add(1);
        });
    }

    /// Judges a suspect answer (`reason`, pointing at `setting`) for `site` on `platform`.
    pub fn suspect(
        &self,
        site: &str,
        platform: &'static str,
        reason: &str,
        setting: &str,
    ) -> Verdict {
        self.suspect_at(site, platform, reason, setting, Instant::now())
    }

    fn suspect_at(
        &self,
        site: &str,
        platform: &'static str,
        reason: &str,
        setting: &str,
        now: Instant,
    ) -> Verdict {
        self.with(site, platform, now, |e| {
            e.suspects = e.suspects.saturating_add(1);
            if e.tripped.is_none() && e.suspects >= TRIP_AFTER && e.suspects > e.successes {
                // The setting first: reasons are shortened where the push keeps them.
                e.tripped = Some(format!(
                    "check {setting}: {platform} answered {reason} for most devices of this site"
                ));
                tracing::error!(site_id = site, platform, %reason, setting,
                    "breaker tripped: deliveries fail instead of unsubscribing; fix the site's settings");
            }
            if let Some(why) = &e.tripped {
                Verdict::Misconfigured(why.clone())
            } else if e.successes >= MIN_SUCCESSES && e.successes > e.suspects {
                Verdict::Gone
            } else {
                Verdict::Undecided
            }
        })
    }

    /// Records an answer that can only mean the site's settings are wrong; returns the
    /// reason deliveries fail with.
    pub fn misconfigured(
        &self,
        site: &str,
        platform: &'static str,
        reason: &str,
        setting: &str,
    ) -> String {
        self.with(site, platform, Instant::now(), |e| {
            let why = format!("check {setting}: {platform} answered {reason}");
            if e.tripped.is_none() {
                tracing::error!(site_id = site, platform, %reason, setting,
                    "breaker tripped: the site's credentials are wrong");
            }
            e.tripped = Some(why.clone());
            why
        })
    }

    fn with<R>(
        &self,
        site: &str,
        platform: &'static str,
        now: Instant,
        f: impl FnOnce(&mut Evidence) -> R,
    ) -> R {
        let mut sites = self.sites.lock().unwrap_or_else(|p| p.into_inner());
        if sites.len() >= MAX_SITES && !sites.contains_key(&(site.to_owned(), platform)) {
            // Drop the entries not seen for a window; if none, the least recently seen.
            sites.retain(|_, e| now.duration_since(e.last_seen) < WINDOW);
            if sites.len() >= MAX_SITES
                && let Some(oldest) = sites
                    .iter()
                    .min_by_key(|(_, e)| e.last_seen)
                    .map(|(k, _)| k.clone())
            {
                sites.remove(&oldest);
            }
        }
        let evidence = sites
            .entry((site.to_owned(), platform))
            .or_insert_with(|| Evidence::new(now));
        evidence.roll(now);
        f(evidence)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SETTING: &str = "the APNs sandbox flag";

    #[test]
    fn a_site_whose_every_token_is_bad_trips_after_a_handful_and_unsubscribes_nobody() {
        let breakers = Breakers::default();
        let verdicts: Vec<Verdict> = (0..100)
            .map(|_| breakers.suspect("site", "APNs", "BadDeviceToken", SETTING))
            .collect();
        let gone = verdicts.iter().filter(|v| **v == Verdict::Gone).count();
        let undecided = verdicts
            .iter()
            .filter(|v| **v == Verdict::Undecided)
            .count();
        assert_eq!(gone, 0, "nobody is unsubscribed");
        assert_eq!(undecided, TRIP_AFTER as usize - 1, "retried, then judged");
        let Verdict::Misconfigured(why) = &verdicts[99] else {
            panic!("tripped: {:?}", verdicts[99])
        };
        assert!(why.contains(SETTING), "{why}");
    }

    #[test]
    fn one_bad_token_among_successes_is_unsubscribed() {
        let breakers = Breakers::default();
        for _ in 0..50 {
            breakers.success("site", "APNs");
        }
        assert_eq!(
            breakers.suspect("site", "APNs", "BadDeviceToken", SETTING),
            Verdict::Gone
        );
        assert_eq!(
            breakers.suspect("other site", "APNs", "BadDeviceToken", SETTING),
            Verdict::Undecided,
            "another site has no evidence yet"
        );
    }

    #[test]
    fn a_credentials_error_trips_at_once_and_a_good_window_closes_it() {
        let breakers = Breakers::default();
        let why =
            breakers.misconfigured("site", "FCM", "SENDER_ID_MISMATCH", "the service account");
        assert!(why.contains("the service account"), "{why}");
        for _ in 0..10 {
            breakers.success("site", "FCM");
        }
        let start = Instant::now();
        assert!(matches!(
            breakers.suspect_at("site", "FCM", "404", SETTING, start),
            Verdict::Misconfigured(_)
        ));
        // A window later, the successes of the last window closed the breaker.
        let later = start + WINDOW + Duration::from_secs(1);
        assert_eq!(
            breakers.suspect_at("site", "FCM", "404", SETTING, later),
            Verdict::Undecided
        );
    }
}
