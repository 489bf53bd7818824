//! RFC 8291 conformance through the public API: Appendix A reproduced byte for byte, and
//! bodies from `encrypt` decrypted by the independent `ece` crate (OpenSSL backend, with a
//! subscriber key pair `ece` generated itself) for sizes from empty to the maximum.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use pushservice_webpush::{EncryptError, MAX_PLAINTEXT, RECORD_SIZE, encrypt, encrypt_with};

/// A copy of /work/shared/rfc8291-appendix-a.json, kept with the crate so CI has it.
const APPENDIX_A: &str = include_str!("data/rfc8291-appendix-a.json");

fn field<const N: usize>(vector: &serde_json::Value, name: &str) -> [u8; N] {
    let bytes = URL_SAFE_NO_PAD
        .decode(vector[name].as_str().expect("string field"))
        .expect("base64url field");
    bytes
        .try_into()
        .unwrap_or_else(|b: Vec<u8>| panic!("{name}: {} bytes, not {N}", b.len()))
}

#[test]
fn reproduces_rfc8291_appendix_a_byte_for_byte() {
    let vector: serde_json::Value = serde_json::from_str(APPENDIX_A).expect("JSON");
    assert_eq!(vector["record_size"], RECORD_SIZE);
    let expected = URL_SAFE_NO_PAD
        .decode(vector["body"].as_str().expect("body"))
        .expect("base64url body");
    let body = encrypt_with(
        &field(&vector, "as_private"),
        &field(&vector, "salt"),
        &field(&vector, "ua_public"),
        &field(&vector, "auth_secret"),
        vector["plaintext"].as_str().expect("plaintext").as_bytes(),
    )
    .expect("encrypts");
    assert_eq!(
        URL_SAFE_NO_PAD.encode(&body),
        URL_SAFE_NO_PAD.encode(&expected),
        "body differs from RFC 8291 Appendix A"
    );
}

#[test]
fn ece_crate_decrypts_every_size_up_to_the_limit() {
    let (key_pair, auth) = ece::generate_keypair_and_auth_secret().expect("ece key pair");
    let components = key_pair.raw_components().expect("components");
    let ua_public: [u8; 65] = key_pair
        .pub_as_raw()
        .expect("raw public")
        .try_into()
        .expect("65 bytes");
    for size in [0, 1, 15, 16, 17, 300, 1000, 3992, MAX_PLAINTEXT] {
        let plaintext: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
        let body = encrypt(&ua_public, &auth, &plaintext).expect("encrypts");
        assert_eq!(body.len(), 86 + size + 1 + 16, "size {size}");
        assert!(
            body.len() <= 4096,
            "size {size}: body of {} bytes",
            body.len()
        );
        let decrypted = ece::decrypt(&components, &auth, &body)
            .unwrap_or_else(|e| panic!("ece rejected a {size}-byte message: {e}"));
        assert_eq!(decrypted, plaintext, "size {size}");
    }
    // The wrong auth secret must not decrypt: the key schedule really binds it.
    let body = encrypt(&ua_public, &auth, b"hello").expect("encrypts");
    let mut wrong = auth;
    wrong[0] ^= 1;
    assert!(ece::decrypt(&components, &wrong, &body).is_err());
}

#[test]
fn rejects_payloads_over_the_limit() {
    let (key_pair, auth) = ece::generate_keypair_and_auth_secret().expect("ece key pair");
    let ua_public: [u8; 65] = key_pair
        .pub_as_raw()
        .expect("raw public")
        .try_into()
        .expect("65 bytes");
    let err = encrypt(&ua_public, &auth, &vec![0; MAX_PLAINTEXT + 1]).expect_err("too large");
    assert_eq!(
        err,
        EncryptError::PayloadTooLarge {
            size: MAX_PLAINTEXT + 1,
            limit: 3993
        }
    );
    assert_eq!(
        err.to_string(),
        "payload too large: 3994 bytes, the limit is 3993 bytes"
    );
}
