//! Ids typed by people or read from Kafka keys.
//!
//! Every id in the data model is a MongoDB ObjectId: 24 hexadecimal characters. A malformed id
//! is rejected before any database round trip, with an error that names what kind of id it was.

use bson::oid::ObjectId;

/// An id that is not 24 hexadecimal characters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "malformed {kind} id {value:?}: expected 24 hexadecimal characters (a MongoDB ObjectId), \
     for example 65a1f0c2e4b0a1b2c3d4e5f6"
)]
pub struct InvalidId {
    /// What the id was meant to identify (`push`, `site`, ...).
    pub kind: &'static str,
    /// The rejected input, as given.
    pub value: String,
}

/// Parses a 24-hex-character ObjectId; `kind` names the id in the error.
pub fn parse_object_id(kind: &'static str, value: &str) -> Result<ObjectId, InvalidId> {
    ObjectId::parse_str(value.trim()).map_err(|_| InvalidId {
        kind,
        value: value.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_hex_and_trims() {
        let id = parse_object_id("push", " 65a1f0c2e4b0a1b2c3d4e5f6\n").expect("valid id");
        assert_eq!(id.to_hex(), "65a1f0c2e4b0a1b2c3d4e5f6");
    }

    #[test]
    fn rejects_with_kind_in_message() {
        let err = parse_object_id("push", "not-an-id").expect_err("invalid id");
        let text = err.to_string();
        assert!(
            text.contains("malformed push id \"not-an-id\""),
            "got: {text}"
        );
    }
}
