//! `Topic`: one stream's sequence counter, retention ring (count, bytes, age), sequence expiry,
//! entry ids, and the cursor reads that fan messages out without copying them per subscriber.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use tokio::sync::Notify;

use super::entry_id::{self, EntryId, IdSpec};
use super::message::{Close, Message, MessageKind};
use super::policy::{GapReason, Notice, Policy};
use super::subscriber::Cursor;
use super::{HubConfig, Retention, RetentionOverride};
use crate::codec::envelope::Draft;
use crate::error::CoreResult;

/// What [`Topic::insert_external`] did with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum External {
    /// Appended at the head.
    Appended,
    /// Already there (or older than the head): ignored.
    Duplicate,
    /// Sequences `expected..seq` are missing: fill them first.
    Gap {
        /// The next sequence the ring can take.
        expected: u64,
    },
}

/// One stream (a node id): its ring of retained messages and the subscribers' wake-up.
#[derive(Debug)]
pub struct Topic {
    config: HubConfig,
    pub(super) state: Mutex<State>,
    /// Woken (all waiters) on every publish, close marker and end of the topic.
    pub(super) notify: Notify,
    subscribers: AtomicUsize,
}

#[derive(Debug)]
pub(super) struct State {
    next_seq: u64,
    pub(super) ring: VecDeque<Arc<Message>>,
    bytes: usize,
    /// Per ring entry, the envelope bytes published on this topic up to and including it.
    pub(super) ends: VecDeque<u64>,
    /// Per ring entry, the data messages published on this topic up to and including it (so an
    /// entry reader can count what was evicted before it read it).
    pub(super) ordinals: VecDeque<u64>,
    /// Data messages ever published on this topic (its `entries_added`).
    pub(super) added: u64,
    /// Id of the newest data message (`0-0` if none).
    pub(super) last_id: EntryId,
    /// Greatest id of a data message evicted from the ring (`0-0` if none).
    pub(super) max_deleted: EntryId,
    /// Effective retention: the hub's, or this topic's override.
    limits: Retention,
    /// Envelope bytes ever published on this topic (the end of the newest entry).
    pub(super) total: u64,
    /// Bumped by `interrupt`: subscriptions made before close with `LIVE_LOST`.
    pub(super) interrupts: u64,
    /// Time of the last event (data or marker); drives `seq_ttl`.
    last_event: Option<Instant>,
    /// Time of the last end-of-stream marker, cleared by a later data publish.
    closed_at: Option<Instant>,
    /// Bumped whenever the sequence restarts at 1, so cursors can follow.
    epoch: u64,
    /// First sequence of the current epoch: 1, except for a mirror that joined a remote
    /// stream mid-way (see `Topic::insert_external`).
    base: u64,
    /// Set when the topic is dropped or the hub shuts down.
    pub(super) ended: Option<Close>,
}

impl State {
    fn head(&self) -> u64 {
        self.next_seq - 1
    }

    fn oldest(&self) -> u64 {
        self.ring.front().map_or(self.next_seq, |m| m.sequence())
    }

    /// Lazy expiry: restart the sequence like Tiled's key TTLs, and drop messages past `max_age`.
    /// Entry ids go on from where they were (they only ever increase).
    pub(super) fn maintain(&mut self, config: &HubConfig, now: Instant) {
        let max_age = self.limits.max_age;
        if let Some(last) = self.last_event {
            let idle = now.saturating_duration_since(last) >= config.seq_ttl;
            let closed = self.closed_at.is_some_and(|t| now.saturating_duration_since(t) >= max_age);
            if idle || closed {
                self.clear_ring();
                self.next_seq = 1;
                self.last_event = None;
                self.closed_at = None;
                self.epoch += 1;
                self.base = 1;
            }
        }
        while self.ring.front().is_some_and(|m| now.saturating_duration_since(m.published()) >= max_age) {
            self.pop_front();
        }
    }

    fn pop_front(&mut self) {
        if let Some(m) = self.ring.pop_front() {
            self.bytes -= m.size();
            self.ends.pop_front();
            self.ordinals.pop_front();
            if m.kind() == MessageKind::Data {
                self.max_deleted = self.max_deleted.max(m.entry_id());
            }
        }
    }

    /// Empties the ring (a restart or rebase); its data messages count as deleted.
    fn clear_ring(&mut self) {
        if let Some(m) = self.ring.iter().rev().find(|m| m.kind() == MessageKind::Data) {
            self.max_deleted = self.max_deleted.max(m.entry_id());
        }
        self.ring.clear();
        self.ends.clear();
        self.ordinals.clear();
        self.bytes = 0;
    }

    /// Evicts the oldest messages beyond the count and byte limits (never the newest).
    fn trim(&mut self) {
        let limits = self.limits;
        while self.ring.len() > limits.max_count || (self.bytes > limits.max_bytes && self.ring.len() > 1) {
            self.pop_front();
        }
    }

    /// Envelope bytes from sequence `from` (retained) to the head; 0 if `from` is past it.
    fn backlog(&self, from: u64) -> usize {
        let oldest = self.oldest();
        let index = usize::try_from(from.max(oldest) - oldest).unwrap_or(usize::MAX);
        match (self.ring.get(index), self.ends.get(index)) {
            (Some(m), Some(end)) => usize::try_from(self.total - (end - m.size() as u64)).unwrap_or(usize::MAX),
            _ => 0,
        }
    }

    fn push(&mut self, message: Message) {
        self.push_shared(Arc::new(message));
    }

    fn push_shared(&mut self, message: Arc<Message>) {
        self.bytes += message.size();
        self.total += message.size() as u64;
        self.ends.push_back(self.total);
        if message.kind() == MessageKind::Data {
            self.added += 1;
            self.last_id = self.last_id.max(message.entry_id());
        }
        self.ordinals.push_back(self.added);
        self.ring.push_back(message);
        self.next_seq += 1;
        // Always keep the newest message, even if it alone exceeds `max_bytes`.
        self.trim();
    }
}

impl Topic {
    pub(super) fn new(config: HubConfig) -> Self {
        let state = State {
            next_seq: 1,
            ring: VecDeque::new(),
            bytes: 0,
            ends: VecDeque::new(),
            ordinals: VecDeque::new(),
            added: 0,
            last_id: EntryId::ZERO,
            max_deleted: EntryId::ZERO,
            limits: config.retention(),
            total: 0,
            interrupts: 0,
            last_event: None,
            closed_at: None,
            epoch: 0,
            base: 1,
            ended: None,
        };
        Self { config, state: Mutex::new(state), notify: Notify::new(), subscribers: AtomicUsize::new(0) }
    }

    /// Assigns the next sequence and an automatic entry id to an already validated and encoded
    /// draft.
    pub fn publish(&self, draft: Draft, now: Instant) -> u64 {
        // An automatic id is never refused.
        let published = self.publish_batch(vec![draft], &[IdSpec::Auto], now, entry_id::wall_ms());
        published.ok().and_then(|p| p.first().map(|(seq, _)| *seq)).unwrap_or_default()
    }

    /// Assigns sequences and entry ids (`specs[i]` for `drafts[i]`, at wall-clock `wall_ms`) to
    /// a batch of validated drafts; if any id is refused, nothing is published.
    pub fn publish_batch(
        &self,
        drafts: Vec<Draft>,
        specs: &[IdSpec],
        now: Instant,
        wall_ms: u64,
    ) -> CoreResult<Vec<(u64, EntryId)>> {
        debug_assert_eq!(drafts.len(), specs.len());
        if drafts.is_empty() {
            return Ok(Vec::new());
        }
        let published = {
            let mut st = self.state.lock();
            st.maintain(&self.config, now);
            let ids = entry_id::assign(st.last_id, wall_ms, specs)?;
            let mut published = Vec::with_capacity(ids.len());
            for (draft, id) in drafts.into_iter().zip(ids) {
                let seq = st.next_seq;
                let encoded = draft.finish(seq);
                st.push(Message::data(seq, id, now, encoded.msgpack, encoded.json));
                published.push((seq, id));
            }
            st.last_event = Some(now);
            st.closed_at = None;
            published
        };
        self.notify.notify_waiters();
        Ok(published)
    }

    /// Replaces this topic's retention (`None` limits are the hub's) and applies it now.
    pub fn set_retention(&self, retention: RetentionOverride, now: Instant) -> CoreResult<()> {
        let mut st = self.state.lock();
        st.limits = retention.apply(self.config.retention())?;
        st.trim();
        st.maintain(&self.config, now);
        Ok(())
    }

    /// Appends an end-of-stream marker and returns its sequence.
    pub fn close_stream(&self, now: Instant) -> u64 {
        let seq = {
            let mut st = self.state.lock();
            st.maintain(&self.config, now);
            let seq = st.next_seq;
            let after = st.last_id;
            st.push(Message::end_of_stream(seq, after, now));
            st.last_event = Some(now);
            st.closed_at = Some(now);
            seq
        };
        self.notify.notify_waiters();
        seq
    }

    /// Inserts a message whose sequence was assigned elsewhere (the Redis backend's mirror of
    /// a remote stream). The ring stays contiguous: a sequence beyond the head is refused with
    /// [`External::Gap`] so the caller can fill the gap first (or [`Topic::rebase`]).
    pub fn insert_external(&self, message: Arc<Message>, now: Instant) -> External {
        let seq = message.sequence();
        let outcome = {
            let mut st = self.state.lock();
            st.maintain(&self.config, now);
            let fresh = st.last_event.is_none() && st.ring.is_empty() && st.next_seq == 1;
            if fresh && seq > 1 {
                // First message of a stream joined mid-way: the mirror starts here.
                st.next_seq = seq;
                st.base = seq;
                st.epoch += 1;
            } else if seq < st.next_seq && seq == 1 {
                // The remote sequence restarted (expiry, or the store was flushed).
                st.clear_ring();
                st.next_seq = 1;
                st.base = 1;
                st.epoch += 1;
            }
            if seq < st.next_seq {
                return External::Duplicate;
            }
            if seq > st.next_seq {
                return External::Gap { expected: st.next_seq };
            }
            match message.kind() {
                MessageKind::Data => st.closed_at = None,
                MessageKind::EndOfStream => st.closed_at = Some(now),
            }
            st.push_shared(message);
            st.last_event = Some(now);
            External::Appended
        };
        self.notify.notify_waiters();
        outcome
    }

    /// Restarts the mirror at `seq` (a gap that cannot be filled): the ring is emptied and
    /// cursors continue from `seq`.
    pub fn rebase(&self, seq: u64) {
        let mut st = self.state.lock();
        st.clear_ring();
        st.next_seq = seq.max(1);
        st.base = seq.max(1);
        st.epoch += 1;
        drop(st);
        self.notify.notify_waiters();
    }

    /// The state, after lazy expiry at `now`.
    pub(super) fn lock_maintained(&self, now: Instant) -> parking_lot::MutexGuard<'_, State> {
        let mut st = self.state.lock();
        st.maintain(&self.config, now);
        st
    }

    /// `(oldest retained, head, fresh)`; `fresh` means no event since creation or restart.
    pub fn bounds(&self, now: Instant) -> (u64, u64, bool) {
        let mut st = self.state.lock();
        st.maintain(&self.config, now);
        (st.oldest(), st.head(), st.last_event.is_none() && st.ring.is_empty())
    }

    /// The id of the newest data message (`0-0` if none).
    pub fn last_entry_id(&self) -> EntryId {
        self.state.lock().last_id
    }

    /// Whether the ring holds every message after entry id `id` that this topic has seen (its
    /// oldest retained message is not newer than `id`).
    pub fn covers(&self, id: EntryId, now: Instant) -> bool {
        self.lock_maintained(now).ring.front().is_some_and(|m| m.entry_id() <= id)
    }

    /// The last assigned sequence (0 if none since the last restart).
    pub fn current_sequence(&self, now: Instant) -> u64 {
        let mut st = self.state.lock();
        st.maintain(&self.config, now);
        st.head()
    }

    /// `(messages, bytes)` retained after expiring old messages.
    pub fn retained(&self, now: Instant) -> (usize, usize) {
        let mut st = self.state.lock();
        st.maintain(&self.config, now);
        (st.ring.len(), st.bytes)
    }

    /// Ends every subscription of this topic with `close` (node deleted, shutdown).
    pub fn end(&self, close: Close) {
        self.state.lock().ended.get_or_insert(close);
        self.notify.notify_waiters();
    }

    /// Closes every current subscription of this topic with `close` (1012 "Live subscription
    /// lost") without ending the topic: later subscriptions (reconnects) work as usual.
    pub fn interrupt(&self) {
        self.state.lock().interrupts += 1;
        self.notify.notify_waiters();
    }

    /// Live-backlog bytes of a cursor (what its `max_queue_bytes` is compared with).
    pub(super) fn backlog(&self, cursor: &Cursor) -> usize {
        let st = self.state.lock();
        if cursor.epoch != st.epoch {
            return st.bytes;
        }
        st.backlog(cursor.next.max(cursor.replay_end + 1))
    }

    /// Number of live subscriptions.
    pub fn subscribers(&self) -> usize {
        self.subscribers.load(Ordering::Relaxed)
    }

    pub(super) fn add_subscriber(&self) {
        self.subscribers.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn remove_subscriber(&self) {
        self.subscribers.fetch_sub(1, Ordering::Relaxed);
    }

    /// A cursor for a new subscription: live from the head, or replaying from `start`.
    pub(super) fn cursor(&self, start: Option<u64>, policy: Policy, now: Instant) -> Cursor {
        let mut st = self.state.lock();
        st.maintain(&self.config, now);
        let (head, oldest) = (st.head(), st.oldest());
        let mut cursor =
            Cursor { next: head + 1, epoch: st.epoch, interrupts: st.interrupts, policy, ..Cursor::default() };
        match start {
            Some(n) if n <= head => {
                cursor.next = n.max(oldest);
                cursor.replay_end = head;
                if n > 0 && oldest > n {
                    cursor.missed = oldest - n;
                    cursor.notice(Notice::Gap { from: n, to: oldest - 1, reason: GapReason::Expired });
                }
            }
            // Resuming beyond the head: the history this client saw is gone (restart, flush).
            Some(n) if n > head + 1 => cursor.notice(Notice::Epoch {
                last_sequence: n - 1,
                current: head,
                reason: "start is beyond the current sequence: the stream restarted or its history was lost",
            }),
            _ => {}
        }
        cursor
    }

    /// Takes up to `max` deliverable messages after the cursor, and the close if the
    /// subscription has ended (the close comes after every message that precedes it).
    pub(super) fn read(&self, cursor: &mut Cursor, max: usize, now: Instant) -> Vec<Arc<Message>> {
        let mut frames = Vec::new();
        if cursor.close.is_some() {
            return frames;
        }
        let mut st = self.state.lock();
        st.maintain(&self.config, now);
        if let Some(close) = &st.ended {
            cursor.close = Some(close.clone());
            return frames;
        }
        if cursor.interrupts != st.interrupts {
            cursor.close = Some(Close::LIVE_LOST);
            return frames;
        }
        if cursor.epoch != st.epoch {
            // The sequence restarted (at 1, or at a mirror's base): follow it from the start.
            // A cursor that had not passed sequence 1 lost nothing (e.g. a Redis mirror that
            // joined a remote stream mid-way), so only the others are told.
            if cursor.next > 1 {
                cursor.notice(Notice::Epoch {
                    last_sequence: cursor.next - 1,
                    current: st.head(),
                    reason: "the stream's sequence restarted",
                });
            }
            cursor.next = st.base;
            cursor.epoch = st.epoch;
            cursor.replay_end = 0;
            cursor.end_in_replay = false;
        }
        let (head, oldest) = (st.head(), st.oldest());
        if cursor.next > cursor.replay_end && cursor.next <= head {
            let backlog = st.backlog(cursor.next);
            if backlog > cursor.policy.max_queue_bytes || cursor.next < oldest {
                cursor.overflow(head, oldest, backlog);
            }
        }
        frames.extend(cursor.notices.drain(..).map(|n| n.message()));
        while frames.len() < max && cursor.next <= head && cursor.close.is_none() {
            if cursor.end_in_replay && cursor.next > cursor.replay_end {
                break;
            }
            if cursor.next < oldest {
                if cursor.next <= cursor.replay_end {
                    // Tiled skips expired sequences silently during replay (notice if asked).
                    let resume = oldest.min(cursor.replay_end + 1);
                    cursor.missed += resume - cursor.next;
                    if cursor.policy.notify_gaps {
                        let gap = Notice::Gap { from: cursor.next, to: resume - 1, reason: GapReason::Expired };
                        frames.push(gap.message());
                    }
                    cursor.next = resume;
                    continue;
                }
                // Only reachable mid-batch; the check above handles a cursor already behind.
                break;
            }
            let index = usize::try_from(cursor.next - oldest).unwrap_or(usize::MAX);
            let Some(message) = st.ring.get(index) else { break };
            let in_replay = cursor.next <= cursor.replay_end;
            cursor.next += 1;
            match message.kind() {
                MessageKind::Data => {
                    cursor.last_sequence = message.sequence();
                    frames.push(Arc::clone(message));
                }
                MessageKind::EndOfStream if in_replay => cursor.end_in_replay = true,
                MessageKind::EndOfStream => {
                    cursor.close = Some(Close::PRODUCER_ENDED);
                    break;
                }
            }
        }
        if cursor.close.is_none() && cursor.end_in_replay && cursor.next > cursor.replay_end {
            cursor.close = Some(Close::PRODUCER_ENDED);
        }
        frames
    }
}
