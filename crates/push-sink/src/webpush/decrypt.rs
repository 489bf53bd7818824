//! The receiving side of Web Push message encryption: `aes128gcm` (RFC 8188) with keys
//! derived as RFC 8291 §3.3–3.4 says, decrypted as a browser would.
//!
//! It is written here, from the RFCs, independently of the sender's encryption module, so
//! that the two check each other: a sender bug that its own round-trip test cannot see shows
//! up as a 400 from the sink. It is proven against RFC 8291 Appendix A
//! (`tests/decrypt_rfc8291.rs`) and against the `ece` crate's encryption.
//!
//! ```text
//! body   = salt(16) ‖ rs(4, big endian) ‖ idlen(1) ‖ keyid(idlen = 65: sender's public key)
//!          ‖ records of rs bytes (the last may be shorter), each AES-128-GCM with a 16-byte tag
//! PRK_key = HMAC-SHA-256(auth_secret, ecdh_secret)
//! IKM     = HMAC-SHA-256(PRK_key, "WebPush: info" ‖ 0 ‖ ua_public ‖ as_public ‖ 1)
//! PRK     = HMAC-SHA-256(salt, IKM)
//! CEK     = HMAC-SHA-256(PRK, "Content-Encoding: aes128gcm" ‖ 0 ‖ 1)[..16]
//! NONCE   = HMAC-SHA-256(PRK, "Content-Encoding: nonce" ‖ 0 ‖ 1)[..12] XOR record number
//! record plaintext = data ‖ delimiter (2 on the last record, 1 before) ‖ zero padding
//! ```

use aws_lc_rs::aead::{AES_128_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::agreement::{self, ECDH_P256, UnparsedPublicKey};
use aws_lc_rs::hmac;

/// Size of the `aes128gcm` header before the key id: salt, record size, key id length.
const HEADER_LEN: usize = 16 + 4 + 1;
/// An uncompressed P-256 point.
const PUBLIC_KEY_LEN: usize = 65;
/// AES-GCM tag.
const TAG_LEN: usize = 16;

/// Why a body could not be decrypted; the message is what a 400 response says.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecryptError {
    /// The `aes128gcm` header is cut short or inconsistent.
    #[error("aes128gcm header: {0}")]
    Header(&'static str),
    /// The sender's public key (key id) is not a P-256 point, or ours is not a valid scalar.
    #[error("ECDH with the sender's public key (keyid) failed")]
    KeyAgreement,
    /// A record fails authentication: wrong keys, wrong salt, or tampered bytes.
    #[error("record {0} does not authenticate (wrong keys or tampered body)")]
    Authentication(usize),
    /// A record decrypts but its padding delimiter is wrong.
    #[error("record {0}: {1}")]
    Padding(usize, &'static str),
}

/// Decrypts a Web Push `aes128gcm` body for the user agent holding `ua_private` (with public
/// key `ua_public`) and the auth secret `auth`; returns the plaintext without padding.
pub fn decrypt_aes128gcm(
    ua_private: &[u8; 32],
    ua_public: &[u8; 65],
    auth: &[u8; 16],
    body: &[u8],
) -> Result<Vec<u8>, DecryptError> {
    if body.len() < HEADER_LEN {
        return Err(DecryptError::Header("shorter than salt, rs and idlen"));
    }
    let (salt, rest) = body.split_at(16);
    let (rs_bytes, rest) = rest.split_at(4);
    let rs = u32::from_be_bytes([rs_bytes[0], rs_bytes[1], rs_bytes[2], rs_bytes[3]]) as usize;
    let id_len = usize::from(rest[0]);
    let rest = &rest[1..];
    if rs <= TAG_LEN + 1 {
        return Err(DecryptError::Header("record size too small"));
    }
    if id_len != PUBLIC_KEY_LEN {
        return Err(DecryptError::Header(
            "keyid must be the sender's 65-byte public key",
        ));
    }
    if rest.len() < id_len {
        return Err(DecryptError::Header("cut short inside keyid"));
    }
    let (as_public, ciphertext) = rest.split_at(id_len);
    if ciphertext.is_empty() {
        return Err(DecryptError::Header("no records"));
    }

    let ecdh_secret = ecdh(ua_private, as_public)?;
    let prk_key = hmac_sha256(auth, &[&ecdh_secret]);
    let ikm = hmac_sha256(
        &prk_key,
        &[b"WebPush: info\0", ua_public, as_public, b"\x01"],
    );
    let prk = hmac_sha256(salt, &[&ikm]);
    let cek = hmac_sha256(&prk, &[b"Content-Encoding: aes128gcm\0\x01"]);
    let nonce_base = hmac_sha256(&prk, &[b"Content-Encoding: nonce\0\x01"]);

    let key = UnboundKey::new(&AES_128_GCM, &cek[..16])
        .map(LessSafeKey::new)
        .map_err(|_| DecryptError::Header("content encryption key"))?;
    let records: Vec<&[u8]> = ciphertext.chunks(rs).collect();
    let last = records.len() - 1;
    let mut plaintext = Vec::with_capacity(ciphertext.len());
    for (seq, record) in records.into_iter().enumerate() {
        if record.len() <= TAG_LEN {
            return Err(DecryptError::Header("record shorter than its tag"));
        }
        let mut nonce = [0u8; 12];
        nonce.copy_from_slice(&nonce_base[..12]);
        for (n, s) in nonce[4..].iter_mut().zip((seq as u64).to_be_bytes()) {
            *n ^= s;
        }
        let mut buf = record.to_vec();
        let opened = key
            .open_in_place(Nonce::assume_unique_for_key(nonce), Aad::empty(), &mut buf)
            .map_err(|_| DecryptError::Authentication(seq))?;
        let end = opened
            .iter()
            .rposition(|&b| b != 0)
            .ok_or(DecryptError::Padding(seq, "no delimiter, only zeros"))?;
        let expected = if seq == last { 2 } else { 1 };
        if opened[end] != expected {
            return Err(DecryptError::Padding(
                seq,
                if seq == last {
                    "last record must end with delimiter 0x02"
                } else {
                    "inner record must end with delimiter 0x01"
                },
            ));
        }
        plaintext.extend_from_slice(&opened[..end]);
    }
    Ok(plaintext)
}

/// ECDH between our private scalar and the sender's public point.
fn ecdh(ua_private: &[u8; 32], as_public: &[u8]) -> Result<[u8; 32], DecryptError> {
    let private = agreement::PrivateKey::from_private_key(&ECDH_P256, ua_private)
        .map_err(|_| DecryptError::KeyAgreement)?;
    agreement::agree(
        &private,
        UnparsedPublicKey::new(&ECDH_P256, as_public),
        DecryptError::KeyAgreement,
        |secret| {
            let mut out = [0u8; 32];
            if secret.len() != out.len() {
                return Err(DecryptError::KeyAgreement);
            }
            out.copy_from_slice(secret);
            Ok(out)
        },
    )
}

/// HMAC-SHA-256 of the concatenated `parts` (HKDF-Extract, and HKDF-Expand of one block).
fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut context = hmac::Context::with_key(&hmac::Key::new(hmac::HMAC_SHA256, key));
    for part in parts {
        context.update(part);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(context.sign().as_ref());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_or_malformed_headers_are_rejected_without_panicking() {
        let keys = pushservice_seed::subscriber_keys(b"seed", &pushservice_model::ObjectId::new());
        let decrypt =
            |body: &[u8]| decrypt_aes128gcm(&keys.private_key, &keys.public_key, &keys.auth, body);
        assert!(matches!(decrypt(&[]), Err(DecryptError::Header(_))));
        let mut body = vec![0u8; 16];
        body.extend_from_slice(&4096u32.to_be_bytes());
        body.push(65);
        assert!(matches!(decrypt(&body), Err(DecryptError::Header(_))));
        body.extend_from_slice(&[0x04; 65]);
        body.extend_from_slice(&[0u8; 40]);
        // Not a point on the curve.
        assert_eq!(decrypt(&body), Err(DecryptError::KeyAgreement));
        let mut body_small_rs = body.clone();
        body_small_rs[16..20].copy_from_slice(&17u32.to_be_bytes());
        assert!(matches!(
            decrypt(&body_small_rs),
            Err(DecryptError::Header(_))
        ));
    }
}
