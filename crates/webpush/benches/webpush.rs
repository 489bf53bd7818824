//! Per-message CPU cost of Web Push: encryption of a typical payload, the VAPID header from a
//! warm cache (what every message pays) and a cold signature (what the cache saves), against
//! the floor no implementation avoids: one P-256 key generation plus one ECDH agreement.
//!
//! Run: `cargo bench -p pushservice-webpush -- --warm-up-time 1 --measurement-time 3`.

use std::hint::black_box;
use std::time::Duration;

use aws_lc_rs::agreement::{self, ECDH_P256, PrivateKey, UnparsedPublicKey};
use criterion::{Criterion, criterion_main};
use pushservice_webpush::{VapidCache, VapidKey, encrypt};

const SUBJECT: &str = "mailto:ops@example.com";
const ORIGIN: &str = "https://fcm.googleapis.com";

/// A subscriber's public key, as a browser would make it.
fn ua_public() -> [u8; 65] {
    let key = PrivateKey::generate(&ECDH_P256).expect("key generation");
    let public = key.compute_public_key().expect("public key");
    public
        .as_ref()
        .try_into()
        .expect("65-byte uncompressed point")
}

fn benches(c: &mut Criterion) {
    let ua_public = ua_public();
    let auth = [7u8; 16];
    // About the size of a notification payload: title, body, icon URL, push id, launch URL.
    let payload = br#"{"pushId":"66f1c0ffee0000000000beef","title":"Summer sale","options":{"body":"Everything 50% off until Sunday - tap to see the deals before they are gone","icon":"https://shop.example/static/icons/notification-192.png","tag":"sale"},"launchUrl":"https://shop.example/sale?utm_source=push","priority":"normal"}"#;
    assert!(
        (250..=350).contains(&payload.len()),
        "payload is {} bytes",
        payload.len()
    );

    c.bench_function("encrypt 300 B (keygen + ECDH + HKDF + AES-GCM)", |b| {
        b.iter(|| encrypt(black_box(&ua_public), &auth, black_box(payload)).expect("encrypts"))
    });

    let key = VapidKey::generate().expect("VAPID key");
    let cache = VapidCache::new(Duration::from_secs(12 * 3600));
    cache
        .authorization("site", &key, SUBJECT, ORIGIN)
        .expect("warm up");
    c.bench_function("vapid authorization, warm cache", |b| {
        b.iter(|| {
            cache
                .authorization(black_box("site"), &key, SUBJECT, ORIGIN)
                .expect("cached")
        })
    });
    c.bench_function("vapid authorization, cold (one ES256 signature)", |b| {
        b.iter(|| {
            let cache = VapidCache::new(Duration::from_secs(12 * 3600));
            cache
                .authorization("site", &key, SUBJECT, ORIGIN)
                .expect("signs")
        })
    });

    c.bench_function("floor: P-256 keygen + ECDH (aws-lc-rs)", |b| {
        b.iter(|| {
            let ephemeral = PrivateKey::generate(&ECDH_P256).expect("key generation");
            let public = ephemeral.compute_public_key().expect("public key");
            let peer = UnparsedPublicKey::new(&ECDH_P256, black_box(ua_public.as_slice()));
            let first = agreement::agree(&ephemeral, peer, (), |secret| Ok(secret[0]));
            (public, first)
        })
    });
}

/// Private, so the undocumented `pub fn` that `criterion_group!` generates is not exported.
mod group {
    criterion::criterion_group!(webpush, super::benches);
}
criterion_main!(group::webpush);
