//! `Connection`: one `WS /api/v1/stream/multi` session after the handshake: first-message auth,
//! then a loop that reads the client's messages, sets subscriptions up (node resolved, hub
//! subscription registered) without holding up the others, and writes frames.
//!
//! Fairness: a subscription with frames ready is queued once; each round, every queued one gets
//! one turn of at most [`TURN_BYTES`] (one frame at least), then goes to the back of the queue
//! if it may have more, or waits on its hub subscription again. A subscription that falls
//! behind meets its own byte cap and overflow policy in the hub (`latest` skips, `close` ends
//! it with a `complete`), never the others'.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use futures_util::future::BoxFuture;
use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, SinkExt, StreamExt};
use hyper::upgrade::Upgraded;
use serde_json::Value;
use tokio_websockets::Message;

use super::super::auth::key_matches;
use super::super::delivery::Delivery;
use super::super::nodes::Node;
use super::super::options::SubscribeOptions;
use super::super::query::Query;
use super::super::session::{self, AUTH_TIMEOUT, FROZEN_TIMEOUT};
use super::super::shared::Shared;
use super::super::stats::{Open, OpenGuard, TrackGuard, Tracked};
use super::super::ws::{self, Socket};
use super::protocol::{self, DataPrefix, Malformed, Request};
use crate::codec::Envelope;
use crate::hub::{Hub, Overflow, Policy, Subscription};

/// Most subscriptions (open or being set up) on one connection; more are refused with 429.
pub const MAX_SUBSCRIPTIONS: usize = 1000;
/// Largest message a client may send: 1009 beyond.
const CLIENT_MESSAGE_BYTES: usize = 64 * 1024;
/// Frames one subscription sends per turn at most.
const BATCH: usize = 64;
/// Envelope bytes one subscription sends per turn (one frame at least) before the next ready
/// one's turn.
const TURN_BYTES: usize = 256 * 1024;
/// The close reason for an anonymous client of a server that is not public.
const NOT_PERMITTED: &str = "Not enough permissions: send an api_key in the auth message";

/// Serves an upgraded connection; `authenticated`: the handshake carried the server's key.
pub async fn run(shared: Arc<Shared>, hub: Hub, upgraded: Upgraded, envelope: Envelope, authenticated: bool) {
    let mut socket = ws::socket(upgraded, CLIENT_MESSAGE_BYTES);
    let _open = shared.stats.opened(Open::MultiConnection);
    if let Err(reason) = authenticate(&mut socket, &shared, authenticated).await {
        session::close(socket, 1008, reason).await;
        return;
    }
    if socket.send(protocol::reply(&protocol::connection_ack(), envelope)).await.is_err() {
        return;
    }
    let mut connection = Connection::new(shared, hub, envelope);
    let ended = connection.serve(&mut socket).await;
    connection.cancel_all();
    if ended == Ended::PeerDone {
        session::finish(socket).await;
    }
}

/// The first message must be `auth`: its key if it has one, else the handshake's credentials
/// (or none on a public server). The close reason otherwise.
async fn authenticate(socket: &mut Socket, shared: &Shared, authenticated: bool) -> Result<(), &'static str> {
    let message = match tokio::time::timeout(AUTH_TIMEOUT, socket.next()).await {
        Ok(Some(Ok(message))) => message,
        Ok(_) => return Err("Expected {\"type\": \"auth\", ...} as the first message"),
        Err(_) => return Err("No auth message within 30 s"),
    };
    match protocol::parse(&message) {
        Ok(Request::Auth { api_key: Some(key) }) if key_matches(key.as_bytes(), &shared.config.api_key) => Ok(()),
        Ok(Request::Auth { api_key: Some(_) }) => Err("Authentication failed"),
        Ok(Request::Auth { api_key: None }) if authenticated || shared.config.public => Ok(()),
        Ok(Request::Auth { api_key: None }) => Err(NOT_PERMITTED),
        _ => Err("Expected {\"type\": \"auth\", ...} as the first message"),
    }
}

/// How serving ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    /// The peer closed, went away or broke the protocol: finish the close handshake.
    PeerDone,
    /// Writing failed, or the peer is frozen: nothing more can be sent.
    Failed,
}

/// Something that happened.
enum Event {
    /// A message from the client (`None`: it went away).
    Incoming(Option<Result<Message, tokio_websockets::Error>>),
    /// The subscription with this key has frames (or its end) ready.
    Ready(u64),
    /// A subscription's set-up finished.
    SetUp(Box<Setup>),
}

/// A subscription's set-up: its node and hub subscription, or the error's status and detail.
struct Setup {
    key: u64,
    options: SubscribeOptions,
    outcome: Result<(Arc<Node>, Subscription), (u16, String)>,
}

/// An open subscription.
struct Active {
    id: String,
    subscription: Arc<Subscription>,
    prefix: DataPrefix,
    policy: Policy,
    /// Its envelope, view and `max_fps`.
    delivery: Delivery,
    /// Bytes of its last frame: how many frames make a turn.
    frame_bytes: usize,
    _tracked: TrackGuard,
    _open: OpenGuard,
}

/// The subscriptions of one connection (see the module docs).
struct Connection {
    shared: Arc<Shared>,
    hub: Hub,
    envelope: Envelope,
    /// Client id -> key, for every subscription open or being set up. Keys are never reused,
    /// so a wake-up of an ended subscription cannot be mistaken for a new one of the same id.
    ids: HashMap<String, u64>,
    /// Key -> client id, while being set up.
    setting_up: HashMap<u64, String>,
    active: HashMap<u64, Active>,
    setups: FuturesUnordered<BoxFuture<'static, Box<Setup>>>,
    /// One wake-up per open subscription not in `ready`.
    waiting: FuturesUnordered<BoxFuture<'static, u64>>,
    ready: VecDeque<u64>,
    next_key: u64,
}

impl Connection {
    fn new(shared: Arc<Shared>, hub: Hub, envelope: Envelope) -> Self {
        Self {
            shared,
            hub,
            envelope,
            ids: HashMap::new(),
            setting_up: HashMap::new(),
            active: HashMap::new(),
            setups: FuturesUnordered::new(),
            waiting: FuturesUnordered::new(),
            ready: VecDeque::new(),
            next_key: 0,
        }
    }

    /// Reads, sets up and writes until the peer goes away or writing fails.
    async fn serve(&mut self, socket: &mut Socket) -> Ended {
        loop {
            if self.ready.is_empty() {
                let event = tokio::select! {
                    incoming = socket.next() => Event::Incoming(incoming),
                    Some(key) = self.waiting.next(), if !self.waiting.is_empty() => Event::Ready(key),
                    Some(setup) = self.setups.next(), if !self.setups.is_empty() => Event::SetUp(setup),
                };
                if let Some(ended) = self.handle(event, socket).await {
                    return ended;
                }
            }
            // Whatever else is at hand, without waiting.
            loop {
                let event = if let Some(Some(key)) = self.waiting.next().now_or_never() {
                    Event::Ready(key)
                } else if let Some(Some(setup)) = self.setups.next().now_or_never() {
                    Event::SetUp(setup)
                } else if let Some(incoming) = socket.next().now_or_never() {
                    Event::Incoming(incoming)
                } else {
                    break;
                };
                if let Some(ended) = self.handle(event, socket).await {
                    return ended;
                }
            }
            if !self.round(socket).await {
                return Ended::Failed;
            }
            if !session::flush_watched(socket, || over_cap(&self.active)).await {
                log_frozen(&self.active);
                return Ended::Failed;
            }
        }
    }

    async fn handle(&mut self, event: Event, socket: &mut Socket) -> Option<Ended> {
        match event {
            Event::Ready(key) => {
                if self.active.contains_key(&key) {
                    self.ready.push_back(key);
                }
                None
            }
            Event::SetUp(setup) => self.set_up(setup, socket).await,
            Event::Incoming(None | Some(Err(_))) => Some(Ended::PeerDone),
            Event::Incoming(Some(Ok(message))) if message.is_close() => Some(Ended::PeerDone),
            Event::Incoming(Some(Ok(message))) if message.is_ping() || message.is_pong() => None,
            Event::Incoming(Some(Ok(message))) => {
                let reply = match protocol::parse(&message) {
                    Ok(request) => self.request(request),
                    Err(Malformed { id, detail }) => Some(protocol::error(id.as_deref(), 400, &detail)),
                };
                let reply = reply?;
                send(&self.active, socket, protocol::reply(&reply, self.envelope)).await
            }
        }
    }

    /// Acts on a client message; the reply to send, if any.
    fn request(&mut self, request: Request) -> Option<Value> {
        match request {
            Request::Auth { .. } => Some(protocol::error(None, 400, "already authenticated")),
            Request::Ping { payload } => Some(protocol::pong(payload)),
            Request::Pong => None,
            Request::Unsubscribe { id } => {
                let Some(key) = self.ids.remove(&id) else {
                    return Some(protocol::error(Some(&id), 404, "no subscription with this id"));
                };
                self.setting_up.remove(&key);
                if let Some(active) = self.active.remove(&key) {
                    active.subscription.cancel();
                }
                Some(protocol::complete(&id, 1000, "unsubscribed"))
            }
            Request::Subscribe { id, path, options } => self.subscribe(id, path, &options),
        }
    }

    /// Starts setting up a subscription; the error to answer with if it is refused at once.
    fn subscribe(&mut self, id: String, path: String, options: &Query) -> Option<Value> {
        if self.ids.contains_key(&id) {
            return Some(protocol::error(Some(&id), 409, "a subscription with this id is already open"));
        }
        if self.ids.len() >= MAX_SUBSCRIPTIONS {
            let detail = format!("at most {MAX_SUBSCRIPTIONS} subscriptions per connection");
            return Some(protocol::error(Some(&id), 429, &detail));
        }
        let options = match SubscribeOptions::parse(options) {
            Ok(options) => options,
            Err(bad) => return Some(protocol::error(Some(&id), bad.status.as_u16(), &bad.detail)),
        };
        let key = self.next_key;
        self.next_key += 1;
        self.ids.insert(id.clone(), key);
        self.setting_up.insert(key, id);
        let (shared, hub, envelope) = (Arc::clone(&self.shared), self.hub.clone(), self.envelope);
        self.setups.push(
            async move {
                let outcome = async {
                    let node = shared.nodes.resolve(&path).await.map_err(|r| (r.status.as_u16(), r.detail()))?;
                    if let Some(refusal) = node.unstreamable() {
                        return Err((404, refusal));
                    }
                    options.check_view(&node).map_err(|bad| (bad.status.as_u16(), bad.detail))?;
                    let read_as = options.read_as(envelope);
                    let subscription = hub.subscribe(node.info.id, options.start, read_as, options.policy).await;
                    let unavailable = |_| (503, "streaming cache unavailable; subscribe again shortly".to_owned());
                    Ok((node, subscription.map_err(unavailable)?))
                }
                .await;
                Box::new(Setup { key, options, outcome })
            }
            .boxed(),
        );
        None
    }

    /// A set-up finished: the subscription opens with its schema message, or its error is sent.
    async fn set_up(&mut self, setup: Box<Setup>, socket: &mut Socket) -> Option<Ended> {
        let Some(id) = self.setting_up.remove(&setup.key) else {
            // Unsubscribed meanwhile (its `complete` was sent then).
            if let Ok((_, subscription)) = setup.outcome {
                subscription.cancel();
            }
            return None;
        };
        let (node, subscription) = match setup.outcome {
            Ok(opened) => opened,
            Err((status, detail)) => {
                self.ids.remove(&id);
                return send(
                    &self.active,
                    socket,
                    protocol::reply(&protocol::error(Some(&id), status, &detail), self.envelope),
                )
                .await;
            }
        };
        let subscription = Arc::new(subscription);
        let prefix = DataPrefix::new(&id, self.envelope);
        let schema = node.schema_frame(self.envelope).map(|schema| prefix.wrap(&schema));
        let stats = &self.shared.stats;
        let active = Active {
            id,
            subscription: Arc::clone(&subscription),
            prefix,
            policy: setup.options.policy,
            delivery: Delivery::new(&self.shared, node.info.id, &setup.options, self.envelope),
            frame_bytes: 1,
            _tracked: stats.track(Arc::clone(&subscription) as Arc<dyn Tracked>),
            _open: stats.opened(Open::MultiSubscription),
        };
        self.active.insert(setup.key, active);
        self.arm(setup.key);
        let schema = schema?;
        send(&self.active, socket, schema).await
    }

    /// Wakes the writer with `key` once its subscription has frames or its end ready, or the
    /// frame its `max_fps` holds back is due.
    fn arm(&mut self, key: u64) {
        let Some(active) = self.active.get(&key) else { return };
        let (subscription, due) = (Arc::clone(&active.subscription), active.delivery.due());
        self.waiting.push(
            async move {
                match due {
                    Some(due) => tokio::select! {
                        () = subscription.ready() => {}
                        () = tokio::time::sleep_until(due) => {}
                    },
                    None => subscription.ready().await,
                }
                key
            }
            .boxed(),
        );
    }

    /// One turn for each subscription queued as ready; false if writing failed.
    async fn round(&mut self, socket: &mut Socket) -> bool {
        for _ in 0..self.ready.len() {
            let Some(key) = self.ready.pop_front() else { break };
            let Some(active) = self.active.get_mut(&key) else { continue };
            let limit = (TURN_BYTES / active.frame_bytes.max(1)).clamp(1, BATCH);
            let batch = active.subscription.try_next(limit);
            let envelope = self.envelope;
            let mut out = active.delivery.take(&batch.frames);
            // The frame `max_fps` holds back goes when due, and at the end in any case.
            if batch.close.is_some() || active.delivery.due().is_some_and(|due| due <= tokio::time::Instant::now()) {
                out.extend(active.delivery.release());
            }
            if let Some(last) = out.last() {
                active.frame_bytes = last.len();
            }
            let messages: Vec<Message> = out.iter().map(|bytes| active.prefix.wrap(bytes)).collect();
            let complete = batch.close.map(|close| protocol::complete(&active.id, close.code, &close.reason));
            if complete.is_some() {
                let id = active.id.clone();
                self.active.remove(&key);
                self.ids.remove(&id);
            } else if batch.frames.len() >= limit {
                self.ready.push_back(key);
            } else {
                self.arm(key);
            }
            for message in messages.into_iter().chain(complete.map(|c| protocol::reply(&c, envelope))) {
                if send(&self.active, socket, message).await.is_some() {
                    return false;
                }
            }
        }
        true
    }

    fn cancel_all(&mut self) {
        for (_, active) in self.active.drain() {
            active.subscription.cancel();
        }
    }
}

/// Queues `message` (writing if the library's buffer is full); `Failed` if that failed or the
/// peer is frozen. (Takes the subscriptions, not the connection, which is not `Sync`.)
async fn send(active: &HashMap<u64, Active>, socket: &mut Socket, message: Message) -> Option<Ended> {
    if session::watched(socket.feed(message), || over_cap(active)).await {
        None
    } else {
        log_frozen(active);
        Some(Ended::Failed)
    }
}

/// Whether a `close`-policy subscription is over its cap (then a stalled peer is frozen).
fn over_cap(active: &HashMap<u64, Active>) -> bool {
    active
        .values()
        .any(|a| a.policy.on_overflow == Overflow::Close && a.subscription.backlog_bytes() > a.policy.max_queue_bytes)
}

fn log_frozen(active: &HashMap<u64, Active>) {
    if over_cap(active) {
        super::super::log::warn(&format!(
            "dropping frozen multi-stream connection: nothing read for {} s with a subscription over its \
             max_queue_bytes ({} subscriptions open)",
            FROZEN_TIMEOUT.as_secs(),
            active.len()
        ));
    }
}
