//! The VAPID header cache: one signed header per (site, push service origin), reused until it
//! nears expiry.
//!
//! The hot path is a read lock and two hash lookups by `&str` (nested maps, so no key is built
//! per message) plus a cheap clone of the stored [`HeaderValue`]. Signing (~20 µs) happens on a
//! miss, outside the lock; two tasks that miss together both sign and the later insert wins,
//! which costs one extra signature instead of making every reader wait on a lock.
//!
//! An entry is reused only for the same public key and subject it was signed with, so a site
//! whose keys or contact change gets a fresh header at once rather than hours of rejections.
//!
//! The map holds sites × origins entries (a handful of origins per site), but origins come
//! from subscribers' endpoints, so it is bounded: past `max_entries` an insert first drops
//! entries due for re-signing, then the least recently used eighth. Readers stamp an entry's
//! last use with a relaxed atomic store under the read lock, so the hot path stays a read
//! lock; eviction scans the map, which happens at most once per `max_entries / 8` new
//! entries. An evicted entry costs one more signature (~20 µs) when asked for again.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{PoisonError, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::header::HeaderValue;

use super::{VapidError, VapidKey, sign_header, validate_subject};

/// RFC 8292 §2: push services reject an `exp` more than 24 hours ahead.
const MAX_VALIDITY: Duration = Duration::from_secs(24 * 3600);
/// Below this a header would be re-signed almost every time, defeating the cache.
const MIN_VALIDITY: Duration = Duration::from_secs(60);

/// Default bound of (site, origin) entries: far more than sites × browser vendors of any
/// deployment, a few MiB at most.
pub const DEFAULT_MAX_ENTRIES: usize = 16_384;

/// Signed `Authorization` headers shared by every sending task (`Send + Sync`).
#[derive(Debug)]
pub struct VapidCache {
    /// JWT lifetime in whole seconds, within [`MIN_VALIDITY`, `MAX_VALIDITY`].
    validity_secs: u64,
    /// Most (site, origin) entries kept.
    max_entries: usize,
    /// site (cache key) → push service origin → entry, and the number of entries.
    entries: RwLock<Entries>,
}

#[derive(Debug, Default)]
struct Entries {
    by_site: HashMap<Box<str>, ByOrigin>,
    len: usize,
}

/// One site's entries, by push service origin.
type ByOrigin = HashMap<Box<str>, Entry>;

#[derive(Debug)]
struct Entry {
    header: HeaderValue,
    /// Unix seconds the JWT was signed; an earlier `now` means the clock went back, and the
    /// entry's `exp` might then be further ahead than push services allow.
    signed_at: u64,
    /// Unix seconds after which less than a quarter of the validity is left: re-sign then, so a
    /// header never expires in flight or while a push service's clock runs ahead of ours.
    refresh_after: u64,
    public: [u8; 65],
    subject: Box<str>,
    /// Unix seconds of the last use: which entries eviction drops first.
    last_used: AtomicU64,
}

impl VapidCache {
    /// A cache whose JWTs live `validity` (12 h is a good default). Values above 24 h are
    /// clamped to 24 h (push services reject longer), values below a minute to a minute.
    pub fn new(validity: Duration) -> Self {
        VapidCache::with_capacity(validity, DEFAULT_MAX_ENTRIES)
    }

    /// A cache of at most `max_entries` (site, origin) headers (at least 8).
    pub fn with_capacity(validity: Duration, max_entries: usize) -> Self {
        let validity = validity.clamp(MIN_VALIDITY, MAX_VALIDITY);
        VapidCache {
            validity_secs: validity.as_secs(),
            max_entries: max_entries.max(8),
            entries: RwLock::new(Entries::default()),
        }
    }

    /// (site, origin) headers held now.
    pub fn len(&self) -> usize {
        self.entries
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len
    }

    /// Whether no header is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The JWT lifetime in use, after clamping.
    pub fn validity(&self) -> Duration {
        Duration::from_secs(self.validity_secs)
    }

    /// The full `Authorization` header value, `vapid t=<JWT>, k=<public key>`, for requests
    /// from the site `cache_key` (use the site id) to the push service `origin`
    /// (see [`crate::origin`]). Signed once per (site, origin) and reused until less than a
    /// quarter of its validity remains. Cloning the returned value is cheap (shared bytes).
    ///
    /// The JWT is `{"typ":"JWT","alg":"ES256"}` / `{"aud":origin,"exp":…,"sub":subject}`,
    /// signed with ES256 (fixed 64-byte `r||s`), base64url without padding. `subject` must be a
    /// `mailto:` or `https://` URI.
    pub fn authorization(
        &self,
        cache_key: &str,
        key: &VapidKey,
        subject: &str,
        origin: &str,
    ) -> Result<HeaderValue, VapidError> {
        self.authorization_at(SystemTime::now(), cache_key, key, subject, origin)
    }

    /// [`VapidCache::authorization`] at a given time: the clock is a parameter so expiry and
    /// refresh are tested without sleeping.
    pub(crate) fn authorization_at(
        &self,
        now: SystemTime,
        cache_key: &str,
        key: &VapidKey,
        subject: &str,
        origin: &str,
    ) -> Result<HeaderValue, VapidError> {
        let now = now
            .duration_since(UNIX_EPOCH)
            .map_err(|_| VapidError::Clock)?
            .as_secs();
        {
            // A poisoned lock only means a panic elsewhere while holding it; the maps are
            // still consistent (inserts are single calls), so keep using them.
            let entries = self.entries.read().unwrap_or_else(PoisonError::into_inner);
            let fresh = entries
                .by_site
                .get(cache_key)
                .and_then(|by_origin| by_origin.get(origin))
                .filter(|entry| {
                    entry.signed_at <= now
                        && now <= entry.refresh_after
                        && entry.public == *key.public_bytes()
                        && *entry.subject == *subject
                });
            if let Some(entry) = fresh {
                entry.last_used.store(now, Ordering::Relaxed);
                return Ok(entry.header.clone());
            }
        }

        let claimed_subject = validate_subject(subject)?;
        let exp = now + self.validity_secs;
        let header = sign_header(key, claimed_subject, origin, exp)?;
        let entry = Entry {
            header: header.clone(),
            signed_at: now,
            refresh_after: exp - self.validity_secs / 4,
            public: *key.public_bytes(),
            subject: subject.into(),
            last_used: AtomicU64::new(now),
        };
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        let known = entries
            .by_site
            .get(cache_key)
            .is_some_and(|by_origin| by_origin.contains_key(origin));
        if !known && entries.len >= self.max_entries {
            entries.make_room(now, self.max_entries);
        }
        let previous = entries
            .by_site
            .entry(cache_key.into())
            .or_default()
            .insert(origin.into(), entry);
        if previous.is_none() {
            entries.len += 1;
        }
        Ok(header)
    }
}

impl Entries {
    /// Drops entries due for re-signing, then, if still at least `max`, the least recently
    /// used eighth, so that the next `max / 8` inserts find room without scanning.
    fn make_room(&mut self, now: u64, max: usize) {
        let due = |entry: &Entry| now > entry.refresh_after || now < entry.signed_at;
        self.retain(|entry| !due(entry));
        if self.len < max {
            return;
        }
        let mut uses: Vec<u64> = self
            .by_site
            .values()
            .flat_map(|by_origin| by_origin.values())
            .map(|entry| entry.last_used.load(Ordering::Relaxed))
            .collect();
        let drop = (max / 8).max(1).min(uses.len());
        let (_, threshold, _) = uses.select_nth_unstable(drop - 1);
        let threshold = *threshold;
        // Ties at the threshold may drop a few more than an eighth; never fewer.
        self.retain(|entry| entry.last_used.load(Ordering::Relaxed) > threshold);
    }

    fn retain(&mut self, mut keep: impl FnMut(&Entry) -> bool) {
        let mut len = 0;
        self.by_site.retain(|_, by_origin| {
            by_origin.retain(|_, entry| keep(entry));
            len += by_origin.len();
            !by_origin.is_empty()
        });
        self.len = len;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use p256::ecdsa::signature::Verifier;

    const SUBJECT: &str = "mailto:ops@example.com";
    const FCM: &str = "https://fcm.googleapis.com";
    const MOZILLA: &str = "https://updates.push.services.mozilla.com";

    /// Verifies `header` independently (RustCrypto p256) and returns its claims.
    fn verify(header: &HeaderValue, key: &VapidKey) -> serde_json::Value {
        let text = header.to_str().expect("ascii");
        let rest = text.strip_prefix("vapid t=").expect("scheme");
        let (jwt, k) = rest.split_once(", k=").expect("k parameter");
        assert_eq!(k, key.public_key_base64());
        let (signed, signature) = jwt.rsplit_once('.').expect("signature part");
        let (header_b64, claims_b64) = signed.split_once('.').expect("claims part");
        let jwt_header: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header_b64).expect("b64"))
                .expect("header json");
        assert_eq!(
            jwt_header,
            serde_json::json!({"typ": "JWT", "alg": "ES256"})
        );
        let signature = URL_SAFE_NO_PAD.decode(signature).expect("b64 signature");
        assert_eq!(signature.len(), 64, "ES256 signatures are fixed r||s");
        let verifying =
            p256::ecdsa::VerifyingKey::from_sec1_bytes(key.public_bytes()).expect("public key");
        let signature = p256::ecdsa::Signature::from_slice(&signature).expect("r||s");
        verifying
            .verify(signed.as_bytes(), &signature)
            .expect("signature verifies");
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims_b64).expect("b64")).expect("json")
    }

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn signs_verifiable_jwts_with_expected_claims() {
        let key = VapidKey::generate().expect("key");
        let cache = VapidCache::new(Duration::from_secs(12 * 3600));
        let now = SystemTime::now();
        let header = cache
            .authorization("site1", &key, SUBJECT, FCM)
            .expect("header");
        let claims = verify(&header, &key);
        assert_eq!(claims["aud"], FCM);
        assert_eq!(claims["sub"], SUBJECT);
        let exp = claims["exp"].as_u64().expect("numeric exp");
        let now = now
            .duration_since(UNIX_EPOCH)
            .expect("after 1970")
            .as_secs();
        assert!(
            exp > now && exp <= now + 24 * 3600,
            "exp {exp} not in (now, now+24h], now {now}"
        );
        // The header was signed within a second of `now`.
        assert!(
            (now + 12 * 3600..=now + 12 * 3600 + 1).contains(&exp),
            "exp {exp}, now {now}"
        );
    }

    #[test]
    fn reuses_per_site_and_origin_and_resigns_near_expiry() {
        let key = VapidKey::generate().expect("key");
        let cache = VapidCache::new(Duration::from_secs(4000));
        let t0 = 1_700_000_000;
        let first = cache
            .authorization_at(at(t0), "s", &key, SUBJECT, FCM)
            .expect("sign");
        let again = cache
            .authorization_at(at(t0 + 10), "s", &key, SUBJECT, FCM)
            .expect("hit");
        assert_eq!(first, again, "same (site, origin) reuses the header");

        let other = cache
            .authorization_at(at(t0), "s", &key, SUBJECT, MOZILLA)
            .expect("sign");
        assert_ne!(first, other);
        assert_eq!(verify(&other, &key)["aud"], MOZILLA);

        // Reused while at least a quarter (1000 s) of the validity remains ...
        let late = cache
            .authorization_at(at(t0 + 3000), "s", &key, SUBJECT, FCM)
            .expect("hit");
        assert_eq!(first, late);
        // ... and re-signed one second later, with a new exp.
        let fresh = cache
            .authorization_at(at(t0 + 3001), "s", &key, SUBJECT, FCM)
            .expect("sign");
        assert_ne!(first, fresh);
        assert_eq!(verify(&fresh, &key)["exp"], t0 + 3001 + 4000);
        let next = cache
            .authorization_at(at(t0 + 3002), "s", &key, SUBJECT, FCM)
            .expect("hit");
        assert_eq!(fresh, next, "the fresh header is cached in turn");
    }

    #[test]
    fn resigns_on_key_or_subject_change_and_clock_going_back() {
        let key = VapidKey::generate().expect("key");
        let rotated = VapidKey::generate().expect("key");
        let cache = VapidCache::new(Duration::from_secs(4000));
        let t0 = 1_700_000_000;
        let first = cache
            .authorization_at(at(t0), "s", &key, SUBJECT, FCM)
            .expect("sign");
        let new_key = cache
            .authorization_at(at(t0), "s", &rotated, SUBJECT, FCM)
            .expect("sign");
        assert_ne!(first, new_key);
        verify(&new_key, &rotated);
        let subject = "https://example.com/contact";
        let new_sub = cache
            .authorization_at(at(t0), "s", &rotated, subject, FCM)
            .expect("sign");
        assert_eq!(verify(&new_sub, &rotated)["sub"], subject);
        let back = cache
            .authorization_at(at(t0 - 60), "s", &rotated, subject, FCM)
            .expect("sign");
        assert_eq!(verify(&back, &rotated)["exp"], t0 - 60 + 4000);
        // Different sites never share an entry, even with the same key.
        let site2 = cache
            .authorization_at(at(t0 - 60), "t", &rotated, subject, FCM)
            .expect("ok");
        assert_ne!(
            back, site2,
            "ECDSA signatures are randomized, so a new one differs"
        );
    }

    #[test]
    fn validity_is_clamped_and_subject_checked_before_signing() {
        assert_eq!(
            VapidCache::new(Duration::from_secs(48 * 3600)).validity(),
            MAX_VALIDITY
        );
        assert_eq!(VapidCache::new(Duration::ZERO).validity(), MIN_VALIDITY);
        let key = VapidKey::generate().expect("key");
        let cache = VapidCache::new(Duration::from_secs(48 * 3600));
        let header = cache
            .authorization_at(at(1_000), "s", &key, SUBJECT, FCM)
            .expect("sign");
        assert_eq!(verify(&header, &key)["exp"], 1_000 + 24 * 3600);
        let err = cache
            .authorization("s", &key, "ops@example.com", FCM)
            .expect_err("subject");
        assert!(matches!(err, VapidError::InvalidSubject { .. }), "{err:?}");
    }

    #[test]
    fn stays_bounded_and_evicts_the_least_recently_used() {
        let key = VapidKey::generate().expect("key");
        let cache = VapidCache::with_capacity(Duration::from_secs(4000), 16);
        let t0 = 1_700_000_000;
        let hot = cache
            .authorization_at(at(t0), "hot", &key, SUBJECT, FCM)
            .expect("sign");
        // A flood of origins (as hostile subscriptions could bring), the hot entry used between.
        for i in 0..200u64 {
            let origin = format!("https://push{i}.example");
            cache
                .authorization_at(at(t0 + 1 + i), "s", &key, SUBJECT, &origin)
                .expect("sign");
            let again = cache
                .authorization_at(at(t0 + 1 + i), "hot", &key, SUBJECT, FCM)
                .expect("hit");
            assert_eq!(again, hot, "the entry in use is kept");
            assert!(cache.len() <= 16, "grew to {}", cache.len());
        }
        // When full, entries due for re-signing go first, however recently used.
        let full = VapidCache::with_capacity(Duration::from_secs(4000), 8);
        for i in 0..8 {
            full.authorization_at(at(t0), "s", &key, SUBJECT, &format!("https://p{i}.example"))
                .expect("sign");
        }
        assert_eq!(full.len(), 8);
        full.authorization_at(at(t0 + 10_000), "s", &key, SUBJECT, MOZILLA)
            .expect("sign");
        assert_eq!(full.len(), 1, "every other entry was due for re-signing");
    }

    #[test]
    fn is_send_and_sync() {
        fn shared<T: Send + Sync>() {}
        shared::<VapidCache>();
        shared::<VapidKey>();
    }
}
