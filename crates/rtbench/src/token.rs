//! Connection tokens, minted here the way a site's backend would: an HS256 JWT signed with
//! the site's realtime secret (its UTF-8 text is the HMAC key), with the claims of
//! docs/realtime.md. The claims and signing are `pushservice-realtime`'s, the code the
//! gateway verifies with, so the two cannot drift apart.
//!
//! Minting is one HMAC (a few µs), so each connection task mints its own token as it starts.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pushservice_realtime::token::{Claims, mint};

/// Signs tokens for one site.
pub struct Minter {
    site: String,
    secret: String,
    ttl: Duration,
}

impl Minter {
    /// A minter for `site` with the realtime secret `secret`, tokens valid for `ttl`.
    pub fn new(site: &str, secret: &str, ttl: Duration) -> Self {
        Minter {
            site: site.to_owned(),
            secret: secret.to_owned(),
            ttl,
        }
    }

    /// The claims of a token for `user` allowed into `channels`, issued now.
    pub fn claims(&self, user: &str, channels: &[String]) -> Claims {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        Claims {
            site: self.site.clone(),
            sub: user.to_owned(),
            channels: channels.to_vec(),
            exp: now + self.ttl.as_secs(),
            iat: Some(now),
            nbf: None,
        }
    }

    /// A signed token for `user` allowed into `channels`.
    pub fn mint(&self, user: &str, channels: &[String]) -> String {
        mint(&self.secret, &self.claims(user, channels))
    }
}

#[cfg(test)]
mod tests {
    use pushservice_realtime::token::{TokenError, verify};

    use super::*;

    const SITE: &str = "665f1c2e9b1e8a3d4c5b6a79";

    #[test]
    fn the_gateway_s_verifier_accepts_the_token_and_reads_the_claims() {
        let minter = Minter::new(SITE, "s3cret", Duration::from_secs(600));
        let token = minter.mint("u-7", &["bench:ab-0".to_owned()]);
        let claims = verify(&token, &["s3cret".to_owned()]).expect("verifies");
        assert_eq!(claims.site, SITE);
        assert_eq!(claims.sub, "u-7");
        assert_eq!(claims.channels, vec!["bench:ab-0".to_owned()]);
        let iat = claims.iat.expect("iat is set");
        assert_eq!(claims.exp, iat + 600);
    }

    #[test]
    fn another_secret_does_not_verify() {
        let token = Minter::new(SITE, "s3cret", Duration::from_secs(600)).mint("u-7", &[]);
        assert_eq!(
            verify(&token, &["other".to_owned()]),
            Err(TokenError::BadSignature)
        );
    }
}
