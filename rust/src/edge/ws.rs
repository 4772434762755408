//! WebSocket plumbing shared by the edge's WebSocket routes: recognising an upgrade, answering
//! it (RFC 6455 accept key; no extensions offered, so no permessage-deflate: frames go out as
//! encoded, once for every subscriber), and turning the upgraded connection into a
//! tokio-websockets stream with the edge's message-size limit.

use base64::Engine as _;
use http::header::{HeaderValue, CONNECTION, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_VERSION, UPGRADE};
use http::{Request, Response, StatusCode};
use http_body_util::{Either, Full};
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use tokio_websockets::{Config, Limits, ServerBuilder, WebSocketStream};

use super::respond::{self, Body};

/// An upgraded connection as a WebSocket stream.
pub type Socket = WebSocketStream<TokioIo<Upgraded>>;

const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Whether `request` asks to become a WebSocket.
pub fn is_upgrade<B>(request: &Request<B>) -> bool {
    let upgrade = request.headers().get(UPGRADE).and_then(|v| v.to_str().ok());
    let connection = request.headers().get(CONNECTION).and_then(|v| v.to_str().ok()).unwrap_or("");
    upgrade.is_some_and(|u| u.eq_ignore_ascii_case("websocket"))
        && connection.split(',').any(|token| token.trim().eq_ignore_ascii_case("upgrade"))
}

/// A malformed handshake: the detail of its 400.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadHandshake(pub &'static str);

impl BadHandshake {
    /// The 400 to answer with.
    pub fn response(self) -> Response<Body> {
        respond::error(StatusCode::BAD_REQUEST, self.0)
    }
}

/// The `101 Switching Protocols` answer and the pending upgrade, or why the handshake is
/// malformed.
pub fn accept<B>(request: &mut Request<B>) -> Result<(Response<Body>, OnUpgrade), BadHandshake> {
    let version = request.headers().get(SEC_WEBSOCKET_VERSION).map(HeaderValue::as_bytes);
    if version != Some(b"13") {
        return Err(BadHandshake("Sec-WebSocket-Version must be 13"));
    }
    let Some(key) = request.headers().get(SEC_WEBSOCKET_KEY).map(|k| k.as_bytes().trim_ascii().to_vec()) else {
        return Err(BadHandshake("Sec-WebSocket-Key is missing"));
    };
    let mut hashed = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
    hashed.update(&key);
    hashed.update(GUID);
    let accept = base64::engine::general_purpose::STANDARD.encode(hashed.finish().as_ref());
    let upgrade = hyper::upgrade::on(request);
    let mut response = Response::new(Either::Left(Full::default()));
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(value) = HeaderValue::from_str(&accept) {
        headers.insert(SEC_WEBSOCKET_ACCEPT, value);
    }
    Ok((response, upgrade))
}

/// The WebSocket over an upgraded connection; messages over `max_message` bytes from the
/// client close it with 1009.
pub fn socket(upgraded: Upgraded, max_message: usize) -> Socket {
    // Large frames go out whole: splitting them would only add headers (the payload is never
    // copied either way).
    let config = Config::default().frame_size(usize::MAX >> 1).flush_threshold(256 * 1024);
    let limits = Limits::default().max_payload_len(Some(max_message));
    ServerBuilder::new().config(config).limits(limits).serve(TokioIo::new(upgraded))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_key_of_rfc_6455() {
        let mut request = Request::builder()
            .header("Upgrade", "websocket")
            .header("Connection", "keep-alive, Upgrade")
            .header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
            .header("Sec-WebSocket-Version", "13")
            .body(())
            .unwrap();
        assert!(is_upgrade(&request));
        let (response, _) = accept(&mut request).unwrap();
        assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
        assert_eq!(response.headers()[SEC_WEBSOCKET_ACCEPT], "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        let mut old = Request::builder().header("Sec-WebSocket-Version", "8").body(()).unwrap();
        assert!(!is_upgrade(&old));
        assert_eq!(accept(&mut old).unwrap_err().response().status(), StatusCode::BAD_REQUEST);
    }
}
