//! `Ring`: one stream's state behind its topic's lock: the sequence counter, the retained
//! messages with their byte and entry accounting, retention (count, bytes, age) and sequence
//! expiry, entry ids, and the epoch that cursors follow when the sequence restarts. Also what
//! [`Ring::insert_external`] did with a message assigned elsewhere ([`External`]).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::budget::Budget;
use super::close::Close;
use super::config::Retention;
use super::entry_id::{self, EntryId, IdSpec};
use super::message::{Message, MessageKind};
use super::stream_info::StreamInfo;
use crate::codec::envelope::Draft;
use crate::error::CoreResult;

/// What [`Ring::insert_external`] did with a message.
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

/// How the current epoch of a ring began (what a cursor of an older epoch does).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EpochStart {
    /// The sequence restarted at 1 (expiry, or the remote stream restarted): history lost.
    Restart,
    /// A mirror joined a remote stream mid-way: nothing was lost, cursors keep their place.
    Joined,
    /// A mirror skipped a gap it could not fill: sequences before `base` are lost.
    Rebased,
}

/// One stream's retained messages and counters (see the module docs).
#[derive(Debug)]
pub(crate) struct Ring {
    next_seq: u64,
    messages: VecDeque<Arc<Message>>,
    bytes: usize,
    /// Per retained message, the envelope bytes published on this ring up to and including it.
    ends: VecDeque<u64>,
    /// Per retained message, the data messages published up to and including it (so an entry
    /// reader can count what was evicted before it read it).
    ordinals: VecDeque<u64>,
    /// Data messages ever published (the stream's `entries_added`).
    added: u64,
    /// Id of the newest data message (`0-0` if none).
    last_id: EntryId,
    /// Greatest id of a data message evicted (`0-0` if none).
    max_deleted: EntryId,
    /// Effective retention: the hub's, or the topic's override.
    limits: Retention,
    /// Idle time after which the sequence restarts.
    seq_ttl: Duration,
    /// Envelope bytes ever published (the end of the newest message).
    total: u64,
    /// Bumped by `interrupt`: cursors made before close with `LIVE_LOST`.
    interrupts: u64,
    /// Time of the last event (data or marker); drives `seq_ttl`.
    last_event: Option<Instant>,
    /// Time of the last end-of-stream marker, cleared by a later data publish.
    closed_at: Option<Instant>,
    /// Bumped whenever the sequence restarts (or a mirror joins or rebases), so cursors follow.
    epoch: u64,
    /// First sequence of the current epoch: 1, except for a mirror that joined a remote stream
    /// mid-way or rebased.
    base: u64,
    /// How the current epoch began.
    epoch_start: EpochStart,
    /// The newest sequence of this epoch evicted to keep the process within its budget (0 if
    /// none): gaps up to it are reported as "evicted".
    evicted_through: u64,
    /// The process-wide budget this ring's bytes count against.
    budget: Arc<Budget>,
    /// Set when the topic is dropped or the hub shuts down.
    ended: Option<Close>,
}

impl Ring {
    pub(crate) fn new(limits: Retention, seq_ttl: Duration, budget: Arc<Budget>) -> Self {
        Self {
            next_seq: 1,
            messages: VecDeque::new(),
            bytes: 0,
            ends: VecDeque::new(),
            ordinals: VecDeque::new(),
            added: 0,
            last_id: EntryId::ZERO,
            max_deleted: EntryId::ZERO,
            limits,
            seq_ttl,
            total: 0,
            interrupts: 0,
            last_event: None,
            closed_at: None,
            epoch: 0,
            base: 1,
            epoch_start: EpochStart::Restart,
            evicted_through: 0,
            budget,
            ended: None,
        }
    }

    /// The last assigned sequence (0 if none since the last restart).
    pub(crate) fn head(&self) -> u64 {
        self.next_seq - 1
    }

    /// The oldest retained sequence (`head + 1` if nothing is retained).
    pub(crate) fn oldest(&self) -> u64 {
        self.messages.front().map_or(self.next_seq, |m| m.sequence())
    }

    /// No event since creation or the last restart.
    pub(crate) fn is_fresh(&self) -> bool {
        self.last_event.is_none() && self.messages.is_empty()
    }

    pub(crate) fn epoch(&self) -> u64 {
        self.epoch
    }

    pub(crate) fn base(&self) -> u64 {
        self.base
    }

    pub(crate) fn epoch_start(&self) -> EpochStart {
        self.epoch_start
    }

    /// The newest sequence of this epoch evicted to keep within the process's budget.
    pub(crate) fn evicted_through(&self) -> u64 {
        self.evicted_through
    }

    pub(crate) fn interrupts(&self) -> u64 {
        self.interrupts
    }

    pub(crate) fn ended(&self) -> Option<&Close> {
        self.ended.as_ref()
    }

    /// When the oldest message the budget may evict was published (`None`: only the newest is
    /// left).
    pub(crate) fn evictable_since(&self) -> Option<Instant> {
        (self.messages.len() > 1).then(|| self.messages.front().map(|m| m.published())).flatten()
    }

    /// Retained messages, oldest first.
    pub(crate) fn messages(&self) -> &VecDeque<Arc<Message>> {
        &self.messages
    }

    /// The retained message with sequence `seq`.
    pub(crate) fn get(&self, seq: u64) -> Option<&Arc<Message>> {
        let index = seq.checked_sub(self.oldest())?;
        self.messages.get(usize::try_from(index).ok()?)
    }

    /// `(messages, bytes)` retained.
    pub(crate) fn retained(&self) -> (usize, usize) {
        (self.messages.len(), self.bytes)
    }

    /// Data messages ever published.
    pub(crate) fn added(&self) -> u64 {
        self.added
    }

    /// The id of the newest data message (`0-0` if none).
    pub(crate) fn last_id(&self) -> EntryId {
        self.last_id
    }

    /// Lazy expiry: restart the sequence like Tiled's key TTLs, and drop messages past
    /// `max_age`. Entry ids go on from where they were (they only ever increase).
    pub(crate) fn maintain(&mut self, now: Instant) {
        let max_age = self.limits.max_age;
        if let Some(last) = self.last_event {
            let idle = now.saturating_duration_since(last) >= self.seq_ttl;
            let closed = self.closed_at.is_some_and(|t| now.saturating_duration_since(t) >= max_age);
            if idle || closed {
                self.restart(1, EpochStart::Restart);
                self.last_event = None;
                self.closed_at = None;
            }
        }
        while self.messages.front().is_some_and(|m| now.saturating_duration_since(m.published()) >= max_age) {
            self.pop_front();
        }
    }

    /// Empties the ring and starts a new epoch at `base` (its data messages count as deleted).
    fn restart(&mut self, base: u64, how: EpochStart) {
        self.clear();
        self.next_seq = base;
        self.base = base;
        self.epoch_start = how;
        self.evicted_through = 0;
        self.epoch += 1;
    }

    fn pop_front(&mut self) -> Option<Arc<Message>> {
        let m = self.messages.pop_front()?;
        self.bytes -= m.size();
        self.budget.release(m.size());
        self.ends.pop_front();
        self.ordinals.pop_front();
        if m.kind() == MessageKind::Data {
            self.max_deleted = self.max_deleted.max(m.entry_id());
        }
        Some(m)
    }

    /// Evicts the oldest message to keep the process within its budget, unless it is the
    /// newest (each topic keeps its newest); returns its size.
    pub(crate) fn evict_oldest(&mut self) -> Option<usize> {
        if self.messages.len() < 2 {
            return None;
        }
        let evicted = self.pop_front()?;
        self.evicted_through = evicted.sequence();
        Some(evicted.size())
    }

    /// Empties the ring; its data messages count as deleted.
    pub(crate) fn clear(&mut self) {
        if let Some(m) = self.messages.iter().rev().find(|m| m.kind() == MessageKind::Data) {
            self.max_deleted = self.max_deleted.max(m.entry_id());
        }
        self.messages.clear();
        self.ends.clear();
        self.ordinals.clear();
        self.budget.release(self.bytes);
        self.bytes = 0;
    }

    /// Evicts the oldest messages beyond the count and byte limits (never the newest).
    fn trim(&mut self) {
        let limits = self.limits;
        while self.messages.len() > limits.max_count || (self.bytes > limits.max_bytes && self.messages.len() > 1) {
            self.pop_front();
        }
    }

    /// Envelope bytes from ring index `index` to the head; 0 if it is past the head.
    pub(crate) fn bytes_from_index(&self, index: usize) -> usize {
        match (self.messages.get(index), self.ends.get(index)) {
            (Some(m), Some(end)) => usize::try_from(self.total - (end - m.size() as u64)).unwrap_or(usize::MAX),
            _ => 0,
        }
    }

    /// Envelope bytes from sequence `from` (or the oldest retained) to the head.
    pub(crate) fn bytes_from(&self, from: u64) -> usize {
        let index = usize::try_from(from.saturating_sub(self.oldest())).unwrap_or(usize::MAX);
        self.bytes_from_index(index)
    }

    fn push(&mut self, message: Arc<Message>) {
        self.bytes += message.size();
        self.budget.add(message.size());
        self.total += message.size() as u64;
        self.ends.push_back(self.total);
        if message.kind() == MessageKind::Data {
            self.added += 1;
            self.last_id = self.last_id.max(message.entry_id());
        }
        self.ordinals.push_back(self.added);
        self.messages.push_back(message);
        self.next_seq += 1;
        // Always keep the newest message, even if it alone exceeds `max_bytes`.
        self.trim();
    }

    /// Assigns sequences and entry ids (`specs[i]` for `drafts[i]`, at wall-clock `wall_ms`) to
    /// validated drafts; if any id is refused, nothing is published.
    pub(crate) fn publish(
        &mut self,
        drafts: Vec<Draft>,
        specs: &[IdSpec],
        now: Instant,
        wall_ms: u64,
    ) -> CoreResult<Vec<(u64, EntryId)>> {
        debug_assert_eq!(drafts.len(), specs.len());
        self.maintain(now);
        let ids = entry_id::assign(self.last_id, wall_ms, specs)?;
        let mut published = Vec::with_capacity(ids.len());
        for (draft, id) in drafts.into_iter().zip(ids) {
            let seq = self.next_seq;
            let encoded = draft.finish(seq);
            self.push(Arc::new(Message::data(seq, id, now, encoded.msgpack, encoded.json)));
            published.push((seq, id));
        }
        if !published.is_empty() {
            self.last_event = Some(now);
            self.closed_at = None;
        }
        Ok(published)
    }

    /// Appends an end-of-stream marker; returns its sequence.
    pub(crate) fn close_stream(&mut self, now: Instant) -> u64 {
        self.maintain(now);
        let seq = self.next_seq;
        self.push(Arc::new(Message::end_of_stream(seq, self.last_id, now)));
        self.last_event = Some(now);
        self.closed_at = Some(now);
        seq
    }

    /// Inserts a message whose sequence was assigned elsewhere (the Redis mirror). The ring
    /// stays contiguous: a sequence beyond the head is refused with [`External::Gap`] so the
    /// caller can fill the gap first (or [`Ring::rebase`]).
    pub(crate) fn insert_external(&mut self, message: Arc<Message>, now: Instant) -> External {
        let seq = message.sequence();
        self.maintain(now);
        if self.is_fresh() && self.next_seq == 1 && seq > 1 {
            // First message of a stream joined mid-way: the mirror starts here.
            self.restart(seq, EpochStart::Joined);
        } else if seq < self.next_seq && seq == 1 {
            // The remote sequence restarted (expiry, or the store was flushed).
            self.restart(1, EpochStart::Restart);
        }
        if seq < self.next_seq {
            return External::Duplicate;
        }
        if seq > self.next_seq {
            return External::Gap { expected: self.next_seq };
        }
        match message.kind() {
            MessageKind::Data => self.closed_at = None,
            MessageKind::EndOfStream => self.closed_at = Some(now),
        }
        self.push(message);
        self.last_event = Some(now);
        External::Appended
    }

    /// Restarts a mirror at `seq` (a gap that cannot be filled): the ring is emptied and
    /// cursors continue from `seq`.
    pub(crate) fn rebase(&mut self, seq: u64) {
        self.restart(seq.max(1), EpochStart::Rebased);
    }

    /// Replaces the limits and applies them now.
    pub(crate) fn set_limits(&mut self, limits: Retention, now: Instant) {
        self.limits = limits;
        self.trim();
        self.maintain(now);
    }

    /// Ends every cursor of this ring with `close` (the first close given stays).
    pub(crate) fn end(&mut self, close: Close) {
        self.ended.get_or_insert(close);
    }

    /// Closes every current cursor with 1012 without ending the ring.
    pub(crate) fn interrupt(&mut self) {
        self.interrupts += 1;
    }

    // -- by entry id ----------------------------------------------------------------------

    /// Ring index of the first message with an id greater than `id` (ids never decrease along
    /// a ring: a marker carries the id of the data message before it).
    pub(crate) fn after_index(&self, id: EntryId) -> usize {
        self.messages.partition_point(|m| m.entry_id() <= id)
    }

    /// Data messages published before ring index `index` (evicted ones included).
    pub(crate) fn ordinal_before(&self, index: usize) -> u64 {
        match index.checked_sub(1).and_then(|i| self.ordinals.get(i)) {
            Some(ordinal) => *ordinal,
            None => match (self.messages.front(), self.ordinals.front()) {
                (Some(m), Some(o)) => o - u64::from(m.kind() == MessageKind::Data),
                _ => self.added,
            },
        }
    }

    /// Whether the ring holds every message after entry id `id` that it has seen (its oldest
    /// retained message is not newer than `id`).
    pub(crate) fn covers(&self, id: EntryId) -> bool {
        self.messages.front().is_some_and(|m| m.entry_id() <= id)
    }

    /// Whether `id` is at or after every evicted data message (so a cursor at `id` lost nothing
    /// to eviction yet).
    pub(crate) fn not_evicted_after(&self, id: EntryId) -> bool {
        id >= self.max_deleted
    }

    /// The stream's description, `None` if it has no retained entry and never had one.
    pub(crate) fn info(&self) -> Option<StreamInfo> {
        let length = self.added - self.ordinal_before(0);
        if length == 0 && self.added == 0 {
            return None;
        }
        let is_data = |m: &&Arc<Message>| m.kind() == MessageKind::Data;
        Some(StreamInfo {
            length,
            entries_added: self.added,
            first: self.messages.iter().find(is_data).cloned(),
            last: self.messages.iter().rev().find(is_data).cloned(),
            last_id: self.last_id,
            max_deleted: self.max_deleted,
        })
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        self.budget.release(self.bytes);
    }
}
