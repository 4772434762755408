//! `Stats`: what the edge counts for the control plane's Prometheus metrics. Counted once per
//! request, per connection and per publish (never per frame or per subscriber); the control
//! plane takes the accumulated deltas at scrape time ([`Stats::take`]) and adds them to the same
//! metric families it keeps for the requests it serves itself.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use parking_lot::Mutex;

use crate::hub::{EntrySubscription, Subscription};

/// Streams counted under their own `node` label; more are counted under `u64::MAX`
/// ("other"), so that the number of series stays bounded (as the control plane does).
const MAX_STREAM_LABELS: usize = 1000;

/// A latency histogram's deltas: bucket counts (not cumulative; one per bound, then +Inf),
/// the sum of the observations and their count.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
    /// Observations per bucket.
    pub buckets: Vec<u64>,
    /// Sum of the observations (seconds).
    pub sum: f64,
}

impl Histogram {
    fn observe(&mut self, bounds: &[f64], value: f64) {
        if self.buckets.is_empty() {
            self.buckets = vec![0; bounds.len() + 1];
        }
        let index = bounds.iter().position(|b| value <= *b).unwrap_or(bounds.len());
        self.buckets[index] += 1;
        self.sum += value;
    }
}

/// Deltas accumulated since the last [`Stats::take`], plus current gauges.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// `(method, route, status) -> latency histogram` of the requests answered.
    pub requests: HashMap<(String, &'static str, u16), Histogram>,
    /// WebSocket connections opened, by route label.
    pub websockets: HashMap<&'static str, u64>,
    /// Messages published, by topic (`u64::MAX`: past the label cap).
    pub published: HashMap<u64, u64>,
    /// Latency of publish calls.
    pub publish_latency: Histogram,
    /// Envelope bytes the open subscriptions are behind (a gauge).
    pub queue_bytes: u64,
    /// Messages dropped by overflow policies, ever (a counter's total).
    pub dropped: u64,
    /// Messages skipped because no longer retained, ever (a counter's total).
    pub missed: u64,
    /// `WS /api/v1/stream/multi` connections open now (a gauge).
    pub multi_connections: u64,
    /// Subscriptions open on those connections now (a gauge).
    pub multi_subscriptions: u64,
    /// Per (stream, view): subscribers now, and the views' totals (filled in by the edge).
    pub views: Vec<crate::view::ViewStats>,
}

/// What an [`OpenGuard`] counts while it lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Open {
    /// A `WS /api/v1/stream/multi` connection.
    MultiConnection,
    /// A subscription on one.
    MultiSubscription,
}

/// A subscription whose loss counters the metrics follow while it lives.
pub trait Tracked: Send + Sync {
    /// Messages dropped by its overflow policy.
    fn dropped(&self) -> u64;
    /// Messages it never got because they were no longer retained.
    fn missed(&self) -> u64;
    /// Envelope bytes it is behind.
    fn backlog(&self) -> u64;
}

impl Tracked for Subscription {
    fn dropped(&self) -> u64 {
        Subscription::dropped(self)
    }
    fn missed(&self) -> u64 {
        Subscription::missed(self)
    }
    fn backlog(&self) -> u64 {
        self.backlog_bytes() as u64
    }
}

impl Tracked for EntrySubscription {
    fn dropped(&self) -> u64 {
        EntrySubscription::dropped(self)
    }
    fn missed(&self) -> u64 {
        EntrySubscription::missed(self)
    }
    fn backlog(&self) -> u64 {
        0
    }
}

#[derive(Default)]
struct Pending {
    requests: HashMap<(String, &'static str, u16), Histogram>,
    websockets: HashMap<&'static str, u64>,
    published: HashMap<u64, u64>,
    publish_latency: Histogram,
    labelled: std::collections::HashSet<u64>,
}

/// The edge's counters (see the module docs).
pub struct Stats {
    bounds: Vec<f64>,
    pending: Mutex<Pending>,
    live: Mutex<HashMap<u64, Weak<dyn Tracked>>>,
    next_id: AtomicU64,
    /// Loss counts of subscriptions that ended.
    folded: Mutex<(u64, u64)>,
    /// Gauges of what is open now, one per [`Open`].
    open: [AtomicU64; 2],
}

/// Counts one [`Open`] thing until dropped.
pub struct OpenGuard {
    stats: Arc<Stats>,
    what: Open,
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.stats.open[self.what as usize].fetch_sub(1, Ordering::Relaxed);
    }
}

/// Keeps a subscription in the metrics until dropped, then folds its final counts.
pub struct TrackGuard {
    stats: Arc<Stats>,
    id: u64,
    subscription: Arc<dyn Tracked>,
}

impl Drop for TrackGuard {
    fn drop(&mut self) {
        self.stats.live.lock().remove(&self.id);
        let mut folded = self.stats.folded.lock();
        folded.0 += self.subscription.dropped();
        folded.1 += self.subscription.missed();
    }
}

impl Stats {
    /// Counters with latency buckets bounded by `bounds` (seconds, increasing).
    pub fn new(bounds: Vec<f64>) -> Self {
        Self {
            bounds,
            pending: Mutex::default(),
            live: Mutex::default(),
            next_id: AtomicU64::new(0),
            folded: Mutex::default(),
            open: Default::default(),
        }
    }

    /// Counts `what` as open until the guard is dropped.
    pub fn opened(self: &Arc<Self>, what: Open) -> OpenGuard {
        self.open[what as usize].fetch_add(1, Ordering::Relaxed);
        OpenGuard { stats: Arc::clone(self), what }
    }

    /// One request answered.
    pub fn request(&self, method: &str, route: &'static str, status: u16, seconds: f64) {
        let mut pending = self.pending.lock();
        let key = (method.to_owned(), route, status);
        pending.requests.entry(key).or_default().observe(&self.bounds, seconds);
    }

    /// One WebSocket connection opened.
    pub fn websocket(&self, route: &'static str) {
        *self.pending.lock().websockets.entry(route).or_default() += 1;
    }

    /// One publish call of `messages` messages on `topic`, taking `seconds`.
    pub fn published(&self, topic: u64, messages: u64, seconds: f64) {
        let mut pending = self.pending.lock();
        let label = if pending.labelled.contains(&topic) || pending.labelled.len() < MAX_STREAM_LABELS {
            pending.labelled.insert(topic);
            topic
        } else {
            u64::MAX
        };
        *pending.published.entry(label).or_default() += messages;
        let bounds = &self.bounds;
        pending.publish_latency.observe(bounds, seconds);
    }

    /// Follows `subscription`'s counters until the guard is dropped.
    pub fn track(self: &Arc<Self>, subscription: Arc<dyn Tracked>) -> TrackGuard {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.live.lock().insert(id, Arc::downgrade(&subscription));
        TrackGuard { stats: Arc::clone(self), id, subscription }
    }

    /// The deltas since the last call, and the current gauges and totals.
    pub fn take(&self) -> Snapshot {
        let pending = {
            let mut pending = self.pending.lock();
            Pending {
                requests: std::mem::take(&mut pending.requests),
                websockets: std::mem::take(&mut pending.websockets),
                published: std::mem::take(&mut pending.published),
                publish_latency: std::mem::take(&mut pending.publish_latency),
                labelled: Default::default(),
            }
        };
        let live: Vec<Arc<dyn Tracked>> = self.live.lock().values().filter_map(Weak::upgrade).collect();
        let (mut dropped, mut missed) = *self.folded.lock();
        let mut queue_bytes = 0;
        for subscription in &live {
            dropped += subscription.dropped();
            missed += subscription.missed();
            queue_bytes += subscription.backlog();
        }
        Snapshot {
            requests: pending.requests,
            websockets: pending.websockets,
            published: pending.published,
            publish_latency: pending.publish_latency,
            queue_bytes,
            dropped,
            missed,
            multi_connections: self.open[Open::MultiConnection as usize].load(Ordering::Relaxed),
            multi_subscriptions: self.open[Open::MultiSubscription as usize].load(Ordering::Relaxed),
            views: Vec::new(),
        }
    }
}

/// The `route` label of a request path, as the control plane's metrics name it.
pub fn route_label(path: &str) -> &'static str {
    match path.strip_prefix("/api/v1/").and_then(|rest| rest.split('/').next()) {
        Some("array") => "array",
        Some("stream") => "stream",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deltas_are_taken_once() {
        let stats = Stats::new(vec![0.001, 0.01]);
        stats.request("PUT", "array", 200, 0.0005);
        stats.request("PUT", "array", 200, 0.005);
        stats.request("PUT", "array", 200, 1.0);
        stats.websocket("stream");
        stats.published(7, 3, 0.002);
        let first = stats.take();
        let h = &first.requests[&("PUT".to_owned(), "array", 200)];
        assert_eq!(h.buckets, vec![1, 1, 1]);
        assert!((h.sum - 1.0055).abs() < 1e-9);
        assert_eq!(first.websockets["stream"], 1);
        assert_eq!(first.published[&7], 3);
        assert_eq!(first.publish_latency.buckets, vec![0, 1, 0]);
        let stats = Arc::new(stats);
        let connection = stats.opened(Open::MultiConnection);
        let subscriptions = [stats.opened(Open::MultiSubscription), stats.opened(Open::MultiSubscription)];
        assert_eq!((stats.take().multi_connections, stats.take().multi_subscriptions), (1, 2));
        drop(subscriptions);
        drop(connection);
        let second = stats.take();
        assert_eq!((second.multi_connections, second.multi_subscriptions), (0, 0));
        assert!(second.requests.is_empty() && second.published.is_empty());
        assert_eq!(route_label("/api/v1/stream/single/x"), "stream");
        assert_eq!(route_label("/data/x/push"), "other");
    }
}
