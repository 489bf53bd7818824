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
    fn signing_input_is_two_unpadded_base64url_parts() {
        assert_eq!(
            jwt_signing_input(r#"{"alg":"ES256"}"#, r#"{"iss":"T"}"#),
            "eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJUIn0"
        );
    }
}
