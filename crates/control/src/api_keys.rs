//! Site API keys.
//!
//! A key reads `psk_<site id>_<key id>_<secret>`: 24 hex characters of site id, 8 of key id,
//! 43 base64url characters of 32 random bytes. It names its site, so authenticating is one
//! site lookup and a hash comparison, with no index over every key of every site; and a key
//! presented for another site's resource is told apart from a wrong key (403, not 401).
//!
//! Only the SHA-256 of a key is stored (`sites.apiKeys[].hash`): the secret has 256 bits of
//! entropy, so a fast hash is enough (a slow password hash protects guessable secrets; this
//! one is not guessable), and the comparison is constant-time.

use aws_lc_rs::digest::{SHA256, digest};
use aws_lc_rs::rand::{SecureRandom as _, SystemRandom};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use pushservice_model::{ApiKey, DateTime, ObjectId, Site};

/// Most keys a site may hold at once (rotation needs two; a few more for several backends).
pub const MAX_KEYS_PER_SITE: usize = 10;

const PREFIX: &str = "psk_";

/// A freshly generated key: the record to store and the key to show, once.
#[derive(Clone)]
pub struct NewApiKey {
    /// What the site document keeps.
    pub record: ApiKey,
    /// The key itself; never stored.
    pub secret: String,
}

impl std::fmt::Debug for NewApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewApiKey")
            .field("record", &self.record)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// Generates a key for `site_id`.
pub fn generate(site_id: ObjectId) -> Result<NewApiKey, anyhow::Error> {
    let rng = SystemRandom::new();
    let mut id = [0u8; 4];
    let mut secret = [0u8; 32];
    rng.fill(&mut id)
        .and_then(|()| rng.fill(&mut secret))
        .map_err(|_| anyhow::anyhow!("the system random number generator failed"))?;
    let key_id: String = id.iter().map(|b| format!("{b:02x}")).collect();
    let secret = format!(
        "{PREFIX}{}_{key_id}_{}",
        site_id.to_hex(),
        URL_SAFE_NO_PAD.encode(secret)
    );
    Ok(NewApiKey {
        record: ApiKey {
            id: key_id,
            hash: hash_hex(&secret),
            created_at: Some(DateTime::now()),
        },
        secret,
    })
}

/// A key as presented in `Authorization: Bearer ...`, split into its parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresentedKey {
    /// The site it names.
    pub site_id: ObjectId,
    /// Its key id.
    pub key_id: String,
    hash: String,
}

/// Why a presented key is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiKeyError {
    /// Not shaped like a key at all.
    #[error(
        "the API key is malformed: expected psk_<site id>_<key id>_<secret> as shown when it was created"
    )]
    Malformed,
    /// Shaped right but not a current key of its site (revoked, or never issued).
    #[error("the API key is not valid (revoked, or not issued by this service)")]
    Unknown,
}

impl PresentedKey {
    /// Splits a presented key; does not check it against any site.
    pub fn parse(text: &str) -> Result<PresentedKey, ApiKeyError> {
        let rest = text
            .trim()
            .strip_prefix(PREFIX)
            .ok_or(ApiKeyError::Malformed)?;
        let mut parts = rest.splitn(3, '_');
        let (Some(site), Some(key_id), Some(secret)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(ApiKeyError::Malformed);
        };
        let site_id = ObjectId::parse_str(site).map_err(|_| ApiKeyError::Malformed)?;
        if key_id.len() != 8 || !key_id.bytes().all(|b| b.is_ascii_hexdigit()) || secret.len() != 43
        {
            return Err(ApiKeyError::Malformed);
        }
        Ok(PresentedKey {
            site_id,
            key_id: key_id.to_owned(),
            hash: hash_hex(text.trim()),
        })
    }

    /// Checks the key against its site's stored keys (`site` must be the site it names).
    pub fn verify(&self, site: &Site) -> Result<(), ApiKeyError> {
        if site.id != self.site_id {
            return Err(ApiKeyError::Unknown);
        }
        let stored = site
            .api_keys
            .iter()
            .find(|k| k.id == self.key_id)
            .ok_or(ApiKeyError::Unknown)?;
        aws_lc_rs::constant_time::verify_slices_are_equal(
            stored.hash.as_bytes(),
            self.hash.as_bytes(),
        )
        .map_err(|_| ApiKeyError::Unknown)
    }
}

fn hash_hex(key: &str) -> String {
    digest(&SHA256, key.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site_with(keys: &[&NewApiKey]) -> Site {
        let mut site = Site::new("mailto:a@b.c".into(), "p".into(), "s".into());
        site.api_keys = keys.iter().map(|k| k.record.clone()).collect();
        site
    }

    #[test]
    fn generated_key_verifies_and_is_stored_only_as_hash() {
        let site_id = ObjectId::new();
        let key = generate(site_id).expect("key");
        let mut site = site_with(&[&key]);
        site.id = site_id;
        assert!(!key.record.hash.contains(&key.secret));
        assert_eq!(key.record.hash.len(), 64);
        let presented = PresentedKey::parse(&key.secret).expect("parses");
        assert_eq!(presented.site_id, site_id);
        assert_eq!(presented.verify(&site), Ok(()));
    }

    #[test]
    fn wrong_secret_other_site_and_revoked_key_are_refused() {
        let site_id = ObjectId::new();
        let key = generate(site_id).expect("key");
        let mut site = site_with(&[&key]);
        site.id = site_id;
        // Same site and key id, another secret.
        let mut forged = key.secret.clone();
        forged.pop();
        forged.push(if key.secret.ends_with('A') { 'B' } else { 'A' });
        let forged = PresentedKey::parse(&forged).expect("well-formed");
        assert_eq!(forged.verify(&site), Err(ApiKeyError::Unknown));
        // A key of another site checked against this one.
        let other = generate(ObjectId::new()).expect("key");
        let other = PresentedKey::parse(&other.secret).expect("parses");
        assert_eq!(other.verify(&site), Err(ApiKeyError::Unknown));
        // Revoked.
        site.api_keys.clear();
        let presented = PresentedKey::parse(&key.secret).expect("parses");
        assert_eq!(presented.verify(&site), Err(ApiKeyError::Unknown));
    }

    #[test]
    fn malformed_keys() {
        for bad in [
            "",
            "psk_",
            "Bearer x",
            "psk_zz_12345678_x",
            "psk_65a1f0c2e4b0a1b2c3d4e5f6_123_x",
        ] {
            assert_eq!(
                PresentedKey::parse(bad),
                Err(ApiKeyError::Malformed),
                "{bad}"
            );
        }
    }
}
