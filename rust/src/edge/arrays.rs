//! `PUT /api/v1/array/full|block/{path}` and `PATCH /api/v1/array/full/{path}` on dense arrays.
//!
//! The body is read into one buffer sized from `Content-Length` and validated here (dtype,
//! byte count, block, bounds) against the node's structure before anything is stored or
//! streamed. A stream-only write (`persist=false`) never enters Python; a persisted one is
//! handed to the control plane's storage once (no copy), which validates it again under its
//! node lock; then the message is published from here. Writes of one node are serialised from
//! storing to publishing, so subscribers see them in the order they were stored. Other nodes
//! (sparse arrays, registered files, anything not a writable dense array) go to the control
//! plane unchanged.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{CONTENT_ENCODING, CONTENT_TYPE};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::Value;

use super::auth::{self, Access};
use super::body;
use super::control::{ArrayInfo, Refusal, WriteKind};
use super::nodes::Node;
use super::persist;
use super::query::{BadParameter, Query};
use super::respond::{self, Body};
use super::route::ArrayRoute as Route;
use super::shared::Shared;
use crate::codec::envelope::{EncodedPayload, Header};
use crate::error::CoreError;
use crate::hub::Outgoing;
use crate::view::Codec;

/// The only body type of array writes.
const OCTET: &str = "application/octet-stream";
const EXTEND_NO_PERSIST: &str = "Cannot PATCH an array with both parameters extend=True and persist=False. \
    To extend the array, you must persist the changes. \
    To skip persisting the changes, you must not extend the array.";

/// What to do with a request.
pub enum Served {
    /// The answer.
    Answer(Response<Body>),
    /// Not a dense writable array: the control plane answers (sparse writes, 404/405 wording).
    Forward(Box<Request<Incoming>>),
}

fn answer(status: StatusCode, detail: &str) -> Served {
    Served::Answer(respond::error(status, detail))
}

/// `(3,)`, `(2, 3)`, `()`: a shape as the control plane's messages print it.
pub fn py_tuple(values: &[u64]) -> String {
    match values {
        [] => "()".into(),
        [one] => format!("({one},)"),
        many => format!("({})", many.iter().map(u64::to_string).collect::<Vec<_>>().join(", ")),
    }
}

/// Serves one write.
pub async fn serve(shared: Arc<Shared>, request: Request<Incoming>, route: Route, path: String) -> Served {
    let query = Query::parse(request.uri().query());
    if let Err(denied) =
        auth::check(request.headers(), &query, &shared.config.api_key, Access::Write, shared.config.public)
    {
        return answer(denied.status, denied.detail);
    }
    let node = match shared.nodes.resolve(&path).await {
        Ok(node) => node,
        Err(refusal) => return Served::Answer(refusal.response()),
    };
    let Some(array) = node.info.array.as_ref().filter(|_| node.info.family == "array" && !node.info.external) else {
        return Served::Forward(Box::new(request));
    };
    let write = match parse_write(&query, route, array) {
        Ok(write) => write,
        Err((status, detail)) => return answer(status, &detail),
    };
    let content_type = request.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or(OCTET);
    let content_type = content_type.split(';').next().unwrap_or("").trim();
    if content_type != OCTET {
        return answer(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            &format!("Unsupported Content-Type {content_type:?}; send {OCTET}"),
        );
    }
    if let Err(e) = body::check_declared(request.headers(), shared.config.max_body_bytes) {
        let (status, detail) = e.answer();
        return answer(status, &detail);
    }
    let expected = write.shape.iter().product::<u64>().saturating_mul(array.itemsize);
    let encoding = match content_encoding(request.headers()) {
        Ok(encoding) => encoding,
        Err(detail) => return answer(StatusCode::UNSUPPORTED_MEDIA_TYPE, &detail),
    };
    if let Some(codec) = encoding {
        return Served::Answer(encoded_write(&shared, &node, &path, write, codec, request).await);
    }
    let declared = body::content_length(request.headers());
    if let Some(declared) = declared.filter(|n| *n != expected) {
        return answer(StatusCode::BAD_REQUEST, &length_detail(expected, &write.shape, &array.dtype, declared));
    }
    // The envelope is written up to the payload now, and the body read straight into it: the
    // only copy of the body is the one into the message every subscriber shares.
    let shape: Vec<usize> = write.shape.iter().map(|n| *n as usize).collect();
    let offset = match &write.kind {
        WriteKind::Patch { offset, .. } => Some(offset.as_slice()),
        _ => None,
    };
    let opened = Outgoing::open(header(&write, offset), expected as usize, Some((&array.dtype, &shape)));
    let mut message = match opened {
        Ok(message) => message,
        Err(e) => return answer(StatusCode::UNPROCESSABLE_ENTITY, &e.to_string()),
    };
    // Nothing longer than the write can be right: stop reading there.
    let cap = shared.config.max_body_bytes.min(expected.saturating_add(1));
    let read = body::read_into(request.into_body(), declared, cap, shared.config.body_timeout, |piece, _| {
        message.extend(piece).map_err(|_| body::BodyError::TooLarge(cap))
    })
    .await;
    match read {
        Ok(()) => {}
        Err(body::BodyError::TooLarge(_)) if expected < shared.config.max_body_bytes => {
            let detail = format!(
                "Expected {expected} bytes for shape {} and dtype {}, got more",
                py_tuple(&write.shape),
                array.dtype
            );
            return answer(StatusCode::BAD_REQUEST, &detail);
        }
        Err(e) => {
            let (status, detail) = e.answer();
            return answer(status, &detail);
        }
    }
    let received = message.received() as u64;
    let body = match message.finish() {
        Ok(message) => WriteBody::Enveloped(Box::new(message)),
        Err(_) => {
            return answer(StatusCode::BAD_REQUEST, &length_detail(expected, &write.shape, &array.dtype, received));
        }
    };
    let is_patch = matches!(write.kind, WriteKind::Patch { .. });
    Served::Answer(answered(apply(&shared, &node, &path, write, vec![body]).await, is_patch))
}

/// The body's `Content-Encoding`: `None` for none (or `identity`), else a [`Codec`]; the 415
/// detail for anything else.
pub fn content_encoding(headers: &http::HeaderMap) -> Result<Option<Codec>, String> {
    let Some(value) = headers.get(CONTENT_ENCODING) else { return Ok(None) };
    let name = value.to_str().unwrap_or("").trim();
    if name.is_empty() || name == "identity" {
        return Ok(None);
    }
    Codec::parse(name)
        .map(Some)
        .map_err(|_| format!("Unsupported Content-Encoding {}; send zstd, lz4 or blosc", super::query::py_repr(name)))
}

/// A write whose body is compressed: read whole, decompressed (to no more than the write's
/// size), checked like any body, stored decompressed and published with the writer's bytes
/// kept for subscribers asking for the same compression. A body that does not decompress is
/// refused (400) with nothing stored or streamed.
async fn encoded_write(
    shared: &Arc<Shared>,
    node: &Arc<Node>,
    path: &str,
    write: WriteSpec,
    codec: Codec,
    request: Request<Incoming>,
) -> Response<Body> {
    let declared = body::content_length(request.headers());
    let mut received = Vec::with_capacity(declared.unwrap_or(0).min(shared.config.max_body_bytes) as usize);
    let read = body::read_into(
        request.into_body(),
        declared,
        shared.config.max_body_bytes,
        shared.config.body_timeout,
        |piece, _| {
            received.extend_from_slice(piece);
            Ok(())
        },
    )
    .await;
    if let Err(e) = read {
        let (status, detail) = e.answer();
        return respond::error(status, &detail);
    }
    let expected =
        node.info.array.as_ref().map_or(0, |a| write.shape.iter().product::<u64>().saturating_mul(a.itemsize));
    let raw = match decoded(codec, Bytes::from(received), expected) {
        Ok(decoded) => decoded,
        Err(refusal) => return refusal.response(),
    };
    let is_patch = matches!(write.kind, WriteKind::Patch { .. });
    answered(apply(shared, node, path, write, vec![raw]).await, is_patch)
}

/// `original` decompressed with `codec` into at most `limit` bytes, as a write's body that
/// keeps the writer's bytes; 400 if it does not decompress.
pub fn decoded(codec: Codec, original: Bytes, limit: u64) -> Result<WriteBody, Refusal> {
    match codec.decompress(&original, usize::try_from(limit).unwrap_or(usize::MAX)) {
        Ok(raw) => Ok(WriteBody::Decoded {
            raw: Bytes::from(raw),
            original: EncodedPayload { encoding: codec.name(), bytes: original },
        }),
        Err(e) => Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            &format!("The {} body could not be decompressed: {e}. Nothing was stored or streamed.", codec.name()),
        )),
    }
}

/// A validated write: what to store and publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteSpec {
    /// Which write.
    pub kind: WriteKind,
    /// The shape of the written region (the body's shape).
    pub shape: Vec<u64>,
    /// Stored as well as streamed.
    pub persist: bool,
}

/// A refusal: status and detail.
type Refused = (StatusCode, String);

fn from_bad(bad: BadParameter) -> Refused {
    (bad.status, bad.detail)
}

fn parse_write(query: &Query, route: Route, array: &ArrayInfo) -> Result<WriteSpec, Refused> {
    let persist = query.flag("persist", true).map_err(from_bad)?;
    match route {
        Route::PutFull => Ok(WriteSpec { kind: WriteKind::Full, shape: array.shape.clone(), persist }),
        Route::PutBlock => {
            let Some(block) = query.indices("block").map_err(from_bad)? else {
                return Err((
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Query parameter 'block' is required, e.g. ?block=0,0".into(),
                ));
            };
            block_spec(array, block, persist)
        }
        Route::Patch => {
            let (Some(offset), Some(shape)) =
                (query.indices("offset").map_err(from_bad)?, query.indices("shape").map_err(from_bad)?)
            else {
                return Err((
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Query parameters 'offset' and 'shape' are required".into(),
                ));
            };
            let extend = query.flag("extend", false).map_err(from_bad)?;
            patch_spec(array, offset, shape, extend, persist)
        }
    }
}

/// A write of chunk `block`.
pub fn block_spec(array: &ArrayInfo, block: Vec<u64>, persist: bool) -> Result<WriteSpec, Refused> {
    let shape = block_shape(array, &block).ok_or_else(|| {
        let chunks: Vec<String> = array
            .chunks
            .iter()
            .zip(&array.shape)
            .map(|(c, n)| format!("{:?}", c.blocks(*n).collect::<Vec<_>>()))
            .collect();
        let detail = format!("Block index out of range: block {} for chunks [{}]", py_tuple(&block), chunks.join(", "));
        (StatusCode::UNPROCESSABLE_ENTITY, detail)
    })?;
    Ok(WriteSpec { kind: WriteKind::Block(block), shape, persist })
}

/// A write of the region at `offset` of `shape` (growing the array if `extend`).
pub fn patch_spec(
    array: &ArrayInfo,
    offset: Vec<u64>,
    shape: Vec<u64>,
    extend: bool,
    persist: bool,
) -> Result<WriteSpec, Refused> {
    if extend && !persist {
        return Err((StatusCode::BAD_REQUEST, EXTEND_NO_PERSIST.into()));
    }
    if !persist {
        check_bounds(array, &offset, &shape)?;
    }
    Ok(WriteSpec { kind: WriteKind::Patch { offset, shape: shape.clone(), extend }, shape, persist })
}

/// The shape of chunk `block`, if it exists.
fn block_shape(array: &ArrayInfo, block: &[u64]) -> Option<Vec<u64>> {
    if block.len() != array.chunks.len() {
        return None;
    }
    block.iter().zip(&array.chunks).zip(&array.shape).map(|((b, chunks), size)| chunks.block(*b, *size)).collect()
}

/// A stream-only PATCH must fit the current shape (a persisted one is checked by the storage).
fn check_bounds(array: &ArrayInfo, offset: &[u64], shape: &[u64]) -> Result<(), Refused> {
    if shape.len() != array.shape.len() || offset.len() > shape.len() {
        let detail = format!("shape {} does not match the array's rank {}", py_tuple(shape), array.shape.len());
        return Err((StatusCode::UNPROCESSABLE_ENTITY, detail));
    }
    let fits = shape.iter().enumerate().all(|(i, n)| {
        let start = offset.get(i).copied().unwrap_or(0);
        start.checked_add(*n).is_some_and(|end| end <= array.shape[i])
    });
    if !fits {
        let detail = format!(
            "Slice at offset {} with shape {} does not fit within current array shape {}. \
             Use ?extend=true to extend the array dimensions to fit.",
            py_tuple(offset),
            py_tuple(shape),
            py_tuple(&array.shape)
        );
        return Err((StatusCode::CONFLICT, detail));
    }
    Ok(())
}

/// 503 with `Retry-After`, saying whether the write was stored.
fn unavailable(error: &CoreError, stored: bool) -> Refusal {
    let detail = if stored {
        format!(
            "{error}. The write WAS stored, but was not streamed to subscribers \
             (they are disconnected with 1012 and resume when the cache is back)."
        )
    } else {
        format!("{error}. Nothing was stored or streamed.")
    };
    let mut refusal = Refusal::new(StatusCode::SERVICE_UNAVAILABLE, &detail);
    refusal.headers.push(("Retry-After".into(), "1".into()));
    refusal
}

/// Tiled's `array-data` header (the `offset` and `block` keys are present even when null:
/// the stock client requires them), built as the map the envelope encodes (no JSON round trip).
fn header(write: &WriteSpec, offset: Option<&[u64]>) -> Header {
    let (offset, block) = match &write.kind {
        WriteKind::Full => (None, None),
        WriteKind::Block(block) => (None, Some(block.as_slice())),
        WriteKind::Patch { offset: at, .. } => (offset.or(Some(at.as_slice())), None),
        WriteKind::Append { .. } => (offset, None),
    };
    let mut header = Header::new();
    header.insert("type".into(), Value::from("array-data"));
    header.insert("timestamp".into(), Value::from(super::timestamp::now()));
    header.insert("mimetype".into(), Value::from(OCTET));
    header.insert("shape".into(), Value::from(write.shape.as_slice()));
    header.insert("offset".into(), offset.map_or(Value::Null, Value::from));
    header.insert("block".into(), block.map_or(Value::Null, Value::from));
    header
}

/// What a write did.
pub struct Applied {
    /// The node as known after it (its structure changed if the write grew the array).
    pub node: Arc<Node>,
    /// The stream sequence of its message (0 when streaming is off).
    pub sequence: u64,
    /// The array's length along its first axis after an append.
    pub length: Option<u64>,
}

fn length_detail(expected: u64, shape: &[u64], dtype: &str, got: u64) -> String {
    format!("Expected {expected} bytes for shape {} and dtype {dtype}, got {got}", py_tuple(shape))
}

/// A write's data: raw bytes, or already inside the message to publish.
pub enum WriteBody {
    /// The bytes of the write (its message is built once it is stored).
    Raw(Bytes),
    /// The bytes of the write, decompressed from what the writer sent (kept for subscribers
    /// asking for the same compression).
    Decoded {
        /// Decompressed.
        raw: Bytes,
        /// As sent.
        original: EncodedPayload,
    },
    /// The message, with the bytes as its payload (its header is final).
    Enveloped(Box<Outgoing>),
}

impl WriteBody {
    /// The write's bytes when they are not yet inside a message.
    pub fn raw(&self) -> Option<&Bytes> {
        match self {
            Self::Raw(raw) | Self::Decoded { raw, .. } => Some(raw),
            Self::Enveloped(_) => None,
        }
    }

    /// The write's bytes, wherever they are (a message's payload inside its envelope).
    pub fn bytes(&self) -> &[u8] {
        match self {
            Self::Raw(raw) | Self::Decoded { raw, .. } => raw,
            Self::Enveloped(message) => message.payload(),
        }
    }
}

/// The message of a write whose bytes are `raw`.
fn message_of(write: &WriteSpec, offset: Option<&[u64]>, raw: &[u8], dtype: &str) -> Result<Outgoing, Refusal> {
    let shape: Vec<usize> = write.shape.iter().map(|n| *n as usize).collect();
    Outgoing::from_header(header(write, offset), Some(raw), Some((dtype, &shape)))
        .map_err(|e| Refusal::new(StatusCode::UNPROCESSABLE_ENTITY, &e.to_string()))
}

/// The answer to an applied write: a PATCH answers the array's structure, others `null`.
fn answered(applied: Result<Applied, Refusal>, is_patch: bool) -> Response<Body> {
    match applied {
        Ok(applied) if is_patch => {
            let structure = applied.node.info.array.as_ref().map(ArrayInfo::tiled_structure);
            respond::json(StatusCode::OK, structure.unwrap_or_else(|| b"null".to_vec()))
        }
        Ok(_) => respond::json(StatusCode::OK, &b"null"[..]),
        Err(refusal) => refusal.response(),
    }
}

/// Checks the bodies against the write, stores them (if `persist`) and publishes them, one
/// message per body, all published in one step. Only appends come in several bodies (whole
/// frames each, in order, from a pipelining writer: stored together with one change of shape,
/// or stream-only, a `Patch` at the first one's offset); any other write has exactly one.
pub async fn apply(
    shared: &Arc<Shared>,
    node: &Arc<Node>,
    path: &str,
    write: WriteSpec,
    mut bodies: Vec<WriteBody>,
) -> Result<Applied, Refusal> {
    let array = node.info.array.as_ref().ok_or_else(|| Refusal::new(StatusCode::NOT_FOUND, "not an array"))?;
    let expected = write.shape.iter().product::<u64>().saturating_mul(array.itemsize);
    let raw_bytes: Option<u64> = bodies.iter().map(|b| b.raw().map(|raw| raw.len() as u64)).sum();
    if let Some(got) = raw_bytes.filter(|got| *got != expected) {
        return Err(Refusal::new(StatusCode::BAD_REQUEST, &length_detail(expected, &write.shape, &array.dtype, got)));
    }
    let hub = shared.hub.as_ref();
    if hub.is_some_and(|h| !h.is_connected()) {
        // Known to be down: refuse before storing anything.
        let down = CoreError::Unavailable("The streaming cache (Redis) is unavailable; retry shortly".into());
        return Err(unavailable(&down, false));
    }
    let lock = write.persist.then(|| shared.write_locks.get(node.info.id));
    let _held = match &lock {
        Some(lock) => Some(lock.lock().await),
        None => None,
    };
    let mut applied = Applied { node: Arc::clone(node), sequence: 0, length: None };
    let mut offset = None;
    if write.persist {
        // The store takes the bodies while it writes them (no copy) and gives them back.
        let (stored, returned) = persist::store(shared, node, path, &write.kind, bodies).await?;
        bodies = returned;
        if let WriteKind::Append { .. } = write.kind {
            offset = stored.offset.clone();
            applied.length = stored.array.shape.first().copied();
        }
        if node.info.array.as_ref() != Some(&stored.array) {
            applied.node = shared.nodes.update_array(path, node, stored.array);
        }
    } else if let WriteKind::Patch { offset: at, .. } = &write.kind {
        offset = Some(at.clone());
    }
    let frame_elements: u64 = write.shape.iter().skip(1).product();
    // Frames appended in several bodies (stored or stream-only): one message each, in order.
    let appending = bodies.len() > 1 || matches!(write.kind, WriteKind::Append { .. });
    let mut messages = Vec::with_capacity(bodies.len());
    for body in bodies {
        let (raw, original) = match body {
            WriteBody::Enveloped(message) => {
                messages.push(*message);
                continue;
            }
            WriteBody::Raw(raw) => (raw, None),
            WriteBody::Decoded { raw, original } => (raw, Some(original)),
        };
        let mut piece = write.clone();
        if let (true, Some(first)) = (appending, piece.shape.first_mut()) {
            *first = raw.len() as u64 / (frame_elements * array.itemsize).max(1);
        }
        // Validated against the same dtype and shape: a message that cannot be built is not
        // expected (422 if it happens).
        let message = message_of(&piece, offset.as_deref(), &raw, &array.dtype)?;
        messages.push(match original {
            Some(original) => message.with_encoded_payload(original),
            None => message,
        });
        // The next piece of an append starts where this one ends.
        if let (true, Some(at)) = (appending, offset.as_mut()) {
            at[0] += piece.shape[0];
        }
    }
    if let Some(hub) = hub {
        let count = messages.len() as u64;
        let started = std::time::Instant::now();
        // One step for the batch (with Redis one round trip, not one per message).
        applied.sequence = hub.publish_all(node.info.id, messages).await.map_err(|e| unavailable(&e, write.persist))?;
        shared.stats.published(node.info.id, count, started.elapsed().as_secs_f64());
    }
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::edge::chunks::AxisChunks;
    use serde_json::json;

    fn array() -> ArrayInfo {
        ArrayInfo {
            dtype: "<f8".into(),
            itemsize: 8,
            shape: vec![4, 6],
            chunks: vec![AxisChunks::Listed(vec![2, 2]), AxisChunks::Listed(vec![6])],
            structure: json!({"shape": [4, 6]}),
            max_bytes: u64::MAX,
            zarr: None,
        }
    }

    #[test]
    fn blocks_and_bounds() {
        assert_eq!(block_shape(&array(), &[1, 0]), Some(vec![2, 6]));
        assert_eq!(block_shape(&array(), &[2, 0]), None);
        assert_eq!(block_shape(&array(), &[0]), None);
        assert!(check_bounds(&array(), &[2], &[2, 6]).is_ok());
        assert_eq!(check_bounds(&array(), &[3], &[2, 6]).unwrap_err().0, StatusCode::CONFLICT);
        assert_eq!(check_bounds(&array(), &[u64::MAX], &[2, 6]).unwrap_err().0, StatusCode::CONFLICT);
        assert_eq!(check_bounds(&array(), &[0], &[2]).unwrap_err().0, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(py_tuple(&[3]), "(3,)");
        assert_eq!(py_tuple(&[2, 3]), "(2, 3)");
    }

    #[test]
    fn writes_from_the_query() {
        let q = Query::parse(Some("offset=1&shape=1,6"));
        let write = parse_write(&q, Route::Patch, &array()).ok().unwrap();
        assert_eq!(write.kind, WriteKind::Patch { offset: vec![1], shape: vec![1, 6], extend: false });
        let q = Query::parse(Some("offset=4&shape=1,6&extend=true&persist=false"));
        assert_eq!(parse_write(&q, Route::Patch, &array()).unwrap_err().0, StatusCode::BAD_REQUEST);
        let q = Query::parse(Some("block=1,0&persist=false"));
        let write = parse_write(&q, Route::PutBlock, &array()).ok().unwrap();
        assert_eq!((write.shape, write.persist), (vec![2, 6], false));
        let full = WriteSpec { kind: WriteKind::Full, shape: vec![4, 6], persist: true };
        let header = header(&full, None);
        assert_eq!(header["type"], "array-data");
        assert!(header["offset"].is_null() && header["block"].is_null());
        assert_eq!(header["shape"], json!([4, 6]));
    }
}
