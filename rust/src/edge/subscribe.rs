//! `WS /api/v1/stream/single/{path}`: Tiled subscriptions, served with no Python per frame.
//!
//! Per connection the control plane is asked at most once (the node, on a cache miss). The
//! subscription is registered before the `101` goes out, so no write landing during the
//! handshake is missed; then the schema frame, then every frame the hub encoded once for all
//! subscribers, written as is (vectored: no copy per subscriber). Options beyond Tiled
//! (`notify_gaps`, `max_queue_bytes`, `on_overflow`) are opt-in; a client that sends none of them
//! (the stock client) sees Tiled's behaviour with the default byte cap.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;

use super::auth::{self, Credentials};
use super::nodes::Node;
use super::query::{BadParameter, Query};
use super::respond::{self, Body};
use super::session::{self, frame};
use super::shared::Shared;
use super::ws::{self, Socket};
use crate::codec::Envelope;
use crate::error::CoreError;
use crate::hub::{Overflow, Policy, Subscription, DEFAULT_MAX_QUEUE_BYTES};

/// Structure families that have a stream.
const STREAMABLE: [&str; 5] = ["array", "container", "ragged", "sparse", "table"];
/// Frames fetched per wake-up at most.
const BATCH: usize = 64;
/// Most envelope bytes fetched at once (one frame at least): what a stalled connection holds
/// beyond the shared ring, and how often the hub's overflow policy gets to look.
const WINDOW_BYTES: usize = 2 * 1024 * 1024;
/// A `close`-policy subscriber over its cap that completes no write for this long (its peer
/// reads nothing) is dropped; checked every `STALL_CHECK`.
const FROZEN_TIMEOUT: Duration = Duration::from_secs(5);
const STALL_CHECK: Duration = Duration::from_secs(1);
/// Largest message a subscriber may send (only its first-message auth is read): 1009 beyond.
const CLIENT_MESSAGE_BYTES: usize = 64 * 1024;
/// Close code while the streaming cache (Redis) is unreachable: "service restart", retry.
const UNAVAILABLE: u16 = 1012;

/// What the client asked for in its query string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Options {
    envelope: Envelope,
    start: Option<u64>,
    policy: Policy,
}

fn bad(detail: String) -> BadParameter {
    BadParameter { status: StatusCode::BAD_REQUEST, detail }
}

impl Options {
    fn parse(query: &Query) -> Result<Self, BadParameter> {
        let envelope = match query.get("envelope_format").unwrap_or("json") {
            "json" => Envelope::Json,
            "msgpack" => Envelope::Msgpack,
            other => return Err(bad(format!("envelope_format must be one of ['json', 'msgpack'], not {other:?}"))),
        };
        let notify_gaps = match query.get("notify_gaps").unwrap_or("false").to_ascii_lowercase().as_str() {
            "true" | "1" => true,
            "false" | "0" => false,
            other => return Err(bad(format!("notify_gaps must be true or false, not {other:?}"))),
        };
        let on_overflow = match query.get("on_overflow").unwrap_or("close") {
            "close" => Overflow::Close,
            "latest" => Overflow::Latest,
            _ => return Err(bad("on_overflow must be one of ['close', 'latest']".into())),
        };
        let max_queue_bytes = query.integer::<usize>("max_queue_bytes", 1, StatusCode::BAD_REQUEST)?;
        let start = query.integer::<u64>("start", 0, StatusCode::BAD_REQUEST)?;
        let policy =
            Policy { notify_gaps, max_queue_bytes: max_queue_bytes.unwrap_or(DEFAULT_MAX_QUEUE_BYTES), on_overflow };
        Ok(Self { envelope, start, policy })
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
    if !STREAMABLE.contains(&node.info.family.as_str()) || node.info.schema.is_none() {
        return respond::error(StatusCode::NOT_FOUND, &format!("{:?} nodes cannot be streamed", node.info.family));
    }
    let Some(hub) = shared.hub.clone() else {
        return respond::error(
            StatusCode::NOT_FOUND,
            "Streaming is not enabled on this server (started with --cache none)",
        );
    };
    let options = match Options::parse(&Query::parse(request.uri().query())) {
        Ok(options) => options,
        Err(e) => return respond::error(e.status, &e.detail),
    };
    let (response, upgrade) = match ws::accept(&mut request) {
        Ok(accepted) => accepted,
        Err(refused) => return refused.response(),
    };
    // Registered before the 101 goes out: nothing written after the client sees it is missed.
    let subscription = hub.subscribe(node.info.id, options.start, options.envelope, options.policy).await;
    let needs_auth = credentials == Credentials::None && !shared.config.public;
    shared.stats.websocket("stream");
    let uri_path = request.uri().path().to_owned();
    tokio::spawn(async move {
        let started = Instant::now();
        let last = run(&shared, upgrade, subscription, &node, options, needs_auth).await;
        if shared.config.access_log {
            super::access::write(&super::access::Line {
                client: peer.ip(),
                method: "WS",
                path: &uri_path,
                status: None,
                seconds: started.elapsed().as_secs_f64(),
                bytes: None,
                last_sequence: last,
            });
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
    let outcome =
        if schema_sent { pump(socket, &subscription, node.info.id, options.policy, text).await } else { Outcome::Gone };
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
async fn pump(socket: Socket, subscription: &Subscription, topic: u64, policy: Policy, text: bool) -> Outcome {
    let envelope = subscription.envelope();
    let (mut sink, mut stream) = socket.split();
    let peer_gone = async {
        while let Some(Ok(message)) = stream.next().await {
            if message.is_close() {
                break;
            }
        }
    };
    let send = async {
        let mut limit = BATCH;
        loop {
            let batch = subscription.next_batch(limit).await;
            for message in &batch.frames {
                sink.feed(frame(message.envelope(envelope).clone(), text)).await.map_err(|_| ())?;
            }
            if !flush_watched(&mut sink, subscription, policy).await {
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

/// Flushes what was fed; false if the connection failed, or if the peer is frozen: with
/// `on_overflow=close`, no write completed for [`FROZEN_TIMEOUT`] while the backlog stayed over
/// the cap. (The hub applies its policy only when the pump fetches again, which a peer that reads
/// nothing never lets happen; such a connection is dropped instead.)
async fn flush_watched<S>(sink: &mut S, subscription: &Subscription, policy: Policy) -> bool
where
    S: futures_util::Sink<tokio_websockets::Message> + Unpin,
{
    let since = Instant::now();
    let flush = sink.flush();
    tokio::pin!(flush);
    loop {
        tokio::select! {
            flushed = &mut flush => return flushed.is_ok(),
            () = tokio::time::sleep(STALL_CHECK) => {
                let frozen = policy.on_overflow == Overflow::Close
                    && since.elapsed() >= FROZEN_TIMEOUT
                    && subscription.backlog_bytes() > policy.max_queue_bytes;
                if frozen {
                    return false;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_as_the_control_plane_parsed_them() {
        let o = Options::parse(&Query::parse(None)).unwrap();
        assert_eq!(o.envelope, Envelope::Json);
        assert_eq!(o.start, None);
        assert_eq!(o.policy.max_queue_bytes, DEFAULT_MAX_QUEUE_BYTES);
        let q = Query::parse(Some("envelope_format=msgpack&start=0&notify_gaps=TRUE&on_overflow=latest"));
        let o = Options::parse(&q).unwrap();
        assert_eq!((o.envelope, o.start, o.policy.notify_gaps), (Envelope::Msgpack, Some(0), true));
        assert_eq!(o.policy.on_overflow, Overflow::Latest);
        for bad in
            ["envelope_format=xml", "start=-1", "start=18446744073709551616", "max_queue_bytes=0", "notify_gaps=maybe"]
        {
            let refused = Options::parse(&Query::parse(Some(bad))).unwrap_err();
            assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{bad}");
        }
    }
}
