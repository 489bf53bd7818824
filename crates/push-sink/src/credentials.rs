//! What the sink trusts in verification mode besides the Web Push key seed: APNs signing keys
//! (what Apple knows of a developer's `.p8` key) and Google service accounts (what Google knows
//! of a service-account JSON file).
//!
//! Both are built from the very files a sender is configured with, so one set of files serves
//! both ends of a test. Only the public halves are kept: the private keys are parsed to derive
//! them and then dropped. PEM decoding and Apple's key file names are
//! [`pushservice_provider::keys`], shared with the senders; the keys themselves are parsed
//! here, independently of the sender's signing code.

use std::path::Path;

use aws_lc_rs::rsa::KeyPair as RsaKeyPair;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use pushservice_provider::{key_id_from_file_name, pkcs8_from_pem};
use serde::Deserialize;

/// A trusted APNs signing key: what Apple knows of a developer's `.p8` key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApnsKey {
    /// The developer team the key belongs to (10 characters); provider tokens signed with the
    /// key must claim it as `iss`.
    pub team_id: String,
    /// The key id (10 characters), the `kid` of provider tokens signed with it.
    pub key_id: String,
    /// The public key: an uncompressed P-256 point (65 bytes).
    pub public_key: Vec<u8>,
}

impl ApnsKey {
    /// The key `p8_pem` (PKCS#8 PEM, `-----BEGIN PRIVATE KEY-----`, as Apple's `.p8` download)
    /// with id `key_id`, for team `team_id`.
    pub fn from_p8(team_id: &str, key_id: &str, p8_pem: &str) -> Result<ApnsKey, String> {
        check_apple_id("team id", team_id)?;
        check_apple_id("key id", key_id)?;
        let der = pkcs8_der(p8_pem)?;
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der)
            .map_err(|e| format!("not a PKCS#8 P-256 (ES256) private key: {e}"))?;
        Ok(ApnsKey {
            team_id: team_id.to_owned(),
            key_id: key_id.to_owned(),
            public_key: pair.public_key().as_ref().to_vec(),
        })
    }

    /// The key in the `.p8` file at `path`, its id taken from Apple's file name
    /// `AuthKey_<KEYID>.p8`; errors name the file.
    pub fn from_p8_file(team_id: &str, path: &Path) -> Result<ApnsKey, String> {
        let shown = path.display();
        let key_id = key_id_from_file_name(path).ok_or_else(|| {
            format!(
                "{shown}: the file name must be Apple's AuthKey_<KEYID>.p8, which gives the key id"
            )
        })?;
        let pem = std::fs::read_to_string(path).map_err(|e| format!("{shown}: {e}"))?;
        Self::from_p8(team_id, key_id, &pem).map_err(|e| format!("{shown}: {e}"))
    }
}

/// A trusted Google service account: what Google knows of a service-account JSON file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FcmAccount {
    /// The account's e-mail address, the `iss` of its token assertions.
    pub client_email: String,
    /// The Firebase project it may send for.
    pub project_id: String,
    /// Its public key: a PKCS#1 `RSAPublicKey`, DER.
    pub public_key: Vec<u8>,
}

/// The fields of a service-account JSON file the sink needs (others are ignored).
#[derive(Deserialize)]
struct ServiceAccountJson {
    #[serde(rename = "type")]
    kind: String,
    project_id: String,
    private_key: String,
    client_email: String,
}

impl FcmAccount {
    /// The account a Google service-account JSON file describes (`type`
    /// `service_account`, with `project_id`, `private_key` as PKCS#8 PEM RSA, and
    /// `client_email`).
    pub fn from_service_account_json(json: &str) -> Result<FcmAccount, String> {
        let file: ServiceAccountJson = serde_json::from_str(json)
            .map_err(|e| format!("not a service-account JSON file: {e}"))?;
        if file.kind != "service_account" {
            return Err(format!(
                "type is {:?}; a service-account file has \"service_account\"",
                file.kind
            ));
        }
        for (name, value) in [
            ("project_id", &file.project_id),
            ("client_email", &file.client_email),
        ] {
            if value.trim().is_empty() {
                return Err(format!("{name} is empty"));
            }
        }
        let der = pkcs8_der(&file.private_key).map_err(|e| format!("private_key: {e}"))?;
        let pair = RsaKeyPair::from_pkcs8(&der)
            .map_err(|e| format!("private_key is not a PKCS#8 RSA private key: {e}"))?;
        Ok(FcmAccount {
            client_email: file.client_email,
            project_id: file.project_id,
            public_key: pair.public_key().as_ref().to_vec(),
        })
    }

    /// The account in the JSON file at `path`; errors name the file.
    pub fn from_service_account_file(path: &Path) -> Result<FcmAccount, String> {
        let shown = path.display();
        let json = std::fs::read_to_string(path).map_err(|e| format!("{shown}: {e}"))?;
        Self::from_service_account_json(&json).map_err(|e| format!("{shown}: {e}"))
    }
}

/// Apple's team and key ids are 10 letters and digits.
fn check_apple_id(what: &str, id: &str) -> Result<(), String> {
    if id.len() == 10 && id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        Ok(())
    } else {
        Err(format!("{what} {id:?} is not 10 letters and digits"))
    }
}

/// The DER inside a `PRIVATE KEY` PEM block, the error as text.
fn pkcs8_der(pem: &str) -> Result<Vec<u8>, String> {
    pkcs8_from_pem(pem).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::encoding::AsDer as _;
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::rsa::KeySize;

    fn pem(der: &[u8]) -> String {
        pushservice_provider::pem_from_pkcs8(der)
    }

    #[test]
    fn apns_keys_come_from_p8_pem() {
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .expect("generates");
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref())
            .expect("parses");
        let key =
            ApnsKey::from_p8("TEAM123456", "KEY1234567", &pem(pkcs8.as_ref())).expect("valid key");
        assert_eq!(key.public_key, pair.public_key().as_ref());
        assert_eq!(key.public_key.len(), 65);
        // Escaped newlines, as in an environment variable, work too.
        let escaped = pem(pkcs8.as_ref()).replace('\n', "\\n");
        assert_eq!(
            ApnsKey::from_p8("TEAM123456", "KEY1234567", &escaped),
            Ok(key)
        );

        assert!(ApnsKey::from_p8("TEAM", "KEY1234567", &pem(pkcs8.as_ref())).is_err());
        assert!(ApnsKey::from_p8("TEAM123456", "KEY1234567", "garbage").is_err());
        let err = ApnsKey::from_p8_file("TEAM123456", Path::new("/tmp/key.p8"))
            .expect_err("no key id in the name");
        assert!(err.contains("AuthKey_<KEYID>.p8"), "{err}");
    }

    #[test]
    fn fcm_accounts_come_from_service_account_json() {
        let pair = RsaKeyPair::generate(KeySize::Rsa2048).expect("generates");
        let pkcs8 = pair.as_der().expect("PKCS#8");
        let json = serde_json::json!({
            "type": "service_account",
            "project_id": "demo-project",
            "private_key_id": "abc123",
            "private_key": pem(pkcs8.as_ref()),
            "client_email": "sender@demo-project.iam.gserviceaccount.com",
            "client_id": "1",
            "token_uri": "https://oauth2.googleapis.com/token",
        });
        let account = FcmAccount::from_service_account_json(&json.to_string()).expect("valid");
        assert_eq!(account.project_id, "demo-project");
        assert_eq!(
            account.client_email,
            "sender@demo-project.iam.gserviceaccount.com"
        );
        assert_eq!(account.public_key, pair.public_key().as_ref());

        let mut wrong_type = json.clone();
        wrong_type["type"] = "authorized_user".into();
        let err = FcmAccount::from_service_account_json(&wrong_type.to_string())
            .expect_err("not a service account");
        assert!(err.contains("service_account"), "{err}");
        assert!(FcmAccount::from_service_account_json("{}").is_err());
    }
}
