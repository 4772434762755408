//! `EdgeConfig`: what one process's edge listens on, forwards to, and refuses.

use std::path::PathBuf;
use std::time::Duration;

/// The edge's settings, fixed when it starts.
#[derive(Debug, Clone)]
pub struct EdgeConfig {
    /// Address to listen on (an IP literal or `localhost`).
    pub host: String,
    /// TCP port (0: any free port; see [`super::Edge::port`]).
    pub port: u16,
    /// Share the port with the other processes of the same server (`SO_REUSEPORT`).
    pub reuse_port: bool,
    /// The Python control plane's private Unix socket (Granian), where other requests go.
    pub upstream: PathBuf,
    /// The API key every data-plane request must present (constant-time compared).
    pub api_key: String,
    /// Anonymous clients may read (subscribe, pull).
    pub public: bool,
    /// Largest request body the edge accepts on the routes it serves (413 before reading).
    pub max_body_bytes: u64,
    /// Most time to receive a request's headers.
    pub header_timeout: Duration,
    /// Most time without progress while receiving a request body.
    pub body_timeout: Duration,
    /// Largest WebSocket message a client may send (close 1009 beyond it).
    pub max_message_bytes: usize,
    /// Largest binary message of a Redis Streamer push (`--streamer-max-message-bytes`).
    pub streamer_max_message_bytes: usize,
    /// Write one JSON line per request and WebSocket connection to stderr.
    pub access_log: bool,
    /// Where the journal of array growth not yet in the catalog goes, when the edge may
    /// acknowledge growth before the catalog records it (one process, catalog unshared); `None`:
    /// each growth is recorded before its write is acknowledged.
    pub growth_journal: Option<PathBuf>,
}

impl Default for EdgeConfig {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 0,
            reuse_port: false,
            upstream: PathBuf::new(),
            api_key: String::new(),
            public: false,
            max_body_bytes: 4 * 1024 * 1024 * 1024,
            header_timeout: Duration::from_secs(30),
            body_timeout: Duration::from_secs(60),
            max_message_bytes: 64 * 1024 * 1024,
            streamer_max_message_bytes: 64 * 1024 * 1024,
            access_log: false,
            growth_journal: None,
        }
    }
}
