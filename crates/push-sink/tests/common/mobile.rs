//! Test helpers for the mobile kinds: an APNs developer key and a Google service account,
//! generated with aws-lc-rs and handed to the sink the way real ones are (a `.p8` PEM and a
//! service-account JSON file), plus the JWTs a sender signs with them.

use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize};
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, RSA_PKCS1_SHA256};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use pushservice_push_sink::{ApnsKey, FcmAccount, Protocol, Sink, SinkConfig, Verify};
use serde_json::Value;

pub const FCM_SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// PKCS#8 DER as a `PRIVATE KEY` PEM block.
pub fn pem(der: &[u8]) -> String {
    pushservice_provider::pem_from_pkcs8(der)
}

fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A developer's APNs signing key (what the `.p8` file holds) and its ids.
pub struct ApnsSigner {
    pub team_id: String,
    pub key_id: String,
    pkcs8: Vec<u8>,
    pair: EcdsaKeyPair,
}

impl ApnsSigner {
    pub fn generate(team_id: &str, key_id: &str) -> Self {
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .expect("generates");
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref())
            .expect("parses");
        ApnsSigner {
            team_id: team_id.to_owned(),
            key_id: key_id.to_owned(),
            pkcs8: pkcs8.as_ref().to_vec(),
            pair,
        }
    }

    /// What the sink trusts, loaded from the `.p8` PEM as the binary does.
    pub fn trusted(&self) -> ApnsKey {
        ApnsKey::from_p8(&self.team_id, &self.key_id, &pem(&self.pkcs8)).expect("valid .p8")
    }

    /// A provider token with header `kid` and claims `iss`, `iat`.
    pub fn token_with(&self, kid: &str, iss: &str, iat: u64) -> String {
        let header = b64(serde_json::json!({ "alg": "ES256", "kid": kid }).to_string());
        let claims = b64(serde_json::json!({ "iss": iss, "iat": iat }).to_string());
        let input = format!("{header}.{claims}");
        let signature = self
            .pair
            .sign(&SystemRandom::new(), input.as_bytes())
            .expect("signs");
        format!("{input}.{}", b64(signature.as_ref()))
    }

    /// `bearer <token>` for this key and team, issued at `iat`.
    pub fn authorization(&self, iat: u64) -> String {
        format!(
            "bearer {}",
            self.token_with(&self.key_id, &self.team_id, iat)
        )
    }
}

/// A Google service account: its RSA key and identity.
pub struct ServiceAccount {
    pub client_email: String,
    pub project_id: String,
    pair: RsaKeyPair,
}

impl ServiceAccount {
    pub fn generate(project_id: &str) -> Self {
        ServiceAccount {
            client_email: format!("sender@{project_id}.iam.gserviceaccount.com"),
            project_id: project_id.to_owned(),
            pair: RsaKeyPair::generate(KeySize::Rsa2048).expect("generates"),
        }
    }

    /// The service-account JSON file a sender is configured with.
    pub fn json(&self, token_uri: &str) -> String {
        let pkcs8 = self.pair.as_der().expect("PKCS#8");
        serde_json::json!({
            "type": "service_account",
            "project_id": self.project_id,
            "private_key_id": "0123456789abcdef",
            "private_key": pem(pkcs8.as_ref()),
            "client_email": self.client_email,
            "client_id": "100000000000000000001",
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": token_uri,
        })
        .to_string()
    }

    /// What the sink trusts, loaded from the JSON file as the binary does.
    pub fn trusted(&self) -> FcmAccount {
        FcmAccount::from_service_account_json(&self.json("unused")).expect("valid JSON")
    }

    /// The claims a correct sender puts in its assertion for `token_uri` at `now`.
    pub fn claims(&self, token_uri: &str, now: u64) -> Value {
        serde_json::json!({
            "iss": self.client_email,
            "scope": FCM_SCOPE,
            "aud": token_uri,
            "iat": now,
            "exp": now + 3600,
        })
    }

    /// An RS256 assertion with these claims.
    pub fn assertion(&self, claims: &Value) -> String {
        let header = b64(
            serde_json::json!({ "alg": "RS256", "typ": "JWT", "kid": "0123456789abcdef" })
                .to_string(),
        );
        let input = format!("{header}.{}", b64(claims.to_string()));
        let mut signature = vec![0u8; self.pair.public_modulus_len()];
        self.pair
            .sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                input.as_bytes(),
                &mut signature,
            )
            .expect("signs");
        format!("{input}.{}", b64(signature))
    }
}

/// The token request form for `assertion`.
pub fn token_form(assertion: &str) -> String {
    format!(
        "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion={assertion}"
    )
}

/// A verifying sink trusting these keys and accounts.
pub async fn start_verifying(
    protocol: Protocol,
    apns_keys: Vec<ApnsKey>,
    fcm_accounts: Vec<FcmAccount>,
) -> Sink {
    super::start_with(SinkConfig {
        protocol,
        verify: Some(Verify {
            key_seed: super::SEED.to_vec(),
            expected_subject: None,
            apns_keys,
            fcm_accounts,
        }),
        ..SinkConfig::default()
    })
    .await
}

/// A random hex device token of 64 digits, as APNs issues.
pub fn apns_token() -> String {
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes).expect("system RNG");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A random FCM-shaped registration token.
pub fn fcm_token() -> String {
    let mut bytes = [0u8; 96];
    aws_lc_rs::rand::fill(&mut bytes).expect("system RNG");
    let text = b64(bytes);
    format!("{}:APA91b{}", &text[..22], &text[22..])
}

/// One request's status, headers of interest and body as JSON (`Null` when empty); `None`
/// when the sink reset instead of answering.
pub struct Answer {
    pub status: u16,
    pub retry_after: Option<String>,
    pub apns_id: Option<String>,
    pub content_type: Option<String>,
    pub json: Value,
}

pub async fn answer(request: reqwest::RequestBuilder) -> Option<Answer> {
    let response = request.send().await.ok()?;
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (retry_after, apns_id, content_type) = (
        header("retry-after"),
        header("apns-id"),
        header("content-type"),
    );
    let status = response.status().as_u16();
    let body = response.bytes().await.ok()?;
    let json = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body).expect("JSON body")
    };
    Some(Answer {
        status,
        retry_after,
        apns_id,
        content_type,
        json,
    })
}

/// A token made by `make` whose planned fate under `behaviour` is `fate`.
pub fn token_with_fate(
    behaviour: &pushservice_push_sink::Behaviour,
    fate: pushservice_push_sink::Fate,
    make: impl Fn() -> String,
) -> String {
    (0..100_000)
        .map(|_| make())
        .find(|token| pushservice_push_sink::planned_fate(behaviour, token) == fate)
        .unwrap_or_else(|| panic!("no token with fate {fate:?} in 100k tries"))
}
