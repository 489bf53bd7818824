//! Test helpers: a Web Push client built from independent parts (the `ece` crate on OpenSSL
//! encrypts, `p256` signs VAPID tokens, `reqwest` sends), so the sink is checked against code
//! it shares nothing with.

#![allow(dead_code, missing_docs)]

pub mod apns;
pub mod fcm;
pub mod mobile;

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{Signature, SigningKey};
use pushservice_model::ObjectId;
use pushservice_push_sink::{Protocol, Sink, SinkConfig, Verify};

/// The key seed the tests' subscribers are derived from.
pub const SEED: &[u8] = b"push-sink-tests";

/// An application server's VAPID key pair.
pub struct Vapid {
    key: SigningKey,
}

impl Vapid {
    /// A fixed key pair (`scalar` must be a valid P-256 scalar; small non-zero values are).
    pub fn new(scalar: u8) -> Self {
        let mut bytes = [0u8; 32];
        bytes[31] = scalar;
        bytes[0] = 0x11;
        Vapid {
            key: SigningKey::from_slice(&bytes).expect("valid P-256 scalar"),
        }
    }

    /// The public key, base64url, as `k=` carries it.
    pub fn public_key(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.key.verifying_key().to_encoded_point(false).as_bytes())
    }

    /// A signed JWT with these claims.
    pub fn token(&self, aud: &str, exp: u64, sub: &str) -> String {
        let header = URL_SAFE_NO_PAD.encode(br#"{"typ":"JWT","alg":"ES256"}"#);
        let claims = serde_json::json!({ "aud": aud, "exp": exp, "sub": sub });
        let claims = URL_SAFE_NO_PAD.encode(claims.to_string());
        let input = format!("{header}.{claims}");
        let signature: Signature = self.key.sign(input.as_bytes());
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.to_bytes()))
    }

    /// `Authorization` value for a token signed by this key, claiming `k` = this key.
    pub fn authorization(&self, aud: &str, exp: u64, sub: &str) -> String {
        format!(
            "vapid t={}, k={}",
            self.token(aud, exp, sub),
            self.public_key()
        )
    }
}

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// `plaintext` encrypted (aes128gcm, by the `ece` crate) for subscriber `id` of key seed
/// `seed`.
pub fn encrypt_for(seed: &[u8], id: &ObjectId, plaintext: &[u8]) -> Vec<u8> {
    let keys = pushservice_seed::subscriber_keys(seed, id);
    ece::encrypt(&keys.public_key, &keys.auth, plaintext).expect("ece encrypts")
}

/// A sink on a free loopback port.
pub async fn start(protocol: Protocol, verify: bool) -> Sink {
    start_with(SinkConfig {
        protocol,
        verify: verify.then(|| Verify {
            key_seed: SEED.to_vec(),
            expected_subject: None,
            apns_keys: Vec::new(),
            fcm_accounts: Vec::new(),
        }),
        ..SinkConfig::default()
    })
    .await
}

pub async fn start_with(config: SinkConfig) -> Sink {
    Sink::start(config).await.expect("sink starts")
}

/// How a test client talks to the sink.
#[derive(Debug, Clone, Copy)]
pub enum Client {
    /// HTTP/1.1 only.
    Http1,
    /// Cleartext HTTP/2 with prior knowledge.
    H2c,
    /// TLS trusting the sink's certificate, HTTP/2 by ALPN.
    Tls,
}

pub fn client(sink: &Sink, kind: Client) -> reqwest::Client {
    let builder = reqwest::Client::builder().no_proxy();
    let builder = match kind {
        Client::Http1 => builder.http1_only(),
        Client::H2c => builder.http2_prior_knowledge(),
        Client::Tls => {
            let pem = sink.cert_pem().expect("TLS sink has a certificate");
            let cert = reqwest::Certificate::from_pem(pem).expect("PEM certificate");
            builder.tls_certs_only([cert])
        }
    };
    builder.build().expect("client builds")
}

/// `{base_url}/wp/{id}`, as seeded subscriptions look.
pub fn endpoint(sink: &Sink, id: &ObjectId) -> String {
    format!("{}/wp/{}", sink.base_url(), id.to_hex())
}

/// A Web Push request with the usual headers; `authorization` as given (if any).
pub fn push_request(
    client: &reqwest::Client,
    url: &str,
    authorization: Option<&str>,
    body: Vec<u8>,
) -> reqwest::RequestBuilder {
    let request = client
        .post(url)
        .header("content-encoding", "aes128gcm")
        .header("ttl", "3600")
        .header("urgency", "high")
        .header("topic", "news")
        .body(body);
    match authorization {
        Some(authorization) => request.header("authorization", authorization),
        None => request,
    }
}
