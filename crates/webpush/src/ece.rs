//! RFC 8291 message encryption: the `aes128gcm` content coding (RFC 8188) keyed for Web Push.
//!
//! Every message gets a fresh ephemeral P-256 key pair and a fresh 16-byte salt, so the
//! per-message cost is one key generation plus one ECDH agreement; the HKDF steps and the
//! AES-128-GCM seal are small next to that. The whole body is one record (RFC 8291 §4 requires
//! a single record), written into one exactly sized buffer: the only allocation per message
//! besides the key parsing aws-lc-rs does internally.
//!
//! The key schedule is spelled out with HMAC rather than an opaque HKDF object so each
//! intermediate value of RFC 8291 Appendix A can be checked in the tests below. With outputs of
//! at most one SHA-256 block, HKDF-Expand (RFC 5869) is exactly `HMAC(PRK, info || 0x01)`.

use aws_lc_rs::aead::{AES_128_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::agreement::{self, ECDH_P256, PrivateKey, UnparsedPublicKey};
use aws_lc_rs::hmac;

/// Record size written in the header. Push services must accept records of this size, and the
/// whole message fits in one record of it.
pub const RECORD_SIZE: u32 = 4096;

/// Bytes before the ciphertext: salt (16) + record size (4) + key id length (1) + the
/// application server's public key as key id (65).
pub const HEADER_LEN: usize = 16 + 4 + 1 + 65;

/// AES-GCM authentication tag length.
const TAG_LEN: usize = 16;

/// The largest plaintext one message can carry: push services accept bodies of up to 4096
/// bytes (RFC 8030 §7.2), and the body is the header, the plaintext, one padding delimiter
/// byte and the tag: 4096 − 86 − 1 − 16 = 3993.
pub const MAX_PLAINTEXT: usize = RECORD_SIZE as usize - HEADER_LEN - 1 - TAG_LEN;

/// Padding delimiter of the last (here the only) record, RFC 8188 §2.
const LAST_RECORD_DELIMITER: u8 = 0x02;

const KEY_INFO_PREFIX: &[u8] = b"WebPush: info\0";
const CEK_INFO: &[u8] = b"Content-Encoding: aes128gcm\0";
const NONCE_INFO: &[u8] = b"Content-Encoding: nonce\0";

/// Why a message could not be encrypted. None of these improves by retrying.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EncryptError {
    /// The subscription's `p256dh` is not an uncompressed P-256 point on the curve.
    #[error("invalid subscription key (p256dh): not an uncompressed P-256 point on the curve")]
    InvalidPublicKey,
    /// The plaintext does not fit in one 4096-byte Web Push message.
    #[error("payload too large: {size} bytes, the limit is {limit} bytes")]
    PayloadTooLarge {
        /// Plaintext size.
        size: usize,
        /// [`MAX_PLAINTEXT`].
        limit: usize,
    },
    /// aws-lc-rs failed (random source, key generation or sealing).
    #[error("encryption failed: {0}")]
    Crypto(&'static str),
}

/// Encrypts `plaintext` for the subscription (`ua_public` = `p256dh`, `auth`) with a fresh
/// ephemeral key pair and salt; returns the request body.
pub fn encrypt(
    ua_public: &[u8; 65],
    auth: &[u8; 16],
    plaintext: &[u8],
) -> Result<Vec<u8>, EncryptError> {
    // Cheap checks first, so a bad message costs no key generation.
    check_inputs(ua_public, plaintext)?;
    let mut salt = [0u8; 16];
    aws_lc_rs::rand::fill(&mut salt).map_err(|_| EncryptError::Crypto("random salt"))?;
    let as_private =
        PrivateKey::generate(&ECDH_P256).map_err(|_| EncryptError::Crypto("key generation"))?;
    seal(&as_private, &salt, ua_public, auth, plaintext)
}

/// Like [`encrypt`] with the application server's private key and the salt given:
/// deterministic, for test vectors. Never reuse a key and salt pair in production.
pub fn encrypt_with(
    as_private: &[u8; 32],
    salt: &[u8; 16],
    ua_public: &[u8; 65],
    auth: &[u8; 16],
    plaintext: &[u8],
) -> Result<Vec<u8>, EncryptError> {
    check_inputs(ua_public, plaintext)?;
    let as_private = PrivateKey::from_private_key(&ECDH_P256, as_private)
        .map_err(|_| EncryptError::Crypto("invalid application server private key"))?;
    seal(&as_private, salt, ua_public, auth, plaintext)
}

fn check_inputs(ua_public: &[u8; 65], plaintext: &[u8]) -> Result<(), EncryptError> {
    if plaintext.len() > MAX_PLAINTEXT {
        return Err(EncryptError::PayloadTooLarge {
            size: plaintext.len(),
            limit: MAX_PLAINTEXT,
        });
    }
    // RFC 8291 §3.1 uses the uncompressed form only; aws-lc-rs would also take the
    // "hybrid" 65-byte encodings (0x06/0x07), which browsers never send.
    if ua_public[0] != 0x04 {
        return Err(EncryptError::InvalidPublicKey);
    }
    Ok(())
}

/// Agreement, key schedule and seal: the part shared by [`encrypt`] and [`encrypt_with`].
fn seal(
    as_private: &PrivateKey,
    salt: &[u8; 16],
    ua_public: &[u8; 65],
    auth: &[u8; 16],
    plaintext: &[u8],
) -> Result<Vec<u8>, EncryptError> {
    let as_public = as_private
        .compute_public_key()
        .map_err(|_| EncryptError::Crypto("public key export"))?;
    let as_public: &[u8; 65] = as_public
        .as_ref()
        .try_into()
        .map_err(|_| EncryptError::Crypto("public key export"))?;
    // The agreement fails only when the peer key does not parse or is not on the curve.
    let ecdh_secret = agreement::agree(
        as_private,
        UnparsedPublicKey::new(&ECDH_P256, ua_public.as_slice()),
        EncryptError::InvalidPublicKey,
        |secret| {
            secret
                .try_into()
                .map_err(|_| EncryptError::Crypto("ECDH secret length"))
        },
    )?;
    let keys = derive_keys(&ecdh_secret, auth, salt, ua_public, as_public);

    let mut body = Vec::with_capacity(HEADER_LEN + plaintext.len() + 1 + TAG_LEN);
    body.extend_from_slice(salt);
    body.extend_from_slice(&RECORD_SIZE.to_be_bytes());
    body.push(65);
    body.extend_from_slice(as_public);
    body.extend_from_slice(plaintext);
    body.push(LAST_RECORD_DELIMITER);

    let key = UnboundKey::new(&AES_128_GCM, &keys.cek)
        .map_err(|_| EncryptError::Crypto("content encryption key"))?;
    // The single record has sequence number 0, so its nonce is the derived nonce as is.
    let tag = LessSafeKey::new(key)
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(keys.nonce),
            Aad::empty(),
            &mut body[HEADER_LEN..],
        )
        .map_err(|_| EncryptError::Crypto("seal"))?;
    body.extend_from_slice(tag.as_ref());
    Ok(body)
}

/// The key schedule of RFC 8291 §3.3-3.4 and RFC 8188 §2.2, with every intermediate kept so
/// the tests can compare them with Appendix A.
struct Keys {
    #[cfg_attr(not(test), allow(dead_code))]
    prk_key: [u8; 32],
    #[cfg_attr(not(test), allow(dead_code))]
    ikm: [u8; 32],
    #[cfg_attr(not(test), allow(dead_code))]
    prk: [u8; 32],
    cek: [u8; 16],
    nonce: [u8; 12],
}

fn derive_keys(
    ecdh_secret: &[u8; 32],
    auth: &[u8; 16],
    salt: &[u8; 16],
    ua_public: &[u8; 65],
    as_public: &[u8; 65],
) -> Keys {
    // PRK_key = HKDF-Extract(salt=auth_secret, IKM=ecdh_secret)
    let prk_key = hmac_sha256(auth, &[ecdh_secret]);
    // IKM = HKDF-Expand(PRK_key, "WebPush: info" || 0x00 || ua_public || as_public, 32)
    let ikm = hmac_sha256(&prk_key, &[KEY_INFO_PREFIX, ua_public, as_public, &[1]]);
    // PRK = HKDF-Extract(salt, IKM)
    let prk = hmac_sha256(salt, &[&ikm]);
    let cek_block = hmac_sha256(&prk, &[CEK_INFO, &[1]]);
    let nonce_block = hmac_sha256(&prk, &[NONCE_INFO, &[1]]);
    let mut cek = [0u8; 16];
    cek.copy_from_slice(&cek_block[..16]);
    let mut nonce = [0u8; 12];
    nonce.copy_from_slice(&nonce_block[..12]);
    Keys {
        prk_key,
        ikm,
        prk,
        cek,
        nonce,
    }
}

/// HMAC-SHA-256 over the concatenation of `parts`, without building the concatenation.
fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    let mut context = hmac::Context::with_key(&key);
    for part in parts {
        context.update(part);
    }
    let mut out = [0u8; 32];
    // SHA-256 tags are always 32 bytes.
    out.copy_from_slice(context.sign().as_ref());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    /// RFC 8291 Appendix A (the copy under tests/data, which the integration test also reads).
    fn vector() -> serde_json::Value {
        let text = include_str!("../tests/data/rfc8291-appendix-a.json");
        serde_json::from_str(text).expect("the vector file is valid JSON")
    }

    fn b64<const N: usize>(value: &serde_json::Value) -> [u8; N] {
        let text = value.as_str().expect("vector values are strings");
        let bytes = URL_SAFE_NO_PAD
            .decode(text)
            .expect("vector values are base64url");
        bytes
            .try_into()
            .expect("vector value has the expected length")
    }

    #[test]
    fn key_schedule_matches_rfc8291_appendix_a() {
        let v = vector();
        let i = &v["intermediate"];
        let as_private = PrivateKey::from_private_key(&ECDH_P256, &b64::<32>(&v["as_private"]))
            .expect("vector private key");
        let as_public = as_private.compute_public_key().expect("public key");
        assert_eq!(
            as_public.as_ref(),
            b64::<65>(&v["as_public"]).as_slice(),
            "as_public"
        );

        let ua_public = b64::<65>(&v["ua_public"]);
        let ecdh_secret: [u8; 32] = agreement::agree(
            &as_private,
            UnparsedPublicKey::new(&ECDH_P256, ua_public.as_slice()),
            (),
            |s| s.try_into().map_err(|_| ()),
        )
        .expect("agreement");
        assert_eq!(ecdh_secret, b64::<32>(&i["ecdh_secret"]), "ecdh_secret");

        let keys = derive_keys(
            &ecdh_secret,
            &b64::<16>(&v["auth_secret"]),
            &b64::<16>(&v["salt"]),
            &ua_public,
            &b64::<65>(&v["as_public"]),
        );
        assert_eq!(keys.prk_key, b64::<32>(&i["prk_key"]), "prk_key");
        assert_eq!(keys.ikm, b64::<32>(&i["ikm"]), "ikm");
        assert_eq!(keys.prk, b64::<32>(&i["prk"]), "prk");
        assert_eq!(keys.cek, b64::<16>(&i["cek"]), "cek");
        assert_eq!(keys.nonce, b64::<12>(&i["nonce"]), "nonce");
    }

    #[test]
    fn max_plaintext_fills_exactly_4096_bytes() {
        assert_eq!(MAX_PLAINTEXT, 3993);
        let ua_public = b64::<65>(&vector()["ua_public"]);
        let body = encrypt(&ua_public, &[7; 16], &[b'x'; MAX_PLAINTEXT]).expect("fits");
        assert_eq!(body.len(), 4096);
    }

    #[test]
    fn rejects_points_off_the_curve_and_compressed_prefixes() {
        let mut ua_public = b64::<65>(&vector()["ua_public"]);
        ua_public[64] ^= 1; // y no longer matches x
        assert_eq!(
            encrypt(&ua_public, &[0; 16], b"hi"),
            Err(EncryptError::InvalidPublicKey)
        );
        let mut hybrid = b64::<65>(&vector()["ua_public"]);
        hybrid[0] = 0x06;
        assert_eq!(
            encrypt(&hybrid, &[0; 16], b"hi"),
            Err(EncryptError::InvalidPublicKey)
        );
    }

    #[test]
    fn fresh_salt_and_key_every_call() {
        let ua_public = b64::<65>(&vector()["ua_public"]);
        let a = encrypt(&ua_public, &[1; 16], b"same").expect("encrypts");
        let b = encrypt(&ua_public, &[1; 16], b"same").expect("encrypts");
        assert_ne!(a[..16], b[..16], "salt reused");
        assert_ne!(a[21..86], b[21..86], "ephemeral key reused");
    }
}
