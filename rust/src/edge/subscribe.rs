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
use super::throttle::Throttle;
use super::ws::{self, Socket};
use crate::codec::extra_field::with_count;
use crate::codec::Envelope;
use crate::error::CoreError;
use crate::hub::{Message, Overflow, Policy, Subscription, DEFAULT_MAX_QUEUE_BYTES};
use crate::view::{ViewMember, ViewSpec};

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
#[derive(Debug, Clone, PartialEq)]
struct Options {
    envelope: Envelope,
    start: Option<u64>,
    policy: Policy,
    /// What to see of each frame (`None`: the frames as published).
    view: Option<ViewSpec>,
    /// At most this many frames a second, the newest wins.
    max_fps: Option<f64>,
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
        let view = ViewSpec::parse(|name| query.get(name)).map_err(bad)?;
        let max_fps = match query.get("max_fps") {
            None => None,
            Some(raw) => match raw.trim().parse::<f64>() {
                Ok(fps) if fps.is_finite() && fps > 0.0 => Some(fps),
                _ => return Err(bad(format!("max_fps must be a number > 0, not {}", super::query::py_repr(raw)))),
            },
        };
        Ok(Self { envelope, start, policy, view, max_fps })
    }

    /// Checks the view against the node: views apply to array streams, and the slice and the
    /// dtype must suit the array (400 otherwise, as the array GET answers a bad slice).
    fn check_view(&self, node: &Node) -> Result<(), BadParameter> {
        let Some(view) = &self.view else { return Ok(()) };
        match node.info.array.as_ref().filter(|_| node.info.family == "array") {
            Some(array) => {
                let shape: Vec<usize> = array.shape.iter().map(|n| usize::try_from(*n).unwrap_or(usize::MAX)).collect();
                view.check(&array.dtype, &shape).map_err(bad)
            }
            None => Err(bad(format!(
                "slice, bin, dtype and compression apply to array streams, not to a {} node",
                node.info.family
            ))),
        }
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
    if let Err(e) = options.check_view(&node) {
        return respond::error(e.status, &e.detail);
    }
    let (response, upgrade) = match ws::accept(&mut request) {
        Ok(accepted) => accepted,
        Err(refused) => return refused.response(),
    };
    // Registered before the 101 goes out: nothing written after the client sees it is missed.
    // A view's subscriber reads the published frames in msgpack (encoded anyway, never JSON).
    let read_as = if options.view.is_some() { Envelope::Msgpack } else { options.envelope };
    let subscription = hub.subscribe(node.info.id, options.start, read_as, options.policy).await;
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
    let member = (options.view.is_some() || options.max_fps.is_some())
        .then(|| shared.views.join(node.info.id, options.view.clone()));
    let delivery = Delivery { envelope: options.envelope, member, throttle: options.max_fps.map(Throttle::new) };
    let outcome = if schema_sent {
        pump(socket, &subscription, node.info.id, options.policy, delivery).await
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

/// How frames reach this subscriber: its envelope, its view and its `max_fps`.
struct Delivery {
    envelope: Envelope,
    member: Option<ViewMember>,
    throttle: Option<Throttle>,
}

impl Delivery {
    /// The frame to send for `message` (through the view, if any).
    fn frame(&self, message: &Arc<Message>) -> tokio_websockets::Message {
        let text = self.envelope == Envelope::Json;
        match &self.member {
            Some(member) => frame(member.view(message).envelope(self.envelope).clone(), text),
            None => frame(message.envelope(self.envelope).clone(), text),
        }
    }

    /// The frame `max_fps` held back, saying how many it skipped before it.
    fn throttled_frame(&self, message: &Arc<Message>, skipped: u64) -> tokio_websockets::Message {
        let viewed = self.member.as_ref().map_or_else(|| Arc::clone(message), |m| m.view(message));
        let bytes = with_count(viewed.envelope(self.envelope), self.envelope, "skipped", skipped);
        frame(bytes, self.envelope == Envelope::Json)
    }

    /// Takes the batch's frames: the ones to send now are fed to `sink`; with `max_fps`, data
    /// frames are held back instead (the newest wins) and notices go out at once.
    async fn feed<S>(&mut self, sink: &mut S, frames: &[Arc<Message>]) -> Result<(), ()>
    where
        S: futures_util::Sink<tokio_websockets::Message> + Unpin,
    {
        for message in frames {
            match self.throttle.as_mut() {
                Some(throttle) if message.sequence() != 0 => {
                    let replaced = throttle.offer(message);
                    if let Some(member) = self.member.as_ref().filter(|_| replaced > 0) {
                        member.skipped(replaced);
                    }
                }
                _ => sink.feed(self.frame(message)).await.map_err(|_| ())?,
            }
        }
        Ok(())
    }

    /// Feeds the frame `max_fps` held back, if any.
    async fn feed_held<S>(&mut self, sink: &mut S) -> Result<(), ()>
    where
        S: futures_util::Sink<tokio_websockets::Message> + Unpin,
    {
        let Some((message, skipped)) = self.throttle.as_mut().and_then(Throttle::release) else { return Ok(()) };
        sink.feed(self.throttled_frame(&message, skipped)).await.map_err(|_| ())
    }
}

/// Sends frames until the subscription ends or the peer goes away. Incoming messages are read
/// only to notice the peer's close (Tiled clients send nothing after auth).
async fn pump(
    socket: Socket,
    subscription: &Subscription,
    topic: u64,
    policy: Policy,
    mut delivery: Delivery,
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
    let send = async {
        let mut limit = BATCH;
        loop {
            if let Some(due) = delivery.throttle.as_ref().and_then(Throttle::due) {
                // A frame is held back: send it when due, unless more arrive first.
                let due = tokio::select! {
                    biased;
                    () = tokio::time::sleep_until(due) => true,
                    () = subscription.ready() => false,
                };
                if due {
                    delivery.feed_held(&mut sink).await?;
                    if !flush_watched(&mut sink, subscription, policy).await {
                        return Err(());
                    }
                    continue;
                }
            }
            let batch = subscription.next_batch(limit).await;
            delivery.feed(&mut sink, &batch.frames).await?;
            if batch.close.is_some() {
                delivery.feed_held(&mut sink).await?; // the last frame is not held back forever
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
