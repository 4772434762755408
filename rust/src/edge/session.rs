//! What every WebSocket session of the edge does alike: close frames (code checked, reason
//! cut to the protocol's 123 bytes), a bounded close handshake, first-message authentication,
//! telling apart "the peer went away" from "the peer sent something", and flushes that notice a
//! frozen peer.

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio_websockets::{CloseCode, Message};

use super::auth::key_matches;
use super::ws::Socket;

/// How long a client has to send its first-message auth (as the control plane did).
pub const AUTH_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a close handshake may take before the connection is dropped.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// A peer that completes no write for this long while a `close`-policy subscription of it is
/// over its cap (it reads nothing) is dropped; checked every `STALL_CHECK`.
pub const FROZEN_TIMEOUT: Duration = Duration::from_secs(5);
const STALL_CHECK: Duration = Duration::from_secs(1);

/// A close frame; a code that may not be sent becomes 1011, the reason is cut at a character
/// boundary to fit the 123 bytes a close frame allows.
pub fn close_message(code: u16, reason: &str) -> Message {
    let code = CloseCode::try_from(code).ok().filter(|c| !c.is_reserved()).unwrap_or(CloseCode::INTERNAL_SERVER_ERROR);
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    Message::close(Some(code), &reason[..end])
}

/// A data frame: binary (msgpack, raw) or text (JSON, always valid UTF-8: never re-checked).
pub fn frame(payload: Bytes, text: bool) -> Message {
    if text {
        Message::text(payload)
    } else {
        Message::binary(payload)
    }
}

/// Sends a close frame and waits (bounded) for the peer's answer, then drops the connection.
pub async fn close(mut socket: Socket, code: u16, reason: &str) {
    let handshake = async {
        socket.send(close_message(code, reason)).await.ok()?;
        // Read until the peer's close (or its end): tokio-websockets answers and finishes it.
        while let Some(Ok(_)) = socket.next().await {}
        Some(())
    };
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, handshake).await;
}

/// Ends a connection the peer closed or broke the protocol on: the library has queued its
/// close frame (the answer to the peer's, or 1009/1002 with a reason); write it (bounded).
pub async fn finish(mut socket: Socket) {
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, socket.flush()).await;
}

/// Flushes what was fed; false if the connection failed, or if the peer is frozen (see
/// [`watched`]).
pub async fn flush_watched<S>(sink: &mut S, over_cap: impl Fn() -> bool) -> bool
where
    S: futures_util::Sink<Message> + Unpin,
{
    watched(sink.flush(), over_cap).await
}

/// Runs a write (`feed`, `flush`); false if it failed, or if the peer is frozen: the write did
/// not complete for [`FROZEN_TIMEOUT`] while `over_cap` (a `close`-policy subscription's backlog
/// over its cap) held. (The hub applies its policy only when the pump fetches again, which a
/// peer that reads nothing never lets happen; such a connection is dropped instead.)
pub async fn watched<E>(write: impl std::future::Future<Output = Result<(), E>>, over_cap: impl Fn() -> bool) -> bool {
    let since = Instant::now();
    tokio::pin!(write);
    loop {
        tokio::select! {
            written = &mut write => return written.is_ok(),
            () = tokio::time::sleep(STALL_CHECK) => {
                if since.elapsed() >= FROZEN_TIMEOUT && over_cap() {
                    return false;
                }
            }
        }
    }
}

/// Why first-message authentication failed: the close to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthFailed {
    /// 4001 (not an auth message) or 4003 (wrong key).
    pub code: u16,
    /// Tiled's wording.
    pub reason: &'static str,
}

/// Tiled's first-message auth: a text frame `{"type": "auth", "api_key": "..."}` within
/// [`AUTH_TIMEOUT`].
pub async fn first_message_auth(socket: &mut Socket, api_key: &str) -> Result<(), AuthFailed> {
    let not_json = AuthFailed { code: 4001, reason: "Expected JSON auth message" };
    let message = match tokio::time::timeout(AUTH_TIMEOUT, socket.next()).await {
        Ok(Some(Ok(message))) => message,
        _ => return Err(not_json),
    };
    let Some(text) = message.as_text() else { return Err(not_json) };
    let Ok(value) = serde_json::from_str::<serde_json::Value>(text) else { return Err(not_json) };
    if value.get("type").and_then(|t| t.as_str()) != Some("auth") {
        return Err(AuthFailed { code: 4001, reason: "Expected {\"type\": \"auth\", ...}" });
    }
    match value.get("api_key").and_then(|k| k.as_str()) {
        Some(candidate) if key_matches(candidate.as_bytes(), api_key) => Ok(()),
        _ => Err(AuthFailed { code: 4003, reason: "Authentication failed" }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_reason_fits_the_frame() {
        let long = "é".repeat(100);
        let message = close_message(1008, &long);
        let (code, reason) = message.as_close().unwrap();
        assert_eq!(u16::from(code), 1008);
        assert!(reason.len() <= 123 && long.starts_with(reason));
        let (code, _) = close_message(1005, "reserved").as_close().unwrap();
        assert_eq!(u16::from(code), 1011);
        let (code, _) = close_message(4003, "custom").as_close().unwrap();
        assert_eq!(u16::from(code), 4003);
    }
}
