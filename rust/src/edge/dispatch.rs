//! `Shared` (what every connection of one edge uses) and `dispatch`: which requests the edge
//! serves itself and which go to the control plane.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use http::{Request, Response};
use hyper::body::Incoming;

use super::config::EdgeConfig;
use super::forward::Upstream;
use super::respond::Body;

/// What the connections of one edge share.
pub struct Shared {
    /// The settings the edge started with.
    pub config: EdgeConfig,
    /// The forwarding client to the control plane.
    pub upstream: Upstream,
}

/// Serves one request: natively for the data plane's routes, else forwarded.
pub async fn dispatch(
    shared: Arc<Shared>,
    request: Request<Incoming>,
    peer: SocketAddr,
) -> Result<Response<Body>, Infallible> {
    Ok(shared.upstream.forward(request, peer).await)
}
