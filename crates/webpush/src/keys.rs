//! Decoding of the base64 key material browsers and site owners hand us.
//!
//! Browsers give `p256dh` and `auth` in base64url without padding (`PushSubscription.toJSON()`),
//! but stored subscriptions and VAPID keys from other tools turn up padded, or in the standard
//! alphabet. Both alphabets, padded or not, decode here into fixed-size arrays on the stack, so
//! the sender can decode a subscription per message without allocating.

use base64::Engine;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

/// Base64url, padding optional: what browsers and RFC 8292 use.
const URL_SAFE_LENIENT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Standard base64, padding optional: what some stores and key generators wrote.
const STANDARD_LENIENT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// A subscription key or VAPID key that does not decode to the expected bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyDecodeError {
    /// Not base64 in either alphabet.
    #[error("{what} is not base64url or base64")]
    NotBase64 {
        /// Which key.
        what: &'static str,
    },
    /// Decoded, but to the wrong number of bytes.
    #[error("{what} decodes to {actual} bytes, expected {expected}")]
    WrongLength {
        /// Which key.
        what: &'static str,
        /// Bytes decoded.
        actual: usize,
        /// Bytes required.
        expected: usize,
    },
}

/// Decodes a subscription's `p256dh` (65-byte uncompressed P-256 point). Whether the point is
/// on the curve is checked when encrypting.
pub fn decode_p256dh(text: &str) -> Result<[u8; 65], KeyDecodeError> {
    decode_fixed("p256dh", text)
}

/// Decodes a subscription's `auth` secret (16 bytes).
pub fn decode_auth(text: &str) -> Result<[u8; 16], KeyDecodeError> {
    decode_fixed("auth", text)
}

/// Decodes `text` (either alphabet, padding optional, surrounding whitespace ignored) into
/// exactly `N` bytes; `what` names the key in the error.
pub(crate) fn decode_fixed<const N: usize>(
    what: &'static str,
    text: &str,
) -> Result<[u8; N], KeyDecodeError> {
    let text = text.trim().as_bytes();
    // Room for a few extra bytes so a too-long key reports its length instead of failing
    // with "buffer too small"; anything longer than this is reported as `N + 3` or more.
    let mut buffer = [0u8; 128];
    let decoded =
        decode_into(text, &mut buffer).map_err(|()| KeyDecodeError::NotBase64 { what })?;
    if decoded != N {
        return Err(KeyDecodeError::WrongLength {
            what,
            actual: decoded,
            expected: N,
        });
    }
    let mut out = [0u8; N];
    out.copy_from_slice(&buffer[..N]);
    Ok(out)
}

fn decode_into(text: &[u8], buffer: &mut [u8; 128]) -> Result<usize, ()> {
    // Keys longer than the buffer cannot be any key we accept; count them as too long.
    let limit = base64::decoded_len_estimate(text.len());
    if limit > buffer.len() {
        return Ok(limit);
    }
    URL_SAFE_LENIENT
        .decode_slice(text, buffer)
        .or_else(|_| STANDARD_LENIENT.decode_slice(text, buffer))
        .map_err(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 8291 Appendix A's subscription keys.
    const P256DH: &str =
        "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4";
    const AUTH: &str = "BTBZMqHH6r4Tts7J_aSIgg";

    #[test]
    fn accepts_both_alphabets_with_or_without_padding() {
        let expected = decode_auth(AUTH).expect("base64url");
        assert_eq!(expected[..3], [0x05, 0x30, 0x59]);
        for variant in [
            "BTBZMqHH6r4Tts7J_aSIgg==",
            "BTBZMqHH6r4Tts7J/aSIgg",
            " BTBZMqHH6r4Tts7J/aSIgg==\n",
        ] {
            assert_eq!(decode_auth(variant), Ok(expected), "{variant}");
        }
        let point = decode_p256dh(P256DH).expect("p256dh");
        assert_eq!(point[0], 0x04);
    }

    #[test]
    fn reports_what_is_wrong() {
        assert_eq!(
            decode_auth("BTBZMqHH6r4T"),
            Err(KeyDecodeError::WrongLength {
                what: "auth",
                actual: 9,
                expected: 16
            })
        );
        assert_eq!(
            decode_p256dh("not base64!"),
            Err(KeyDecodeError::NotBase64 { what: "p256dh" })
        );
        let huge = "A".repeat(400);
        let err = decode_auth(&huge).expect_err("too long");
        assert!(err.to_string().contains("expected 16"), "{err}");
    }
}
