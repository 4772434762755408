//! Reading a request body into one buffer sized from `Content-Length` (no growth copies),
//! refusing what is too large before reading it and a sender that stalls.

use std::time::Duration;

use bytes::Bytes;
use http::header::CONTENT_LENGTH;
use http::{HeaderMap, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;

/// Why a body could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyError {
    /// Larger than the cap (413): from `Content-Length` before reading, or while reading.
    TooLarge(u64),
    /// No progress for the body timeout (408).
    Stalled,
    /// The client sent a malformed body or went away before its end: nothing is kept.
    Broken(String),
}

impl BodyError {
    /// The status and detail to answer with.
    pub fn answer(&self) -> (StatusCode, String) {
        match self {
            Self::TooLarge(cap) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("Request body is larger than the server's limit of {cap} bytes"),
            ),
            Self::Stalled => (StatusCode::REQUEST_TIMEOUT, "The request body stopped arriving".into()),
            Self::Broken(e) => (StatusCode::BAD_REQUEST, format!("The request body could not be read: {e}")),
        }
    }
}

/// The declared `Content-Length`, if any and well-formed.
pub fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(CONTENT_LENGTH)?.to_str().ok()?.trim().parse().ok()
}

/// Checks the declared length against `cap` before anything is read.
pub fn check_declared(headers: &HeaderMap, cap: u64) -> Result<(), BodyError> {
    match content_length(headers) {
        Some(n) if n > cap => Err(BodyError::TooLarge(cap)),
        _ => Ok(()),
    }
}

/// Hands the body to `sink` piece by piece (at most `cap` bytes in all; `idle`: most time
/// between two pieces). `sink` also gets the piece as `Bytes` when it is the whole body.
pub async fn read_into(
    body: Incoming,
    declared: Option<u64>,
    cap: u64,
    idle: Duration,
    mut sink: impl FnMut(&[u8], Option<Bytes>) -> Result<(), BodyError>,
) -> Result<(), BodyError> {
    if declared.is_some_and(|n| n > cap) {
        return Err(BodyError::TooLarge(cap));
    }
    let mut body = body;
    let mut received: u64 = 0;
    loop {
        let frame = match tokio::time::timeout(idle, body.frame()).await {
            Err(_) => return Err(BodyError::Stalled),
            Ok(None) => return Ok(()),
            Ok(Some(Err(e))) => return Err(BodyError::Broken(e.to_string())),
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(data) = frame.into_data() else { continue };
        received += data.len() as u64;
        if received > cap {
            return Err(BodyError::TooLarge(cap));
        }
        let whole = (received == data.len() as u64 && declared == Some(received)).then(|| data.clone());
        sink(&data, whole)?;
    }
}
