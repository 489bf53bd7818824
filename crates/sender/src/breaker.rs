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
//! suspect answers (the operator fixed the setting, and new deliveries succeed). The state is
//! small (one entry per active site and platform) and bounded by [`MAX_SITES`].
//!
//! Each sender counts what it saw, and [`sync_with_fleet`] shares it: every
//! [`FLEET_SYNC`] the sender writes its changed windows to MongoDB and, for the sites where it
//! answered [`Verdict::Undecided`] lately, reads what the other senders saw. A sender that
//! holds few of a site's deliveries (it joined late, or it holds only the retry partitions
//! where the undecided answers went) then judges a retried answer on the fleet's evidence
//! instead of a handful of its own. A store that is down only leaves each sender with its own
//! evidence, as before.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use pushservice_store::{BreakerEvidence, Store};
use tokio_util::sync::CancellationToken;

/// Suspect answers that, outnumbering successes, trip the breaker.
pub const TRIP_AFTER: u32 = 5;
/// Successes needed before a suspect answer counts as one dead token.
pub const MIN_SUCCESSES: u32 = 3;
/// Length of an evidence window.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Most (site, platform) entries kept; the least recently seen are dropped beyond it.
pub const MAX_SITES: usize = 10_000;
/// How often a sender shares its evidence and reads the fleet's.
pub const FLEET_SYNC: Duration = Duration::from_secs(1);
/// Evidence documents nobody wrote for this long are removed.
const STALE_EVIDENCE: Duration = Duration::from_secs(3600);

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
    /// What the other senders saw in their current windows (see [`sync_with_fleet`]).
    fleet: FleetCounts,
    /// The local counts changed since they were last shared.
    changed: bool,
    /// The fleet's evidence is read until then: this sender could not judge alone lately.
    wants_fleet_until: Option<Instant>,
}

/// The other senders' evidence for one site and platform.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FleetCounts {
    /// Deliveries they saw accepted.
    pub successes: u32,
    /// Suspect answers they saw.
    pub suspects: u32,
}

impl Evidence {
    fn new(now: Instant) -> Self {
        Evidence {
            window_start: now,
            last_seen: now,
            successes: 0,
            suspects: 0,
            tripped: None,
            fleet: FleetCounts::default(),
            changed: false,
            wants_fleet_until: None,
        }
    }

    /// Successes seen by this sender and the fleet.
    fn all_successes(&self) -> u32 {
        self.successes.saturating_add(self.fleet.successes)
    }

    /// Suspect answers seen by this sender and the fleet.
    fn all_suspects(&self) -> u32 {
        self.suspects.saturating_add(self.fleet.suspects)
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
        self.changed = true;
    }
}

impl Breakers {
    /// Records an accepted delivery for `site` on `platform`.
    pub fn success(&self, site: &str, platform: &'static str) {
        self.with(site, platform, Instant::now(), |e| {
            e.successes = e.successes.saturating_add(1);
            e.changed = true;
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
            e.changed = true;
            let (successes, suspects) = (e.all_successes(), e.all_suspects());
            if e.tripped.is_none() && suspects >= TRIP_AFTER && suspects > successes {
                // The setting first: reasons are shortened where the push keeps them.
                e.tripped = Some(format!(
                    "check {setting}: {platform} answered {reason} for most devices of this site"
                ));
                tracing::error!(site_id = site, platform, %reason, setting,
                    "breaker tripped: deliveries fail instead of unsubscribing; fix the site's settings");
            }
            if let Some(why) = &e.tripped {
                Verdict::Misconfigured(why.clone())
            } else if successes >= MIN_SUCCESSES && successes > suspects {
                Verdict::Gone
            } else {
                e.wants_fleet_until = Some(now + WINDOW);
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
            e.changed = true;
            why
        })
    }

    /// The windows that changed since the last call, as `sender`'s evidence documents.
    pub fn take_changes(&self, sender: &str) -> Vec<BreakerEvidence> {
        let mut sites = self.sites.lock().unwrap_or_else(|p| p.into_inner());
        sites
            .iter_mut()
            .filter(|(_, e)| e.changed)
            .map(|((site, platform), e)| {
                e.changed = false;
                BreakerEvidence::new(
                    sender,
                    site,
                    platform,
                    e.successes,
                    e.suspects,
                    e.tripped.is_some(),
                )
            })
            .collect()
    }

    /// Marks the windows of `changes` as changed again (sharing them failed).
    fn restore_changes(&self, changes: &[BreakerEvidence]) {
        let mut sites = self.sites.lock().unwrap_or_else(|p| p.into_inner());
        for ((site, platform), e) in sites.iter_mut() {
            if changes
                .iter()
                .any(|c| c.site_id == *site && c.platform == *platform)
            {
                e.changed = true;
            }
        }
    }

    /// Sites whose judgement needs the fleet's evidence at `now`.
    pub fn sites_wanting_fleet(&self, now: Instant) -> Vec<String> {
        let sites = self.sites.lock().unwrap_or_else(|p| p.into_inner());
        let mut wanted: Vec<String> = sites
            .iter()
            .filter(|(_, e)| e.wants_fleet_until.is_some_and(|until| now < until))
            .map(|((site, _), _)| site.clone())
            .collect();
        wanted.sort_unstable();
        wanted.dedup();
        wanted
    }

    /// Sets the fleet's evidence for `site` on every platform: `counts` are the other
    /// senders' sums per platform; a platform not in it saw nothing elsewhere.
    pub fn set_fleet(&self, site: &str, counts: &HashMap<String, FleetCounts>) {
        let mut sites = self.sites.lock().unwrap_or_else(|p| p.into_inner());
        for ((entry_site, platform), e) in sites.iter_mut() {
            if entry_site == site {
                e.fleet = counts.get(*platform).copied().unwrap_or_default();
            }
        }
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

/// Shares this sender's evidence with the fleet and reads the fleet's, every [`FLEET_SYNC`],
/// until `stop`; then shares once more. A store error is logged and tried again next time.
pub async fn sync_with_fleet(
    breakers: std::sync::Arc<Breakers>,
    store: Store,
    sender: String,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(FLEET_SYNC);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_cleanup: Option<Instant> = None;
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        if let Err(e) = sync_once(&breakers, &store, &sender).await {
            tracing::warn!(error = %e, "sharing breaker evidence failed; judging on this sender's own");
        }
        if last_cleanup.is_none_or(|at| at.elapsed() > STALE_EVIDENCE / 6) {
            last_cleanup = Some(Instant::now());
            if let Err(e) = store.remove_stale_breaker_evidence(STALE_EVIDENCE).await {
                tracing::debug!(error = %e, "removing stale breaker evidence failed");
            }
        }
    }
    if let Err(e) = store
        .write_breaker_evidence(&breakers.take_changes(&sender))
        .await
    {
        tracing::debug!(error = %e, "sharing breaker evidence at shutdown failed");
    }
}

/// One round of [`sync_with_fleet`].
pub async fn sync_once(
    breakers: &Breakers,
    store: &Store,
    sender: &str,
) -> Result<(), pushservice_store::StoreError> {
    let changes = breakers.take_changes(sender);
    if let Err(e) = store.write_breaker_evidence(&changes).await {
        breakers.restore_changes(&changes);
        return Err(e);
    }
    let wanted = breakers.sites_wanting_fleet(Instant::now());
    if wanted.is_empty() {
        return Ok(());
    }
    let names: Vec<&str> = wanted.iter().map(String::as_str).collect();
    let rows = store.fleet_breaker_evidence(sender, &names, WINDOW).await?;
    let mut by_site: HashMap<&str, HashMap<String, FleetCounts>> =
        names.iter().map(|s| (*s, HashMap::new())).collect();
    for row in &rows {
        if let Some(platforms) = by_site.get_mut(row.site_id.as_str()) {
            let counts = platforms.entry(row.platform.clone()).or_default();
            counts.successes = counts.successes.saturating_add(row.successes);
            counts.suspects = counts.suspects.saturating_add(row.suspects);
        }
    }
    for (site, counts) in &by_site {
        breakers.set_fleet(site, counts);
    }
    Ok(())
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

    #[test]
    fn a_sender_with_little_evidence_judges_on_the_fleets() {
        let breakers = Breakers::default();
        let start = Instant::now();
        // A retried dead token reaches a sender that delivered nothing of the site.
        assert_eq!(
            breakers.suspect_at("site", "APNs", "BadDeviceToken", SETTING, start),
            Verdict::Undecided
        );
        assert_eq!(breakers.sites_wanting_fleet(start), vec!["site".to_owned()]);
        // Another sender saw 140 successes and 4 suspect answers.
        let fleet = HashMap::from([(
            "APNs".to_owned(),
            FleetCounts {
                successes: 140,
                suspects: 4,
            },
        )]);
        breakers.set_fleet("site", &fleet);
        assert_eq!(
            breakers.suspect_at("site", "APNs", "BadDeviceToken", SETTING, start),
            Verdict::Gone
        );
        // The wish to read the fleet's evidence lasts a window.
        assert!(breakers.sites_wanting_fleet(start + WINDOW).is_empty());
    }

    #[test]
    fn a_fleet_of_suspect_answers_trips_a_sender_that_saw_few() {
        let breakers = Breakers::default();
        for _ in 0..3 {
            breakers.success("site", "FCM");
        }
        let fleet = HashMap::from([(
            "FCM".to_owned(),
            FleetCounts {
                successes: 0,
                suspects: 40,
            },
        )]);
        breakers.set_fleet("site", &fleet);
        assert!(matches!(
            breakers.suspect("site", "FCM", "404", SETTING),
            Verdict::Misconfigured(_)
        ));
    }

    #[test]
    fn changes_are_shared_once_until_counted_again() {
        let breakers = Breakers::default();
        breakers.success("site", "WebPush");
        breakers.success("site", "WebPush");
        let changes = breakers.take_changes("sender-1");
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].id, "sender-1:site:WebPush");
        assert_eq!((changes[0].successes, changes[0].suspects), (2, 0));
        assert!(breakers.take_changes("sender-1").is_empty(), "nothing new");
        breakers.restore_changes(&changes);
        assert_eq!(
            breakers.take_changes("sender-1").len(),
            1,
            "shared again after a failure"
        );
    }
}
