//! A site: the owner of subscribers and of the VAPID key pair its pushes are signed with.

use bson::DateTime;
use bson::oid::ObjectId;
use serde::{Deserialize, Serialize};

/// A document of the `sites` collection.
///
/// `publicKey` is the base64url (unpadded) uncompressed P-256 point, 65 bytes, that browsers
/// were given as `applicationServerKey`; `privateKey` is the base64url 32-byte scalar. Both stay
/// in MongoDB: senders load them by site id, they never travel through Kafka.
#[derive(Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Site {
    /// The site id.
    #[serde(rename = "_id")]
    pub id: ObjectId,
    /// VAPID `sub` claim: a `mailto:` address or an `https:` URL where the push service can
    /// reach the site's operator.
    pub subject: String,
    /// VAPID public key, base64url of the 65-byte uncompressed P-256 point.
    pub public_key: String,
    /// VAPID private key, base64url of the 32-byte P-256 scalar.
    pub private_key: String,
    /// When the document was created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<DateTime>,
    /// When the document was last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<DateTime>,
    /// Mongoose's document version key, kept so the original service sees a familiar document.
    #[serde(rename = "__v", default)]
    pub version: i32,
    /// Origins (`https://shop.example`) whose pages may call the site's public API routes
    /// from a browser (CORS). Empty: none may.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_origins: Vec<String>,
    /// The site's API keys, as hashes: a key is shown once, when it is created.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub api_keys: Vec<ApiKey>,
    /// How to reach the site's iOS app through APNs; absent for web-only sites.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apns: Option<ApnsCredentials>,
    /// How to reach the site's Android app through FCM; absent for web-only sites.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fcm: Option<FcmCredentials>,
}

/// One API key of a site (field `apiKeys`). The key itself is never stored: only the
/// SHA-256 of it, so a copy of the database does not hand out keys.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ApiKey {
    /// Public id of the key (to list and revoke it); also the key's prefix.
    pub id: String,
    /// Lowercase hex SHA-256 of the whole key.
    pub hash: String,
    /// When the key was created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<DateTime>,
}

/// APNs token-based authentication: the `.p8` signing key Apple issued to a team, and the
/// app it sends to. Stored on the site (`sites.apns`); never travels through Kafka.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ApnsCredentials {
    /// Apple developer team id (the JWT `iss`).
    pub team_id: String,
    /// Key id of the signing key (the JWT `kid`; the `<KEYID>` of `AuthKey_<KEYID>.p8`).
    pub key_id: String,
    /// The `.p8` file's content: a PKCS#8 PEM P-256 private key.
    pub private_key: String,
    /// The app's bundle id, sent as `apns-topic`.
    pub topic: String,
    /// Send to Apple's development environment (`api.sandbox.push.apple.com`).
    #[serde(default)]
    pub sandbox: bool,
}

/// FCM HTTP v1 authentication: a Google service account allowed to send for a Firebase
/// project. Stored on the site (`sites.fcm`); never travels through Kafka.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct FcmCredentials {
    /// The service-account JSON file as Google issued it (`project_id`, `client_email`,
    /// `private_key`, `token_uri` ...), verbatim.
    pub service_account: String,
}

impl std::fmt::Debug for ApnsCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApnsCredentials")
            .field("team_id", &self.team_id)
            .field("key_id", &self.key_id)
            .field("private_key", &"<redacted>")
            .field("topic", &self.topic)
            .field("sandbox", &self.sandbox)
            .finish()
    }
}

impl std::fmt::Debug for FcmCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FcmCredentials")
            .field("service_account", &"<redacted>")
            .finish()
    }
}

impl Site {
    /// A new site with both timestamps set to now.
    pub fn new(subject: String, public_key: String, private_key: String) -> Self {
        let now = DateTime::now();
        Site {
            id: ObjectId::new(),
            subject,
            public_key,
            private_key,
            created_at: Some(now),
            updated_at: Some(now),
            version: 0,
            allowed_origins: Vec::new(),
            api_keys: Vec::new(),
            apns: None,
            fcm: None,
        }
    }
}

/// Debug output never shows the private key, so a site can be logged safely.
impl std::fmt::Debug for Site {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Site")
            .field("id", &self.id)
            .field("subject", &self.subject)
            .field("public_key", &self.public_key)
            .field("private_key", &"<redacted>")
            .field("created_at", &self.created_at)
            .field("updated_at", &self.updated_at)
            .field("allowed_origins", &self.allowed_origins)
            .field("api_keys", &self.api_keys.len())
            .field("apns", &self.apns)
            .field("fcm", &self.fcm)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_private_key() {
        let site = Site::new(
            "mailto:ops@example.com".into(),
            "PUB".into(),
            "SECRET".into(),
        );
        let mut site = site;
        site.apns = Some(ApnsCredentials {
            team_id: "TEAM".into(),
            key_id: "KEY".into(),
            private_key: "APNS-SECRET".into(),
            topic: "com.example.app".into(),
            sandbox: false,
        });
        site.fcm = Some(FcmCredentials {
            service_account: "FCM-SECRET".into(),
        });
        let text = format!("{site:?}");
        assert!(!text.contains("SECRET"), "private key leaked: {text}");
        assert!(text.contains("com.example.app"), "{text}");
        assert!(text.contains("<redacted>"));
    }
}
