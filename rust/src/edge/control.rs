//! `Control`: what the edge asks the Python control plane, once per node-cache miss or per
//! persisted write (never per frame), and the answers: [`NodeInfo`], [`Stored`], [`Refusal`].

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::StatusCode;
use serde::Deserialize;

use super::chunks::AxisChunks;
use super::respond::{self, Body};

/// The control plane, as the edge sees it. Implemented over Python (`py/control.rs`) and, in
/// the engine's tests, in Rust.
pub trait Control: Send + Sync + 'static {
    /// The node at `path` (URL path after the route prefix, percent-decoded), or the refusal
    /// the control plane gives for it (404, 405, 503 ...).
    fn resolve(&self, path: String) -> BoxFuture<'static, Result<NodeInfo, Refusal>>;

    /// Stores a validated write of array data (the persisted part of PUT/PATCH); the body is
    /// handed over without a copy. Refusals are the control plane's (422, 409, 503 ...).
    fn store(&self, write: ArrayWrite) -> BoxFuture<'static, Result<Stored, Refusal>>;

    /// Records in the catalog that the dense array `node` grew from `from` to `to` (the engine
    /// stored the data and the zarr shape already) and tells the other processes; answers the
    /// array after it. A 409 if the catalog's shape is no longer `from`.
    fn grow(
        &self,
        node: u64,
        path: String,
        from: Vec<u64>,
        to: Vec<u64>,
    ) -> BoxFuture<'static, Result<ArrayInfo, Refusal>>;

    /// A Redis Streamer stream's node (created, with its device, if `create` and missing). A
    /// name the control plane refuses is a 400; a stream that does not exist (and is not
    /// created) has no `id`.
    fn stream(&self, name: StreamName) -> BoxFuture<'static, Result<StreamNode, Refusal>>;
}

/// A Redis Streamer stream as a client names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamName {
    /// The stream id of the URL or push header.
    pub sid: String,
    /// `device_id` (None: the default device).
    pub device: Option<String>,
    /// `prefix`.
    pub prefix: String,
    /// Create the stream's node if it is missing (a push).
    pub create: bool,
}

/// A Redis Streamer stream's node.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct StreamNode {
    /// Its catalog id (its topic); `None` while nothing was pushed to it.
    pub id: Option<u64>,
    /// The stream's full name (`device:prefix+sid`).
    pub full: String,
}

/// What the edge needs to know about a node.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct NodeInfo {
    /// Catalog id: the stream's topic.
    pub id: u64,
    /// Structure family (`array`, `container`, `table`, `sparse`, ...).
    pub family: String,
    /// Registered in place (files the server only reads): not writable.
    #[serde(default)]
    pub external: bool,
    /// The first frame of a subscription (the schema message), if the node can be streamed.
    #[serde(default)]
    pub schema: Option<serde_json::Value>,
    /// For dense arrays: what a write is validated against.
    #[serde(default)]
    pub array: Option<ArrayInfo>,
}

/// A dense array's structure, as far as writes need it.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct ArrayInfo {
    /// numpy dtype string (`<f8`, `|u1`, `<M8[ns]` ...), for JSON subscribers' transcoding.
    pub dtype: String,
    /// Bytes per element.
    pub itemsize: u64,
    /// Current shape.
    pub shape: Vec<u64>,
    /// Chunk sizes along each dimension (Tiled's `chunks`, a regular axis kept compact).
    pub chunks: Vec<AxisChunks>,
    /// The structure as Tiled's JSON, with `chunks` as above (a PATCH answers it with every
    /// block listed: [`ArrayInfo::tiled_structure`]).
    pub structure: serde_json::Value,
    /// Largest size in bytes an extending write may grow it to (`--max-array-bytes`).
    #[serde(default = "unlimited")]
    pub max_bytes: u64,
    /// The zarr directory it is stored in (None: not stored by the engine's writer).
    #[serde(default)]
    pub zarr: Option<String>,
}

impl ArrayInfo {
    /// The structure as Tiled serves it (a PATCH's answer), every block listed, as JSON. An
    /// array appended frame by frame lists a block per frame, and a PATCH answers it after each
    /// append: a regular axis is written as its run of equal blocks, copied, not number by number.
    pub fn tiled_structure(&self) -> Vec<u8> {
        let serde_json::Value::Object(fields) = &self.structure else {
            return serde_json::to_vec(&self.structure).unwrap_or_default();
        };
        let mut out = Vec::with_capacity(256 + self.shape.iter().map(|n| 2 * *n as usize).sum::<usize>());
        out.push(b'{');
        let mut first = true;
        let chunks = std::iter::once("chunks").filter(|name| !fields.contains_key(*name));
        for name in fields.keys().map(String::as_str).chain(chunks) {
            if !std::mem::take(&mut first) {
                out.push(b',');
            }
            write_json(&mut out, name);
            out.push(b':');
            match fields.get(name) {
                Some(value) if name != "chunks" => write_json(&mut out, value),
                _ => self.write_chunks(&mut out),
            }
        }
        out.push(b'}');
        out
    }

    /// `[[...], ...]`: each axis's block sizes.
    fn write_chunks(&self, out: &mut Vec<u8>) {
        out.push(b'[');
        for (axis, (chunks, size)) in self.chunks.iter().zip(&self.shape).enumerate() {
            if axis > 0 {
                out.push(b',');
            }
            chunks.write_blocks(*size, out);
        }
        out.push(b']');
    }
}

fn write_json<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    // Writing into a Vec of a value serde_json produced cannot fail.
    let _ = serde_json::to_writer(out, value);
}

fn unlimited() -> u64 {
    u64::MAX
}

/// Which write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteKind {
    /// `PUT /array/full`: the whole array.
    Full,
    /// `PUT /array/block?block=`: one chunk.
    Block(Vec<u64>),
    /// `PATCH /array/full?offset=&shape=&extend=`: a region, possibly growing the array.
    Patch {
        /// Where the region starts (fewer entries than dimensions: the rest are 0).
        offset: Vec<u64>,
        /// The region's shape.
        shape: Vec<u64>,
        /// Grow the array to fit.
        extend: bool,
    },
    /// `frames` whole frames appended along the first axis, where the array ends when stored.
    Append {
        /// How many.
        frames: u64,
    },
}

/// A persisted write for the control plane to store.
#[derive(Debug, Clone)]
pub struct ArrayWrite {
    /// The node (its catalog id).
    pub node: u64,
    /// The URL path it was addressed by.
    pub path: String,
    /// Which write.
    pub kind: WriteKind,
    /// The raw bytes, already checked against the dtype and shape the edge knew.
    pub body: Bytes,
}

/// What the control plane did with a write.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Stored {
    /// The array after the write (changed by an extending PATCH).
    pub array: ArrayInfo,
    /// Where an append was stored.
    #[serde(default)]
    pub offset: Option<Vec<u64>>,
}

/// A refusal from the control plane: sent to the client as is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// HTTP status.
    pub status: StatusCode,
    /// JSON body (`{"detail": ...}`).
    pub body: Bytes,
    /// Extra headers (e.g. `Retry-After`).
    pub headers: Vec<(String, String)>,
}

impl Refusal {
    /// A refusal with `{"detail": detail}`.
    pub fn new(status: StatusCode, detail: &str) -> Self {
        let body = serde_json::to_vec(&serde_json::json!({ "detail": detail })).unwrap_or_default();
        Self { status, body: body.into(), headers: Vec::new() }
    }

    /// The detail text (for WebSocket close reasons and logs).
    pub fn detail(&self) -> String {
        serde_json::from_slice::<serde_json::Value>(&self.body)
            .ok()
            .and_then(|v| v.get("detail").and_then(|d| d.as_str().map(str::to_owned)))
            .unwrap_or_else(|| String::from_utf8_lossy(&self.body).into_owned())
    }

    /// As an HTTP response.
    pub fn response(&self) -> http::Response<Body> {
        let mut response = respond::json(self.status, self.body.clone());
        for (name, value) in &self.headers {
            if let (Ok(name), Ok(value)) =
                (http::HeaderName::from_bytes(name.as_bytes()), http::HeaderValue::from_str(value))
            {
                response.headers_mut().insert(name, value);
            }
        }
        response
    }
}
