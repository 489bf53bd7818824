//! APNs provider tokens: ES256 JWTs signed with a team's `.p8` key.
//!
//! A token is `{"alg":"ES256","kid":<key id>}.{"iss":<team id>,"iat":<now>}`. APNs refuses
//! tokens older than an hour (`ExpiredProviderToken`) and throttles providers that sign new
//! ones more often than every 20 minutes (`TooManyProviderTokenUpdates`), so [`TokenCache`]
//! keeps one `bearer` header per signing key and re-signs after [`TOKEN_REFRESH`].
//!
//! The cache is keyed by a SHA-256 of the key material itself (team id, key id and the
//! private key), never by the public team and key ids alone: two sites claiming the same ids
//! with different keys get different tokens, so neither can use the other's token nor poison
//! it with a refused one. Sites that really share a key share one token, as APNs wants.
//!
//! An `InvalidProviderToken` answer drops the token once ([`TokenCache::refused`]); when the
//! re-signed token is refused too, the key itself is wrong and the cache says so instead of
//! re-signing again (which would also earn `TooManyProviderTokenUpdates`).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_lc_rs::digest::{SHA256, digest};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use pushservice_provider::{PemError, b64url, jwt_signing_input, pkcs8_from_pem};
use reqwest::header::HeaderValue;

/// How long a signed token is reused: well inside APNs' hour, well past its 20 minutes.
pub const TOKEN_REFRESH: Duration = Duration::from_secs(50 * 60);

/// Signing keys whose tokens are kept at most; past it, stale tokens are dropped first.
const MAX_KEYS: usize = 4096;

/// Why a `.p8` key is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Not PEM.
    #[error("APNs key is not a .p8 file: {0}")]
    Pem(#[from] PemError),
    /// PEM, but not a PKCS#8 P-256 key.
    #[error("APNs key is not a PKCS#8 P-256 private key (download the .p8 file from Apple again)")]
    NotP256,
    /// Team or key id empty or not printable ASCII.
    #[error("APNs {0} must be non-empty printable ASCII")]
    BadId(&'static str),
}

/// A team's signing key, parsed once per site load.
pub struct ApnsKey {
    team_id: String,
    key_id: String,
    /// SHA-256 of team id, key id and the PKCS#8 key: the [`TokenCache`] key.
    fingerprint: [u8; 32],
    /// The first 8 bytes of `fingerprint` in hex: names the key in request-slot keys
    /// without revealing anything about it.
    short_fingerprint: String,
    key: EcdsaKeyPair,
}

impl std::fmt::Debug for ApnsKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApnsKey")
            .field("team_id", &self.team_id)
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl ApnsKey {
    /// Parses the content of `AuthKey_<key_id>.p8` for `team_id`.
    pub fn from_p8(team_id: &str, key_id: &str, p8_pem: &str) -> Result<Self, KeyError> {
        let printable = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic());
        if !printable(team_id) {
            return Err(KeyError::BadId("team id"));
        }
        if !printable(key_id) {
            return Err(KeyError::BadId("key id"));
        }
        let der = pkcs8_from_pem(p8_pem)?;
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der)
            .map_err(|_| KeyError::NotP256)?;
        let fingerprint = fingerprint(&[team_id.as_bytes(), key_id.as_bytes(), &der]);
        Ok(ApnsKey {
            team_id: team_id.to_owned(),
            key_id: key_id.to_owned(),
            short_fingerprint: fingerprint[..8]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect(),
            fingerprint,
            key,
        })
    }

    /// A short, non-secret name of this exact key material (hex of the first 8 bytes of its
    /// SHA-256): distinguishes sites' keys in request-slot keys and logs.
    pub fn fingerprint(&self) -> &str {
        &self.short_fingerprint
    }

    /// The team id (JWT `iss`).
    pub fn team_id(&self) -> &str {
        &self.team_id
    }

    /// The key id (JWT `kid`).
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// A signed provider token issued at `iat` (unix seconds).
    pub fn sign(&self, iat: u64) -> Result<String, KeyError> {
        // Ids are printable ASCII without quotes' special meaning escaped by serde_json.
        let header = serde_json::json!({"alg": "ES256", "kid": self.key_id}).to_string();
        let claims = serde_json::json!({"iss": self.team_id, "iat": iat}).to_string();
        let mut jwt = jwt_signing_input(&header, &claims);
        let signature = self
            .key
            .sign(&SystemRandom::new(), jwt.as_bytes())
            .map_err(|_| KeyError::NotP256)?;
        jwt.push('.');
        jwt.push_str(&b64url(signature.as_ref()));
        Ok(jwt)
    }
}

/// SHA-256 of `parts`, each preceded by its length so that no two different lists hash
/// alike (`("ab", "c")` is not `("a", "bc")`).
fn fingerprint(parts: &[&[u8]]) -> [u8; 32] {
    let mut input = Vec::with_capacity(parts.iter().map(|p| p.len() + 8).sum());
    for part in parts {
        input.extend_from_slice(&(part.len() as u64).to_be_bytes());
        input.extend_from_slice(part);
    }
    let mut out = [0; 32];
    out.copy_from_slice(digest(&SHA256, &input).as_ref());
    out
}

/// What to make of APNs refusing a provider token (`InvalidProviderToken`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The token is dropped (or was already replaced): the next request signs a new one, so
    /// the delivery is worth retrying.
    Resigning,
    /// A token signed after an earlier refusal was refused too: the key, key id or team id
    /// is wrong. The token is kept, so no request re-signs until the normal refresh.
    KeyRefused,
}

#[derive(Debug)]
struct Entry {
    /// The current token and when it was signed; `None` after it was dropped.
    token: Option<(HeaderValue, Instant)>,
    /// The current (or next) token is signed after APNs refused the previous one.
    after_refusal: bool,
}

/// Signed `authorization` headers by signing key (see the module doc for the key).
/// Sites sharing a key, and a site whose credentials are reloaded, reuse one token, or APNs
/// would answer `TooManyProviderTokenUpdates`.
#[derive(Debug)]
pub struct TokenCache {
    refresh: Duration,
    tokens: Mutex<HashMap<[u8; 32], Entry>>,
}

impl Default for TokenCache {
    fn default() -> Self {
        TokenCache::new(TOKEN_REFRESH)
    }
}

impl TokenCache {
    /// A cache that re-signs tokens older than `refresh`.
    pub fn new(refresh: Duration) -> Self {
        TokenCache {
            refresh,
            tokens: Mutex::default(),
        }
    }

    /// `bearer <token>` for `key`, signed now if there is no fresh one.
    pub fn authorization(&self, key: &ApnsKey) -> Result<HeaderValue, KeyError> {
        // A poisoned lock only means a panic mid-insert of a HashMap entry; it stays usable.
        let mut tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        let after_refusal = match tokens.get(&key.fingerprint) {
            Some(Entry {
                token: Some((header, signed)),
                ..
            }) if signed.elapsed() < self.refresh => return Ok(header.clone()),
            // Dropped after a refusal: the new token is the second chance.
            Some(Entry {
                token: None,
                after_refusal,
            }) => *after_refusal,
            // Stale or never signed: a normal refresh.
            _ => false,
        };
        let iat = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let jwt = key.sign(iat)?;
        // base64url and dots only: always a valid header value.
        let header = HeaderValue::from_str(&format!("bearer {jwt}"))
            .map_err(|_| KeyError::BadId("key id"))?;
        if tokens.len() >= MAX_KEYS && !tokens.contains_key(&key.fingerprint) {
            let refresh = self.refresh;
            tokens.retain(|_, entry| {
                entry
                    .token
                    .as_ref()
                    .is_some_and(|(_, signed)| signed.elapsed() < refresh)
            });
        }
        tokens.insert(
            key.fingerprint,
            Entry {
                token: Some((header.clone(), Instant::now())),
                after_refusal,
            },
        );
        Ok(header)
    }

    /// APNs answered `InvalidProviderToken` to a request authorized with `used`.
    pub fn refused(&self, key: &ApnsKey, used: &HeaderValue) -> Refusal {
        let mut tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        match tokens.get_mut(&key.fingerprint) {
            Some(entry) => match &entry.token {
                Some((current, _)) if current == used => {
                    if entry.after_refusal {
                        return Refusal::KeyRefused;
                    }
                    entry.token = None;
                    entry.after_refusal = true;
                    Refusal::Resigning
                }
                // Another delivery already dropped it, or a newer token exists.
                _ => Refusal::Resigning,
            },
            None => Refusal::Resigning,
        }
    }

    /// Forgets `key`'s token (APNs said it expired), so the next request signs a new one.
    /// Only the token `used` is dropped: a newer one another delivery signed stays.
    pub fn expired(&self, key: &ApnsKey, used: &HeaderValue) {
        let mut tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(entry) = tokens.get_mut(&key.fingerprint)
            && entry
                .token
                .as_ref()
                .is_some_and(|(current, _)| current == used)
        {
            entry.token = None;
        }
    }

    /// Forgets `key`'s token unconditionally.
    pub fn invalidate(&self, key: &ApnsKey) {
        self.tokens
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&key.fingerprint);
    }
}

#[cfg(test)]
mod tests {
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED, KeyPair as _, UnparsedPublicKey};
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    use super::*;

    /// A fresh `.p8`-style PEM key.
    fn p8() -> String {
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .expect("key generation");
        pushservice_provider::pem_from_pkcs8(pkcs8.as_ref())
    }

    #[test]
    fn tokens_carry_team_and_key_and_verify_with_the_public_key() {
        let key = ApnsKey::from_p8("TEAM123456", "KEY1234567", &p8()).expect("valid key");
        let jwt = key.sign(1_700_000_000).expect("signs");
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3);
        let header = URL_SAFE_NO_PAD.decode(parts[0]).expect("b64");
        let claims = URL_SAFE_NO_PAD.decode(parts[1]).expect("b64");
        let json = |bytes: &[u8]| serde_json::from_slice::<serde_json::Value>(bytes).expect("JSON");
        assert_eq!(
            json(&header),
            serde_json::json!({"alg": "ES256", "kid": "KEY1234567"})
        );
        assert_eq!(
            json(&claims),
            serde_json::json!({"iat": 1_700_000_000u64, "iss": "TEAM123456"})
        );
        let signature = URL_SAFE_NO_PAD.decode(parts[2]).expect("b64");
        let public = key.key.public_key().as_ref().to_vec();
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &public)
            .verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &signature)
            .expect("signature verifies");
    }

    #[test]
    fn the_cache_reuses_a_token_until_refresh_or_invalidation() {
        let key = ApnsKey::from_p8("TEAM123456", "KEY1234567", &p8()).expect("valid key");
        let cache = TokenCache::default();
        let first = cache.authorization(&key).expect("signs");
        assert!(first.to_str().expect("ascii").starts_with("bearer ey"));
        assert_eq!(cache.authorization(&key).expect("cached"), first);
        cache.invalidate(&key);
        // ECDSA signatures are randomised: a new token differs even within the same second.
        assert_ne!(cache.authorization(&key).expect("re-signed"), first);
        let stale = TokenCache::new(Duration::ZERO);
        let a = stale.authorization(&key).expect("signs");
        assert_ne!(stale.authorization(&key).expect("signs again"), a);
    }

    #[test]
    fn sites_claiming_the_same_ids_with_different_keys_get_different_tokens() {
        let (p8_a, p8_b) = (p8(), p8());
        let site_a = ApnsKey::from_p8("TEAM123456", "KEY1234567", &p8_a).expect("valid key");
        let site_b = ApnsKey::from_p8("TEAM123456", "KEY1234567", &p8_b).expect("valid key");
        assert_ne!(site_a.fingerprint(), site_b.fingerprint());
        let cache = TokenCache::default();
        let a = cache.authorization(&site_a).expect("signs");
        let b = cache.authorization(&site_b).expect("signs");
        assert_ne!(a, b, "site b must not get site a's token");
        // Each token verifies with its own site's key only.
        let verifies = |header: &HeaderValue, key: &ApnsKey| {
            let jwt = header
                .to_str()
                .expect("ascii")
                .trim_start_matches("bearer ");
            let (signed, signature) = jwt.rsplit_once('.').expect("three parts");
            let signature = URL_SAFE_NO_PAD.decode(signature).expect("b64");
            UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, key.key.public_key().as_ref())
                .verify(signed.as_bytes(), &signature)
                .is_ok()
        };
        assert!(verifies(&a, &site_a) && !verifies(&a, &site_b));
        assert!(verifies(&b, &site_b) && !verifies(&b, &site_a));
        // Site b's refused token does not touch site a's.
        assert_eq!(cache.refused(&site_b, &b), Refusal::Resigning);
        assert_eq!(cache.authorization(&site_a).expect("cached"), a);
        // The same key material under a reload shares the token.
        let reloaded = ApnsKey::from_p8("TEAM123456", "KEY1234567", &p8_a).expect("valid key");
        assert_eq!(cache.authorization(&reloaded).expect("cached"), a);
    }

    #[test]
    fn a_refused_token_is_resigned_once_then_the_key_is_blamed() {
        let key = ApnsKey::from_p8("TEAM123456", "KEY1234567", &p8()).expect("valid key");
        let cache = TokenCache::default();
        let first = cache.authorization(&key).expect("signs");
        assert_eq!(cache.refused(&key, &first), Refusal::Resigning);
        // Other deliveries that used the same token are told to retry, without re-signing.
        assert_eq!(cache.refused(&key, &first), Refusal::Resigning);
        let second = cache.authorization(&key).expect("re-signs");
        assert_ne!(first, second);
        assert_eq!(
            cache.refused(&key, &first),
            Refusal::Resigning,
            "an old token"
        );
        assert_eq!(cache.refused(&key, &second), Refusal::KeyRefused);
        assert_eq!(
            cache.authorization(&key).expect("kept"),
            second,
            "no re-signing after the key was blamed"
        );
        // An expired token is dropped only if it is still the current one.
        cache.expired(&key, &first);
        assert_eq!(cache.authorization(&key).expect("kept"), second);
        cache.expired(&key, &second);
        assert_ne!(cache.authorization(&key).expect("re-signed"), second);
    }

    #[test]
    fn unusable_keys_say_what_is_wrong() {
        assert!(matches!(
            ApnsKey::from_p8("T", "K", "not a key"),
            Err(KeyError::Pem(PemError::NoBlock))
        ));
        let not_ec = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----";
        assert_eq!(
            ApnsKey::from_p8("T", "K", not_ec).err(),
            Some(KeyError::NotP256)
        );
        assert_eq!(
            ApnsKey::from_p8("", "K", &p8()).err(),
            Some(KeyError::BadId("team id"))
        );
    }
}
