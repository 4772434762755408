//! `Nodes`: the edge's cache of what the control plane said about each path, so that a
//! stream of writes or subscriptions to a node asks Python once. Entries go when the control
//! plane says the node changed ([`Nodes::invalidate`]); a lookup that was in flight while
//! something changed is used once but not cached.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use parking_lot::Mutex;

use super::control::{ArrayInfo, Control, NodeInfo, Refusal};
use super::growth::regrown;
use super::unrecorded::Unrecorded;
use crate::codec::envelope::encode_message;
use crate::codec::Envelope;

/// Structure families that have a stream.
const STREAMABLE: [&str; 5] = ["array", "container", "ragged", "sparse", "table"];
/// Most paths remembered; beyond it the cache starts over (lookups are cheap to redo).
const CAPACITY: usize = 10_000;

/// A node as the edge serves it: the control plane's answer and its schema frames, encoded
/// once per envelope for every subscriber.
#[derive(Debug)]
pub struct Node {
    /// What the control plane said.
    pub info: NodeInfo,
    schema: [OnceLock<Option<Bytes>>; 2],
}

impl Node {
    /// Wraps an answer of the control plane.
    pub fn new(info: NodeInfo) -> Self {
        Self { info, schema: [OnceLock::new(), OnceLock::new()] }
    }

    /// Why this node cannot be subscribed to (a 404's detail), if it cannot.
    pub fn unstreamable(&self) -> Option<String> {
        let streamable = STREAMABLE.contains(&self.info.family.as_str()) && self.info.schema.is_some();
        (!streamable).then(|| format!("{:?} nodes cannot be streamed", self.info.family))
    }

    /// The schema message in `envelope` (`None` if the node cannot be streamed).
    pub fn schema_frame(&self, envelope: Envelope) -> Option<Bytes> {
        self.schema[envelope.index()]
            .get_or_init(|| {
                let schema = self.info.schema.as_ref()?;
                let json = serde_json::to_vec(schema).ok()?;
                encode_message(&json, envelope).ok()
            })
            .clone()
    }
}

#[derive(Default)]
struct Cache {
    entries: HashMap<String, Arc<Node>>,
    /// Bumped by every invalidation.
    generation: u64,
}

/// Path -> node, filled from the control plane on a miss.
pub struct Nodes {
    control: Arc<dyn Control>,
    cache: Mutex<Cache>,
    /// Growth the catalog does not hold yet, applied to what it answers.
    unrecorded: Arc<Unrecorded>,
}

/// The cache key of a URL path: its non-empty segments joined by `/` (as the control plane
/// reads paths: empty segments are ignored).
pub fn key(path: &str) -> String {
    path.split('/').filter(|s| !s.is_empty()).collect::<Vec<_>>().join("/")
}

impl Nodes {
    /// An empty cache in front of `control`.
    pub fn new(control: Arc<dyn Control>, unrecorded: Arc<Unrecorded>) -> Self {
        Self { control, cache: Mutex::new(Cache::default()), unrecorded }
    }

    /// The control plane.
    pub fn control(&self) -> &Arc<dyn Control> {
        &self.control
    }

    /// The node at `path`, from the cache or the control plane (whose refusals are not cached:
    /// a node created later is found).
    pub async fn resolve(&self, path: &str) -> Result<Arc<Node>, Refusal> {
        let key = key(path);
        let generation = {
            let cache = self.cache.lock();
            if let Some(node) = cache.entries.get(&key) {
                return Ok(Arc::clone(node));
            }
            cache.generation
        };
        let mut info = self.control.resolve(path.to_owned()).await?;
        if let (Some(array), Some(latest)) = (&info.array, self.unrecorded.latest(info.id)) {
            // Grown by writes already acknowledged: the catalog's shape is older.
            if array.shape != latest {
                info.array = Some(regrown(array, &latest));
            }
        }
        let node = Arc::new(Node::new(info));
        let mut cache = self.cache.lock();
        if cache.generation == generation {
            if cache.entries.len() >= CAPACITY {
                cache.entries.clear();
            }
            cache.entries.insert(key, Arc::clone(&node));
        }
        Ok(node)
    }

    /// Replaces the cached array structure of `path` after a write of this edge changed it.
    pub fn update_array(&self, path: &str, node: &Node, array: ArrayInfo) -> Arc<Node> {
        let info = NodeInfo { array: Some(array), ..node.info.clone() };
        let updated = Arc::new(Node::new(info));
        let mut cache = self.cache.lock();
        cache.generation += 1;
        cache.entries.insert(key(path), Arc::clone(&updated));
        updated
    }

    /// Forgets `path` (and everything below it if `subtree`): the node changed or went away.
    pub fn invalidate(&self, path: &[String], subtree: bool) {
        let key = path.iter().filter(|s| !s.is_empty()).cloned().collect::<Vec<_>>().join("/");
        let mut cache = self.cache.lock();
        cache.generation += 1;
        if subtree {
            let prefix = format!("{key}/");
            cache.entries.retain(|k, _| !(k == &key || key.is_empty() || k.starts_with(&prefix)));
        } else {
            cache.entries.remove(&key);
        }
    }

    /// Forgets everything (e.g. changes from other processes may have been missed).
    pub fn invalidate_all(&self) {
        let mut cache = self.cache.lock();
        cache.generation += 1;
        cache.entries.clear();
    }

    /// Paths cached now.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.cache.lock().entries.len()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use futures_util::future::BoxFuture;
    use futures_util::FutureExt;

    use super::super::control::{ArrayWrite, Stored, StreamName, StreamNode};
    use super::*;

    /// Answers every path with a fresh id, counting the questions.
    struct Counting(AtomicU64);

    impl Control for Counting {
        fn resolve(&self, path: String) -> BoxFuture<'static, Result<NodeInfo, Refusal>> {
            let id = self.0.fetch_add(1, Ordering::SeqCst) + 1;
            async move {
                if path.contains("missing") {
                    return Err(Refusal::new(http::StatusCode::NOT_FOUND, "No such entry"));
                }
                let schema = Some(serde_json::json!({"type": "container-schema", "version": 1}));
                Ok(NodeInfo { id, family: "container".into(), external: false, schema, array: None })
            }
            .boxed()
        }

        fn store(&self, _: ArrayWrite) -> BoxFuture<'static, Result<Stored, Refusal>> {
            async { Err(Refusal::new(http::StatusCode::NOT_IMPLEMENTED, "no storage")) }.boxed()
        }

        fn grow(&self, _: u64, _: String, _: Vec<u64>, _: Vec<u64>) -> BoxFuture<'static, Result<ArrayInfo, Refusal>> {
            async { Err(Refusal::new(http::StatusCode::NOT_IMPLEMENTED, "no catalog")) }.boxed()
        }

        fn stream(&self, name: StreamName) -> BoxFuture<'static, Result<StreamNode, Refusal>> {
            async move { Ok(StreamNode { id: None, full: name.sid }) }.boxed()
        }
    }

    #[tokio::test]
    async fn caches_until_invalidated() {
        let nodes = Nodes::new(Arc::new(Counting(AtomicU64::new(0))), Arc::new(Unrecorded::new(None)));
        let a = nodes.resolve("a//b/").await.unwrap();
        assert_eq!(nodes.resolve("/a/b").await.unwrap().info.id, a.info.id, "empty segments ignored");
        assert_eq!(nodes.resolve("a/b/c").await.unwrap().info.id, 2);
        assert_eq!(nodes.resolve("x").await.unwrap().info.id, 3);
        nodes.invalidate(&["a".into(), "b".into()], false);
        assert_eq!(nodes.resolve("a/b").await.unwrap().info.id, 4);
        assert_eq!(nodes.resolve("a/b/c").await.unwrap().info.id, 2, "not below a plain invalidation");
        nodes.invalidate(&["a".into()], true);
        assert_eq!(nodes.len(), 1);
        nodes.invalidate_all();
        assert_eq!(nodes.len(), 0);
        let missing = nodes.resolve("missing").await.unwrap_err();
        assert_eq!(missing.status, http::StatusCode::NOT_FOUND);
        assert_eq!(missing.detail(), "No such entry");
        assert_eq!(nodes.len(), 0, "refusals are not cached");
        let frame = a.schema_frame(Envelope::Json).unwrap();
        assert_eq!(&frame[..], br#"{"type":"container-schema","version":1}"#);
    }
}
