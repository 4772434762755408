//! The edge: the public HTTP/WebSocket server of one ferrotile process (hyper 1 on tokio).
//!
//! It owns the listening socket. The data plane's routes are served here with no Python per
//! frame; every other request is forwarded to the Python control plane, which Granian serves on
//! a private Unix socket in the same process (see `docs/architecture.md` in the repository).

mod config;
mod dispatch;
mod forward;
mod listener;
mod respond;

use std::sync::Arc;

pub use config::EdgeConfig;
use dispatch::Shared;
use forward::Upstream;
use tokio::sync::watch;

use crate::error::{CoreError, CoreResult};

/// A running edge. Dropping it does not stop it: call [`Edge::stop`].
pub struct Edge {
    port: u16,
    stop: watch::Sender<bool>,
    shared: Arc<Shared>,
}

impl Edge {
    /// Binds the public socket and starts serving on `runtime`.
    pub fn start(config: EdgeConfig, runtime: &tokio::runtime::Handle) -> CoreResult<Self> {
        let std_listener = listener::bind(&config)?;
        let port = std_listener.local_addr().map_err(|e| CoreError::Listen(e.to_string()))?.port();
        let _guard = runtime.enter();
        let listener = tokio::net::TcpListener::from_std(std_listener).map_err(|e| CoreError::Listen(e.to_string()))?;
        let upstream = Upstream::new(config.upstream.clone());
        let shared = Arc::new(Shared { config, upstream });
        let (stop, stopped) = watch::channel(false);
        runtime.spawn(listener::accept_loop(listener, Arc::clone(&shared), stopped));
        Ok(Self { port, stop, shared })
    }

    /// The port it listens on (the configured one, or the one the system chose for 0).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The settings it runs with.
    pub fn config(&self) -> &EdgeConfig {
        &self.shared.config
    }

    /// Stops accepting connections; open connections finish their current request.
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }
}
