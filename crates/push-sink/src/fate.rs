//! Which subscriber gets which misbehaviour, and how many times each subscriber was tried.
//!
//! Fates are *planned*: a stable hash of the subscriber id, taken mod 1000, falls in one of the
//! per-mille bands of [`Behaviour`]. A test computes [`planned_fate`] for its subscribers and
//! knows in advance who is gone, throttled or reset, with no shared state and the same answer
//! in every process and on every run.
//!
//! The "once" fates need the attempt number, so `SubscriberTable` counts requests and
//! acceptances per subscriber. It is a fixed set of mutex-guarded hash maps (shards picked by
//! the same hash), keyed by the 12 id bytes: no allocation per request once a subscriber is
//! known, and two cores rarely meet on one shard. APNs and FCM device tokens are longer and of
//! any length, so they are keyed by 12 bytes of two hashes of the token ([`token_key`]).

use std::collections::HashMap;
use std::sync::Mutex;

use crate::config::Behaviour;

/// What the sink does with a subscriber's requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fate {
    /// 201 Created, every time.
    Accept,
    /// This status (410 or 404) every time: the subscription is gone.
    Gone(u16),
    /// 429 with `Retry-After` on the first attempt, 201 after.
    ThrottleOnce,
    /// 500 on the first attempt, 201 after.
    ErrorOnce,
    /// No response on the first attempt (stream or connection reset), 201 after.
    ResetOnce,
}

impl Fate {
    /// Short label for logs and test messages.
    pub fn label(self) -> &'static str {
        match self {
            Fate::Accept => "accept",
            Fate::Gone(410) => "gone",
            Fate::Gone(_) => "not_found",
            Fate::ThrottleOnce => "throttle_once",
            Fate::ErrorOnce => "error_once",
            Fate::ResetOnce => "reset_once",
        }
    }
}

/// The fate [`Behaviour`] plans for `subscriber_id` (the id as it appears in the endpoint URL,
/// 24 lowercase hex digits for seeded subscribers).
///
/// Deterministic: FNV-1a over the id's bytes, finished with the MurmurHash3 64-bit mixer so
/// that ids differing only in their last digits (an ObjectId counter) spread evenly, then mod
/// 1000 against the cumulative bands gone, not found, throttle, error, reset.
pub fn planned_fate(behaviour: &Behaviour, subscriber_id: &str) -> Fate {
    fate_for_hash(behaviour, id_hash(subscriber_id))
}

/// [`planned_fate`] for an id already hashed with [`id_hash`].
pub(crate) fn fate_for_hash(behaviour: &Behaviour, hash: u64) -> Fate {
    let slot = (hash % 1000) as u32;
    let bands = [
        (behaviour.gone_per_mille, Fate::Gone(410)),
        (behaviour.not_found_per_mille, Fate::Gone(404)),
        (behaviour.throttle_per_mille, Fate::ThrottleOnce),
        (behaviour.error_once_per_mille, Fate::ErrorOnce),
        (behaviour.reset_per_mille, Fate::ResetOnce),
    ];
    let mut upper = 0u32;
    for (width, fate) in bands {
        upper = upper.saturating_add(width);
        if slot < upper {
            return fate;
        }
    }
    Fate::Accept
}

/// Stable 64-bit hash of a subscriber id: FNV-1a, then the MurmurHash3 `fmix64` finaliser.
pub(crate) fn id_hash(subscriber_id: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in subscriber_id.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    hash ^ (hash >> 33)
}

/// A subscriber's id as the table keys it: the 12 bytes of its ObjectId.
pub(crate) type SubscriberKey = [u8; 12];

/// Parses 24 hex digits (either case) into a [`SubscriberKey`], without allocating.
pub(crate) fn parse_key(hex: &str) -> Option<SubscriberKey> {
    let digits = hex.as_bytes();
    if digits.len() != 24 {
        return None;
    }
    let nibble = |d: u8| match d {
        b'0'..=b'9' => Some(d - b'0'),
        b'a'..=b'f' => Some(d - b'a' + 10),
        b'A'..=b'F' => Some(d - b'A' + 10),
        _ => None,
    };
    let mut key = [0u8; 12];
    for (byte, pair) in key.iter_mut().zip(digits.chunks_exact(2)) {
        *byte = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(key)
}

/// The [`SubscriberKey`] of an APNs or FCM device token (`hash` is its [`id_hash`]), without
/// allocating: the 8 bytes of `hash`, then 4 bytes of an independent FNV-1a-32 of the token.
///
/// Two distinct tokens share a key with probability about 2^-96 per pair: among a hundred
/// million tokens, a collision (which would merely merge their attempt counts) has odds near
/// 10^-13. Keys of 24-hex Web Push ids and of tokens live in the same table, with the same
/// negligible chance of meeting.
pub(crate) fn token_key(token: &str, hash: u64) -> SubscriberKey {
    let mut second: u32 = 0x811c_9dc5;
    for byte in token.bytes() {
        second ^= u32::from(byte);
        second = second.wrapping_mul(0x0100_0193);
    }
    let mut key = [0u8; 12];
    key[..8].copy_from_slice(&hash.to_be_bytes());
    key[8..].copy_from_slice(&second.to_be_bytes());
    key
}

/// Per-subscriber counts.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    /// Push requests received (any outcome).
    attempts: u32,
    /// Of those, answered 201.
    accepted: u32,
}

/// Number of shards; a power of two well above the core count.
const SHARDS: usize = 64;

/// Attempts and acceptances per subscriber since start or the last reset.
pub(crate) struct SubscriberTable {
    shards: Box<[Mutex<HashMap<SubscriberKey, Tally>>]>,
}

impl SubscriberTable {
    /// An empty table.
    pub(crate) fn new() -> Self {
        SubscriberTable {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    fn shard(&self, hash: u64) -> &Mutex<HashMap<SubscriberKey, Tally>> {
        // The low bits chose the fate band; the high bits choose the shard.
        &self.shards[(hash >> 58) as usize % SHARDS]
    }

    /// Counts one more request for `key` and returns its attempt number (1 on the first).
    pub(crate) fn begin_attempt(&self, key: SubscriberKey, hash: u64) -> u32 {
        // A poisoned shard only means another request panicked mid-update of two integers;
        // the counts are still usable.
        let mut shard = self.shard(hash).lock().unwrap_or_else(|p| p.into_inner());
        let tally = shard.entry(key).or_default();
        tally.attempts = tally.attempts.saturating_add(1);
        tally.attempts
    }

    /// Counts an acceptance for `key` and returns how many it has had (1 on the first).
    pub(crate) fn accept(&self, key: SubscriberKey, hash: u64) -> u32 {
        let mut shard = self.shard(hash).lock().unwrap_or_else(|p| p.into_inner());
        let tally = shard.entry(key).or_default();
        tally.accepted = tally.accepted.saturating_add(1);
        tally.accepted
    }

    /// Forgets every subscriber.
    pub(crate) fn clear(&self) {
        for shard in self.shards.iter() {
            shard.lock().unwrap_or_else(|p| p.into_inner()).clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_bands_means_everyone_is_accepted() {
        let behaviour = Behaviour::default();
        for id in ["", "0123456789abcdef01234567", "x"] {
            assert_eq!(planned_fate(&behaviour, id), Fate::Accept);
        }
    }

    #[test]
    fn full_band_catches_everyone() {
        let behaviour = Behaviour {
            reset_per_mille: 1000,
            ..Behaviour::default()
        };
        assert_eq!(
            planned_fate(&behaviour, "0123456789abcdef01234567"),
            Fate::ResetOnce
        );
    }

    #[test]
    fn hash_is_stable_across_builds() {
        // Pinned values (computed independently in Python): a change here would silently
        // re-plan every test's and every load test's subscribers.
        assert_eq!(id_hash(""), 0xefd0_1f60_ba99_2926);
        let id = "0123456789abcdef01234567";
        assert_eq!(id_hash(id), 0x777f_a028_d0fb_3f3f);
        // Slot 351: inside a [350, 360) band, outside [0, 350).
        let band = |gone, throttle| Behaviour {
            gone_per_mille: gone,
            throttle_per_mille: throttle,
            ..Behaviour::default()
        };
        assert_eq!(planned_fate(&band(350, 10), id), Fate::ThrottleOnce);
        assert_eq!(planned_fate(&band(352, 0), id), Fate::Gone(410));
        assert_eq!(planned_fate(&band(351, 0), id), Fate::Accept);
    }

    #[test]
    fn keys_parse_from_hex_of_either_case() {
        let key = parse_key("0123456789abcdefABCDEF00").expect("24 hex digits");
        assert_eq!(key[0], 0x01);
        assert_eq!(key[7], 0xef);
        assert_eq!(key[10], 0xef);
        assert_eq!(parse_key("0123456789abcdef0123456"), None);
        assert_eq!(parse_key("0123456789abcdef0123456g"), None);
        assert_eq!(parse_key("0123456789abcdef012345678"), None);
    }

    #[test]
    fn token_keys_differ_for_different_tokens_and_repeat_for_the_same() {
        let key = |t: &str| token_key(t, id_hash(t));
        assert_eq!(key("ab12"), key("ab12"));
        assert_ne!(key("ab12"), key("AB12"));
        assert_ne!(key("ab12"), key("ab13"));
    }

    #[test]
    fn table_counts_attempts_and_acceptances() {
        let table = SubscriberTable::new();
        let key = [7u8; 12];
        assert_eq!(table.begin_attempt(key, 42), 1);
        assert_eq!(table.begin_attempt(key, 42), 2);
        assert_eq!(table.accept(key, 42), 1);
        assert_eq!(table.accept(key, 42), 2);
        table.clear();
        assert_eq!(table.begin_attempt(key, 42), 1);
    }
}
