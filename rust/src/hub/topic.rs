//! `Topic`: one stream of this process (a node id): its [`Ring`] behind a lock, the wake-up
//! its subscribers wait on, and their count. Publishing, closing, mirroring and retention
//! changes all go through here, so every change wakes the subscribers.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, MutexGuard};
use tokio::sync::futures::Notified;
use tokio::sync::Notify;

use super::budget::Budget;
use super::close::Close;
use super::config::{Retention, RetentionOverride};
use super::entry_id::{self, EntryId, IdSpec};
use super::message::Message;
use super::ring::{External, Ring};
use super::stream_info::StreamInfo;
use crate::codec::envelope::Draft;
use crate::error::CoreResult;

/// One stream of this process (see the module docs).
#[derive(Debug)]
pub(crate) struct Topic {
    /// The hub's retention, which a topic's override is applied to.
    retention: Retention,
    ring: Mutex<Ring>,
    /// Woken (all waiters) on every publish, close marker, end and interrupt of the topic.
    notify: Notify,
    subscribers: AtomicUsize,
}

impl Topic {
    /// A topic whose messages count against `budget`.
    pub(crate) fn new(retention: Retention, seq_ttl: Duration, budget: Arc<Budget>) -> Self {
        Self {
            retention,
            ring: Mutex::new(Ring::new(retention, seq_ttl, budget)),
            notify: Notify::new(),
            subscribers: AtomicUsize::new(0),
        }
    }

    /// The ring, after lazy expiry at `now`.
    pub(crate) fn lock(&self, now: Instant) -> MutexGuard<'_, Ring> {
        let mut ring = self.ring.lock();
        ring.maintain(now);
        ring
    }

    /// A wake-up for the next change of this topic (register it before looking).
    pub(crate) fn notified(&self) -> Notified<'_> {
        self.notify.notified()
    }

    fn changed<T>(&self, value: T) -> T {
        self.notify.notify_waiters();
        value
    }

    /// Assigns the next sequence and an automatic entry id to a validated draft.
    pub(crate) fn publish(&self, draft: Draft, now: Instant) -> u64 {
        // An automatic id is never refused.
        let published = self.publish_batch(vec![draft], &[IdSpec::Auto], now, entry_id::wall_ms());
        published.ok().and_then(|p| p.first().map(|(seq, _)| *seq)).unwrap_or_default()
    }

    /// Assigns sequences and entry ids to a batch of validated drafts (`specs[i]` for
    /// `drafts[i]`, at wall-clock `wall_ms`); if any id is refused, nothing is published.
    pub(crate) fn publish_batch(
        &self,
        drafts: Vec<Draft>,
        specs: &[IdSpec],
        now: Instant,
        wall_ms: u64,
    ) -> CoreResult<Vec<(u64, EntryId)>> {
        let published = self.ring.lock().publish(drafts, specs, now, wall_ms)?;
        Ok(self.changed(published))
    }

    /// Appends an end-of-stream marker and returns its sequence.
    pub(crate) fn close_stream(&self, now: Instant) -> u64 {
        let seq = self.ring.lock().close_stream(now);
        self.changed(seq)
    }

    /// Inserts a message whose sequence was assigned elsewhere (see [`Ring::insert_external`]).
    pub(crate) fn insert_external(&self, message: Arc<Message>, now: Instant) -> External {
        let outcome = self.ring.lock().insert_external(message, now);
        self.changed(outcome)
    }

    /// Restarts a mirror at `seq` (see [`Ring::rebase`]).
    pub(crate) fn rebase(&self, seq: u64) {
        self.ring.lock().rebase(seq);
        self.changed(());
    }

    /// Replaces this topic's retention (`None` limits are the hub's) and applies it now.
    pub(crate) fn set_retention(&self, retention: RetentionOverride, now: Instant) -> CoreResult<()> {
        let limits = retention.apply(self.retention)?;
        self.ring.lock().set_limits(limits, now);
        Ok(())
    }

    /// When its oldest message the budget may evict was published (see
    /// [`Ring::evictable_since`]), after lazy expiry.
    pub(crate) fn evictable_since(&self, now: Instant) -> Option<Instant> {
        self.lock(now).evictable_since()
    }

    /// Evicts its oldest message for the budget (never the newest): its size, and when the
    /// next evictable one was published.
    ///
    /// Wakes nobody: a waiting subscriber has read up to the head, which is never evicted; one
    /// behind it is reading, and meets the gap at its next read.
    pub(crate) fn evict_oldest(&self) -> Option<(usize, Option<Instant>)> {
        let mut ring = self.ring.lock();
        let size = ring.evict_oldest()?;
        Some((size, ring.evictable_since()))
    }

    /// `(oldest retained, head, fresh)`; `fresh` means no event since creation or restart.
    pub(crate) fn bounds(&self, now: Instant) -> (u64, u64, bool) {
        let ring = self.lock(now);
        (ring.oldest(), ring.head(), ring.is_fresh())
    }

    /// The last assigned sequence (0 if none since the last restart).
    pub(crate) fn current_sequence(&self, now: Instant) -> u64 {
        self.lock(now).head()
    }

    /// `(messages, bytes)` retained after expiring old messages.
    pub(crate) fn retained(&self, now: Instant) -> (usize, usize) {
        self.lock(now).retained()
    }

    /// The stream's description, `None` if it never had an entry.
    pub(crate) fn info(&self, now: Instant) -> Option<StreamInfo> {
        self.lock(now).info()
    }

    /// Ends every subscription of this topic with `close` (node deleted, shutdown) and lets
    /// go of its messages.
    pub(crate) fn end(&self, close: Close) {
        let mut ring = self.ring.lock();
        ring.end(close);
        ring.clear();
        drop(ring);
        self.changed(());
    }

    /// Closes every current subscription with 1012 "Live subscription lost" without ending
    /// the topic: later subscriptions (reconnects) work as usual.
    pub(crate) fn interrupt(&self) {
        self.ring.lock().interrupt();
        self.changed(());
    }

    /// Number of live subscriptions.
    pub(crate) fn subscribers(&self) -> usize {
        self.subscribers.load(Ordering::Relaxed)
    }

    pub(crate) fn add_subscriber(&self) {
        self.subscribers.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn remove_subscriber(&self) {
        self.subscribers.fetch_sub(1, Ordering::Relaxed);
    }
}
