//! Reading the few fields the load tool needs from a frame without parsing its JSON.
//!
//! Every delivered message costs the client one scan for `"type":"…"` (WebSocket; SSE names
//! the event on its own line), one for `"offset":` and one for the publish time. A full
//! `serde_json` parse of each of 20,000 deliveries per published message would make the
//! load tool, not the gateway, the bottleneck on a 2-core machine. The gateway writes compact
//! JSON (serde_json), and the fields looked for are top-level members whose names do not occur
//! inside the benchmark's own `data`, so a substring search is exact here.

use memchr::memmem;

/// The value of the first `"<key>":<unsigned integer>` in `text`, whitespace allowed after
/// the colon; `None` when absent or not a number.
pub fn number_after(text: &[u8], key: &str) -> Option<u64> {
    let rest = after_key(text, key)?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || digits > 19 {
        return None;
    }
    rest[..digits].iter().try_fold(0u64, |acc, d| {
        acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// The value of the first `"<key>":"<string>"` in `text` (no escapes expected: message types
/// and reasons are plain words).
pub fn string_after<'a>(text: &'a [u8], key: &str) -> Option<&'a [u8]> {
    let rest = after_key(text, key)?.strip_prefix(b"\"")?;
    let end = memchr::memchr(b'"', rest)?;
    Some(&rest[..end])
}

/// What follows `"<key>":` and any whitespace.
fn after_key<'a>(text: &'a [u8], key: &str) -> Option<&'a [u8]> {
    let mut needle = Vec::with_capacity(key.len() + 3);
    needle.push(b'"');
    needle.extend_from_slice(key.as_bytes());
    needle.extend_from_slice(b"\":");
    let at = memmem::find(text, &needle)? + needle.len();
    let rest = &text[at..];
    let spaces = rest.iter().take_while(|b| b.is_ascii_whitespace()).count();
    Some(&rest[spaces..])
}

/// The fields of a delivered message the statistics use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    /// The message's position in its channel.
    pub offset: Option<u64>,
    /// When it was published, µs since the epoch: the benchmark's own `sentUs` in `data` when
    /// present (µs precision, taken just before the publish call), else the message's `ts`
    /// (ms) × 1000.
    pub sent_us: Option<u64>,
}

/// Reads a message object (SSE `data:` or a WebSocket `message` frame).
pub fn delivery(text: &[u8]) -> Delivery {
    let sent_us = number_after(text, "sentUs")
        .or_else(|| number_after(text, "ts").and_then(|ms| ms.checked_mul(1000)));
    Delivery {
        offset: number_after(text, "offset"),
        sent_us,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MESSAGE: &[u8] = br#"{"type":"message","channel":"bench:ab-0","offset":1234,"id":"7-1234","data":{"seq":3,"sentUs":1764700000123456,"pad":""},"ts":1764700000123}"#;

    #[test]
    fn reads_the_fields_of_a_message() {
        assert_eq!(string_after(MESSAGE, "type"), Some(&b"message"[..]));
        assert_eq!(
            delivery(MESSAGE),
            Delivery {
                offset: Some(1234),
                sent_us: Some(1_764_700_000_123_456)
            }
        );
    }

    #[test]
    fn falls_back_to_ts_in_milliseconds() {
        let text =
            br#"{"type":"message","channel":"c","offset": 5,"data":{"x":1},"ts": 1764700000123}"#;
        assert_eq!(
            delivery(text),
            Delivery {
                offset: Some(5),
                sent_us: Some(1_764_700_000_123_000)
            }
        );
    }

    #[test]
    fn absent_or_malformed_fields_are_none() {
        assert_eq!(number_after(b"{\"ts\":\"soon\"}", "ts"), None);
        assert_eq!(number_after(b"{\"ts\":}", "ts"), None);
        assert_eq!(number_after(b"{\"tsx\":5}", "ts"), None);
        assert_eq!(number_after(b"{\"ts\":99999999999999999999}", "ts"), None);
        assert_eq!(string_after(b"{\"type\":5}", "type"), None);
        assert_eq!(string_after(b"{\"type\":\"unterminated", "type"), None);
        assert_eq!(
            delivery(b"{}"),
            Delivery {
                offset: None,
                sent_us: None
            }
        );
    }
}
