//! `WS /api/v1/stream/push/{path}`: a writer streams an array node's frames over one
//! WebSocket, one binary message per frame (or per block), acknowledged by sequence number, so
//! that it pays no HTTP request per frame (see `docs/api.md`, "Pushing frames").
//!
//! Query parameters: `persist` (default true: stored as well as streamed), `encoding`
//! (`zstd`, `lz4` or `blosc`: every binary message is compressed so; stored decompressed, and
//! passed through as sent to subscribers asking for the same compression) and `mode`:
//! `append` (default: each message is one or more whole frames appended along the first axis;
//! stored by extending the array), `full` (each message replaces the whole array). A text
//! message `{"block": [i, ...]}` or `{"offset": [...], "shape": [...], "extend": false}` makes
//! the next binary message that block or region instead. After each message is published the
//! server acknowledges cumulatively with `{"frames": k, "sequence": n}` (k: binary messages
//! acknowledged so far on this connection, n: the stream sequence of the last one): once for
//! everything it read before the socket had nothing more queued, and at least every
//! [`ACK_EVERY`] messages or [`ACK_WITHIN`] while more keep coming, so a pipelining writer reads
//! one acknowledgement per batch, not one per message.
//! Persisted appends already queued are stored together (up to 1,024 messages or 64 MiB), with
//! one change of the array's shape, and acknowledged once.
//! A message that fails validation is neither stored nor streamed: the server sends `{"error":
//! detail, "status": s, "frame": k}` and closes (1008 for bad input, 1009 too big, 1012 when
//! the streaming cache is lost, 1011 otherwise); earlier frames stay.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{FutureExt, SinkExt, StreamExt};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use serde::Deserialize;
use serde_json::json;

use super::arrays::{self, WriteSpec};
use super::auth::{self, Access};
use super::control::{Refusal, WriteKind};
use super::nodes::Node;
use super::query::Query;
use super::respond::{self, Body};
use super::session::{self, frame};
use super::shared::Shared;
use super::ws::{self, Socket};
use crate::view::Codec;

/// How binary messages are read when no text message says otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Append,
    Full,
}

/// A text message's directive for the next binary message.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Directive {
    block: Option<Vec<u64>>,
    offset: Option<Vec<u64>>,
    shape: Option<Vec<u64>>,
    #[serde(default)]
    extend: bool,
}

/// Answers the handshake; the session runs on its own task once upgraded.
pub async fn handle(shared: Arc<Shared>, mut request: Request<Incoming>, path: String) -> Response<Body> {
    let query = Query::parse(request.uri().query());
    if let Err(denied) =
        auth::check(request.headers(), &query, &shared.config.api_key, Access::Write, shared.config.public)
    {
        return respond::error(denied.status, denied.detail);
    }
    let node = match shared.nodes.resolve(&path).await {
        Ok(node) => node,
        Err(refusal) => return refusal.response(),
    };
    if node.info.family != "array" || node.info.array.is_none() {
        let detail = format!("only dense arrays can be pushed to, not a {} node", node.info.family);
        return respond::error(StatusCode::BAD_REQUEST, &detail);
    }
    if node.info.external {
        return respond::error(StatusCode::METHOD_NOT_ALLOWED, "Registered (external) data is read-only");
    }
    let persist = match query.flag("persist", true) {
        Ok(persist) => persist,
        Err(bad) => return respond::error(bad.status, &bad.detail),
    };
    let mode = match query.get("mode").unwrap_or("append") {
        "append" => Mode::Append,
        "full" => Mode::Full,
        other => {
            return respond::error(StatusCode::BAD_REQUEST, &format!("mode must be 'append' or 'full', not {other:?}"))
        }
    };
    let encoding = match query.get("encoding").filter(|e| !e.is_empty() && *e != "identity").map(Codec::parse) {
        None => None,
        Some(Ok(codec)) => Some(codec),
        Some(Err(detail)) => {
            return respond::error(StatusCode::BAD_REQUEST, &detail.replace("compression", "encoding"))
        }
    };
    let (response, upgrade) = match ws::accept(&mut request) {
        Ok(accepted) => accepted,
        Err(refused) => return refused.response(),
    };
    shared.stats.websocket("stream");
    tokio::spawn(run(shared, upgrade, node, path, Session { persist, mode, encoding }));
    response
}

/// How a session reads its binary messages.
#[derive(Debug, Clone, Copy)]
struct Session {
    persist: bool,
    mode: Mode,
    encoding: Option<Codec>,
}

/// A binary message as a write's body: decompressed once if the session declared an encoding.
fn body_of(shared: &Shared, encoding: Option<Codec>, sent: Bytes) -> Result<arrays::WriteBody, Failure> {
    match encoding {
        None => Ok(arrays::WriteBody::Raw(sent)),
        Some(codec) => arrays::decoded(codec, sent, shared.config.max_message_bytes as u64)
            .map_err(|refusal| Failure::from_refusal(&refusal)),
    }
}

/// Why the session stops: the error message and close code, and the message's 1-based index.
struct Failure {
    status: StatusCode,
    detail: String,
    close: u16,
}

impl Failure {
    fn from_refusal(refusal: &Refusal) -> Self {
        let close = match refusal.status {
            StatusCode::SERVICE_UNAVAILABLE => 1012,
            StatusCode::PAYLOAD_TOO_LARGE => 1009,
            s if s.is_client_error() => 1008,
            _ => 1011,
        };
        Self { status: refusal.status, detail: refusal.detail(), close }
    }

    fn bad(detail: impl Into<String>) -> Self {
        Self { status: StatusCode::UNPROCESSABLE_ENTITY, detail: detail.into(), close: 1008 }
    }
}

async fn run(shared: Arc<Shared>, upgrade: OnUpgrade, mut node: Arc<Node>, path: String, session: Session) {
    let Session { persist, mode, encoding } = session;
    let Ok(upgraded) = upgrade.await else { return };
    let mut socket = ws::socket(upgraded, shared.config.max_message_bytes);
    let mut frames: u64 = 0;
    // Stream-only appends are numbered from the stored length on.
    let mut appended: u64 = node.info.array.as_ref().and_then(|a| a.shape.first().copied()).unwrap_or(0);
    let mut directive: Option<Directive> = None;
    // A message read ahead while gathering a batch of appends, not part of it.
    let mut pending = None;
    let mut ack = Acks::default();
    loop {
        // The acknowledgement goes out as soon as nothing more is queued (one message for a
        // burst), or once enough messages or time went by while more kept coming.
        let next = match pending.take().or_else(|| socket.next().now_or_never()) {
            Some(next) => {
                if ack.due() && ack.send(&mut socket).await.is_err() {
                    return;
                }
                next
            }
            None => {
                if ack.send(&mut socket).await.is_err() {
                    return;
                }
                socket.next().await
            }
        };
        let message = match next {
            Some(Ok(message)) if !message.is_close() => message,
            // The peer closed or broke the protocol (e.g. a message over the limit: 1009).
            _ => {
                // What was published is acknowledged before the close (best effort).
                let _ = ack.send(&mut socket).await;
                return session::finish(socket).await;
            }
        };
        if let Some(text) = message.as_text() {
            match serde_json::from_str::<Directive>(text) {
                Ok(d) => directive = Some(d),
                Err(e) => {
                    fail(socket, ack, frames + 1, Failure::bad(format!("a text message must be a directive: {e}")))
                        .await;
                    return;
                }
            }
            continue;
        }
        if !message.is_binary() {
            continue;
        }
        frames += 1;
        let body = match body_of(&shared, encoding, message.into_payload().into()) {
            Ok(body) => body,
            Err(failure) => {
                fail(socket, ack, frames, failure).await;
                return;
            }
        };
        let len = body.raw().map_or(0, |raw| raw.len() as u64);
        // The handshake checked the node is a dense array (and a node stays one).
        let Some(array) = node.info.array.as_ref() else { return };
        let directed = directive.is_some();
        let spec = match spec_of(directive.take(), mode, persist, array, appended, len) {
            Ok(spec) => spec,
            Err(failure) => {
                fail(socket, ack, frames, failure).await;
                return;
            }
        };
        let mut spec = spec;
        // A refused batch is reported at its first message (none of it was stored).
        let first = frames;
        let mut bodies = vec![body];
        // A bad frame met while gathering: the batch before it is stored, then the session ends.
        let mut failed = None;
        if mode == Mode::Append && !directed {
            // Appends already queued go together: stored with one change of shape, published
            // in one step (with Redis, one round trip).
            let mut bytes = bodies_len(&bodies);
            let max_bytes = if persist { MAX_BATCH_BYTES } else { MAX_STREAM_BATCH_BYTES };
            while bodies.len() < MAX_BATCH_FRAMES && bytes < max_bytes {
                let Some(next) = socket.next().now_or_never() else { break };
                let message = match next {
                    Some(Ok(message)) if message.is_binary() => message,
                    other => {
                        pending = Some(other);
                        break;
                    }
                };
                frames += 1;
                let gathered = body_of(&shared, encoding, message.into_payload().into()).and_then(|body| {
                    let len = body.raw().map_or(0, |raw| raw.len());
                    spec_of(None, mode, persist, array, appended, len as u64).map(|spec| (body, len, spec))
                });
                match gathered {
                    Ok((body, len, WriteSpec { shape, .. })) => {
                        let n = shape.first().copied().unwrap_or(0);
                        if let WriteKind::Append { frames: batched } = &mut spec.kind {
                            *batched += n;
                        }
                        spec.shape[0] += n;
                        bytes += len;
                        bodies.push(body);
                    }
                    Err(failure) => {
                        failed = Some((frames, failure));
                        frames -= 1;
                        break;
                    }
                }
            }
            appended += spec.shape.first().copied().unwrap_or(0);
        }
        let published = arrays::apply(&shared, &node, &path, spec, bodies).await;
        match published {
            Ok(outcome) => {
                node = outcome.node;
                if let Some(length) = outcome.length {
                    appended = length;
                }
                ack.published(frames, outcome.sequence);
                if let Some((index, failure)) = failed {
                    fail(socket, ack, index, failure).await;
                    return;
                }
            }
            Err(refusal) => {
                fail(socket, ack, first, Failure::from_refusal(&refusal)).await;
                return;
            }
        }
    }
}

/// Most messages published between two acknowledgements while more keep coming.
const ACK_EVERY: u64 = 16;
/// Longest time a published message waits for its acknowledgement while more keep coming.
const ACK_WITHIN: Duration = Duration::from_millis(2);

/// The acknowledgement not sent yet: the messages published since the last one was sent.
#[derive(Debug, Default)]
struct Acks {
    /// Binary messages published so far on the connection, and the last one's sequence.
    latest: Option<(u64, u64)>,
    /// Messages published since the last acknowledgement sent, and when the first of them was.
    unsent: u64,
    since: Option<Instant>,
}

impl Acks {
    fn published(&mut self, frames: u64, sequence: u64) {
        self.latest = Some((frames, sequence));
        self.unsent += 1;
        self.since.get_or_insert_with(Instant::now);
    }

    /// Whether the acknowledgement should go out although more messages are queued.
    fn due(&self) -> bool {
        self.unsent >= ACK_EVERY || self.since.is_some_and(|since| since.elapsed() >= ACK_WITHIN)
    }

    /// Writes the pending acknowledgement (if any) and flushes what was fed.
    async fn send(&mut self, socket: &mut Socket) -> Result<(), ()> {
        if self.unsent > 0 {
            if let Some((frames, sequence)) = self.latest {
                let text = json!({ "frames": frames, "sequence": sequence }).to_string();
                socket.feed(frame(Bytes::from(text), true)).await.map_err(drop)?;
            }
            self.unsent = 0;
            self.since = None;
        }
        socket.flush().await.map_err(drop)
    }
}

/// Most appended messages stored together (one change of shape, one acknowledgement).
const MAX_BATCH_FRAMES: usize = 1024;
/// Most bytes of appended messages stored together.
const MAX_BATCH_BYTES: usize = 64 * 1024 * 1024;
/// Most bytes of stream-only appended messages published together: enough to publish many
/// small frames in one step (with Redis one round trip), small enough that large frames are
/// published while the next ones are read (through Redis, gathering up to 64 MiB made 256 KiB
/// frames 5-8% slower than publishing each alone; 1 MiB: within 2%).
const MAX_STREAM_BATCH_BYTES: usize = 1024 * 1024;

fn bodies_len(bodies: &[arrays::WriteBody]) -> usize {
    bodies.iter().map(|b| b.raw().map_or(0, Bytes::len)).sum()
}

/// What the next binary message is, from the directive or the mode.
fn spec_of(
    directive: Option<Directive>,
    mode: Mode,
    persist: bool,
    array: &super::control::ArrayInfo,
    appended: u64,
    len: u64,
) -> Result<WriteSpec, Failure> {
    let frame_bytes = array.shape.iter().skip(1).product::<u64>().saturating_mul(array.itemsize);
    let spec = match directive {
        Some(Directive { block: Some(block), offset: None, shape: None, .. }) => {
            arrays::block_spec(array, block, persist).map_err(|(status, detail)| Failure {
                status,
                detail,
                close: 1008,
            })?
        }
        Some(Directive { block: None, offset: Some(offset), shape: Some(shape), extend }) => {
            arrays::patch_spec(array, offset, shape, extend, persist).map_err(|(status, detail)| Failure {
                status,
                detail,
                close: 1008,
            })?
        }
        Some(_) => return Err(Failure::bad("a directive gives either block, or offset and shape")),
        None if mode == Mode::Full => WriteSpec { kind: WriteKind::Full, shape: array.shape.clone(), persist },
        None => {
            if array.shape.is_empty() || frame_bytes == 0 || !len.is_multiple_of(frame_bytes) || len == 0 {
                return Err(Failure {
                    status: StatusCode::BAD_REQUEST,
                    detail: format!(
                        "a message of {len} bytes is not a whole number of frames of {frame_bytes} bytes (shape {} without its first axis, dtype {})",
                        arrays::py_tuple(&array.shape),
                        array.dtype
                    ),
                    close: 1008,
                });
            }
            let mut shape = array.shape.clone();
            shape[0] = len / frame_bytes;
            if persist {
                WriteSpec { kind: WriteKind::Append { frames: shape[0] }, shape, persist }
            } else {
                let kind = WriteKind::Patch { offset: vec![appended], shape: shape.clone(), extend: false };
                WriteSpec { kind, shape, persist }
            }
        }
    };
    Ok(spec)
}

/// Acknowledges what was published, sends the error message and closes.
async fn fail(mut socket: Socket, mut ack: Acks, frame_index: u64, failure: Failure) {
    if ack.send(&mut socket).await.is_err() {
        return;
    }
    let text = json!({ "error": failure.detail, "status": failure.status.as_u16(), "frame": frame_index }).to_string();
    let _ = socket.send(frame(Bytes::from(text), true)).await;
    let reason = format!("frame {frame_index}: {}", failure.detail);
    session::close(socket, failure.close, &reason).await;
}
