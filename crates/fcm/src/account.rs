//! A Google service account, as its JSON key file describes it, and the RS256 assertion it
//! signs to get access tokens (RFC 7523, Google's "OAuth 2.0 for server to server").

use aws_lc_rs::digest::{SHA256, digest};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeyPair;
use aws_lc_rs::signature::RSA_PKCS1_SHA256;
use pushservice_model::FcmCredentials;
use pushservice_provider::{PemError, b64url, jwt_signing_input, pkcs8_from_pem};
use serde::Deserialize;

/// OAuth scope for sending with FCM.
pub const FCM_SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";

/// Google's token endpoint, when the key file does not name one.
pub const GOOGLE_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";

/// Why a service-account file is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccountError {
    /// Not the JSON of a key file.
    #[error("FCM service account is not a Google service-account JSON key file: {0}")]
    Json(String),
    /// A required field is empty.
    #[error("FCM service account has no {0}; download a new key file from the Firebase console")]
    Missing(&'static str),
    /// `private_key` is not PEM.
    #[error("FCM service account private_key: {0}")]
    Pem(#[from] PemError),
    /// `private_key` is not an RSA key aws-lc-rs accepts.
    #[error("FCM service account private_key is not a PKCS#8 RSA key")]
    NotRsa,
    /// Signing failed (should not happen with a valid key).
    #[error("signing the FCM OAuth assertion failed")]
    Sign,
}

#[derive(Deserialize)]
struct KeyFile {
    #[serde(default)]
    project_id: String,
    #[serde(default)]
    private_key_id: String,
    #[serde(default)]
    private_key: String,
    #[serde(default)]
    client_email: String,
    #[serde(default)]
    token_uri: Option<String>,
}

/// A parsed service account.
pub struct ServiceAccount {
    /// Firebase project the account sends for (the `<project>` of the send URL).
    pub project_id: String,
    /// The account's e-mail: the assertion's `iss`.
    pub client_email: String,
    /// Key id (the assertion's `kid`).
    pub private_key_id: String,
    /// Where access tokens are obtained.
    pub token_uri: String,
    key: KeyPair,
    /// SHA-256 of `client_email`, the PKCS#8 private key and `token_uri`: the access-token
    /// cache key, so accounts sharing a public e-mail never share tokens.
    fingerprint: [u8; 32],
    /// Hex of the first 8 bytes of `fingerprint`: a non-secret name for slot keys and logs.
    short_fingerprint: String,
}

impl std::fmt::Debug for ServiceAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccount")
            .field("project_id", &self.project_id)
            .field("client_email", &self.client_email)
            .field("token_uri", &self.token_uri)
            .finish_non_exhaustive()
    }
}

impl ServiceAccount {
    /// Parses a service-account JSON key file.
    pub fn from_json(json: &str) -> Result<Self, AccountError> {
        let file: KeyFile =
            serde_json::from_str(json).map_err(|e| AccountError::Json(e.to_string()))?;
        let required = |value: &str, name| {
            if value.trim().is_empty() {
                Err(AccountError::Missing(name))
            } else {
                Ok(())
            }
        };
        required(&file.project_id, "project_id")?;
        required(&file.client_email, "client_email")?;
        required(&file.private_key, "private_key")?;
        let der = pkcs8_from_pem(&file.private_key)?;
        let key = KeyPair::from_pkcs8(&der).map_err(|_| AccountError::NotRsa)?;
        let token_uri = file
            .token_uri
            .filter(|uri| !uri.trim().is_empty())
            .unwrap_or_else(|| GOOGLE_TOKEN_URI.to_owned());
        let fingerprint = fingerprint(&[file.client_email.as_bytes(), &der, token_uri.as_bytes()]);
        Ok(ServiceAccount {
            project_id: file.project_id,
            client_email: file.client_email,
            private_key_id: file.private_key_id,
            token_uri,
            key,
            short_fingerprint: fingerprint[..8]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect(),
            fingerprint,
        })
    }

    /// SHA-256 of the account's e-mail, private key and `token_uri`: what its access tokens
    /// are cached by.
    pub fn cache_key(&self) -> &[u8; 32] {
        &self.fingerprint
    }

    /// A short, non-secret name of this exact key material (hex of the first 8 bytes of
    /// [`cache_key`](Self::cache_key)).
    pub fn fingerprint(&self) -> &str {
        &self.short_fingerprint
    }

    /// The signed assertion for `token_uri` (the `aud`), issued at `iat` for an hour.
    pub fn assertion(&self, token_uri: &str, iat: u64) -> Result<String, AccountError> {
        let mut header = serde_json::json!({"alg": "RS256", "typ": "JWT"});
        if !self.private_key_id.is_empty() {
            header["kid"] = self.private_key_id.clone().into();
        }
        let claims = serde_json::json!({
            "iss": self.client_email,
            "scope": FCM_SCOPE,
            "aud": token_uri,
            "iat": iat,
            "exp": iat + 3600,
        });
        let mut jwt = jwt_signing_input(&header.to_string(), &claims.to_string());
        let mut signature = vec![0; self.key.public_modulus_len()];
        self.key
            .sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                jwt.as_bytes(),
                &mut signature,
            )
            .map_err(|_| AccountError::Sign)?;
        jwt.push('.');
        jwt.push_str(&b64url(&signature));
        Ok(jwt)
    }
}

/// SHA-256 of `parts`, each preceded by its length so that no two different lists hash alike.
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

/// A site's FCM credentials from the service-account file at `path`, parsed exactly as the
/// sender will use it before anything is stored; the error names the file.
pub fn credentials_from_file(path: &std::path::Path) -> Result<FcmCredentials, String> {
    let shown = path.display();
    let json = std::fs::read_to_string(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    ServiceAccount::from_json(&json).map_err(|e| format!("{shown}: {e}"))?;
    Ok(FcmCredentials {
        service_account: json,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use aws_lc_rs::encoding::AsDer as _;
    use aws_lc_rs::rsa::KeySize;
    use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey};
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    use super::*;

    /// A key file with a fresh RSA key, and the key's public half (PKCS#1 DER).
    pub(crate) fn key_file(token_uri: &str) -> (String, Vec<u8>) {
        let key = KeyPair::generate(KeySize::Rsa2048).expect("RSA key generation");
        let der = key.as_der().expect("PKCS#8");
        let pem = pushservice_provider::pem_from_pkcs8(der.as_ref());
        let json = serde_json::json!({
            "type": "service_account",
            "project_id": "demo-project",
            "private_key_id": "k1",
            "private_key": pem,
            "client_email": "sender@demo-project.iam.gserviceaccount.com",
            "token_uri": token_uri,
        });
        (json.to_string(), key.public_key().as_ref().to_vec())
    }

    #[test]
    fn assertions_carry_the_claims_google_asks_for_and_verify() {
        let (json, public) = key_file("https://oauth.example/token");
        let account = ServiceAccount::from_json(&json).expect("valid key file");
        assert_eq!(account.project_id, "demo-project");
        let jwt = account
            .assertion(&account.token_uri, 1_700_000_000)
            .expect("signs");
        let parts: Vec<&str> = jwt.split('.').collect();
        let claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).expect("b64")).expect("JSON");
        assert_eq!(
            claims,
            serde_json::json!({
                "iss": "sender@demo-project.iam.gserviceaccount.com",
                "scope": FCM_SCOPE,
                "aud": "https://oauth.example/token",
                "iat": 1_700_000_000u64,
                "exp": 1_700_003_600u64,
            })
        );
        let signature = URL_SAFE_NO_PAD.decode(parts[2]).expect("b64");
        UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, &public)
            .verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &signature)
            .expect("signature verifies");
    }

    #[test]
    fn broken_key_files_say_what_is_wrong() {
        assert!(matches!(
            ServiceAccount::from_json("{"),
            Err(AccountError::Json(_))
        ));
        assert_eq!(
            ServiceAccount::from_json(r#"{"client_email":"a@b","private_key":"x"}"#).err(),
            Some(AccountError::Missing("project_id"))
        );
        assert_eq!(
            ServiceAccount::from_json(
                r#"{"project_id":"p","client_email":"a@b","private_key":"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----"}"#
            )
            .err(),
            Some(AccountError::NotRsa)
        );
        let (json, _) = key_file("");
        let account = ServiceAccount::from_json(&json).expect("valid");
        assert_eq!(account.token_uri, GOOGLE_TOKEN_URI, "empty token_uri");
    }

    #[test]
    fn the_cache_key_is_the_key_material_not_the_e_mail() {
        let (a, _) = key_file(GOOGLE_TOKEN_URI);
        let (b, _) = key_file(GOOGLE_TOKEN_URI);
        let (a, b) = (
            ServiceAccount::from_json(&a).expect("valid"),
            ServiceAccount::from_json(&b).expect("valid"),
        );
        assert_eq!(a.client_email, b.client_email);
        assert_ne!(a.cache_key(), b.cache_key(), "same e-mail, different keys");
        assert_ne!(a.fingerprint(), b.fingerprint());
        let (json, _) = key_file(GOOGLE_TOKEN_URI);
        let mut other_uri: serde_json::Value = serde_json::from_str(&json).expect("JSON");
        other_uri["token_uri"] = "https://oauth.example/token".into();
        let same = ServiceAccount::from_json(&json).expect("valid");
        let moved = ServiceAccount::from_json(&other_uri.to_string()).expect("valid");
        assert_eq!(
            same.cache_key(),
            ServiceAccount::from_json(&json).expect("valid").cache_key()
        );
        assert_ne!(
            same.cache_key(),
            moved.cache_key(),
            "token_uri is part of it"
        );
    }
}
