//! Test credentials for the mobile platforms: an APNs `.p8` signing key and a Google
//! service-account key file, generated locally.
//!
//! They are real keys (the sender signs with them, a verifying push-sink checks the
//! signatures) that no real service knows: for simulators, load tests and demos. A user's real
//! ones come from Apple's developer portal and the Firebase console.

use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::rand::{SecureRandom as _, SystemRandom};
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize};
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use pushservice_provider::pem_from_pkcs8;

use crate::keys::KeyError;

/// A generated APNs signing key.
pub struct ApnsTestKey {
    /// 10 characters, like Apple's key ids.
    pub key_id: String,
    /// The `.p8` file content (PKCS#8 PEM).
    pub p8: String,
}

impl ApnsTestKey {
    /// The file name Apple gives the key: `AuthKey_<KEYID>.p8`.
    pub fn file_name(&self) -> String {
        format!("AuthKey_{}.p8", self.key_id)
    }
}

/// A new P-256 APNs signing key with a random key id.
pub fn apns_test_key() -> Result<ApnsTestKey, KeyError> {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
        .map_err(|_| KeyError::new("P-256 key generation failed"))?;
    Ok(ApnsTestKey {
        key_id: random_id(&rng, 10)?,
        p8: pem_from_pkcs8(pkcs8.as_ref()),
    })
}

/// A new service-account key file (RSA 2048) for `project_id` whose tokens come from
/// `token_uri`.
pub fn fcm_test_service_account(project_id: &str, token_uri: &str) -> Result<String, KeyError> {
    let rng = SystemRandom::new();
    let key = RsaKeyPair::generate(KeySize::Rsa2048)
        .map_err(|_| KeyError::new("RSA key generation failed"))?;
    let der = key
        .as_der()
        .map_err(|_| KeyError::new("RSA key encoding failed"))?;
    let key_id = random_id(&rng, 40)?.to_ascii_lowercase();
    let json = serde_json::json!({
        "type": "service_account",
        "project_id": project_id,
        "private_key_id": key_id,
        "private_key": pem_from_pkcs8(der.as_ref()),
        "client_email": format!("pushservice-test@{project_id}.iam.gserviceaccount.com"),
        "client_id": "000000000000000000000",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": token_uri,
    });
    serde_json::to_string_pretty(&json).map_err(|_| KeyError::new("JSON encoding failed"))
}

/// `length` random characters of `A-Z0-9`.
fn random_id(rng: &SystemRandom, length: usize) -> Result<String, KeyError> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut bytes = vec![0u8; length];
    rng.fill(&mut bytes)
        .map_err(|_| KeyError::new("random generator failed"))?;
    Ok(bytes
        .iter()
        .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_credentials_look_like_the_real_files() {
        let key = apns_test_key().expect("key");
        assert_eq!(key.key_id.len(), 10);
        assert!(key.file_name().starts_with("AuthKey_") && key.file_name().ends_with(".p8"));
        assert!(key.p8.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        let json = fcm_test_service_account("demo", "http://127.0.0.1:9090/token").expect("file");
        let value: serde_json::Value = serde_json::from_str(&json).expect("JSON");
        assert_eq!(value["type"], "service_account");
        assert_eq!(value["token_uri"], "http://127.0.0.1:9090/token");
        assert!(
            value["client_email"]
                .as_str()
                .is_some_and(|e| e.ends_with("@demo.iam.gserviceaccount.com"))
        );
    }
}
