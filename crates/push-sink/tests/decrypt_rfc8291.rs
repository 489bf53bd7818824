//! The decrypter against RFC 8291 Appendix A, the worked example with every intermediate
//! value: if this passes, our key schedule and record handling are the RFC's.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use pushservice_push_sink::webpush::{DecryptError, decrypt_aes128gcm};

struct Vector {
    ua_private: [u8; 32],
    ua_public: [u8; 65],
    auth: [u8; 16],
    body: Vec<u8>,
    plaintext: String,
}

fn vector() -> Vector {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/rfc8291-appendix-a.json"
    ))
    .expect("vector file");
    let json: serde_json::Value = serde_json::from_str(&text).expect("vector JSON");
    let bytes = |field: &str| {
        URL_SAFE_NO_PAD
            .decode(json[field].as_str().expect("string field"))
            .expect("base64url")
    };
    Vector {
        ua_private: bytes("ua_private").try_into().expect("32 bytes"),
        ua_public: bytes("ua_public").try_into().expect("65 bytes"),
        auth: bytes("auth_secret").try_into().expect("16 bytes"),
        body: bytes("body"),
        plaintext: json["plaintext"].as_str().expect("plaintext").to_owned(),
    }
}

#[test]
fn decrypts_the_rfc_8291_appendix_a_example() {
    let v = vector();
    let plaintext =
        decrypt_aes128gcm(&v.ua_private, &v.ua_public, &v.auth, &v.body).expect("decrypts");
    assert_eq!(
        String::from_utf8(plaintext).expect("UTF-8"),
        "When I grow up, I want to be a watermelon"
    );
    assert_eq!(v.plaintext, "When I grow up, I want to be a watermelon");
}

#[test]
fn any_flipped_ciphertext_bit_fails_authentication() {
    let v = vector();
    let header_len = 16 + 4 + 1 + 65;
    for index in [
        header_len,
        v.body.len() / 2 + header_len / 2,
        v.body.len() - 1,
    ] {
        let mut body = v.body.clone();
        body[index] ^= 0x01;
        assert_eq!(
            decrypt_aes128gcm(&v.ua_private, &v.ua_public, &v.auth, &body),
            Err(DecryptError::Authentication(0)),
            "byte {index} flipped"
        );
    }
}

#[test]
fn a_wrong_auth_secret_or_salt_fails_authentication() {
    let v = vector();
    let mut auth = v.auth;
    auth[0] ^= 1;
    assert_eq!(
        decrypt_aes128gcm(&v.ua_private, &v.ua_public, &auth, &v.body),
        Err(DecryptError::Authentication(0))
    );
    let mut body = v.body.clone();
    body[0] ^= 1;
    assert_eq!(
        decrypt_aes128gcm(&v.ua_private, &v.ua_public, &v.auth, &body),
        Err(DecryptError::Authentication(0))
    );
}

#[test]
fn decrypts_what_the_ece_crate_encrypts_including_long_payloads() {
    // ece (OpenSSL) is an independent encrypter; 3993 bytes is the largest single-record
    // payload Web Push allows with ece's padding.
    let id = pushservice_model::ObjectId::new();
    let keys = pushservice_seed::subscriber_keys(b"seed", &id);
    for len in [1usize, 41, 1000, 3993] {
        let plaintext: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let body = ece::encrypt(&keys.public_key, &keys.auth, &plaintext).expect("ece encrypts");
        let decrypted = decrypt_aes128gcm(&keys.private_key, &keys.public_key, &keys.auth, &body)
            .unwrap_or_else(|e| panic!("{len} bytes: {e}"));
        assert_eq!(decrypted, plaintext, "{len} bytes");
    }
}
