//! `WS /api/v1/stream/single/{path}`: Tiled subscriptions, served with no Python per frame.
//!
//! Per connection the control plane is asked at most once (the node, on a cache miss). The
//! subscription is registered before the `101` goes out, so no write landing during the
//! handshake is missed; then the schema frame, then every frame the hub encoded once for all
//! subscribers, written as is (vectored: no copy per subscriber). Options beyond Tiled
//! (`notify_gaps`, `max_queue_bytes`, `on_overflow`, and the views `slice`, `bin`, `dtype`,
//! `range`, `compression`, `max_fps`) are opt-in; a client that sends none of them (the stock
//! client) sees Tiled's behaviour with the default byte cap. A view's frames are computed once
//! per frame for all its subscribers ([`crate::view::ViewCache`]).

use std::sync::Arc;
use std::time::Instant;

use futures_util::{SinkExt, StreamExt};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;

use super::auth::{self, Credentials};
use super::delivery::Delivery;
use super::nodes::Node;
use super::options::{self, SubscribeOptions};
use super::query::{BadParameter, Query};
use super::respond::{self, Body};
use super::session::{self, frame, FROZEN_TIMEOUT};
use super::shared::{Shared, STREAMING_OFF};
use super::ws::{self, Socket};
use crate::codec::Envelope;
use crate::error::CoreError;
use crate::hub::{Overflow, Policy, Subscription};
/// Frames fetched per wake-up at most.
const BATCH: usize = 64;
/// Most envelope bytes fetched at once (one frame at least): what a stalled connection holds
/// beyond the shared ring, and how often the hub's overflow policy gets to look.
const WINDOW_BYTES: usize = 2 * 1024 * 1024;
/// Largest message a subscriber may send (only its first-message auth is read): 1009 beyond.
const CLIENT_MESSAGE_BYTES: usize = 64 * 1024;
/// Close code while the streaming cache (Redis) is unreachable: "service restart", retry.
const UNAVAILABLE: u16 = 1012;

/// What the client asked for in its query string.
#[derive(Debug, Clone, PartialEq)]
struct Options {
    envelope: Envelope,
    subscription: SubscribeOptions,
}

impl Options {
    fn parse(query: &Query) -> Result<Self, BadParameter> {
        Ok(Self { envelope: options::envelope(query)?, subscription: SubscribeOptions::parse(query)? })
    }
}

/// Answers the handshake; the session runs on its own task once upgraded.
pub async fn handle(
    shared: Arc<Shared>,
    mut request: Request<Incoming>,
    path: String,
    peer: std::net::SocketAddr,
) -> Response<Body> {
    let credentials = match auth::from_header(request.headers(), &shared.config.api_key) {
        Ok(credentials) => credentials,
        Err(denied) => return respond::error(denied.status, denied.detail),
    };
    if credentials == Credentials::Invalid {
        return respond::error(StatusCode::UNAUTHORIZED, "Invalid API key");
    }
    let node = match shared.nodes.resolve(&path).await {
        Ok(node) => node,
        Err(refusal) => return refusal.response(),
    };
    if let Some(refusal) = node.unstreamable() {
        return respond::error(StatusCode::NOT_FOUND, &refusal);
    }
    let Some(hub) = shared.hub.clone() else {
        return respond::error(StatusCode::NOT_FOUND, STREAMING_OFF);
    };
    let options = match Options::parse(&Query::parse(request.uri().query())) {
        Ok(options) => options,
        Err(e) => return respond::error(e.status, &e.detail),
    };
    if let Err(e) = options.subscription.check_view(&node) {
        return respond::error(e.status, &e.detail);
    }
    let (response, upgrade) = match ws::accept(&mut request) {
        Ok(accepted) => accepted,
        Err(refused) => return refused.response(),
    };
    // Registered before the 101 goes out: nothing written after the client sees it is missed.
    let (start, policy) = (options.subscription.start, options.subscription.policy);
    let subscription = hub.subscribe(node.info.id, start, options.subscription.read_as(options.envelope), policy).await;
    let needs_auth = credentials == Credentials::None && !shared.config.public;
    shared.stats.websocket("stream");
    let uri_path = request.uri().path().to_owned();
    tokio::spawn(async move {
        let started = Instant::now();
        let last = run(&shared, upgrade, subscription, &node, options, needs_auth).await;
        if shared.config.access_log {
            super::access::websocket(peer.ip(), &uri_path, started, last);
        }
    });
    response
}

/// The session: auth, schema, frames, close. Returns the last sequence handed out.
async fn run(
    shared: &Arc<Shared>,
    upgrade: OnUpgrade,
    subscription: Result<Subscription, CoreError>,
    node: &Node,
    options: Options,
    needs_auth: bool,
) -> Option<u64> {
    let subscription = subscription.map(Arc::new);
    let Ok(upgraded) = upgrade.await else {
        if let Ok(s) = &subscription {
            s.cancel();
        }
        return None;
    };
    let mut socket = ws::socket(upgraded, CLIENT_MESSAGE_BYTES);
    let subscription = match subscription {
        Ok(subscription) => subscription,
        Err(_) => {
            // Accepted, then 1012 ("service restart"): the stock client retries a closed
            // connection, but gives up for good on a refused handshake.
            session::close(socket, UNAVAILABLE, "streaming cache unavailable; reconnect shortly").await;
            return None;
        }
    };
    let _tracked = shared.stats.track(Arc::clone(&subscription) as Arc<dyn super::stats::Tracked>);
    if needs_auth {
        if let Err(failed) = session::first_message_auth(&mut socket, &shared.config.api_key).await {
            subscription.cancel();
            session::close(socket, failed.code, failed.reason).await;
            return None;
        }
    }
    let text = options.envelope == Envelope::Json;
    let schema_sent = match node.schema_frame(options.envelope) {
        Some(schema) => socket.send(frame(schema, text)).await.is_ok(),
        None => false,
    };
    let delivery = Delivery::new(shared, node.info.id, &options.subscription, options.envelope);
    let outcome = if schema_sent {
        pump(socket, &subscription, node.info.id, options.subscription.policy, (delivery, text)).await
    } else {
        Outcome::Gone
    };
    subscription.cancel();
    if let Outcome::Closed(socket, code, reason) = outcome {
        session::close(*socket, code, &reason).await;
    }
    Some(subscription.last_sequence())
}

/// How a pump ended.
enum Outcome {
    /// The subscription ended: close the socket with this code and reason.
    Closed(Box<Socket>, u16, String),
    /// The peer went away, or is frozen: nothing more can be sent.
    Gone,
}

/// Sends frames until the subscription ends or the peer goes away. Incoming messages are read
/// only to notice the peer's close (Tiled clients send nothing after auth).
async fn pump(
    socket: Socket,
    subscription: &Subscription,
    topic: u64,
    policy: Policy,
    (mut delivery, text): (Delivery, bool),
) -> Outcome {
    let envelope = subscription.envelope();
    let (mut sink, mut stream) = socket.split();
    let peer_gone = async {
        while let Some(Ok(message)) = stream.next().await {
            if message.is_close() {
                break;
            }
        }
    };
    let over_cap = || policy.on_overflow == Overflow::Close && subscription.backlog_bytes() > policy.max_queue_bytes;
    let send = async {
        let mut limit = BATCH;
        loop {
            if let Some(due) = delivery.due() {
                // A frame is held back: send it when due, unless more arrive first.
                let due = tokio::select! {
                    biased;
                    () = tokio::time::sleep_until(due) => true,
                    () = subscription.ready() => false,
                };
                if due {
                    if let Some(held) = delivery.release() {
                        sink.feed(frame(held, text)).await.map_err(|_| ())?;
                    }
                    if !session::flush_watched(&mut sink, over_cap).await {
                        return Err(());
                    }
                    continue;
                }
            }
            let batch = subscription.next_batch(limit).await;
            let mut out = delivery.take(&batch.frames);
            if batch.close.is_some() {
                out.extend(delivery.release()); // the last frame is not held back forever
            }
            for bytes in out {
                sink.feed(frame(bytes, text)).await.map_err(|_| ())?;
            }
            if !session::flush_watched(&mut sink, over_cap).await {
                if subscription.backlog_bytes() > policy.max_queue_bytes {
                    super::log::warn(&format!(
                        "dropping frozen subscriber of node {}: nothing read for {} s with {} bytes queued > \
                         max_queue_bytes={} (last sequence handed out: {})",
                        topic,
                        FROZEN_TIMEOUT.as_secs(),
                        subscription.backlog_bytes(),
                        policy.max_queue_bytes,
                        subscription.last_sequence()
                    ));
                }
                return Err(());
            }
            if let Some(close) = batch.close {
                return Ok(close);
            }
            if let (Some(first), Some(last)) = (batch.frames.first(), batch.frames.last()) {
                // O(1) size estimate: frames of one stream are usually alike.
                let size = first.envelope(envelope).len().max(last.envelope(envelope).len()).max(1);
                limit = (WINDOW_BYTES / size).clamp(1, BATCH);
            }
        }
    };
    let ended = tokio::select! {
        () = peer_gone => Ended::PeerDone,
        sent = send => sent.map_or(Ended::Failed, Ended::Subscription),
    };
    let Ok(socket) = sink.reunite(stream) else { return Outcome::Gone };
    match ended {
        Ended::Subscription(close) => Outcome::Closed(Box::new(socket), close.code, close.reason.into_owned()),
        Ended::PeerDone => {
            session::finish(socket).await;
            Outcome::Gone
        }
        Ended::Failed => Outcome::Gone,
    }
}

/// Why a pump stopped.
enum Ended {
    /// The subscription ended with this close.
    Subscription(crate::hub::Close),
    /// The peer closed, went away or broke the protocol.
    PeerDone,
    /// Writing failed, or the peer is frozen.
    Failed,
}
