//! `ViewCache`: the views of one process's streams, computed once per frame per distinct view
//! for all the subscribers who asked for it. Subscribers of the same (stream, view) share a
//! [`ViewSlot`] holding the last few frames it computed (a frame is computed by the first
//! subscriber that needs it; the others wait for that result rather than compute their own),
//! and counters for the metrics. A subscriber more than the slot's depth behind computes again
//! (counted: one computation per frame per view holds while subscribers keep up).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};

use parking_lot::Mutex;

use super::spec::ViewSpec;
use super::viewed::Viewed;
use crate::hub::Message;

/// Frames a slot keeps at most.
const DEPTH: usize = 8;
/// Bytes of view payloads a slot keeps at most (beyond its newest two frames).
const DEPTH_BYTES: usize = 32 * 1024 * 1024;
/// (stream, view) pairs counted under their own labels; more go to [`OTHER_TOPIC`].
const MAX_LABELS: usize = 1000;
/// The topic label of views past the label cap ("other").
pub const OTHER_TOPIC: u64 = u64::MAX;
/// The view label of views past the label cap.
const OTHER_VIEW: &str = "other";

/// Counters of one (stream, view), for the metrics. The view `""` counts subscribers without a
/// view that asked for `max_fps`.
#[derive(Debug, Default)]
pub struct ViewCounters {
    subscribers: AtomicU64,
    computed: AtomicU64,
    raw_bytes: AtomicU64,
    payload_bytes: AtomicU64,
    skipped: AtomicU64,
}

/// One row of [`ViewCache::snapshot`]: totals since the process started, and the current
/// subscribers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewStats {
    /// The stream's node id ([`OTHER_TOPIC`] past the label cap).
    pub topic: u64,
    /// The view's canonical name (`""`: no view, `max_fps` only).
    pub view: String,
    /// Subscribers now.
    pub subscribers: u64,
    /// Frames computed.
    pub computed: u64,
    /// Bytes of the views' arrays before compression.
    pub raw_bytes: u64,
    /// Bytes of their payloads as delivered (after compression).
    pub payload_bytes: u64,
    /// Frames skipped by `max_fps`.
    pub skipped: u64,
}

type Key = (u64, String);
/// A frame of a view, computed once by whoever needs it first.
type Cell = Arc<OnceLock<Arc<Message>>>;

/// Frames computed for one (stream, view), shared by its subscribers.
#[derive(Debug)]
pub struct ViewSlot {
    spec: ViewSpec,
    counters: Arc<ViewCounters>,
    frames: Mutex<VecDeque<(u64, Cell)>>,
}

impl ViewSlot {
    /// The view.
    pub fn spec(&self) -> &ViewSpec {
        &self.spec
    }

    /// `message` through the view: computed by the first caller, shared with the others.
    pub fn view(&self, message: &Arc<Message>) -> Arc<Message> {
        let sequence = message.sequence();
        if sequence == 0 || message.payload().is_none() {
            return Arc::clone(message); // notices, and messages without a payload
        }
        let cell = {
            let mut frames = self.frames.lock();
            match frames.iter().find(|(s, _)| *s == sequence) {
                Some((_, cell)) => Arc::clone(cell),
                None => {
                    let cell = Arc::new(OnceLock::new());
                    frames.push_back((sequence, Arc::clone(&cell)));
                    let held = |f: &VecDeque<(u64, Cell)>| {
                        f.iter().filter_map(|(_, c)| c.get()).map(|m| m.size()).sum::<usize>()
                    };
                    while frames.len() > DEPTH || (frames.len() > 2 && held(&frames) > DEPTH_BYTES) {
                        frames.pop_front();
                    }
                    cell
                }
            }
        };
        Arc::clone(cell.get_or_init(|| {
            let viewed = Viewed::new(&self.spec, message);
            let counters = &self.counters;
            counters.computed.fetch_add(1, Ordering::Relaxed);
            counters.raw_bytes.fetch_add(viewed.raw_bytes as u64, Ordering::Relaxed);
            counters.payload_bytes.fetch_add(viewed.payload_bytes as u64, Ordering::Relaxed);
            viewed.message
        }))
    }
}

/// One subscriber's membership: its view's slot (if it has a view) and its counters. Counted
/// as a subscriber until dropped.
#[derive(Debug)]
pub struct ViewMember {
    slot: Option<Arc<ViewSlot>>,
    counters: Arc<ViewCounters>,
}

impl ViewMember {
    /// `message` as this subscriber sees it.
    pub fn view(&self, message: &Arc<Message>) -> Arc<Message> {
        match &self.slot {
            Some(slot) => slot.view(message),
            None => Arc::clone(message),
        }
    }

    /// The view, if the subscriber has one.
    pub fn spec(&self) -> Option<&ViewSpec> {
        self.slot.as_deref().map(ViewSlot::spec)
    }

    /// Counts frames `max_fps` skipped.
    pub fn skipped(&self, frames: u64) {
        self.counters.skipped.fetch_add(frames, Ordering::Relaxed);
    }
}

impl Drop for ViewMember {
    fn drop(&mut self) {
        self.counters.subscribers.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The views of one process (see the module docs).
#[derive(Debug, Default)]
pub struct ViewCache {
    slots: Mutex<HashMap<Key, Weak<ViewSlot>>>,
    counters: Mutex<HashMap<Key, Arc<ViewCounters>>>,
}

impl ViewCache {
    /// Joins the subscribers of `spec` (`None`: no view, counted only for `max_fps`) on `topic`.
    pub fn join(&self, topic: u64, spec: Option<ViewSpec>) -> ViewMember {
        let name = spec.as_ref().map_or_else(String::new, |s| s.name().to_owned());
        let key = (topic, name);
        let counters = {
            let mut all = self.counters.lock();
            let key = if all.contains_key(&key) || all.len() < MAX_LABELS {
                key.clone()
            } else {
                (OTHER_TOPIC, OTHER_VIEW.to_owned())
            };
            let counters = Arc::clone(all.entry(key).or_default());
            counters.subscribers.fetch_add(1, Ordering::Relaxed);
            counters
        };
        let slot = spec.map(|spec| {
            let mut slots = self.slots.lock();
            slots.retain(|_, slot| slot.strong_count() > 0);
            if let Some(slot) = slots.get(&key).and_then(Weak::upgrade) {
                return slot;
            }
            let slot = Arc::new(ViewSlot { spec, counters: Arc::clone(&counters), frames: Mutex::default() });
            slots.insert(key, Arc::downgrade(&slot));
            slot
        });
        ViewMember { slot, counters }
    }

    /// Every (stream, view)'s counters.
    pub fn snapshot(&self) -> Vec<ViewStats> {
        let all = self.counters.lock();
        all.iter()
            .map(|((topic, view), c)| ViewStats {
                topic: *topic,
                view: view.clone(),
                subscribers: c.subscribers.load(Ordering::Relaxed),
                computed: c.computed.load(Ordering::Relaxed),
                raw_bytes: c.raw_bytes.load(Ordering::Relaxed),
                payload_bytes: c.payload_bytes.load(Ordering::Relaxed),
                skipped: c.skipped.load(Ordering::Relaxed),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::envelope::Draft;
    use crate::hub::EntryId;
    use std::time::Instant;

    fn frame(sequence: u64, values: &[u16]) -> Arc<Message> {
        let payload: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let draft = Draft::new(
            br#"{"type":"array-data","shape":[2,2],"offset":null,"block":null}"#,
            Some(&payload),
            Some(("<u2", vec![2, 2])),
        )
        .unwrap();
        let encoded = draft.finish(sequence);
        Arc::new(Message::data(sequence, EntryId::ZERO, Instant::now(), encoded.msgpack, encoded.json))
    }

    fn spec(bin: &str) -> Option<ViewSpec> {
        ViewSpec::parse(|name| (name == "bin").then_some(bin)).unwrap()
    }

    #[test]
    fn one_computation_per_frame_per_view() {
        let cache = ViewCache::default();
        let (a, b) = (cache.join(7, spec("2")), cache.join(7, spec("2,sum")));
        let other = cache.join(7, spec("2,mean"));
        let first = frame(1, &[1, 2, 3, 4]);
        let (va, vb) = (a.view(&first), b.view(&first));
        assert!(Arc::ptr_eq(&va, &vb));
        assert_eq!(va.sequence(), 1);
        assert_eq!(va.payload().unwrap().as_ref(), 10u32.to_le_bytes()); // 4 x u16: uint32
        let mean = other.view(&first);
        assert_eq!(mean.payload().unwrap().as_ref(), 2.5f64.to_le_bytes());
        let stats = cache.snapshot();
        let sum = stats.iter().find(|s| s.view == "bin=2,sum").unwrap();
        assert_eq!((sum.subscribers, sum.computed, sum.raw_bytes, sum.payload_bytes), (2, 1, 4, 4));
        drop(b);
        let after = cache.snapshot();
        assert_eq!(after.iter().find(|s| s.view == "bin=2,sum").unwrap().subscribers, 1);
    }

    #[test]
    fn keeps_the_last_frames_and_reports_errors() {
        let cache = ViewCache::default();
        let member = cache.join(1, spec("4"));
        let frames: Vec<_> = (1..=DEPTH as u64 + 2).map(|s| frame(s, &[1, 2, 3, 4])).collect();
        for f in &frames {
            member.view(f);
        }
        member.view(&frames[0]); // evicted: computed again
        let stats = cache.snapshot();
        assert_eq!(stats[0].computed, DEPTH as u64 + 3);
        // bin=4 of a 2 x 2 frame is empty, not an error; a slice out of bounds is.
        let slice = ViewSpec::parse(|name| (name == "slice").then_some("5")).unwrap();
        let error = cache.join(1, slice).view(&frames[0]);
        assert_eq!(error.sequence(), 0);
        let text = error.envelope(crate::codec::Envelope::Json);
        let notice: serde_json::Value = serde_json::from_slice(text).unwrap();
        assert_eq!(notice["type"], "view-error");
        assert_eq!(notice["sequence"], 1);
        assert_eq!(notice["detail"], "Invalid slice: Index 5 is out of bounds for axis 0 with size 2");
    }
}
