//! `RedisSubscription`: a local subscription on the process's mirror of a topic, preceded,
//! when `start` reaches back further than the mirror, by a replay from the node's Redis stream.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use tokio::sync::Notify;

use super::reader::xrange;
use super::Shared;
use crate::codec::Envelope;
use crate::error::CoreResult;
use crate::hub::{epoch_notice, gap_notice, Batch, Close, GapReason, Message, Policy, Subscription};

/// Entries fetched per `XRANGE` during replay.
const REPLAY_BATCH: usize = 512;

/// One subscriber of one topic of a Redis-backed hub.
pub struct RedisSubscription {
    shared: Arc<Shared>,
    topic: u64,
    envelope: Envelope,
    /// Registered on the local mirror at subscribe time; `None` if Redis was not connected.
    local: Option<Subscription>,
    /// Send a `stream-gap` notice before replayed data that follows sequences Redis no longer has.
    notify_gaps: bool,
    state: Mutex<State>,
    cancelled: Notify,
}

#[derive(Debug, Default)]
struct State {
    /// While replaying from Redis: the next sequence to fetch (0 = from the oldest).
    redis_next: Option<u64>,
    /// Fetched from Redis, not yet handed out.
    buffer: VecDeque<Arc<Message>>,
    /// Sequence of the last frame handed out.
    last: u64,
    /// The local subscription has delivered past the replay (no more de-duplication).
    handed_over: bool,
    /// An end-of-stream marker was met during replay: close once the replay is sent.
    end_in_replay: bool,
    /// Sequences of the replay range that Redis no longer had.
    missed: u64,
    close: Option<Close>,
}

impl RedisSubscription {
    pub(super) fn new(
        shared: &Arc<Shared>,
        topic: u64,
        start: Option<u64>,
        envelope: Envelope,
        policy: Policy,
    ) -> CoreResult<Self> {
        let hub = &shared.hub;
        let mut state = State::default();
        let local = if !shared.connected.load(Ordering::Acquire) && !hub.is_shut_down() {
            state.close = Some(Close::LIVE_LOST);
            None
        } else {
            // A replay always reads Redis up to its head: this process's mirror may not have
            // received the newest events yet (another worker's write can return before our
            // reader sees it), and the replay must reach at least what was acknowledged.
            match start {
                Some(n) => {
                    state.redis_next = Some(n);
                    Some(hub.subscribe_with(topic, None, envelope, policy)?)
                }
                None => {
                    state.handed_over = true;
                    Some(hub.subscribe_with(topic, None, envelope, policy)?)
                }
            }
        };
        Ok(Self {
            shared: Arc::clone(shared),
            topic,
            envelope,
            local,
            notify_gaps: policy.notify_gaps,
            state: Mutex::new(state),
            cancelled: Notify::new(),
        })
    }

    /// The envelope this subscription receives.
    pub fn envelope(&self) -> Envelope {
        self.envelope
    }

    /// Waits until `try_next` would return something, without consuming it (a replay batch
    /// fetched from Redis is kept for the next `try_next`).
    pub async fn ready(&self) {
        loop {
            let fetch = {
                let mut st = self.state.lock();
                if st.close.is_some() || !st.buffer.is_empty() {
                    return;
                }
                match st.redis_next {
                    Some(n) => n,
                    None if st.end_in_replay => {
                        st.close = Some(Close::PRODUCER_ENDED);
                        return;
                    }
                    None => break,
                }
            };
            self.fetch(fetch).await;
        }
        let Some(local) = &self.local else { return };
        let cancelled = self.cancelled.notified();
        tokio::select! {
            () = local.ready() => {}
            () = cancelled => {}
        }
    }

    /// One `XRANGE` batch of the replay, from `from`.
    async fn fetch(&self, from: u64) {
        let mut head = None;
        let result = match self.shared.conn() {
            Ok(mut conn) => {
                let key = self.shared.keys.stream(self.topic);
                let lower = (from > 0).then_some(from);
                let entries = xrange(&mut conn, &key, lower, None, Some(REPLAY_BATCH)).await.ok();
                if self.notify_gaps && from > 1 && entries.as_ref().is_some_and(Vec::is_empty) {
                    // Nothing from `from` on: the stream may have restarted below it.
                    let query = redis::cmd("GET").arg(self.shared.keys.sequence(self.topic)).clone();
                    head = query.query_async::<Option<u64>>(&mut conn).await.ok().map(Option::unwrap_or_default);
                }
                entries
            }
            Err(_) => None,
        };
        let mut st = self.state.lock();
        if st.redis_next != Some(from) || st.close.is_some() {
            return; // cancelled, or another waiter fetched this batch
        }
        let Some(entries) = result else {
            st.close = Some(Close::LIVE_LOST);
            return;
        };
        if let Some(head) = head.filter(|head| head + 1 < from && st.last == 0) {
            // Resuming beyond the head: the history this client saw is gone (restart, flush).
            st.buffer.push_back(epoch_notice(from - 1, head));
        }
        let full = entries.len() == REPLAY_BATCH;
        let now = Instant::now();
        let mut next = from;
        for entry in entries {
            let seq = entry.sequence;
            if seq < next {
                continue;
            }
            if next > 0 && seq > next {
                // Tiled skips expired sequences silently; ferrotile counts them, and tells the
                // subscribers that asked (`notify_gaps`).
                st.missed += seq - next;
                if self.notify_gaps {
                    st.buffer.push_back(gap_notice(next, seq - 1, GapReason::Expired));
                }
            }
            next = seq + 1;
            if entry.end {
                st.end_in_replay = true;
                continue;
            }
            match entry.into_message(now) {
                Ok(message) => {
                    message.envelope(self.envelope);
                    st.buffer.push_back(Arc::new(message));
                }
                Err(_) => st.missed += 1,
            }
        }
        st.redis_next = if full { Some(next.max(1)) } else { None };
    }

    /// Takes what is ready now (possibly nothing) without waiting.
    pub fn try_next(&self, max: usize) -> Batch {
        let mut st = self.state.lock();
        if !st.buffer.is_empty() {
            let n = st.buffer.len().min(max.max(1));
            let frames: Vec<Arc<Message>> = st.buffer.drain(..n).collect();
            // Notices carry sequence 0: only data frames move the de-duplication mark.
            if let Some(last) = frames.iter().rev().find(|m| m.sequence() > 0) {
                st.last = last.sequence();
            }
            return Batch { frames, close: None };
        }
        if st.close.is_some() {
            return Batch { frames: Vec::new(), close: st.close.clone() };
        }
        if st.redis_next.is_some() {
            return Batch::default();
        }
        if st.end_in_replay {
            st.close = Some(Close::PRODUCER_ENDED);
            return Batch { frames: Vec::new(), close: st.close.clone() };
        }
        let Some(local) = &self.local else {
            st.close = Some(Close::LIVE_LOST);
            return Batch { frames: Vec::new(), close: st.close.clone() };
        };
        let mut batch = local.try_next(max);
        if !st.handed_over {
            let last = st.last;
            batch.frames.retain(|m| m.sequence() == 0 || m.sequence() > last);
            st.handed_over = batch.frames.iter().any(|m| m.sequence() > 0);
        }
        if let Some(last) = batch.frames.iter().rev().find(|m| m.sequence() > 0) {
            st.last = last.sequence();
        }
        if batch.close.is_some() {
            st.close.clone_from(&batch.close);
        }
        batch
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
        self.state.lock().close.get_or_insert(Close::CANCELLED);
        if let Some(local) = &self.local {
            local.cancel();
        }
        self.cancelled.notify_waiters();
    }

    /// Sequence of the last frame handed out (0 if none).
    pub fn last_sequence(&self) -> u64 {
        self.state.lock().last
    }

    /// Sequences never received because they were no longer retained.
    pub fn missed(&self) -> u64 {
        self.state.lock().missed + self.local.as_ref().map_or(0, Subscription::missed)
    }

    /// Messages dropped by the overflow policy (of the live part).
    pub fn dropped(&self) -> u64 {
        self.local.as_ref().map_or(0, Subscription::dropped)
    }

    /// Live backlog in envelope bytes (the replay from Redis is not counted).
    pub fn backlog_bytes(&self) -> usize {
        self.local.as_ref().map_or(0, Subscription::backlog_bytes)
    }
}
