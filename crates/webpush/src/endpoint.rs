//! Push service endpoints: their origin, and the `Topic` header's rules.
//!
//! The origin (`scheme://host[:port]`) is the VAPID `aud`, the key of the per-origin
//! concurrency limit, and the only part of an endpoint we log: the full URL is a capability
//! (anyone holding it can push to the subscriber), so it stays out of logs and reasons.
//!
//! [`origin`] borrows from the endpoint instead of parsing a `Url`, since it runs per message.
//! It does not normalize case: browsers hand out lowercase endpoints, and a differently cased
//! duplicate only costs one more cache entry.

/// Why an endpoint is unusable. Retrying never helps.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    /// Not an `https://` (or, for local simulators, `http://`) URL.
    #[error("push endpoint is not an http(s) URL")]
    UnsupportedScheme,
    /// No host after the scheme.
    #[error("push endpoint has no host")]
    MissingHost,
    /// `user:password@` in the authority: no push service issues such endpoints, and the
    /// origin would carry the credentials into logs.
    #[error("push endpoint contains user information")]
    UserInfo,
}

/// The origin of a push endpoint: `"https://fcm.googleapis.com/fcm/send/xyz"` →
/// `"https://fcm.googleapis.com"`. A non-default port is kept; a default one (`:443` on https,
/// `:80` on http) is dropped, as in a browser's origin. Only `https` and `http` are accepted.
pub fn origin(endpoint: &str) -> Result<&str, EndpointError> {
    let (scheme_len, default_port) = if starts_with_ignore_case(endpoint, "https://") {
        ("https://".len(), ":443")
    } else if starts_with_ignore_case(endpoint, "http://") {
        ("http://".len(), ":80")
    } else {
        return Err(EndpointError::UnsupportedScheme);
    };
    let after_scheme = &endpoint[scheme_len..];
    let authority_len = after_scheme
        .find(['/', '?', '#'])
        .unwrap_or(after_scheme.len());
    let authority = &after_scheme[..authority_len];
    if authority.contains('@') {
        return Err(EndpointError::UserInfo);
    }
    let mut end = scheme_len + authority_len;
    // The port is whatever follows the last ':' outside an IPv6 literal's brackets.
    let host_len = match authority.rfind(':') {
        Some(colon) if !authority[colon..].contains(']') => {
            if authority.ends_with(default_port) && colon == authority.len() - default_port.len() {
                end -= default_port.len();
            }
            colon
        }
        _ => authority.len(),
    };
    if host_len == 0 || authority.starts_with('[') && !authority[..host_len].ends_with(']') {
        return Err(EndpointError::MissingHost);
    }
    Ok(&endpoint[..end])
}

fn starts_with_ignore_case(text: &str, prefix: &str) -> bool {
    text.get(..prefix.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
}

/// RFC 8030 §5.4: a `Topic` is at most 32 characters of the base64url alphabet. Push services
/// reject a request with any other topic, so senders drop such topics rather than the message.
pub fn is_valid_topic(topic: &str) -> bool {
    !topic.is_empty()
        && topic.len() <= 32
        && topic
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins() {
        for (endpoint, expected) in [
            (
                "https://fcm.googleapis.com/fcm/send/xyz",
                "https://fcm.googleapis.com",
            ),
            (
                "https://updates.push.services.mozilla.com/wpush/v2/gAAAA",
                "https://updates.push.services.mozilla.com",
            ),
            (
                "https://web.push.apple.com/QGx?x=1",
                "https://web.push.apple.com",
            ),
            ("https://localhost:8443/wp/abc", "https://localhost:8443"),
            ("https://push.example:443/x", "https://push.example"),
            ("http://127.0.0.1:80/x", "http://127.0.0.1"),
            ("http://127.0.0.1:443/x", "http://127.0.0.1:443"),
            ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
            ("HTTPS://Push.Example/x", "HTTPS://Push.Example"),
            ("https://[::1]:8443/x", "https://[::1]:8443"),
            ("https://[::1]/x", "https://[::1]"),
            ("https://push.example?x", "https://push.example"),
        ] {
            assert_eq!(origin(endpoint), Ok(expected), "{endpoint}");
        }
    }

    #[test]
    fn rejects() {
        for (endpoint, expected) in [
            ("ftp://push.example/x", EndpointError::UnsupportedScheme),
            ("push.example/x", EndpointError::UnsupportedScheme),
            ("", EndpointError::UnsupportedScheme),
            ("https:/push.example", EndpointError::UnsupportedScheme),
            ("https:///x", EndpointError::MissingHost),
            ("https://:443/x", EndpointError::MissingHost),
            ("https://[::1/x", EndpointError::MissingHost),
            ("https://user:pw@push.example/x", EndpointError::UserInfo),
        ] {
            assert_eq!(origin(endpoint), Err(expected), "{endpoint}");
        }
    }

    #[test]
    fn topics() {
        assert!(is_valid_topic("sale-2024_summer"));
        assert!(is_valid_topic(&"a".repeat(32)));
        assert!(!is_valid_topic(&"a".repeat(33)));
        assert!(!is_valid_topic(""));
        assert!(!is_valid_topic("has space"));
        assert!(!is_valid_topic("slash/"));
        assert!(!is_valid_topic("plus+"));
        assert!(!is_valid_topic("ünï"));
    }
}
