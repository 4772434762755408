//! The opt-in JSON access log (`--access-log`), one line per request and per WebSocket
//! connection, in the control plane's format. Query strings are never logged (they may carry
//! `api_key`).

use std::io::Write;
use std::net::IpAddr;

use serde_json::json;

/// What one line says.
pub struct Line<'a> {
    /// The client's address (the connection's peer).
    pub client: IpAddr,
    /// `GET`, `PUT`, ... or `WS`.
    pub method: &'a str,
    /// The path, without the query string.
    pub path: &'a str,
    /// The response status (None for WebSockets).
    pub status: Option<u16>,
    /// Time from the request to the end of the answer (or of the connection).
    pub seconds: f64,
    /// Response body bytes (None for WebSockets).
    pub bytes: Option<u64>,
    /// For WebSockets: the last stream sequence handed to the connection.
    pub last_sequence: Option<u64>,
}

/// Writes the line of a WebSocket connection from `client` to `path`, accepted at `started`,
/// that just ended having handed out sequences up to `last_sequence`.
pub fn websocket(client: IpAddr, path: &str, started: std::time::Instant, last_sequence: Option<u64>) {
    write(&Line {
        client,
        method: "WS",
        path,
        status: None,
        seconds: started.elapsed().as_secs_f64(),
        bytes: None,
        last_sequence,
    });
}

/// Writes `line` to stderr as one JSON object (one `write` call, so lines do not interleave).
pub fn write(line: &Line<'_>) {
    let ts = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0);
    let mut value = json!({
        "ts": (ts * 1e6).round() / 1e6,
        "pid": std::process::id(),
        "client": line.client.to_string(),
        "method": line.method,
        "path": line.path,
        "status": line.status,
        "seconds": (line.seconds * 1e6).round() / 1e6,
        "bytes": line.bytes,
    });
    if line.method == "WS" {
        value["last_sequence"] = json!(line.last_sequence);
    }
    let mut text = value.to_string();
    text.push('\n');
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}
