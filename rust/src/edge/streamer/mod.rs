//! The Redis Streamer data routes, served by the edge: `WS /data/{sid}/push` ([`push`]) and
//! `WS /data/{sid}/pull` ([`pull`]). A stream `{device}:{prefix}{sid}` is the catalog node
//! `streams/{device}/{prefix}{sid}` (the control plane names, creates and looks them up, once
//! per connection and stream); its entries go through the same hub as every Tiled stream.

pub mod params;
pub mod pull;
pub mod push;

use std::sync::Arc;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::{json, Map, Value};

use super::auth::{self, Access};
use super::control::{StreamName, StreamNode};
use super::query::Query;
use super::respond::{self, Body};
use super::shared::Shared;
use crate::codec::envelope::Header;
use crate::error::CoreError;
use crate::hub::Hub;

/// Close codes: bad input (policy violation), too big, streaming cache lost.
pub const CLOSE_BAD_INPUT: u16 = 1008;
/// A message over the size limit.
pub const CLOSE_TOO_BIG: u16 = 1009;
/// The streaming cache (Redis) is unreachable: reconnect shortly.
pub const CLOSE_UNAVAILABLE: u16 = 1012;

/// What a push or pull connection knows after its handshake.
pub struct StreamSession {
    /// The process's hub.
    pub hub: Hub,
    /// The stream ids of the URL (`a+b`).
    pub names: Vec<String>,
    /// Each one's node, as the control plane knew it at the handshake.
    pub nodes: Vec<StreamNode>,
    /// `device_id`.
    pub device: Option<String>,
    /// `prefix`.
    pub prefix: String,
}

impl StreamSession {
    /// Authenticates for `access` and names the URL's streams (400 for names the control plane
    /// refuses; a stream nothing was pushed to yet has no id).
    pub async fn open(
        shared: &Arc<Shared>,
        request: &Request<Incoming>,
        query: &Query,
        sid: &str,
        access: Access,
    ) -> Result<Self, Response<Body>> {
        auth::check(request.headers(), query, &shared.config.api_key, access, shared.config.public)
            .map_err(|d| respond::error(d.status, d.detail))?;
        let Some(hub) = shared.hub.clone() else {
            return Err(respond::error(
                StatusCode::NOT_FOUND,
                "Streaming is not enabled on this server (started with --cache none)",
            ));
        };
        let names = params::stream_ids(sid).map_err(|e| respond::error(StatusCode::BAD_REQUEST, &e.0))?;
        let device = query.get("device_id").map(str::to_owned);
        let prefix = query.get("prefix").unwrap_or("").to_owned();
        let mut nodes = Vec::with_capacity(names.len());
        for name in &names {
            let asked = StreamName { sid: name.clone(), device: device.clone(), prefix: prefix.clone(), create: false };
            nodes.push(shared.nodes.control().stream(asked).await.map_err(|r| r.response())?);
        }
        Ok(Self { hub, names, nodes, device, prefix })
    }
}

/// The Tiled envelope of pushed entries (the hub adds `sequence` and `shape`).
pub fn entry_header() -> Header {
    let value = json!({
        "type": "array-data",
        "timestamp": super::timestamp::now(),
        "mimetype": "application/octet-stream",
        "offset": Value::Null,
        "block": Value::Null,
    });
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// The close reason for a lost streaming cache.
pub fn unavailable(error: &CoreError) -> String {
    format!("{error}; reconnect shortly")
}
