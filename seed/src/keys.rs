//! Key material: VAPID key pairs for sites and derived keys for subscribers.

use aws_lc_rs::agreement::{self, ECDH_P256};
use aws_lc_rs::encoding::AsBigEndian as _;
use aws_lc_rs::hmac;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use pushservice_model::ObjectId;

/// A site's VAPID key pair, base64url without padding as the `sites` collection stores it.
#[derive(Clone, PartialEq, Eq)]
pub struct VapidKeys {
    /// 65-byte uncompressed P-256 point.
    pub public_key: String,
    /// 32-byte P-256 scalar.
    pub private_key: String,
}

impl std::fmt::Debug for VapidKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VapidKeys")
            .field("public_key", &self.public_key)
            .finish_non_exhaustive()
    }
}

/// Key generation failed in the crypto library (it only fails when the system RNG does).
#[derive(Debug, thiserror::Error)]
#[error("key generation failed: {0}")]
pub struct KeyError(&'static str);

impl KeyError {
    pub(crate) fn new(what: &'static str) -> Self {
        KeyError(what)
    }
}

/// Generates a fresh VAPID key pair from the system's random number generator.
pub fn generate_vapid_keys() -> Result<VapidKeys, KeyError> {
    let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
        .map_err(|_| KeyError("P-256 key pair"))?;
    let private = pair
        .private_key()
        .as_be_bytes()
        .map_err(|_| KeyError("private key export"))?;
    Ok(VapidKeys {
        public_key: URL_SAFE_NO_PAD.encode(pair.public_key().as_ref()),
        private_key: URL_SAFE_NO_PAD.encode(private.as_ref()),
    })
}

/// A seeded subscriber's key material.
#[derive(Clone, PartialEq, Eq)]
pub struct SubscriberKeys {
    /// The user agent's private P-256 scalar: what a browser keeps and decrypts with.
    pub private_key: [u8; 32],
    /// The matching uncompressed public point, stored as `keys.p256dh`.
    pub public_key: [u8; 65],
    /// The auth secret, stored as `keys.auth`.
    pub auth: [u8; 16],
}

impl std::fmt::Debug for SubscriberKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubscriberKeys").finish_non_exhaustive()
    }
}

/// Derives subscriber `id`'s key material from `key_seed`: the same inputs always give the same
/// keys, and different ids give independent keys.
///
/// The private scalar is HMAC-SHA256(seed, "p256" ‖ id ‖ counter); in the rare case (about
/// 2^-32) that it is not a valid P-256 scalar, the counter moves on.
pub fn subscriber_keys(key_seed: &[u8], id: &ObjectId) -> SubscriberKeys {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key_seed);
    let auth_tag = hmac::sign(&key, &[b"auth".as_slice(), &id.bytes()].concat());
    let mut auth = [0u8; 16];
    auth.copy_from_slice(&auth_tag.as_ref()[..16]);
    for counter in 0u8..=u8::MAX {
        let tag = hmac::sign(
            &key,
            &[b"p256".as_slice(), &id.bytes(), &[counter]].concat(),
        );
        let Ok(private) = agreement::PrivateKey::from_private_key(&ECDH_P256, tag.as_ref()) else {
            continue;
        };
        let Ok(public) = private.compute_public_key() else {
            continue;
        };
        let mut private_key = [0u8; 32];
        private_key.copy_from_slice(tag.as_ref());
        let mut public_key = [0u8; 65];
        public_key.copy_from_slice(public.as_ref());
        return SubscriberKeys {
            private_key,
            public_key,
            auth,
        };
    }
    // 256 consecutive out-of-range HMAC outputs would mean HMAC-SHA256 is broken.
    unreachable!("no valid P-256 scalar in 256 HMAC outputs")
}

#[cfg(test)]
mod tests {
    use super::*;
    use pushservice_model::subscriber::decode_base64;

    #[test]
    fn vapid_keys_have_rfc_sizes() {
        let keys = generate_vapid_keys().expect("generates");
        let public = decode_base64(&keys.public_key).expect("base64url");
        let private = decode_base64(&keys.private_key).expect("base64url");
        assert_eq!((public.len(), public[0], private.len()), (65, 4, 32));
        assert!(!format!("{keys:?}").contains(&keys.private_key));
    }

    #[test]
    fn subscriber_keys_are_deterministic_and_distinct() {
        let a = ObjectId::new();
        let b = ObjectId::new();
        assert_eq!(subscriber_keys(b"seed", &a), subscriber_keys(b"seed", &a));
        assert_ne!(
            subscriber_keys(b"seed", &a).public_key,
            subscriber_keys(b"seed", &b).public_key
        );
        assert_ne!(
            subscriber_keys(b"seed", &a).auth,
            subscriber_keys(b"other", &a).auth
        );
    }

    #[test]
    fn derived_public_key_matches_private_key_under_ecdh() {
        // Agreement from both sides must give the same secret: proves the pair is consistent.
        let id = ObjectId::new();
        let keys = subscriber_keys(b"seed", &id);
        let ours = agreement::PrivateKey::from_private_key(&ECDH_P256, &keys.private_key)
            .expect("valid scalar");
        let other = agreement::PrivateKey::generate(&ECDH_P256).expect("generates");
        let other_public = other.compute_public_key().expect("public");
        let from_ours = agreement::agree(
            &ours,
            agreement::UnparsedPublicKey::new(&ECDH_P256, other_public.as_ref()),
            aws_lc_rs::error::Unspecified,
            |s| Ok(s.to_vec()),
        )
        .expect("agree");
        let from_other = agreement::agree(
            &other,
            agreement::UnparsedPublicKey::new(&ECDH_P256, keys.public_key),
            aws_lc_rs::error::Unspecified,
            |s| Ok(s.to_vec()),
        )
        .expect("agree");
        assert_eq!(from_ours, from_other);
    }
}
