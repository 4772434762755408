//! `WS /api/v1/stream/multi`: many Tiled subscriptions over one WebSocket (the protocol proposed
//! for Tiled in bluesky/tiled #1472 / PR #1508), served with no Python per frame.
//!
//! The client authenticates with its first message (`auth` -> `connection_ack`, or close 1008),
//! then subscribes and unsubscribes by ids it chooses; every frame of a subscription arrives as
//! a `data` message carrying its id and the exact payload the single route would send. Each
//! subscription is its own hub [`crate::hub::Subscription`] with its own byte cap and overflow
//! policy, and the writer serves the ready ones in turn ([`connection`]), so one slow
//! subscription never holds up the others. `envelope_format` (query) picks JSON or msgpack for
//! the whole connection; control messages are read as JSON (text) or msgpack (binary) on either.
//! Messages: [`protocol`].

mod connection;
mod protocol;

use std::sync::Arc;
use std::time::Instant;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

use super::auth::{self, Credentials};
use super::options;
use super::query::Query;
use super::respond::{self, Body};
use super::shared::{Shared, STREAMING_OFF};
use super::ws;

/// Answers the handshake; the session runs on its own task once upgraded. Credentials in the
/// handshake (header, `api_key` query parameter, cookie) count for the `auth` message; a wrong
/// one is refused here, as on the single route.
pub async fn handle(shared: Arc<Shared>, mut request: Request<Incoming>, peer: std::net::SocketAddr) -> Response<Body> {
    let query = Query::parse(request.uri().query());
    let credentials = match auth::credentials(request.headers(), &query, &shared.config.api_key) {
        Ok(credentials) => credentials,
        Err(denied) => return respond::error(denied.status, denied.detail),
    };
    if credentials == Credentials::Invalid {
        return respond::error(StatusCode::UNAUTHORIZED, "Invalid API key");
    }
    let Some(hub) = shared.hub.clone() else {
        return respond::error(StatusCode::NOT_FOUND, STREAMING_OFF);
    };
    let envelope = match options::envelope(&query) {
        Ok(envelope) => envelope,
        Err(e) => return respond::error(e.status, &e.detail),
    };
    let (response, upgrade) = match ws::accept(&mut request) {
        Ok(accepted) => accepted,
        Err(refused) => return refused.response(),
    };
    shared.stats.websocket("stream");
    let uri_path = request.uri().path().to_owned();
    tokio::spawn(async move {
        let started = Instant::now();
        let Ok(upgraded) = upgrade.await else { return };
        let authenticated = credentials == Credentials::Valid;
        connection::run(Arc::clone(&shared), hub, upgraded, envelope, authenticated).await;
        if shared.config.access_log {
            super::access::websocket(peer.ip(), &uri_path, started, None);
        }
    });
    response
}
