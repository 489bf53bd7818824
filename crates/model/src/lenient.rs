//! Serde helpers for numbers written by mongoose.
//!
//! The Node.js driver stores a JavaScript number as Int32 when it fits, Int64 after `$inc`
//! overflows, and Double when it was ever fractional or came from JSON as `1.0`. Our typed
//! fields accept all three so documents written by the original service load.

use serde::{Deserialize, Deserializer};

#[derive(Deserialize)]
#[serde(untagged)]
enum AnyNumber {
    Int(i64),
    Float(f64),
}

impl AnyNumber {
    fn into_i64(self) -> i64 {
        match self {
            AnyNumber::Int(n) => n,
            // Counters and TTLs are whole numbers; a stored 3.0 is 3.
            AnyNumber::Float(f) => f as i64,
        }
    }
}

/// Deserializes an Int32, Int64 or Double as `i64`.
pub fn i64_from_any<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    AnyNumber::deserialize(deserializer).map(AnyNumber::into_i64)
}

/// Deserializes an optional Int32, Int64 or Double as `Option<i64>`; null counts as absent.
pub fn opt_i64_from_any<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<i64>, D::Error> {
    Option::<AnyNumber>::deserialize(deserializer).map(|n| n.map(AnyNumber::into_i64))
}
