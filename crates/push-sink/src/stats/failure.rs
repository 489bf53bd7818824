//! Why a request failed verification: one reason per distinct mistake a sender can make, each
//! with its own counter (its label in [`crate::Stats::verify_failed`]) and the status a strict
//! service answers.
//!
//! The reasons are a closed enum so that `Counters` can keep them in a fixed array, and so that
//! a test asserting "this request failed for that reason" cannot be fooled by a message text.

/// Why a push (or token) request failed verification; each reason has its own counter and
/// status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyFailure {
    /// `Content-Encoding` is missing or not `aes128gcm` (400).
    ContentEncoding,
    /// `TTL` is missing or not a non-negative integer (400).
    Ttl,
    /// `Urgency` is not `very-low`, `low`, `normal` or `high` (400).
    Urgency,
    /// `Topic` is longer than 32 characters or not base64url (400).
    Topic,
    /// The body could not be decrypted with the subscriber's keys (400).
    Encryption,
    /// No `Authorization` header (401).
    MissingAuthorization,
    /// `Authorization` is not `vapid t=<jwt>, k=<key>` with a valid P-256 key (401).
    Authorization,
    /// The JWT is not three base64url parts of ES256 JSON (401).
    JwtMalformed,
    /// The ES256 signature does not verify with `k` (401).
    JwtSignature,
    /// `aud` is not the origin the request was sent to (401).
    JwtAudience,
    /// `exp` is in the past or more than 24 hours ahead (401).
    JwtExpiry,
    /// `sub` is missing or not a `mailto:` or `https:` URI (401).
    JwtSubject,
    /// `sub` is valid but not the subject the sink expects (403).
    SubjectMismatch,
    /// APNs: the device token in the path is not hex digits (400 `BadDeviceToken`).
    ApnsDeviceToken,
    /// APNs: the provider token (JWT) is missing, malformed, signed by an unknown key or for
    /// another team, or issued in the future (403 `MissingProviderToken` /
    /// `InvalidProviderToken`).
    ApnsProviderToken,
    /// APNs: the provider token was issued more than an hour ago (403
    /// `ExpiredProviderToken`).
    ApnsTokenExpired,
    /// APNs: an `apns-*` header is missing or invalid (400 `MissingTopic`, `BadPriority`, ...).
    ApnsHeaders,
    /// APNs: the body is empty, not JSON, or has no `aps` object (400 `PayloadEmpty`,
    /// `BadRequest`).
    ApnsPayload,
    /// FCM: the bearer is not an unexpired access token this sink issued (401
    /// `UNAUTHENTICATED`).
    FcmAuth,
    /// FCM: the access token belongs to another project than the URL's (403
    /// `SENDER_ID_MISMATCH`).
    FcmSenderMismatch,
    /// FCM: the message is not valid HTTP v1 JSON (400 `INVALID_ARGUMENT`).
    FcmMessage,
    /// OAuth: the token request is not a form post (400 `invalid_request`).
    OauthRequest,
    /// OAuth: the JWT assertion does not hold up (400 `invalid_grant`).
    OauthAssertion,
}

impl VerifyFailure {
    /// Every reason, in counter order.
    pub const ALL: [VerifyFailure; 23] = [
        VerifyFailure::ContentEncoding,
        VerifyFailure::Ttl,
        VerifyFailure::Urgency,
        VerifyFailure::Topic,
        VerifyFailure::Encryption,
        VerifyFailure::MissingAuthorization,
        VerifyFailure::Authorization,
        VerifyFailure::JwtMalformed,
        VerifyFailure::JwtSignature,
        VerifyFailure::JwtAudience,
        VerifyFailure::JwtExpiry,
        VerifyFailure::JwtSubject,
        VerifyFailure::SubjectMismatch,
        VerifyFailure::ApnsDeviceToken,
        VerifyFailure::ApnsProviderToken,
        VerifyFailure::ApnsTokenExpired,
        VerifyFailure::ApnsHeaders,
        VerifyFailure::ApnsPayload,
        VerifyFailure::FcmAuth,
        VerifyFailure::FcmSenderMismatch,
        VerifyFailure::FcmMessage,
        VerifyFailure::OauthRequest,
        VerifyFailure::OauthAssertion,
    ];

    /// The key in [`crate::Stats::verify_failed`].
    pub fn label(self) -> &'static str {
        match self {
            VerifyFailure::ContentEncoding => "content_encoding",
            VerifyFailure::Ttl => "ttl",
            VerifyFailure::Urgency => "urgency",
            VerifyFailure::Topic => "topic",
            VerifyFailure::Encryption => "encryption",
            VerifyFailure::MissingAuthorization => "missing_authorization",
            VerifyFailure::Authorization => "authorization",
            VerifyFailure::JwtMalformed => "jwt_malformed",
            VerifyFailure::JwtSignature => "jwt_signature",
            VerifyFailure::JwtAudience => "jwt_audience",
            VerifyFailure::JwtExpiry => "jwt_expiry",
            VerifyFailure::JwtSubject => "jwt_subject",
            VerifyFailure::SubjectMismatch => "subject_mismatch",
            VerifyFailure::ApnsDeviceToken => "apns_device_token",
            VerifyFailure::ApnsProviderToken => "apns_provider_token",
            VerifyFailure::ApnsTokenExpired => "apns_token_expired",
            VerifyFailure::ApnsHeaders => "apns_headers",
            VerifyFailure::ApnsPayload => "apns_payload",
            VerifyFailure::FcmAuth => "fcm_auth",
            VerifyFailure::FcmSenderMismatch => "fcm_sender_mismatch",
            VerifyFailure::FcmMessage => "fcm_message",
            VerifyFailure::OauthRequest => "oauth_request",
            VerifyFailure::OauthAssertion => "oauth_assertion",
        }
    }

    /// The status a strict service answers: 400 for the message, 401 for missing or invalid
    /// VAPID (RFC 8292 §4.2) or FCM credentials, 403 for a valid token from an unexpected
    /// sender and for every APNs provider-token problem (as Apple answers).
    pub fn status(self) -> u16 {
        match self {
            VerifyFailure::ContentEncoding
            | VerifyFailure::Ttl
            | VerifyFailure::Urgency
            | VerifyFailure::Topic
            | VerifyFailure::Encryption
            | VerifyFailure::ApnsDeviceToken
            | VerifyFailure::ApnsHeaders
            | VerifyFailure::ApnsPayload
            | VerifyFailure::FcmMessage
            | VerifyFailure::OauthRequest
            | VerifyFailure::OauthAssertion => 400,
            VerifyFailure::SubjectMismatch
            | VerifyFailure::ApnsProviderToken
            | VerifyFailure::ApnsTokenExpired
            | VerifyFailure::FcmSenderMismatch => 403,
            VerifyFailure::MissingAuthorization
            | VerifyFailure::Authorization
            | VerifyFailure::JwtMalformed
            | VerifyFailure::JwtSignature
            | VerifyFailure::JwtAudience
            | VerifyFailure::JwtExpiry
            | VerifyFailure::JwtSubject
            | VerifyFailure::FcmAuth => 401,
        }
    }

    pub(crate) fn index(self) -> usize {
        // `ALL` lists every variant once, so the search always succeeds.
        Self::ALL.iter().position(|r| *r == self).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_has_a_distinct_label_and_an_http_error_status() {
        let mut labels: Vec<_> = VerifyFailure::ALL.iter().map(|r| r.label()).collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), VerifyFailure::ALL.len());
        for (i, reason) in VerifyFailure::ALL.into_iter().enumerate() {
            assert!(matches!(reason.status(), 400 | 401 | 403), "{reason:?}");
            assert_eq!(reason.index(), i, "{reason:?}");
        }
    }
}
