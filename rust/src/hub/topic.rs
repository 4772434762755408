//! `Topic`: one stream's sequence counter, retention ring (count, bytes, age), sequence expiry,
//! and the cursor reads that fan messages out without copying them per subscriber.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use tokio::sync::Notify;

use super::message::{Close, Message, MessageKind};
use super::policy::{GapReason, Notice, Policy};
use super::subscriber::Cursor;
use super::HubConfig;
use crate::codec::envelope::Draft;

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
    state: Mutex<State>,
    /// Woken (all waiters) on every publish, close marker and end of the topic.
    pub(super) notify: Notify,
    subscribers: AtomicUsize,
}

#[derive(Debug)]
struct State {
    next_seq: u64,
    ring: VecDeque<Arc<Message>>,
    bytes: usize,
    /// Per ring entry, the envelope bytes published on this topic up to and including it.
    ends: VecDeque<u64>,
    /// Envelope bytes ever published on this topic (the end of the newest entry).
    total: u64,
    /// Bumped by `interrupt`: subscriptions made before close with `LIVE_LOST`.
    interrupts: u64,
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
    ended: Option<Close>,
}

impl State {
    fn head(&self) -> u64 {
        self.next_seq - 1
    }

    fn oldest(&self) -> u64 {
        self.ring.front().map_or(self.next_seq, |m| m.sequence())
    }

    /// Lazy expiry: restart the sequence like Tiled's key TTLs, and drop messages past `max_age`.
    fn maintain(&mut self, config: &HubConfig, now: Instant) {
        if let Some(last) = self.last_event {
            let idle = now.saturating_duration_since(last) >= config.seq_ttl;
            let closed = self.closed_at.is_some_and(|t| now.saturating_duration_since(t) >= config.max_age);
            if idle || closed {
                self.ring.clear();
                self.ends.clear();
                self.bytes = 0;
                self.next_seq = 1;
                self.last_event = None;
                self.closed_at = None;
                self.epoch += 1;
                self.base = 1;
            }
        }
        while self.ring.front().is_some_and(|m| now.saturating_duration_since(m.published()) >= config.max_age) {
            self.pop_front();
        }
    }

    fn pop_front(&mut self) {
        if let Some(m) = self.ring.pop_front() {
            self.bytes -= m.size();
            self.ends.pop_front();
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

    fn push(&mut self, config: &HubConfig, message: Message) {
        self.push_shared(config, Arc::new(message));
    }

    fn push_shared(&mut self, config: &HubConfig, message: Arc<Message>) {
        self.bytes += message.size();
        self.total += message.size() as u64;
        self.ends.push_back(self.total);
        self.ring.push_back(message);
        self.next_seq += 1;
        // Always keep the newest message, even if it alone exceeds `max_bytes`.
        while self.ring.len() > config.max_count || (self.bytes > config.max_bytes && self.ring.len() > 1) {
            self.pop_front();
        }
    }
}

impl Topic {
    pub(super) fn new(config: HubConfig) -> Self {
        let state = State {
            next_seq: 1,
            ring: VecDeque::new(),
            bytes: 0,
            ends: VecDeque::new(),
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

    /// Assigns the next sequence to an already validated and encoded draft.
    pub fn publish(&self, draft: Draft, now: Instant) -> u64 {
        let seq = {
            let mut st = self.state.lock();
            st.maintain(&self.config, now);
            let seq = st.next_seq;
            let encoded = draft.finish(seq);
            st.push(&self.config, Message::data(seq, now, encoded.msgpack, encoded.json));
            st.last_event = Some(now);
            st.closed_at = None;
            seq
        };
        self.notify.notify_waiters();
        seq
    }

    /// Appends an end-of-stream marker and returns its sequence.
    pub fn close_stream(&self, now: Instant) -> u64 {
        let seq = {
            let mut st = self.state.lock();
            st.maintain(&self.config, now);
            let seq = st.next_seq;
            st.push(&self.config, Message::end_of_stream(seq, now));
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
                st.ring.clear();
                st.ends.clear();
                st.bytes = 0;
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
            st.push_shared(&self.config, message);
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
        st.ring.clear();
        st.ends.clear();
        st.bytes = 0;
        st.next_seq = seq.max(1);
        st.base = seq.max(1);
        st.epoch += 1;
        drop(st);
        self.notify.notify_waiters();
    }

    /// `(oldest retained, head, fresh)`; `fresh` means no event since creation or restart.
    pub fn bounds(&self, now: Instant) -> (u64, u64, bool) {
        let mut st = self.state.lock();
        st.maintain(&self.config, now);
        (st.oldest(), st.head(), st.last_event.is_none() && st.ring.is_empty())
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
