//! Reading a request body to its end under a size limit, shared by every kind.
//!
//! Counting mode must not allocate per request, so the bytes are kept only when asked (to
//! verify or, for FCM, to find the device token); otherwise frames are counted and dropped.

use http_body_util::BodyExt as _;
use hyper::body::Incoming;

/// Why a body could not be read.
pub(crate) enum BodyError {
    /// Over the limit; the length read so far.
    TooLarge(usize),
    /// The stream or connection failed before the end.
    Aborted,
}

/// Reads the body to its end: its length, and its bytes when `keep` is set. Stops with
/// [`BodyError::TooLarge`] as soon as more than `limit` bytes arrived.
pub(crate) async fn read_body(
    mut body: Incoming,
    keep: bool,
    limit: usize,
) -> Result<(usize, Option<Vec<u8>>), BodyError> {
    let mut length = 0usize;
    let mut kept = keep.then(Vec::new);
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| BodyError::Aborted)?;
        if let Some(data) = frame.data_ref() {
            length += data.len();
            if length > limit {
                return Err(BodyError::TooLarge(length));
            }
            if let Some(kept) = kept.as_mut() {
                kept.extend_from_slice(data);
            }
        }
    }
    Ok((length, kept))
}
