//! Connection tokens: JWTs signed with HS256 by a site's realtime secret.
//!
//! The HMAC key is the UTF-8 text of the secret as `pushapi` shows it, so a site's backend can
//! mint tokens with any JWT library. The site is named by the `site` claim; the gateway reads
//! it before verifying only to pick the key.

use aws_lc_rs::rand::{SecureRandom as _, SystemRandom};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::channel::{ChannelError, Grants};

/// A token's claims.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    /// Site id (24 hex digits).
    pub site: String,
    /// The user.
    pub sub: String,
    /// Channel names and `prefix*` patterns the user may join besides `user:<sub>`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub channels: Vec<String>,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
    /// Issue time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    /// Not valid before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
}

impl Claims {
    /// What the token lets its holder join.
    pub fn grants(&self) -> Result<Grants, ChannelError> {
        Grants::new(&self.sub, &self.channels)
    }
}

/// Why a token was refused; [`TokenError::code`] is the reason clients see.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a JWT, or its claims are missing or of the wrong type.
    #[error("the token is not a valid connection token: {0}")]
    Malformed(String),
    /// `exp` has passed.
    #[error("the token has expired; get a new one")]
    Expired,
    /// `nbf` is still ahead.
    #[error("the token is not valid yet (nbf)")]
    NotYetValid,
    /// Signed with no secret the site has.
    #[error("the token's signature does not match the site's realtime secret")]
    BadSignature,
    /// The site does not exist or has no realtime secret.
    #[error("the token names a site that does not exist or has no realtime secret")]
    UnknownSite,
}

impl TokenError {
    /// The machine-readable reason.
    pub fn code(&self) -> &'static str {
        match self {
            TokenError::Malformed(_) => "malformed",
            TokenError::Expired => "expired",
            TokenError::NotYetValid => "not_yet_valid",
            TokenError::BadSignature => "bad_signature",
            TokenError::UnknownSite => "unknown_site",
        }
    }
}

/// A fresh secret: 32 random bytes, base64url.
pub fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    SystemRandom::new()
        .fill(&mut bytes)
        .expect("the system's random source works");
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Signs `claims` with `secret`.
pub fn mint(secret: &str, claims: &Claims) -> String {
    let key = EncodingKey::from_secret(secret.as_bytes()).expect("any byte string is an HMAC key");
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &key)
        .expect("HS256 signing of serializable claims cannot fail")
}

/// The `site` claim, read without verifying (to choose the key to verify with).
pub fn unverified_site(token: &str) -> Result<String, TokenError> {
    #[derive(Deserialize)]
    struct SiteOnly {
        site: String,
    }
    let malformed = |why: &str| TokenError::Malformed(why.to_owned());
    let mut parts = token.split('.');
    let (Some(_), Some(payload), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed("a JWT has three dot-separated parts"));
    };
    let json = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| malformed("its payload is not base64url"))?;
    let claims: SiteOnly =
        serde_json::from_slice(&json).map_err(|_| malformed("it has no \"site\" claim"))?;
    Ok(claims.site)
}

/// Verifies `token` against a site's `secrets` (newest first) and returns its claims.
pub fn verify(token: &str, secrets: &[String]) -> Result<Claims, TokenError> {
    if secrets.is_empty() {
        return Err(TokenError::UnknownSite);
    }
    let mut validation = Validation::new(Algorithm::HS256);
    validation.leeway = 5;
    validation.validate_nbf = true;
    validation.set_required_spec_claims(&["exp", "sub"]);
    let mut last = TokenError::BadSignature;
    for secret in secrets {
        let Ok(key) = DecodingKey::from_secret(secret.as_bytes()) else {
            continue;
        };
        match jsonwebtoken::decode::<Claims>(token, &key, &validation) {
            Ok(data) => return Ok(data.claims),
            Err(e) => {
                last = match e.kind() {
                    ErrorKind::InvalidSignature => TokenError::BadSignature,
                    ErrorKind::ExpiredSignature => return Err(TokenError::Expired),
                    ErrorKind::ImmatureSignature => return Err(TokenError::NotYetValid),
                    other => return Err(TokenError::Malformed(format!("{other:?}"))),
                }
            }
        }
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }

    fn claims(exp: u64) -> Claims {
        Claims {
            site: "665f1c2e9b1e8a3d4c5b6a79".into(),
            sub: "u1".into(),
            channels: vec!["room:*".into()],
            exp,
            iat: None,
            nbf: None,
        }
    }

    #[test]
    fn verifies_with_current_or_previous_secret() {
        let (old, new) = (new_secret(), new_secret());
        assert_eq!(old.len(), 43);
        let token = mint(&old, &claims(now() + 60));
        assert_eq!(
            unverified_site(&token).expect("site"),
            "665f1c2e9b1e8a3d4c5b6a79"
        );
        let verified = verify(&token, &[new.clone(), old.clone()]).expect("valid");
        assert_eq!((verified.sub.as_str(), verified.channels.len()), ("u1", 1));
        assert_eq!(verify(&token, &[new]), Err(TokenError::BadSignature));
        assert_eq!(verify(&token, &[]), Err(TokenError::UnknownSite));
    }

    #[test]
    fn refuses_expired_and_malformed() {
        let secret = new_secret();
        let expired = mint(&secret, &claims(now() - 3600));
        assert_eq!(
            verify(&expired, std::slice::from_ref(&secret)),
            Err(TokenError::Expired)
        );
        assert_eq!(
            verify("not.a.jwt", std::slice::from_ref(&secret)).map_err(|e| e.code()),
            Err("malformed")
        );
        assert!(unverified_site("abc").is_err());
        let mut future = claims(now() + 7200);
        future.nbf = Some(now() + 3600);
        assert_eq!(
            verify(&mint(&secret, &future), &[secret]),
            Err(TokenError::NotYetValid)
        );
    }
}
