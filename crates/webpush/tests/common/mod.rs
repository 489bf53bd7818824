//! An in-process push service for the client tests, and independent checkers.
//!
//! The server is hyper 1.x on 127.0.0.1:0: over TLS with its own CA (rcgen) and ALPN offering
//! h2 and http/1.1, or cleartext HTTP/1.1 or h2c. It records every request (HTTP version,
//! headers, body) for the test to assert on, counts TCP connections and concurrent requests,
//! and answers by the last path segment, like a push service would for different
//! subscriptions. Checks live in the tests rather than the server so a failed assertion fails
//! the test instead of a background task.
//!
//! Decryption uses the `ece` crate (OpenSSL) and JWT verification RustCrypto's `p256`, so no
//! code of the crate under test checks itself.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{HeaderMap, Request, Response, Version};
use hyper_util::rt::{TokioExecutor, TokioIo};
use p256::ecdsa::signature::Verifier;
use tokio::net::TcpListener;
use tokio_rustls::rustls;

/// How a test server speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// TLS, ALPN h2 or http/1.1 (push services in production).
    Tls,
    /// Cleartext HTTP/1.1 only.
    Http1,
    /// Cleartext HTTP/2 with prior knowledge (h2c simulators).
    H2c,
}

/// One request as the push service saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub path: String,
    pub version: Version,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

#[derive(Debug, Default)]
pub struct Stats {
    pub requests: Mutex<Vec<Recorded>>,
    pub connections: AtomicUsize,
    pub in_flight: AtomicUsize,
    pub max_in_flight: AtomicUsize,
}

/// A running test push service; stops when dropped.
pub struct PushServer {
    pub addr: SocketAddr,
    /// PEM of the CA that signed the server's "localhost" certificate (TLS only).
    pub ca_pem: Option<String>,
    pub stats: Arc<Stats>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for PushServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl PushServer {
    pub async fn start(protocol: Protocol) -> PushServer {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let stats = Arc::new(Stats::default());
        let (acceptor, ca_pem) = match protocol {
            Protocol::Tls => {
                let (config, ca_pem) = tls_config();
                (
                    Some(tokio_rustls::TlsAcceptor::from(Arc::new(config))),
                    Some(ca_pem),
                )
            }
            Protocol::Http1 | Protocol::H2c => (None, None),
        };
        let task_stats = Arc::clone(&stats);
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                task_stats.connections.fetch_add(1, Ordering::SeqCst);
                let stats = Arc::clone(&task_stats);
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        handle(Arc::clone(&stats), request)
                    });
                    // Connection errors (a client timing out, a reset) end the connection only.
                    let _ = match (protocol, acceptor) {
                        (Protocol::Tls, Some(acceptor)) => {
                            let Ok(tls) = acceptor.accept(tcp).await else {
                                return;
                            };
                            let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2".as_slice());
                            let io = TokioIo::new(tls);
                            if h2 {
                                http2().serve_connection(io, service).await
                            } else {
                                http1().serve_connection(io, service).await
                            }
                        }
                        (Protocol::H2c, _) => {
                            http2().serve_connection(TokioIo::new(tcp), service).await
                        }
                        _ => http1().serve_connection(TokioIo::new(tcp), service).await,
                    };
                });
            }
        });
        PushServer {
            addr,
            ca_pem,
            stats,
            task,
        }
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.stats.requests.lock().expect("requests lock").clone()
    }
}

fn http1() -> hyper::server::conn::http1::Builder {
    hyper::server::conn::http1::Builder::new()
}

fn http2() -> hyper::server::conn::http2::Builder<TokioExecutor> {
    hyper::server::conn::http2::Builder::new(TokioExecutor::new())
}

/// Answers by the last path segment: `gone` 410, `busy` 429 + `Retry-After: 7`, `error` 500,
/// `big` 413, `slow` after 5 s, `hold` after 200 ms, anything else 201 at once.
async fn handle(
    stats: Arc<Stats>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let now = stats.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    stats.max_in_flight.fetch_max(now, Ordering::SeqCst);
    let (parts, body) = request.into_parts();
    let body = body.collect().await?.to_bytes().to_vec();
    let path = parts.uri.path().to_owned();
    let last = path.rsplit('/').next().unwrap_or_default().to_owned();
    stats
        .requests
        .lock()
        .expect("requests lock")
        .push(Recorded {
            path,
            version: parts.version,
            headers: parts.headers,
            body,
        });
    let respond = |status: u16, body: &'static str| {
        Response::builder()
            .status(status)
            .body(Full::new(Bytes::from_static(body.as_bytes())))
    };
    let response = match last.as_str() {
        "gone" => respond(410, "push subscription has unsubscribed or expired.\n"),
        "busy" => {
            let mut response = respond(429, "too many requests");
            if let Ok(r) = &mut response {
                r.headers_mut().insert("retry-after", 7.into());
            }
            response
        }
        "error" => respond(500, "internal error"),
        "big" => respond(413, "payload too large"),
        "slow" => {
            tokio::time::sleep(Duration::from_secs(5)).await;
            respond(201, "")
        }
        "hold" => {
            // Long enough that the permitted requests overlap even on a loaded CI machine.
            tokio::time::sleep(Duration::from_millis(200)).await;
            respond(201, "")
        }
        _ => respond(201, ""),
    };
    stats.in_flight.fetch_sub(1, Ordering::SeqCst);
    Ok(response.expect("static response parts are valid"))
}

/// A CA, and a rustls server config with a "localhost" certificate it signed.
fn tls_config() -> (rustls::ServerConfig, String) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "pushservice test CA");
    let ca_cert = ca_params.self_signed(&ca_key).expect("CA certificate");
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf_key = KeyPair::generate().expect("leaf key");
    let leaf_params = CertificateParams::new(vec!["localhost".to_owned()]).expect("leaf params");
    let leaf = leaf_params
        .signed_by(&leaf_key, &issuer)
        .expect("leaf certificate");

    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
        )
        .expect("server certificate");
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    (config, ca_cert.pem())
}

/// A browser's subscription keys, generated by the independent `ece` crate.
pub struct Subscriber {
    pub p256dh: [u8; 65],
    pub auth: [u8; 16],
    components: ece::EcKeyComponents,
}

impl Subscriber {
    pub fn new() -> Subscriber {
        let (key_pair, auth) = ece::generate_keypair_and_auth_secret().expect("ece key pair");
        let p256dh = key_pair.pub_as_raw().expect("raw public key");
        Subscriber {
            p256dh: p256dh.try_into().expect("65-byte uncompressed point"),
            auth,
            components: key_pair.raw_components().expect("raw components"),
        }
    }

    /// Decrypts a request body as the browser would.
    pub fn decrypt(&self, body: &[u8]) -> Vec<u8> {
        ece::decrypt(&self.components, &self.auth, body).expect("ece decrypts the body")
    }
}

/// Verifies an `Authorization: vapid t=…, k=…` header with RustCrypto's p256 against the
/// site's public key; returns the JWT claims.
pub fn verify_vapid(header: &str, public_key_b64: &str) -> serde_json::Value {
    let rest = header.strip_prefix("vapid t=").expect("vapid scheme");
    let (jwt, k) = rest.split_once(", k=").expect("k parameter");
    assert_eq!(k, public_key_b64, "k is the site's public key");
    let (signed, signature) = jwt.rsplit_once('.').expect("three JWT parts");
    let (header_b64, claims_b64) = signed.split_once('.').expect("three JWT parts");
    let jwt_header: serde_json::Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(header_b64)
            .expect("base64url header"),
    )
    .expect("JSON header");
    assert_eq!(
        jwt_header,
        serde_json::json!({"typ": "JWT", "alg": "ES256"})
    );
    let public = URL_SAFE_NO_PAD
        .decode(public_key_b64)
        .expect("base64url public key");
    let verifying = p256::ecdsa::VerifyingKey::from_sec1_bytes(&public).expect("P-256 point");
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .expect("base64url signature");
    let signature = p256::ecdsa::Signature::from_slice(&signature).expect("64-byte r||s");
    verifying
        .verify(signed.as_bytes(), &signature)
        .expect("ES256 signature verifies");
    serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(claims_b64)
            .expect("base64url claims"),
    )
    .expect("JSON claims")
}
