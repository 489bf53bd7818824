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
        let text = format!("{site:?}");
        assert!(!text.contains("SECRET"), "private key leaked: {text}");
        assert!(text.contains("<redacted>"));
    }
}
