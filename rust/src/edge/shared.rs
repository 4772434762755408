//! `Shared`: what every connection of one edge uses (settings, the forwarding client, the node
//! cache, the hub, the counters, the write locks, the views). Pure data: it imports no request handler.

use std::sync::Arc;

use super::config::EdgeConfig;
use super::forward::Upstream;
use super::nodes::Nodes;
use super::stats::Stats;
use super::unrecorded::Unrecorded;
use super::write_locks::WriteLocks;
use crate::hub::Hub;
use crate::store::OpenArrays;
use crate::view::ViewCache;

/// Why a subscription is refused when the hub is off (a 404's detail).
pub const STREAMING_OFF: &str = "Streaming is not enabled on this server (started with --cache none)";

/// What the connections of one edge share.
pub struct Shared {
    /// The settings the edge started with.
    pub config: EdgeConfig,
    /// The forwarding client to the control plane.
    pub upstream: Upstream,
    /// What the control plane said about each path.
    pub nodes: Nodes,
    /// The process's streams (`None`: streaming is off, `--cache none`).
    pub hub: Option<Hub>,
    /// Counters for the metrics.
    pub stats: Arc<Stats>,
    /// Persisted writes of a node, one at a time.
    pub write_locks: WriteLocks,
    /// The zarr arrays persisted writes go to.
    pub arrays: OpenArrays,
    /// Array growth acknowledged before the catalog recorded it.
    pub unrecorded: Arc<Unrecorded>,
    /// Subscribers' views, computed once per frame per view.
    pub views: ViewCache,
}
