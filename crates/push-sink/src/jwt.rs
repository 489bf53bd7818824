//! Splitting and decoding compact JWTs (RFC 7519) for the APNs provider token and the OAuth
//! assertion: three base64url parts, JSON header and claims, the raw signature; and
//! [`VerifiedTokens`], the cache of verified tokens the VAPID and APNs checks share.
//!
//! Only the shape is checked here; each kind checks the algorithm, verifies the signature
//! over [`Jwt::signing_input`] with its own key type, and judges the claims. (Web Push keeps
//! its own VAPID parser, which reports finer-grained reasons.)

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::alphabet::URL_SAFE;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde::de::DeserializeOwned;

/// base64url, with or without padding (clients differ).
pub(crate) const B64URL: GeneralPurpose = GeneralPurpose::new(
    &URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Verified tokens kept before the cache is emptied and starts over.
const CACHE_CAPACITY: usize = 4096;

/// Tokens whose signature verified, with what the verification found (`V`).
///
/// Senders sign a token once and reuse it for minutes to hours, so the same header arrives
/// thousands of times: the signature is verified once per token, and each kind still runs its
/// time-dependent checks on every request. Past [`CACHE_CAPACITY`] tokens the cache is
/// emptied rather than evicted piecemeal; real senders use a handful.
pub(crate) struct VerifiedTokens<V> {
    verified: Mutex<HashMap<String, Arc<V>>>,
}

impl<V> VerifiedTokens<V> {
    pub(crate) fn new() -> Self {
        VerifiedTokens {
            verified: Mutex::new(HashMap::new()),
        }
    }

    /// What `token` verified to, running `verify` only for a token not seen before.
    pub(crate) fn get_or_verify<E>(
        &self,
        token: &str,
        verify: impl FnOnce() -> Result<V, E>,
    ) -> Result<Arc<V>, E> {
        // A poisoned lock only means a panic elsewhere mid-insert; the map stays usable.
        let cached = self
            .verified
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(token)
            .cloned();
        if let Some(verified) = cached {
            return Ok(verified);
        }
        // Verified outside the lock: a signature check must not stall other requests.
        let verified = Arc::new(verify()?);
        let mut cache = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= CACHE_CAPACITY {
            cache.clear();
        }
        cache.insert(token.to_owned(), Arc::clone(&verified));
        Ok(verified)
    }
}

/// A decoded token whose signature is still to be checked.
#[derive(Debug)]
pub(crate) struct Jwt<'t, H, C> {
    /// `header.claims`, the bytes the signature covers.
    pub(crate) signing_input: &'t str,
    /// The decoded JOSE header.
    pub(crate) header: H,
    /// The decoded claims.
    pub(crate) claims: C,
    /// The raw signature bytes.
    pub(crate) signature: Vec<u8>,
}

/// Decodes `token` into its header `H`, claims `C` and signature; the error says which part
/// is wrong.
pub(crate) fn parse<H, C>(token: &str) -> Result<Jwt<'_, H, C>, &'static str>
where
    H: DeserializeOwned,
    C: DeserializeOwned,
{
    let mut parts = token.split('.');
    let (Some(header), Some(claims), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("the JWT must have three dot-separated parts");
    };
    let header = B64URL
        .decode(header)
        .ok()
        .and_then(|json| serde_json::from_slice(&json).ok())
        .ok_or("the JWT header is not base64url JSON of the expected shape")?;
    let claims = B64URL
        .decode(claims)
        .ok()
        .and_then(|json| serde_json::from_slice(&json).ok())
        .ok_or("the JWT claims are not base64url JSON of the expected shape")?;
    let signature = B64URL
        .decode(signature)
        .map_err(|_| "the JWT signature is not base64url")?;
    // Three parts were found, so there is a last dot; the signing input is all before it.
    let signing_input = token.rsplit_once('.').map_or(token, |(input, _)| input);
    Ok(Jwt {
        signing_input,
        header,
        claims,
        signature,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    struct Header {
        alg: String,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    struct Claims {
        iat: u64,
    }

    #[test]
    fn tokens_split_into_their_parts() {
        let header = B64URL.encode(br#"{"alg":"ES256","kid":"ABC"}"#);
        let claims = B64URL.encode(br#"{"iss":"T","iat":7}"#);
        let token = format!("{header}.{claims}.{}", B64URL.encode([1, 2, 3]));
        let jwt: Jwt<'_, Header, Claims> = parse(&token).expect("valid");
        assert_eq!(jwt.header.alg, "ES256");
        assert_eq!(jwt.claims, Claims { iat: 7 });
        assert_eq!(jwt.signature, vec![1, 2, 3]);
        assert_eq!(jwt.signing_input, format!("{header}.{claims}"));

        let parsed = |t: &str| parse::<Header, Claims>(t).map(|_| ());
        assert!(parsed(&format!("{header}.{claims}")).is_err());
        assert!(parsed(&format!("{header}.{claims}.AA.AA")).is_err());
        assert!(parsed(&format!("{claims}.{claims}.AA")).is_err());
        assert!(parsed(&format!("{header}.{header}.AA")).is_err());
        assert!(parsed(&format!("{header}.{claims}.!!")).is_err());
    }
}
