//! Private keys as users hold them, and the base64url of JWTs.
//!
//! APNs signing keys (`AuthKey_<KEYID>.p8`) and Google service-account keys are both PKCS#8
//! in PEM (`-----BEGIN PRIVATE KEY-----`). Decoding PEM is a dozen lines, so it is done here
//! rather than with another dependency.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

/// Why a PEM private key could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PemError {
    /// No `-----BEGIN PRIVATE KEY-----` … `-----END PRIVATE KEY-----` block.
    #[error(
        "no PKCS#8 private key found: expected a PEM block between -----BEGIN PRIVATE KEY----- and -----END PRIVATE KEY-----"
    )]
    NoBlock,
    /// The block's body is not base64.
    #[error("the PEM block is not valid base64: {0}")]
    Base64(String),
}

/// The DER bytes of the first PKCS#8 `PRIVATE KEY` block of `pem`. Tolerates CRLF line ends
/// and the escaped `\n` of a key pasted from JSON.
pub fn pkcs8_from_pem(pem: &str) -> Result<Vec<u8>, PemError> {
    const BEGIN: &str = "-----BEGIN PRIVATE KEY-----";
    const END: &str = "-----END PRIVATE KEY-----";
    let start = pem.find(BEGIN).ok_or(PemError::NoBlock)? + BEGIN.len();
    let length = pem[start..].find(END).ok_or(PemError::NoBlock)?;
    let body: String = pem[start..start + length]
        .replace("\\n", "")
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    STANDARD
        .decode(body)
        .map_err(|e| PemError::Base64(e.to_string()))
}

/// `der` (a PKCS#8 private key) as a PEM `PRIVATE KEY` block with 64-character lines, the
/// form of Apple's `.p8` files and of a service account's `private_key`.
pub fn pem_from_pkcs8(der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
    for line in body.as_bytes().chunks(64) {
        // base64 output is ASCII.
        pem.push_str(std::str::from_utf8(line).unwrap_or_default());
        pem.push('\n');
    }
    pem.push_str("-----END PRIVATE KEY-----\n");
    pem
}

/// The key id in Apple's file name for an APNs signing key, `AuthKey_<KEYID>.p8`.
pub fn key_id_from_file_name(path: &std::path::Path) -> Option<&str> {
    path.file_name()?
        .to_str()?
        .strip_prefix("AuthKey_")?
        .strip_suffix(".p8")
        .filter(|id| !id.is_empty())
}

/// Unpadded base64url, as JWTs use.
pub fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// `base64url(header) "." base64url(claims)`: the part of a JWT that is signed.
pub fn jwt_signing_input(header_json: &str, claims_json: &str) -> String {
    let mut input = b64url(header_json.as_bytes());
    input.push('.');
    input.push_str(&b64url(claims_json.as_bytes()));
    input
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_blocks_decode_from_files_and_from_json_strings() {
        let file = "-----BEGIN PRIVATE KEY-----\r\nAAEC\r\nAwQ=\r\n-----END PRIVATE KEY-----\r\n";
        assert_eq!(pkcs8_from_pem(file), Ok(vec![0, 1, 2, 3, 4]));
        let escaped = "-----BEGIN PRIVATE KEY-----\\nAAEC\\nAwQ=\\n-----END PRIVATE KEY-----\\n";
        assert_eq!(pkcs8_from_pem(escaped), Ok(vec![0, 1, 2, 3, 4]));
        assert_eq!(pkcs8_from_pem("AAEC"), Err(PemError::NoBlock));
        assert!(matches!(
            pkcs8_from_pem("-----BEGIN PRIVATE KEY-----\n!!\n-----END PRIVATE KEY-----"),
            Err(PemError::Base64(_))
        ));
    }

    #[test]
    fn pem_round_trips_and_keeps_64_character_lines() {
        let der: Vec<u8> = (0..=255).collect();
        let pem = pem_from_pkcs8(&der);
        assert!(pem.lines().all(|line| line.len() <= 64), "{pem}");
        assert_eq!(pkcs8_from_pem(&pem), Ok(der));
    }

    #[test]
    fn key_ids_come_from_apples_file_names() {
        use std::path::Path;
        fn id(path: &str) -> Option<&str> {
            key_id_from_file_name(Path::new(path))
        }
        assert_eq!(id("/keys/AuthKey_ABC123DEFG.p8"), Some("ABC123DEFG"));
        assert_eq!(id("AuthKey_.p8"), None);
        assert_eq!(id("key.p8"), None);
        assert_eq!(id("AuthKey_ABC123DEFG.pem"), None);
    }

    #[test]
    fn signing_input_is_two_unpadded_base64url_parts() {
        assert_eq!(
            jwt_signing_input(r#"{"alg":"ES256"}"#, r#"{"iss":"T"}"#),
            "eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJUIn0"
        );
    }
}
