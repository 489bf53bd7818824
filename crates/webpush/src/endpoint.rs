//! Push service endpoints: their origin, and the `Topic` header's rules.
//!
//! The origin (`scheme://host[:port]`) is the VAPID `aud`, the key of the per-origin
//! concurrency limit and of the VAPID cache, and the only part of an endpoint we log: the full
//! URL is a capability (anyone holding it can push to the subscriber), so it stays out of logs
//! and reasons.
//!
//! Origins come from the WHATWG URL parser (`url`), serialized as browsers do: scheme and host
//! lowercased, a default port dropped, an internationalized host in its ASCII form. So
//! `HTTPS://Host:443/a` and `https://host/b` are one origin, one cache entry and one
//! concurrency bound. Whether an endpoint may be reached at all is
//! [`pushservice_provider::EndpointPolicy`]'s decision, made before this one.

/// Why an endpoint is unusable. Retrying never helps.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    /// Not a URL.
    #[error("push endpoint is not a valid URL")]
    Invalid,
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
/// `"https://fcm.googleapis.com"`. Only `https` and `http` are accepted.
pub fn origin(endpoint: &str) -> Result<String, EndpointError> {
    let url = url::Url::parse(endpoint).map_err(|e| match e {
        url::ParseError::EmptyHost => EndpointError::MissingHost,
        _ => EndpointError::Invalid,
    })?;
    origin_of(&url)
}

/// The origin of an already parsed endpoint (see [`origin`]).
pub fn origin_of(url: &url::Url) -> Result<String, EndpointError> {
    if !matches!(url.scheme(), "https" | "http") {
        return Err(EndpointError::UnsupportedScheme);
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(EndpointError::UserInfo);
    }
    if url.host().is_none() {
        return Err(EndpointError::MissingHost);
    }
    Ok(url.origin().ascii_serialization())
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
            ("HTTPS://Push.Example/x", "https://push.example"),
            ("https://[::1]:8443/x", "https://[::1]:8443"),
            ("https://[::1]/x", "https://[::1]"),
            ("https://push.example?x", "https://push.example"),
            ("https://bücher.example/x", "https://xn--bcher-kva.example"),
        ] {
            assert_eq!(origin(endpoint).as_deref(), Ok(expected), "{endpoint}");
        }
    }

    #[test]
    fn one_origin_however_it_is_spelled() {
        let a = origin("HTTPS://Host:443/a").expect("origin");
        let b = origin("https://host/b").expect("origin");
        assert_eq!(a, b);
        assert_eq!(a, "https://host");
    }

    #[test]
    fn rejects() {
        for (endpoint, expected) in [
            ("ftp://push.example/x", EndpointError::UnsupportedScheme),
            ("wss://push.example/x", EndpointError::UnsupportedScheme),
            ("push.example/x", EndpointError::Invalid),
            ("", EndpointError::Invalid),
            ("https://:443/x", EndpointError::MissingHost),
            ("https://[::1/x", EndpointError::Invalid),
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
