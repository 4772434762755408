//! `Unrecorded`: array growth the edge acknowledged before the catalog recorded it, recorded
//! behind the writes and coalesced (one catalog write for as many appends as arrived while the
//! previous one ran), for a process whose catalog no other process writes.
//!
//! Why it is safe there: the edge is then the only writer of the arrays it stores, so its own
//! shape is the truth, and `zarr.json` holds it on disk before any write is acknowledged. What
//! could see the catalog's older shape is held back instead:
//! - the edge's own node cache: a node resolved while growth is unrecorded gets the newer shape
//!   ([`Unrecorded::latest`]);
//! - every request forwarded to the control plane (metadata, reads, search ...) waits until
//!   every growth acknowledged before it arrived is recorded ([`Unrecorded::settled`]);
//! - a request forwarded meanwhile hurries the recording, which otherwise lingers a moment
//!   ([`LINGER`]) to take in more appends;
//! - a crash: before the first unrecorded growth of a node, a journal entry naming its array is
//!   written; the control plane reconciles the catalog with `zarr.json` from the journal at its
//!   next start (`ferrotile/api/growth_journal.py`).
//!
//! With a shared catalog (several processes, Redis) the edge records each growth before it
//! acknowledges the write, as before (`journal` is `None`).

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::json;
use tokio::sync::watch;

use super::control::Control;
use super::log;
use crate::error::{CoreError, CoreResult};

/// How long a node's growth waits for more appends before the catalog records it, unless a
/// request that must see it arrives: one catalog write per ~20 appends of a writer with one
/// request in flight at 1,000 frames/s instead of one per append.
pub const LINGER: Duration = Duration::from_millis(20);

/// The first and the longest wait before recording again growth the catalog could not write.
const RETRY_FIRST: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_secs(2);

/// Growth acknowledged but not yet in the catalog, per node.
pub struct Unrecorded {
    /// Where journal entries go (`None`: growth is recorded before the write is acknowledged).
    journal: Option<PathBuf>,
    state: Mutex<State>,
    /// Every deferred acknowledgement up to this number is recorded.
    recorded: watch::Sender<u64>,
    /// Bumped by a request waiting for the catalog: recordings stop lingering.
    hurry: watch::Sender<u64>,
}

#[derive(Default)]
struct State {
    /// Deferred acknowledgements so far (numbered from 1).
    acked: u64,
    /// Nodes with growth not yet recorded.
    pending: HashMap<u64, Pending>,
    /// Nodes with a journal entry written by this process.
    journaled: HashSet<u64>,
}

/// One node's growth not yet recorded.
struct Pending {
    path: String,
    /// The shape the catalog holds.
    recorded: Vec<u64>,
    /// The shape after the last acknowledged write.
    latest: Vec<u64>,
    /// The number of that write's acknowledgement.
    latest_ack: u64,
    /// The number of the oldest acknowledgement of this node not yet recorded.
    oldest_ack: u64,
    /// A catalog write for this node is under way.
    recording: bool,
}

/// One catalog write to make: the node's path, the shapes from and to, the acknowledgement it
/// covers up to.
type Step = (String, Vec<u64>, Vec<u64>, u64);

impl Unrecorded {
    /// Growth deferred with a journal in `journal`, or (`None`) never deferred.
    pub fn new(journal: Option<PathBuf>) -> Self {
        Self { journal, state: Mutex::new(State::default()), recorded: watch::channel(0).0, hurry: watch::channel(0).0 }
    }

    /// Whether growth is recorded after the write is acknowledged.
    pub fn defers(&self) -> bool {
        self.journal.is_some()
    }

    /// Writes (once per node and process) the journal entry naming the array in `zarr` of node
    /// `node` at `path`, before its first growth is acknowledged unrecorded. Blocking.
    pub fn journal(&self, node: u64, path: &str, zarr: &str) -> CoreResult<()> {
        let Some(dir) = &self.journal else { return Ok(()) };
        if self.state.lock().journaled.contains(&node) {
            return Ok(());
        }
        let io = |e: std::io::Error| CoreError::Storage(format!("growth journal in {}: {e}", dir.display()));
        std::fs::create_dir_all(dir).map_err(io)?;
        let entry = json!({"node": node, "path": path, "zarr": zarr}).to_string();
        let (tmp, target) = (dir.join(format!(".{node}.json.tmp")), dir.join(format!("{node}.json")));
        std::fs::write(&tmp, entry).map_err(io)?;
        std::fs::rename(&tmp, &target).map_err(io)?;
        self.state.lock().journaled.insert(node);
        Ok(())
    }

    /// Notes that a write of `node` was acknowledged with shape `to` while the catalog holds
    /// `from` (or an older growth of it is still being recorded), and starts recording it on
    /// `control` unless a recording of that node is under way (which then records it too).
    pub fn defer(self: &Arc<Self>, control: &Arc<dyn Control>, node: u64, path: &str, from: &[u64], to: Vec<u64>) {
        let start = {
            let mut state = self.state.lock();
            state.acked += 1;
            let ack = state.acked;
            let pending = state.pending.entry(node).or_insert_with(|| Pending {
                path: path.to_owned(),
                recorded: from.to_vec(),
                latest: Vec::new(),
                latest_ack: ack,
                oldest_ack: ack,
                recording: false,
            });
            pending.latest = to;
            pending.latest_ack = ack;
            // Subscribed under the lock: a request waiting for this growth hurries it.
            (!std::mem::replace(&mut pending.recording, true)).then(|| self.hurry.subscribe())
        };
        if let Some(hurried) = start {
            tokio::spawn(Arc::clone(self).record(Arc::clone(control), node, hurried));
        }
    }

    /// Records `node`'s growth until none is left unrecorded, each step after [`LINGER`] or
    /// at once when hurried.
    async fn record(self: Arc<Self>, control: Arc<dyn Control>, node: u64, mut hurried: watch::Receiver<u64>) {
        let mut retry = RETRY_FIRST;
        loop {
            let _ = tokio::time::timeout(LINGER, hurried.changed()).await;
            let Some((path, from, to, ack)) = self.next_step(node) else { break };
            let outcome = control.grow(node, path.clone(), from, to.clone()).await;
            match &outcome {
                Err(refusal) if refusal.status.is_server_error() => {
                    // The catalog could not write now: the growth stays pending (the journal
                    // names it), tried again.
                    log::warn(&format!(
                        "the catalog could not record the growth of {path:?} to {to:?} yet ({}); \
                         retrying in {retry:?}",
                        refusal.detail()
                    ));
                    tokio::time::sleep(retry).await;
                    retry = (retry * 2).min(RETRY_MAX);
                    continue;
                }
                Err(refusal) => log::warn(&format!(
                    "the catalog refused the growth of {path:?} to {to:?} the edge had stored and \
                     acknowledged (the node went away or changed): {}",
                    refusal.detail()
                )),
                Ok(_) => retry = RETRY_FIRST,
            }
            if !self.step_done(node, outcome.is_ok().then_some((to, ack))) {
                break;
            }
        }
    }

    fn next_step(&self, node: u64) -> Option<Step> {
        let state = self.state.lock();
        let pending = state.pending.get(&node)?;
        Some((pending.path.clone(), pending.recorded.clone(), pending.latest.clone(), pending.latest_ack))
    }

    /// After a catalog write: `Some((shape, ack))` if it recorded `shape`, covering
    /// acknowledgements up to `ack`; `None` if refused (the node is dropped: it went away or
    /// changed under the control plane). Answers whether growth of `node` is left to record.
    fn step_done(&self, node: u64, recorded: Option<(Vec<u64>, u64)>) -> bool {
        let mut state = self.state.lock();
        let more = match (state.pending.get_mut(&node), recorded) {
            (Some(pending), Some((shape, ack))) if pending.latest_ack > ack => {
                pending.recorded = shape;
                pending.oldest_ack = ack + 1;
                true
            }
            _ => {
                state.pending.remove(&node);
                false
            }
        };
        let through = state.pending.values().map(|p| p.oldest_ack - 1).min().unwrap_or(state.acked);
        self.recorded.send_replace(through);
        more
    }

    /// The shape of `node` after its last acknowledged write, if the catalog does not hold it
    /// yet.
    pub fn latest(&self, node: u64) -> Option<Vec<u64>> {
        self.state.lock().pending.get(&node).map(|p| p.latest.clone())
    }

    /// Resolves once every growth acknowledged before the call is in the catalog (at once if
    /// none is pending).
    pub fn settled(&self) -> impl Future<Output = ()> + Send + 'static {
        let (target, mut recorded) = {
            let state = self.state.lock();
            let recorded = self.recorded.subscribe();
            if *recorded.borrow() < state.acked {
                self.hurry.send_modify(|n| *n += 1); // no lingering: a request waits
            }
            (state.acked, recorded)
        };
        async move {
            let _ = recorded.wait_for(|through| *through >= target).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::edge::control::{ArrayInfo, ArrayWrite, NodeInfo, Refusal, Stored, StreamName, StreamNode};
    use futures_util::future::BoxFuture;
    use futures_util::FutureExt;
    use std::sync::atomic::Ordering::SeqCst;
    use std::time::Duration;

    /// A catalog that takes 20 ms to record growth (node 2: 2 s), or refuses it, and remembers
    /// each call.
    #[derive(Default)]
    struct SlowCatalog {
        calls: Mutex<Vec<(Vec<u64>, Vec<u64>)>>,
        refuse: bool,
        /// Answer 503 (the database cannot write) to this many calls first.
        unavailable: std::sync::atomic::AtomicU32,
    }

    impl Control for SlowCatalog {
        fn resolve(&self, _: String) -> BoxFuture<'static, Result<NodeInfo, Refusal>> {
            unreachable!()
        }
        fn store(&self, _: ArrayWrite) -> BoxFuture<'static, Result<Stored, Refusal>> {
            unreachable!()
        }
        fn grow(
            &self,
            node: u64,
            _: String,
            from: Vec<u64>,
            to: Vec<u64>,
        ) -> BoxFuture<'static, Result<ArrayInfo, Refusal>> {
            self.calls.lock().push((from, to.clone()));
            let refuse = self.refuse;
            let down = self.unavailable.fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1)).is_ok();
            async move {
                if down {
                    return Err(Refusal::new(http::StatusCode::SERVICE_UNAVAILABLE, "catalog down"));
                }
                tokio::time::sleep(Duration::from_millis(if node == 2 { 2000 } else { 20 })).await;
                if refuse {
                    return Err(Refusal::new(http::StatusCode::CONFLICT, "gone"));
                }
                let structure = json!({"shape": to});
                Ok(ArrayInfo {
                    dtype: "|u1".into(),
                    itemsize: 1,
                    shape: to,
                    chunks: vec![],
                    structure,
                    max_bytes: u64::MAX,
                    zarr: None,
                })
            }
            .boxed()
        }
        fn stream(&self, _: StreamName) -> BoxFuture<'static, Result<StreamNode, Refusal>> {
            unreachable!()
        }
    }

    #[tokio::test]
    async fn coalesces_growth_and_settles_after_recording() {
        let catalog = Arc::new(SlowCatalog::default());
        let control: Arc<dyn Control> = catalog.clone();
        let dir = std::env::temp_dir().join(format!("ferrotile-unrecorded-{}", std::process::id()));
        let unrecorded = Arc::new(Unrecorded::new(Some(dir.join("journal"))));
        unrecorded.journal(7, "a/x", "/data/x.zarr").unwrap();
        let entry: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("journal/7.json")).unwrap()).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(entry, json!({"node": 7, "path": "a/x", "zarr": "/data/x.zarr"}));
        unrecorded.defer(&control, 7, "a/x", &[1, 4], vec![2, 4]);
        tokio::time::sleep(LINGER + Duration::from_millis(5)).await; // its recording starts
        for n in 3..=5 {
            unrecorded.defer(&control, 7, "a/x", &[n - 1, 4], vec![n, 4]);
        }
        assert_eq!(unrecorded.latest(7), Some(vec![5, 4]));
        tokio::time::timeout(Duration::from_secs(5), unrecorded.settled()).await.unwrap();
        // The first write's growth, then the three that came while it was recorded, in one.
        assert_eq!(*catalog.calls.lock(), vec![(vec![1, 4], vec![2, 4]), (vec![2, 4], vec![5, 4])]);
        assert_eq!(unrecorded.latest(7), None);
        // Nothing pending: settled at once.
        tokio::time::timeout(Duration::from_millis(1), unrecorded.settled()).await.unwrap();
    }

    #[tokio::test]
    async fn waits_only_for_growth_acknowledged_before() {
        let catalog = Arc::new(SlowCatalog::default());
        let control: Arc<dyn Control> = catalog.clone();
        let unrecorded = Arc::new(Unrecorded::new(Some(PathBuf::from("/nonexistent"))));
        unrecorded.defer(&control, 1, "a", &[0], vec![1]);
        let settled = unrecorded.settled();
        unrecorded.defer(&control, 2, "b", &[0], vec![1]);
        tokio::time::timeout(Duration::from_secs(1), settled).await.unwrap();
        assert_eq!(unrecorded.latest(1), None);
        assert_eq!(unrecorded.latest(2), Some(vec![1])); // still being recorded
    }

    #[tokio::test]
    async fn a_refused_growth_is_dropped_and_settles() {
        let catalog = Arc::new(SlowCatalog { refuse: true, ..SlowCatalog::default() });
        let control: Arc<dyn Control> = catalog.clone();
        let unrecorded = Arc::new(Unrecorded::new(Some(PathBuf::from("/nonexistent"))));
        unrecorded.defer(&control, 3, "y", &[0], vec![1]);
        unrecorded.defer(&control, 3, "y", &[0], vec![2]);
        tokio::time::timeout(Duration::from_secs(5), unrecorded.settled()).await.unwrap();
        assert_eq!(*catalog.calls.lock(), vec![(vec![0], vec![2])]);
        assert_eq!(unrecorded.latest(3), None);
    }

    #[tokio::test]
    async fn growth_the_catalog_could_not_write_is_tried_again() {
        let catalog = Arc::new(SlowCatalog { unavailable: 2.into(), ..SlowCatalog::default() });
        let control: Arc<dyn Control> = catalog.clone();
        let unrecorded = Arc::new(Unrecorded::new(Some(PathBuf::from("/nonexistent"))));
        unrecorded.defer(&control, 4, "z", &[0], vec![1]);
        tokio::time::timeout(Duration::from_secs(5), unrecorded.settled()).await.unwrap();
        assert_eq!(*catalog.calls.lock(), vec![(vec![0], vec![1]); 3]);
        assert_eq!(unrecorded.latest(4), None);
    }
}
