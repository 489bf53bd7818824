//! Connection tokens: where they are taken from and how they are checked.

use axum::http::{HeaderMap, header};
use pushservice_model::ObjectId;
use pushservice_realtime::{Claims, Grants, TokenError, unverified_site, verify};

use crate::sites::{SiteCache, SiteInfo};
use std::sync::Arc;

/// The cookie a token may come in.
pub const TOKEN_COOKIE: &str = "pushservice_rt";

/// An authenticated connection's identity.
#[derive(Debug, Clone)]
pub struct Identity {
    /// Site id (hex).
    pub site: String,
    /// The user.
    pub user: String,
    /// What it may join.
    pub grants: Grants,
    /// The site's settings.
    pub info: Arc<SiteInfo>,
    /// Whether the token came in a cookie (then the page's origin must be one of the site's).
    pub from_cookie: bool,
}

/// Why authentication failed, as clients see it.
#[derive(Debug, Clone)]
pub struct AuthError {
    /// Machine-readable reason.
    pub code: &'static str,
    /// What is wrong and what to do.
    pub message: String,
}

impl From<TokenError> for AuthError {
    fn from(e: TokenError) -> Self {
        AuthError {
            code: e.code(),
            message: e.to_string(),
        }
    }
}

/// The token of a request: `Authorization: Bearer`, the cookie, or `?token=`; and whether it
/// came in the cookie.
pub fn request_token(headers: &HeaderMap, query_token: Option<&str>) -> Option<(String, bool)> {
    if let Some(value) = headers.get(header::AUTHORIZATION)
        && let Ok(value) = value.to_str()
        && let Some(token) = value.strip_prefix("Bearer ")
    {
        return Some((token.trim().to_owned(), false));
    }
    for value in headers.get_all(header::COOKIE) {
        let Ok(value) = value.to_str() else { continue };
        for pair in value.split(';') {
            if let Some((name, token)) = pair.trim().split_once('=')
                && name == TOKEN_COOKIE
                && !token.is_empty()
            {
                return Some((token.to_owned(), true));
            }
        }
    }
    query_token
        .filter(|t| !t.is_empty())
        .map(|t| (t.to_owned(), false))
}

/// Verifies a token against its site's secrets.
pub async fn authenticate(
    sites: &SiteCache,
    token: &str,
    from_cookie: bool,
) -> Result<Identity, AuthError> {
    let site = unverified_site(token)?;
    let site_id = ObjectId::parse_str(&site).map_err(|_| TokenError::UnknownSite)?;
    let info = sites
        .get(site_id)
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "loading site settings for a token");
            AuthError {
                code: "unavailable",
                message: "the gateway cannot check tokens right now; retry shortly".into(),
            }
        })?
        .ok_or(TokenError::UnknownSite)?;
    let claims: Claims = verify(token, &info.realtime.secrets)?;
    if claims.site != site {
        return Err(TokenError::Malformed("site claim changed".into()).into());
    }
    let grants = claims.grants().map_err(|e| AuthError {
        code: "malformed",
        message: format!("the token's grants are not valid: {e}"),
    })?;
    Ok(Identity {
        site,
        user: claims.sub,
        grants,
        info,
        from_cookie,
    })
}

/// Whether a page at `origin` may use the site's channels. Without an `Origin` header
/// (not a browser) it may; a browser page must be one of the site's `allowedOrigins`, except
/// that a site with none allows any page that holds a token (not a cookie: a cookie is sent
/// by the browser on any page's behalf).
pub fn origin_allowed(identity: &Identity, origin: Option<&str>) -> bool {
    let Some(origin) = origin else { return true };
    if identity.info.allowed_origins.is_empty() {
        return !identity.from_cookie;
    }
    identity
        .info
        .allowed_origins
        .iter()
        .any(|allowed| allowed == origin)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn token_sources_in_order() {
        let mut headers = HeaderMap::new();
        assert_eq!(
            request_token(&headers, Some("q")),
            Some(("q".into(), false))
        );
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; pushservice_rt=c"),
        );
        assert_eq!(request_token(&headers, Some("q")), Some(("c".into(), true)));
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer h"));
        assert_eq!(
            request_token(&headers, Some("q")),
            Some(("h".into(), false))
        );
        assert_eq!(request_token(&HeaderMap::new(), Some("")), None);
    }
}
