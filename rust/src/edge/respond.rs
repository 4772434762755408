//! Responses the edge makes itself: `{"detail": ...}` errors as Tiled gives them, and JSON bodies.

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Response, StatusCode};
use http_body_util::{Either, Full};
use hyper::body::Incoming;

/// A response body: one the edge made, or one streamed back from the control plane.
pub type Body = Either<Full<Bytes>, Incoming>;

const JSON: HeaderValue = HeaderValue::from_static("application/json");

/// A JSON response with `status`.
pub fn json(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut response = Response::new(Either::Left(Full::new(body.into())));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, JSON);
    response
}

/// `{"detail": detail}` with `status`, as the control plane answers errors.
pub fn error(status: StatusCode, detail: &str) -> Response<Body> {
    let body = serde_json::to_vec(&serde_json::json!({ "detail": detail })).unwrap_or_default();
    json(status, body)
}
