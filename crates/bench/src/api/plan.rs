//! What the API benchmark sends: the browser subscriptions and the tracking events, decided
//! before the clock starts, so building requests costs the load generator nothing measured.
//!
//! **Subscriptions** look like Chrome's: an FCM endpoint
//! `https://fcm.googleapis.com/fcm/send/<token>` with a 152-character token unique to the run
//! and the subscriber (only the endpoint identifies a registration, so only it must be
//! unique), and one of [`P256DH`] / [`AUTH`]: real P-256 points, which pushapi checks
//! on the curve. Nothing is ever sent to these endpoints.
//!
//! **Events** name registered subscribers. `D` distinct (subscriber, type) pairs are planned:
//! `delivered` for the first subscribers, `click` for a share of those (a click follows a
//! shown notification), so that both totals move. The remaining `M − D` events repeat pairs
//! already planned, chosen at random; then all `M` are shuffled, so duplicates land in the
//! same write batch as their first copy as well as in later ones. The totals must end at the
//! distinct counts: duplicates must not count.

use std::collections::HashSet;

/// Uncompressed P-256 public keys (`keys.p256dh`), base64url: generated for the benchmark with
/// `openssl ecparam -name prime256v1 -genkey | openssl ec -pubout -outform DER | tail -c 65`;
/// registrations cycle through them.
pub const P256DH: [&str; 4] = [
    "BL-FWAiCMRK3_KsU1MAnzi-PUhrHiVVnBU3muLWyjBg0wTrEeeXFK0TwyYq6t6UfRU5FzPDbtPypD2nPF1wQ09A",
    "BFKobHkjsKUAkdZnwEyjY6P9wftoeRgf6OV3x-BX3hyy62nEjl8y-2ccEUeMNWBp5Y8vXQHOR43QyROaPPYb3m8",
    "BN2fejMGQLwYDm0lmiHXSwAyjSBK7Bl3ut6CjX0lx2-9xF-LuAKKDSP7iTiwBywdDovos2s_E6jKu5uEWKXVvts",
    "BGmexOPixKr10R_U5Tw4v7xhEIxoSK_lTnl-c793VkvTLZSloxbh71UqV3WJb909pDM0Bfx8FBlHH4juToAC4Ok",
];

/// 16-byte auth secrets (`keys.auth`), base64url, paired with [`P256DH`].
pub const AUTH: [&str; 4] = [
    "uMXNjBiri3igxg2dTYXNsA",
    "uBgaOLdh9pqYam5HKK2hRA",
    "cjp2Xzu8qmnTKBiDXgSVOw",
    "Oz9ccpdi7_7HFYXR7HyjHA",
];

/// Where the endpoints point (never contacted).
pub const ENDPOINT_BASE: &str = "https://fcm.googleapis.com/fcm/send/";

/// Length of an FCM registration token in a Chrome endpoint.
const TOKEN_LEN: usize = 152;

/// Seed of the event plan's random choices (fixed: runs of one size send the same plan).
pub const PLAN_SEED: u64 = 0x7075_7368_6265_6e63;

/// SplitMix64: a small, good-enough generator for choosing and shuffling (no dependency).
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator starting at `seed`.
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`; the modulo bias is irrelevant here).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// The endpoint of subscriber `index` of the run named `stamp`.
pub fn endpoint(stamp: &str, index: u64) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut token = format!("pushbench{}-{index:010}:APA91b", stamp.to_ascii_lowercase());
    let mut rng = SplitMix64::new(index ^ PLAN_SEED);
    while token.len() < TOKEN_LEN {
        token.push(char::from(ALPHABET[rng.below(64)]));
    }
    format!("{ENDPOINT_BASE}{token}")
}

/// The registration body of subscriber `index`: a browser's `PushSubscription.toJSON()`.
pub fn subscription_body(stamp: &str, index: u64) -> String {
    let key = (index % P256DH.len() as u64) as usize;
    serde_json::json!({
        "endpoint": endpoint(stamp, index),
        "expirationTime": null,
        "keys": { "p256dh": P256DH[key], "auth": AUTH[key] },
    })
    .to_string()
}

/// A tracking event type the benchmark sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// The notification was shown.
    Delivered,
    /// It was clicked.
    Click,
}

impl Kind {
    /// The API's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Delivered => "delivered",
            Kind::Click => "click",
        }
    }
}

/// The events of phase 2.
#[derive(Debug, Clone)]
pub struct EventPlan {
    /// In sending order: (index into the registered subscribers, type).
    pub events: Vec<(usize, Kind)>,
    /// Distinct (subscriber, type) pairs among them.
    pub distinct: u64,
    /// Events repeating a pair (`events.len() − distinct`).
    pub duplicates: u64,
    /// What `totals.delivered` must end at.
    pub expected_delivered: u64,
    /// What `totals.clicked` must end at.
    pub expected_clicked: u64,
}

/// Plans `events` events over `registered` subscribers with at least `duplicate_per_mille`
/// ‰ duplicates: `D = min(events − events·‰/1000, 2·registered)` distinct pairs, of which
/// `min(registered, D − ⌊D/3⌋)` are `delivered` (subscribers 0, 1, ...) and the rest `click`
/// (on the same subscribers, from 0). `registered` must be at least 1.
pub fn plan_events(
    registered: usize,
    events: u64,
    duplicate_per_mille: u32,
    seed: u64,
) -> EventPlan {
    let wanted = events - events * u64::from(duplicate_per_mille.min(1000)) / 1000;
    let distinct = wanted.min(2 * registered as u64).max(u64::from(events > 0));
    let delivered = (distinct - distinct / 3).min(registered as u64);
    let clicked = distinct - delivered;
    let mut pairs: Vec<(usize, Kind)> = (0..delivered as usize)
        .map(|i| (i, Kind::Delivered))
        .chain((0..clicked as usize).map(|i| (i, Kind::Click)))
        .collect();
    let mut rng = SplitMix64::new(seed);
    let duplicates = events - distinct;
    for _ in 0..duplicates {
        let pair = pairs[rng.below(distinct as usize)];
        pairs.push(pair);
    }
    // Fisher–Yates.
    for i in (1..pairs.len()).rev() {
        let j = rng.below(i + 1);
        pairs.swap(i, j);
    }
    EventPlan {
        events: pairs,
        distinct,
        duplicates,
        expected_delivered: delivered,
        expected_clicked: clicked,
    }
}

/// The `POST /v1/events` body of one event.
pub fn event_body(push_id: &str, subscriber_id: &str, kind: Kind) -> String {
    serde_json::json!({
        "pushId": push_id,
        "subscriberId": subscriber_id,
        "type": kind.as_str(),
    })
    .to_string()
}

/// Distinct pairs of a plan, counted again (for tests and a self-check).
pub fn count_distinct(events: &[(usize, Kind)]) -> u64 {
    events.iter().copied().collect::<HashSet<_>>().len() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_unique_and_chrome_sized() {
        let a = endpoint("20261202T143800Z", 0);
        let b = endpoint("20261202T143800Z", 1);
        let c = endpoint("20261202T143801Z", 0);
        assert_ne!(a, b);
        assert_ne!(a, c);
        assert!(a.starts_with(ENDPOINT_BASE), "{a}");
        assert_eq!(a.len(), ENDPOINT_BASE.len() + TOKEN_LEN, "{a}");
        let body: serde_json::Value =
            serde_json::from_str(&subscription_body("20261202T143800Z", 5)).expect("json");
        assert_eq!(body["keys"]["p256dh"], P256DH[1]);
        assert_eq!(body["keys"]["auth"], AUTH[1]);
        assert!(body["expirationTime"].is_null());
    }

    #[test]
    fn plans_have_the_promised_duplicates_and_totals() {
        // Plenty of subscribers: 10 % duplicates, a third of the distinct pairs are clicks.
        let plan = plan_events(20_000, 20_000, 100, PLAN_SEED);
        assert_eq!(plan.events.len(), 20_000);
        assert_eq!(plan.distinct, 18_000);
        assert_eq!(plan.duplicates, 2_000);
        assert_eq!(
            (plan.expected_delivered, plan.expected_clicked),
            (12_000, 6_000)
        );
        assert_eq!(count_distinct(&plan.events), plan.distinct);
        let clicks = plan.events.iter().filter(|e| e.1 == Kind::Click).count();
        assert!(clicks >= 6_000, "{clicks}");
        // Few subscribers: capped at two pairs each, so more duplicates than asked for.
        let plan = plan_events(5_000, 20_000, 100, PLAN_SEED);
        assert_eq!(plan.distinct, 10_000);
        assert_eq!(plan.duplicates, 10_000);
        assert_eq!(
            (plan.expected_delivered, plan.expected_clicked),
            (5_000, 5_000)
        );
        assert_eq!(count_distinct(&plan.events), 10_000);
        assert!(plan.events.iter().all(|(i, _)| *i < 5_000));
    }

    #[test]
    fn plans_are_shuffled_and_reproducible() {
        let a = plan_events(1_000, 1_000, 100, 7);
        let b = plan_events(1_000, 1_000, 100, 7);
        assert_eq!(a.events, b.events);
        let in_order = a.events.windows(2).filter(|w| w[0].0 < w[1].0).count();
        assert!(
            in_order < 700,
            "{in_order} of 999 steps ascending: not shuffled"
        );
        let one = plan_events(1, 3, 0, 7);
        assert_eq!((one.distinct, one.duplicates), (2, 1));
    }
}
