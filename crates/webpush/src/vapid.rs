//! RFC 8292 VAPID: a site's key pair and the signed JWT that identifies it to push services.
//!
//! A VAPID JWT only names the push service origin (`aud`), an expiry and a contact (`sub`), so
//! one signature serves every message a site sends to that push service until it nears
//! expiry. [`VapidCache`] keeps those headers; signing happens here, once per
//! (site, origin) per refresh, never per message.

mod cache;

use aws_lc_rs::encoding::AsBigEndian;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::header::HeaderValue;

pub use cache::VapidCache;

use crate::keys::{KeyDecodeError, decode_fixed};

/// `base64url({"typ":"JWT","alg":"ES256"})`: the JWT header never changes.
const JWT_HEADER_B64: &str = "eyJ0eXAiOiJKV1QiLCJhbGciOiJFUzI1NiJ9";

/// Why a VAPID key or header could not be made.
#[derive(Debug, thiserror::Error)]
pub enum VapidError {
    /// A key is not base64 or has the wrong length.
    #[error("VAPID key: {0}")]
    Decode(#[from] KeyDecodeError),
    /// The private key is not a valid P-256 scalar, or the public key not a P-256 point.
    #[error("VAPID key pair is not a valid P-256 key pair ({0})")]
    InvalidKey(&'static str),
    /// The public key is valid but belongs to another private key.
    #[error("VAPID public key does not match the private key")]
    KeyMismatch,
    /// RFC 8292 §2.1: `sub` must be a `mailto:` or `https:` URI; push services reject others.
    #[error("VAPID subject {subject:?} is invalid: {problem}")]
    InvalidSubject {
        /// The subject as configured for the site.
        subject: String,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// The system clock is before 1970, so no `exp` can be computed.
    #[error("system clock is before the Unix epoch")]
    Clock,
    /// aws-lc-rs failed to sign or generate.
    #[error("VAPID signing failed: {0}")]
    Crypto(&'static str),
}

/// A site's VAPID key pair (P-256), parsed once and shared.
pub struct VapidKey {
    key_pair: EcdsaKeyPair,
    /// Uncompressed public point, compared by the cache to notice key rotation.
    public: [u8; 65],
    /// `k=` of the header: base64url without padding, computed once.
    public_b64: String,
}

impl std::fmt::Debug for VapidKey {
    // Only the public half: the private key must never reach a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VapidKey")
            .field("public_key", &self.public_b64)
            .finish_non_exhaustive()
    }
}

impl VapidKey {
    /// Parses a key pair given as base64url (padding optional; the standard alphabet is accepted
    /// too): the 65-byte uncompressed public key and the 32-byte private scalar, as web-push
    /// tools print them. Fails when the two do not belong together.
    pub fn from_base64(public_key: &str, private_key: &str) -> Result<Self, VapidError> {
        let public: [u8; 65] = decode_fixed("public key", public_key)?;
        let private: [u8; 32] = decode_fixed("private key", private_key)?;
        let key_pair = EcdsaKeyPair::from_private_key_and_public_key(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            &private,
            &public,
        )
        .map_err(|rejected| match rejected.description_() {
            "InconsistentComponents" => VapidError::KeyMismatch,
            other => VapidError::InvalidKey(other),
        })?;
        Ok(Self::from_key_pair(key_pair, public))
    }

    /// A new random key pair, for provisioning a site.
    pub fn generate() -> Result<Self, VapidError> {
        let key_pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
            .map_err(|_| VapidError::Crypto("key generation"))?;
        let public: [u8; 65] = key_pair
            .public_key()
            .as_ref()
            .try_into()
            .map_err(|_| VapidError::Crypto("public key export"))?;
        Ok(Self::from_key_pair(key_pair, public))
    }

    fn from_key_pair(key_pair: EcdsaKeyPair, public: [u8; 65]) -> Self {
        let public_b64 = URL_SAFE_NO_PAD.encode(public);
        VapidKey {
            key_pair,
            public,
            public_b64,
        }
    }

    /// The public key as base64url without padding: the `applicationServerKey` browsers
    /// subscribe with, and the `k=` of the `Authorization` header.
    pub fn public_key_base64(&self) -> &str {
        &self.public_b64
    }

    /// The private scalar as base64url without padding, to store a key made by
    /// [`VapidKey::generate`]. A secret: never log it.
    pub fn private_key_base64(&self) -> Result<String, VapidError> {
        let private = self
            .key_pair
            .private_key()
            .as_be_bytes()
            .map_err(|_| VapidError::Crypto("export"))?;
        Ok(URL_SAFE_NO_PAD.encode(private.as_ref()))
    }

    pub(crate) fn public_bytes(&self) -> &[u8; 65] {
        &self.public
    }
}

/// Checks `sub` (RFC 8292 §2.1; Apple's push service rejects anything else) and returns it
/// without surrounding whitespace, which hand-edited site settings tend to carry.
pub(crate) fn validate_subject(subject: &str) -> Result<&str, VapidError> {
    let trimmed = subject.trim();
    let invalid = |problem| VapidError::InvalidSubject {
        subject: subject.to_owned(),
        problem,
    };
    let rest = if let Some(rest) = strip_prefix_ignore_case(trimmed, "mailto:") {
        if !rest.contains('@') {
            return Err(invalid("a mailto: subject needs an email address"));
        }
        rest
    } else if let Some(rest) = strip_prefix_ignore_case(trimmed, "https://") {
        if rest.is_empty() || rest.starts_with('/') {
            return Err(invalid("an https: subject needs a host"));
        }
        rest
    } else {
        return Err(invalid("must start with \"mailto:\" or \"https://\""));
    };
    if rest.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid("contains whitespace or control characters"));
    }
    Ok(trimmed)
}

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

/// Signs a JWT for (`origin`, `exp`, `subject`) and returns the whole header value
/// `vapid t=<JWT>, k=<public key>`. `subject` must have passed [`validate_subject`].
pub(crate) fn sign_header(
    key: &VapidKey,
    subject: &str,
    origin: &str,
    exp: u64,
) -> Result<HeaderValue, VapidError> {
    #[derive(serde::Serialize)]
    struct Claims<'a> {
        aud: &'a str,
        exp: u64,
        sub: &'a str,
    }
    let claims = serde_json::to_vec(&Claims {
        aud: origin,
        exp,
        sub: subject,
    })
    .map_err(|_| VapidError::Crypto("claims serialization"))?;

    let mut value = String::with_capacity(16 + JWT_HEADER_B64.len() + claims.len() * 2 + 180);
    value.push_str("vapid t=");
    let signed_from = value.len();
    value.push_str(JWT_HEADER_B64);
    value.push('.');
    URL_SAFE_NO_PAD.encode_string(&claims, &mut value);
    let signature = key
        .key_pair
        .sign(&SystemRandom::new(), &value.as_bytes()[signed_from..])
        .map_err(|_| VapidError::Crypto("ES256 signature"))?;
    value.push('.');
    URL_SAFE_NO_PAD.encode_string(signature.as_ref(), &mut value);
    value.push_str(", k=");
    value.push_str(&key.public_b64);
    // Every character is base64url, '.', ',', ' ' or '=', all valid in a header value.
    HeaderValue::try_from(value).map_err(|_| VapidError::Crypto("header value"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_generated_keys_and_detects_mismatches() {
        let key = VapidKey::generate().expect("generate");
        let private = key.private_key_base64().expect("export");
        // Independent check with RustCrypto: the exported scalar yields the same public point.
        let scalar = URL_SAFE_NO_PAD.decode(&private).expect("base64url");
        let secret = p256::SecretKey::from_slice(&scalar).expect("valid scalar");
        let point = p256::elliptic_curve::sec1::ToEncodedPoint::to_encoded_point(
            &secret.public_key(),
            false,
        );
        assert_eq!(point.as_bytes(), key.public_bytes().as_slice());

        let parsed = VapidKey::from_base64(key.public_key_base64(), &private).expect("round trip");
        assert_eq!(parsed.public_key_base64(), key.public_key_base64());
        // Padded standard alphabet, as some admin tools store it.
        let standard = base64::engine::general_purpose::STANDARD.encode(scalar);
        let public_std = base64::engine::general_purpose::STANDARD.encode(key.public_bytes());
        VapidKey::from_base64(&public_std, &standard).expect("standard alphabet");

        let other = VapidKey::generate().expect("generate");
        let err = VapidKey::from_base64(other.public_key_base64(), &private).expect_err("mismatch");
        assert!(matches!(err, VapidError::KeyMismatch), "{err:?}");
        let err = VapidKey::from_base64(key.public_key_base64(), "AAAA").expect_err("short");
        assert_eq!(
            err.to_string(),
            "VAPID key: private key decodes to 3 bytes, expected 32"
        );
        let zero = URL_SAFE_NO_PAD.encode([0u8; 32]);
        let err = VapidKey::from_base64(key.public_key_base64(), &zero).expect_err("zero");
        assert!(matches!(err, VapidError::InvalidKey(_)), "{err:?}");
        assert!(
            !format!("{key:?}").contains(&private),
            "Debug must not show the private key"
        );
    }

    #[test]
    fn subjects() {
        for ok in [
            "mailto:ops@example.com",
            "https://example.com",
            " MAILTO:a@b.c\n",
        ] {
            assert!(validate_subject(ok).is_ok(), "{ok}");
        }
        assert_eq!(
            validate_subject(" mailto:a@b.c ").expect("trimmed"),
            "mailto:a@b.c"
        );
        for (bad, problem) in [
            ("ops@example.com", "must start with"),
            ("http://example.com", "must start with"),
            ("mailto:", "needs an email address"),
            ("https://", "needs a host"),
            ("mailto: ops@example.com", "whitespace"),
            ("", "must start with"),
        ] {
            let err = validate_subject(bad).expect_err(bad);
            assert!(err.to_string().contains(problem), "{bad}: {err}");
        }
    }
}
