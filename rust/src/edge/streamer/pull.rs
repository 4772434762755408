//! `WS /data/{sid}/pull`: consumers read entries (Redis Streamer's pull), with no Python per
//! read.
//!
//! Parameters (Redis Streamer's, same defaults): `last_entry_id` (`$`, `0`/`-`, `<ms>-<n>`;
//! `c1+c2` one per stream), `block` (ms; an idle timeout sends the empty heartbeat `[]` + an
//! empty binary frame, or just the empty binary frame without headers; 0 waits forever),
//! `latest`, `max_fps`, `ack` (wait for any text frame after each send), `count`, `header`,
//! `device_id`, `prefix`, `keep_device_id_in_stream_id`; `a+b` reads several streams. Beyond
//! Redis Streamer, `max_queue_bytes` caps how far a reader may fall behind before a read skips
//! to the newest entries.
//!
//! A stream nothing was pushed to yet is waited for, with the heartbeats, as Redis Streamer's
//! blocking read waits for a key that does not exist yet; `$` then means "from the moment this
//! connection was made". No socket costs a Redis connection or a copy of each entry: a read of
//! one entry sends that message's payload, shared by every reader.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;

use super::params::{self, InputError};
use super::{StreamSession, CLOSE_BAD_INPUT, CLOSE_UNAVAILABLE};
use crate::codec::entry_frames;
use crate::edge::auth::Access;
use crate::edge::control::StreamName;
use crate::edge::query::Query;
use crate::edge::respond::{self, Body};
use crate::edge::session::{self, frame};
use crate::edge::shared::Shared;
use crate::edge::ws;
use crate::error::CoreError;
use crate::hub::entry_id::wall_ms;
use crate::hub::{Close, EntryOptions, EntrySubscription, Start, DEFAULT_MAX_QUEUE_BYTES};
use tokio_websockets::Message;

/// Redis Streamer's default `block` (ms).
const DEFAULT_BLOCK_MS: u64 = 5000;
/// How often a connection waiting for its streams to be created asks again (at most).
const CREATION_POLL: Duration = Duration::from_millis(500);

/// The read options of a pull.
#[derive(Debug, Clone)]
struct Options {
    cursors: Vec<String>,
    count: usize,
    block: Option<Duration>,
    pause: Option<Duration>,
    ack: bool,
    header: bool,
    latest: bool,
    max_queue_bytes: usize,
    /// The topics' names as JSON strings, for the headers.
    labels: Vec<String>,
}

fn options(query: &Query, session: &StreamSession) -> Result<Options, InputError> {
    let wanted = session.names.len();
    let cursors = params::cursors(query.get("last_entry_id").unwrap_or("$"), wanted)?;
    let count = params::integer(query, "count", Some(1), 1)?.unwrap_or(1);
    let block = params::integer(query, "block", Some(DEFAULT_BLOCK_MS), 0)?.unwrap_or(DEFAULT_BLOCK_MS);
    let max_fps = params::number(query, "max_fps", 0.0, 0.0)?;
    let ack = params::flag(query, "ack", false)?;
    let header = params::flag(query, "header", true)?;
    let latest = params::flag(query, "latest", false)?;
    let cap = params::integer(query, "max_queue_bytes", None, 1)?;
    if !header && wanted > 1 && count > 1 {
        return Err(InputError("header=false with several streams and count>1 is ambiguous".into()));
    }
    let keep = params::flag(query, "keep_device_id_in_stream_id", false)?;
    let labels = session
        .names
        .iter()
        .zip(&session.nodes)
        .map(|(sid, node)| serde_json::to_string(if keep { &node.full } else { sid }).unwrap_or_default())
        .collect();
    Ok(Options {
        cursors,
        count: usize::try_from(count).unwrap_or(usize::MAX),
        block: (block > 0).then(|| Duration::from_millis(block)),
        pause: (max_fps > 0.0 && max_fps.is_finite()).then(|| Duration::from_secs_f64(1.0 / max_fps)),
        ack,
        header,
        latest,
        max_queue_bytes: cap.map_or(DEFAULT_MAX_QUEUE_BYTES, |c| usize::try_from(c).unwrap_or(usize::MAX)),
        labels,
    })
}

/// Answers the handshake; the session runs on its own task once upgraded.
pub async fn handle(shared: Arc<Shared>, mut request: Request<Incoming>, sid: String) -> Response<Body> {
    let query = Query::parse(request.uri().query());
    let session = match StreamSession::open(&shared, &request, &query, &sid, Access::Read).await {
        Ok(session) => session,
        Err(refused) => return refused,
    };
    let options = match options(&query, &session) {
        Ok(options) => options,
        Err(e) => return respond::error(StatusCode::BAD_REQUEST, &e.0),
    };
    let (response, upgrade) = match ws::accept(&mut request) {
        Ok(accepted) => accepted,
        Err(refused) => return refused.response(),
    };
    // Subscribed before the 101 goes out when the streams exist: nothing pushed after the
    // client sees it is missed.
    let connected_ms = wall_ms();
    let subscription = match session.nodes.iter().map(|n| n.id).collect::<Option<Vec<u64>>>() {
        Some(topics) => Some(subscribe(&session, &topics, &options, connected_ms).await),
        None => None,
    };
    shared.stats.websocket("other");
    tokio::spawn(run(shared, upgrade, session, options, subscription, connected_ms));
    response
}

/// The starting points: `$` on a stream that did not exist at connect time is "after the
/// connection was made".
fn starts(cursors: &[String], late: bool, connected_ms: u64) -> Result<Vec<Start>, CoreError> {
    cursors
        .iter()
        .map(|c| if late && c == "$" { Start::parse(&format!("{connected_ms}-0")) } else { Start::parse(c) })
        .collect()
}

async fn subscribe(
    session: &StreamSession,
    topics: &[u64],
    options: &Options,
    connected_ms: u64,
) -> Result<EntrySubscription, CoreError> {
    let starts = starts(&options.cursors, false, connected_ms)?;
    let read = EntryOptions { count: options.count, latest: options.latest, max_queue_bytes: options.max_queue_bytes };
    session.hub.subscribe_entries(topics, &starts, read).await
}

async fn run(
    shared: Arc<Shared>,
    upgrade: OnUpgrade,
    mut session: StreamSession,
    options: Options,
    subscription: Option<Result<EntrySubscription, CoreError>>,
    connected_ms: u64,
) {
    let Ok(upgraded) = upgrade.await else { return };
    let mut socket = ws::socket(upgraded, shared.config.max_message_bytes);
    let subscription = match subscription {
        Some(subscribed) => subscribed,
        None => match wait_for_streams(&shared, &mut session, &options, &mut socket, connected_ms).await {
            Some(subscribed) => subscribed,
            None => return, // the peer went away while waiting
        },
    };
    let subscription = match subscription {
        Ok(subscription) => Arc::new(subscription),
        Err(e) => {
            let code = if matches!(e, CoreError::Unavailable(_) | CoreError::ShutDown) {
                CLOSE_UNAVAILABLE
            } else {
                CLOSE_BAD_INPUT
            };
            session::close(socket, code, &e.to_string()).await;
            return;
        }
    };
    let _tracked = shared.stats.track(Arc::clone(&subscription) as Arc<dyn crate::edge::stats::Tracked>);
    let (mut sink, mut stream) = socket.split();
    let (acked, mut acks) = tokio::sync::mpsc::channel::<()>(1);
    let reader = async {
        while let Some(Ok(message)) = stream.next().await {
            if message.is_close() {
                return;
            }
            if options.ack && (message.is_text() || message.is_binary()) && acked.send(()).await.is_err() {
                return;
            }
        }
    };
    let sender = async {
        loop {
            let (frames, close) = read_once(&subscription, &options).await;
            for message in frames {
                sink.feed(message).await.ok()?;
            }
            sink.flush().await.ok()?;
            if close.is_some() {
                return close;
            }
            if let Some(pause) = options.pause {
                tokio::time::sleep(pause).await;
            }
            if options.ack {
                acks.recv().await?;
            }
        }
    };
    let close = tokio::select! {
        () = reader => None,
        close = sender => close,
    };
    subscription.cancel();
    let Ok(socket) = sink.reunite(stream) else { return };
    match close {
        Some(close) => session::close(socket, close.code, &close.reason).await,
        None => session::finish(socket).await,
    }
}

/// The frames of one read (or the heartbeat once `block` has passed), and the close if the
/// subscription ended.
async fn read_once(subscription: &EntrySubscription, options: &Options) -> (Vec<Message>, Option<Close>) {
    let deadline = options.block.map(|block| tokio::time::Instant::now() + block);
    loop {
        subscription.settle().await;
        let timed_out = match deadline {
            Some(deadline) => tokio::time::timeout_at(deadline, subscription.ready()).await.is_err(),
            None => {
                subscription.ready().await;
                false
            }
        };
        if !subscription.is_settled() {
            continue;
        }
        let read = subscription.try_read();
        if read.entries.is_empty() && read.close.is_none() {
            if timed_out {
                return (heartbeat(options.header), None);
            }
            continue;
        }
        return (frames(&read.entries, options), read.close);
    }
}

/// Redis Streamer's empty reply on timeout: `[]` + an empty binary frame, or just the latter.
fn heartbeat(header: bool) -> Vec<Message> {
    let empty = frame(Bytes::new(), false);
    if header {
        vec![frame(Bytes::from_static(b"[]"), true), empty]
    } else {
        vec![empty]
    }
}

/// A read as frames: the header and the joined payloads, or one binary frame per entry.
fn frames(entries: &[(usize, Arc<crate::hub::Message>)], options: &Options) -> Vec<Message> {
    if entries.is_empty() {
        return Vec::new();
    }
    if options.header {
        let header = entry_frames::header_text(&options.labels, entries);
        return vec![frame(Bytes::from(header), true), frame(entry_frames::joined(entries), false)];
    }
    entries.iter().map(|(_, m)| frame(m.payload().cloned().unwrap_or_default(), false)).collect()
}

/// Waits, sending heartbeats, until every stream of the URL exists, then subscribes; `None`
/// if the peer goes away meanwhile.
async fn wait_for_streams(
    shared: &Arc<Shared>,
    session: &mut StreamSession,
    options: &Options,
    socket: &mut crate::edge::ws::Socket,
    connected_ms: u64,
) -> Option<Result<EntrySubscription, CoreError>> {
    let mut next_heartbeat = options.block.map(|b| tokio::time::Instant::now() + b);
    loop {
        let mut missing = false;
        for (sid, node) in session.names.iter().zip(session.nodes.iter_mut()) {
            if node.id.is_some() {
                continue;
            }
            let asked = StreamName {
                sid: sid.clone(),
                device: session.device.clone(),
                prefix: session.prefix.clone(),
                create: false,
            };
            if let Ok(found) = shared.nodes.control().stream(asked).await {
                *node = found;
            }
            missing |= node.id.is_none();
        }
        if !missing {
            let topics: Vec<u64> = session.nodes.iter().filter_map(|n| n.id).collect();
            let starts = match starts(&options.cursors, true, connected_ms) {
                Ok(starts) => starts,
                Err(e) => return Some(Err(e)),
            };
            let read =
                EntryOptions { count: options.count, latest: options.latest, max_queue_bytes: options.max_queue_bytes };
            return Some(session.hub.subscribe_entries(&topics, &starts, read).await);
        }
        let poll = tokio::time::Instant::now() + CREATION_POLL;
        let wake = next_heartbeat.map_or(poll, |h| h.min(poll));
        tokio::select! {
            () = tokio::time::sleep_until(wake) => {}
            message = socket.next() => match message {
                Some(Ok(m)) if !m.is_close() => {}
                _ => return None,
            },
        }
        if next_heartbeat.is_some_and(|h| tokio::time::Instant::now() >= h) {
            for message in heartbeat(options.header) {
                socket.feed(message).await.ok()?;
            }
            socket.flush().await.ok()?;
            next_heartbeat = options.block.map(|b| tokio::time::Instant::now() + b);
        }
    }
}
