//! `Subscription`: one subscriber of one topic by sequence (Tiled), whatever the backend: a
//! [`Cursor`] into the topic's shared ring, preceded, when the backend keeps the stream
//! elsewhere and `start` reaches back further than the ring, by the older messages read back
//! from the backend ([`Replay`]); and the wake-up logic that turns it into awaited batches.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use tokio::sync::Notify;

use super::close::Close;
use super::cursor::Cursor;
use super::message::Message;
use super::policy::Policy;
use super::replay::Replay;
use super::topic::Topic;
use crate::codec::Envelope;

/// Messages fetched per replay round trip.
const REPLAY_BATCH: usize = 512;

/// A batch of ready frames, and the close if the subscription has ended.
#[derive(Debug, Default)]
pub struct Batch {
    /// Messages in sequence order (and notices); their envelope for this subscription is
    /// already encoded.
    pub frames: Vec<Arc<Message>>,
    /// Present once the subscription has ended (after the frames).
    pub close: Option<Close>,
}

#[derive(Debug, Default)]
struct State {
    cursor: Cursor,
    /// While replaying from the backend: the next sequence to fetch (0: from its oldest).
    fetch: Option<u64>,
    /// Fetched from the backend, not handed out yet.
    buffer: VecDeque<Arc<Message>>,
}

/// One subscriber of one topic (see the module docs).
pub struct Subscription {
    topic: Arc<Topic>,
    id: u64,
    envelope: Envelope,
    replay: Option<Arc<dyn Replay>>,
    state: Mutex<State>,
    cancelled: Notify,
    registered: AtomicBool,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription").field("topic", &self.id).field("envelope", &self.envelope).finish()
    }
}

impl Subscription {
    /// Registers on `topic` at its ring's head (nothing the ring receives later is missed);
    /// [`Subscription::start`] then places it.
    pub(crate) fn register(
        topic: Arc<Topic>,
        id: u64,
        envelope: Envelope,
        policy: Policy,
        replay: Option<Arc<dyn Replay>>,
        now: Instant,
    ) -> Self {
        topic.add_subscriber();
        let cursor = Cursor::register(&topic.lock(now), policy);
        Self {
            topic,
            id,
            envelope,
            replay,
            state: Mutex::new(State { cursor, ..State::default() }),
            cancelled: Notify::new(),
            registered: AtomicBool::new(true),
        }
    }

    /// Places the cursor for `start` given the stream's head (`None`: the ring's own).
    pub(crate) fn start(&self, start: Option<u64>, head: Option<u64>, now: Instant) {
        let ring = self.topic.lock(now);
        let mut st = self.state.lock();
        let head = head.unwrap_or_else(|| ring.head());
        st.fetch = st.cursor.start(&ring, start, head, self.replay.is_some());
    }

    /// Ends the subscription with `close` (if it has not ended yet).
    pub(crate) fn close_with(&self, close: Close) {
        self.state.lock().cursor.close.get_or_insert(close);
        self.cancelled.notify_waiters();
    }

    /// The envelope this subscription receives.
    pub fn envelope(&self) -> Envelope {
        self.envelope
    }

    /// Returns whatever is ready now (possibly nothing) without waiting.
    pub fn try_next(&self, max: usize) -> Batch {
        self.try_next_at(max, Instant::now())
    }

    pub(crate) fn try_next_at(&self, max: usize, now: Instant) -> Batch {
        let max = max.max(1);
        let mut frames = Vec::new();
        let ring = self.topic.lock(now);
        let mut st = self.state.lock();
        let State { cursor, fetch, buffer } = &mut *st;
        if buffer.is_empty() && fetch.is_none() {
            // The common case: the ring alone.
            cursor.read(&ring, max, &mut frames);
        } else if cursor.check(&ring) {
            cursor.drain_notices(&mut frames);
            // What the backend replayed comes first, in order.
            while frames.len() < max && cursor.close.is_none() {
                let Some(message) = buffer.pop_front() else { break };
                cursor.accept(&message, &mut frames);
            }
            if buffer.is_empty() && fetch.is_none() && frames.len() < max {
                cursor.read(&ring, max, &mut frames);
            }
        }
        let close = cursor.close.clone();
        if close.is_some() {
            buffer.clear();
            *fetch = None;
        }
        drop(st);
        drop(ring);
        for frame in &frames {
            // Encode (JSON lazily, once per message) here, off the caller's thread.
            frame.envelope(self.envelope);
        }
        Batch { frames, close }
    }

    /// Whether `try_next` would return a frame or the close now; consumes nothing.
    pub fn is_ready(&self) -> bool {
        let ring = self.topic.lock(Instant::now());
        let st = self.state.lock();
        if st.cursor.close.is_some() || !st.cursor.notices.is_empty() || !st.buffer.is_empty() {
            return true;
        }
        if st.fetch.is_some() {
            return false;
        }
        let mut peek = st.cursor.clone();
        drop(st);
        let mut frames = Vec::new();
        peek.read(&ring, 1, &mut frames);
        !frames.is_empty() || peek.close.is_some()
    }

    /// Waits until `try_next` would return something, without consuming it: a waiter that is
    /// abandoned half-way (e.g. its task is cancelled) loses no message. Runs the backend's
    /// replay round trips the subscription needs first.
    pub async fn ready(&self) {
        loop {
            // Register for wake-ups before looking, so a publish in between is not lost.
            let cancelled = self.cancelled.notified();
            let fetch = {
                let st = self.state.lock();
                if st.cursor.close.is_some() || !st.buffer.is_empty() || !st.cursor.notices.is_empty() {
                    return;
                }
                st.fetch
            };
            if let Some(from) = fetch {
                tokio::select! {
                    () = self.fetch(from) => continue,
                    () = cancelled => return,
                }
            }
            let published = self.topic.notified();
            if self.is_ready() {
                return;
            }
            tokio::select! {
                () = published => {}
                () = cancelled => {}
            }
        }
    }

    /// One replay round trip from sequence `from`.
    async fn fetch(&self, from: u64) {
        let Some(replay) = &self.replay else { return };
        let result = replay.range(self.id, from, REPLAY_BATCH).await;
        let mut st = self.state.lock();
        if st.fetch != Some(from) || st.cursor.close.is_some() {
            return; // cancelled, or another waiter fetched this batch
        }
        match result {
            Ok(batch) => {
                st.buffer.extend(batch.messages);
                st.fetch = batch.next;
            }
            Err(err) => st.cursor.close = Some(Close::backend_failed(&err)),
        }
    }

    /// Waits until at least one frame or the close is available, and takes it.
    pub async fn next_batch(&self, max: usize) -> Batch {
        loop {
            self.ready().await;
            let batch = self.try_next(max);
            if !batch.frames.is_empty() || batch.close.is_some() {
                return batch;
            }
        }
    }

    /// Ends the subscription; a pending `next_batch` returns the `CANCELLED` close.
    pub fn cancel(&self) {
        {
            let mut st = self.state.lock();
            st.cursor.close.get_or_insert(Close::CANCELLED);
            st.buffer.clear();
        }
        self.unregister();
        self.cancelled.notify_waiters();
    }

    /// Sequence of the last frame handed out (0 if none).
    pub fn last_sequence(&self) -> u64 {
        self.state.lock().cursor.last_sequence
    }

    /// Sequences this subscriber never received because they were no longer retained.
    pub fn missed(&self) -> u64 {
        self.state.lock().cursor.missed
    }

    /// Messages dropped by the overflow policy (skipped with `latest`, abandoned with `close`).
    pub fn dropped(&self) -> u64 {
        self.state.lock().cursor.dropped
    }

    /// Envelope bytes between this subscriber's cursor and the head, past its replay range.
    pub fn backlog_bytes(&self) -> usize {
        let ring = self.topic.lock(Instant::now());
        let cursor = &self.state.lock().cursor;
        cursor.backlog(&ring)
    }

    fn unregister(&self) {
        if self.registered.swap(false, Ordering::AcqRel) {
            self.topic.remove_subscriber();
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.unregister();
    }
}
