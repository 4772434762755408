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

/// Reads the whole body (at most `cap` bytes; `idle`: most time between two pieces).
pub async fn read(body: Incoming, declared: Option<u64>, cap: u64, idle: Duration) -> Result<Bytes, BodyError> {
    if declared.is_some_and(|n| n > cap) {
        return Err(BodyError::TooLarge(cap));
    }
    let capacity = usize::try_from(declared.unwrap_or(0)).unwrap_or(0);
    let mut buffer: Vec<u8> = Vec::with_capacity(capacity);
    let mut body = body;
    loop {
        let frame = match tokio::time::timeout(idle, body.frame()).await {
            Err(_) => return Err(BodyError::Stalled),
            Ok(None) => break,
            Ok(Some(Err(e))) => return Err(BodyError::Broken(e.to_string())),
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(data) = frame.into_data() else { continue };
        if buffer.is_empty() && declared == Some(data.len() as u64) {
            // The whole body arrived as one piece: keep hyper's buffer, copy nothing.
            return Ok(data);
        }
        if (buffer.len() + data.len()) as u64 > cap {
            return Err(BodyError::TooLarge(cap));
        }
        buffer.extend_from_slice(&data);
    }
    Ok(Bytes::from(buffer))
}
