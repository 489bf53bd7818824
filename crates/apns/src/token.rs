//! APNs provider tokens: ES256 JWTs signed with a team's `.p8` key.
//!
//! A token is `{"alg":"ES256","kid":<key id>}.{"iss":<team id>,"iat":<now>}`. APNs refuses
//! tokens older than an hour (`ExpiredProviderToken`) and throttles providers that sign new
//! ones more often than every 20 minutes (`TooManyProviderTokenUpdates`), so [`TokenCache`]
//! keeps one `bearer` header per (team, key) and re-signs after [`TOKEN_REFRESH`].

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use pushservice_provider::{PemError, b64url, jwt_signing_input, pkcs8_from_pem};
use reqwest::header::HeaderValue;

/// How long a signed token is reused: well inside APNs' hour, well past its 20 minutes.
pub const TOKEN_REFRESH: Duration = Duration::from_secs(50 * 60);

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
    /// `<team id>/<key id>`: the [`TokenCache`] key, built once so lookups do not allocate.
    cache_key: String,
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
        Ok(ApnsKey {
            team_id: team_id.to_owned(),
            key_id: key_id.to_owned(),
            cache_key: format!("{team_id}/{key_id}"),
            key,
        })
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

/// Signed `authorization` headers by team and key. Keyed by the key's identity rather than
/// kept on each [`ApnsKey`]: sites sharing a key, and a site whose credentials are reloaded,
/// must reuse one token, or APNs answers `TooManyProviderTokenUpdates`.
#[derive(Debug)]
pub struct TokenCache {
    refresh: Duration,
    tokens: Mutex<HashMap<String, (HeaderValue, Instant)>>,
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
        if let Some((header, signed)) = tokens.get(key.cache_key.as_str())
            && signed.elapsed() < self.refresh
        {
            return Ok(header.clone());
        }
        let iat = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let jwt = key.sign(iat)?;
        // base64url and dots only: always a valid header value.
        let header = HeaderValue::from_str(&format!("bearer {jwt}"))
            .map_err(|_| KeyError::BadId("key id"))?;
        tokens.insert(key.cache_key.clone(), (header.clone(), Instant::now()));
        Ok(header)
    }

    /// Forgets `key`'s token (APNs said it expired or is invalid), so the next request signs
    /// a new one.
    pub fn invalidate(&self, key: &ApnsKey) {
        self.tokens
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key.cache_key.as_str());
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
