//! The edge: the public HTTP/WebSocket server of one ferrotile process (hyper 1 on tokio).
//!
//! It owns the listening socket. The data plane's routes are served here with no Python per
//! frame: Tiled subscriptions (`subscribe`; many over one socket: `multi`), array writes
//! (`arrays`) and Redis Streamer's push and pull (`streamer`); every other request is
//! forwarded (`forward`) to the Python control plane, which Granian serves on a private Unix
//! socket in the same process. Python is asked once per node-cache miss (`nodes`, `control`) or
//! per persisted write, and tells the edge when nodes change ([`Edge::invalidate`]).

mod access;
mod arrays;
mod auth;
mod body;
mod chunks;
mod config;
mod control;
mod delivery;
mod dispatch;
mod forward;
mod growth;
mod listener;
mod log;
mod multi;
mod nodes;
mod options;
mod pages;
mod persist;
mod push;
mod query;
mod respond;
mod route;
mod session;
mod shared;
mod stats;
mod streamer;
mod subscribe;
mod throttle;
mod timestamp;
mod unrecorded;
mod write_locks;
mod ws;

use std::sync::Arc;

pub use config::EdgeConfig;
pub use control::{ArrayInfo, ArrayWrite, Control, NodeInfo, Refusal, Stored, StreamName, StreamNode, WriteKind};
use forward::Upstream;
use nodes::Nodes;
pub use pages::disable_transparent_huge_pages;
use shared::Shared;
use stats::Stats;
pub use stats::{Histogram, Snapshot};
use tokio::sync::watch;

use crate::error::{CoreError, CoreResult};
use crate::hub::Hub;

/// A running edge. Dropping it does not stop it: call [`Edge::stop`].
pub struct Edge {
    port: u16,
    stop: watch::Sender<bool>,
    shared: Arc<Shared>,
}

impl Edge {
    /// Binds the public socket and starts serving on `runtime`: the data plane on `hub`
    /// (`None`: streaming off), everything else forwarded; `control` answers about nodes and
    /// stores persisted writes. `latency_bounds` are the metrics' histogram buckets (seconds).
    pub fn start(
        config: EdgeConfig,
        hub: Option<Hub>,
        control: Arc<dyn Control>,
        latency_bounds: Vec<f64>,
        runtime: &tokio::runtime::Handle,
    ) -> CoreResult<Self> {
        let std_listener = listener::bind(&config)?;
        let port = std_listener.local_addr().map_err(|e| CoreError::Listen(e.to_string()))?.port();
        let _guard = runtime.enter();
        let listener = tokio::net::TcpListener::from_std(std_listener).map_err(|e| CoreError::Listen(e.to_string()))?;
        let upstream = Upstream::new(config.upstream.clone());
        let unrecorded = Arc::new(unrecorded::Unrecorded::new(config.growth_journal.clone()));
        let shared = Arc::new(Shared {
            config,
            upstream,
            nodes: Nodes::new(control, Arc::clone(&unrecorded)),
            unrecorded,
            hub,
            stats: Arc::new(Stats::new(latency_bounds)),
            write_locks: write_locks::WriteLocks::default(),
            arrays: crate::store::OpenArrays::default(),
            views: crate::view::ViewCache::default(),
        });
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

    /// The node at `path` changed or went away (and everything below it, if `subtree`).
    pub fn invalidate(&self, path: &[String], subtree: bool) {
        self.shared.nodes.invalidate(path, subtree);
    }

    /// Every node may have changed (e.g. changes from other processes were missed).
    pub fn invalidate_all(&self) {
        self.shared.nodes.invalidate_all();
    }

    /// The metrics' deltas since the last call, and current gauges.
    pub fn take_stats(&self) -> Snapshot {
        let mut snapshot = self.shared.stats.take();
        snapshot.views = self.shared.views.snapshot();
        snapshot
    }

    /// Resolves once the catalog holds every array growth acknowledged before the call.
    pub fn settled(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        self.shared.unrecorded.settled()
    }

    /// Stops accepting connections; open connections finish their current request.
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }
}
