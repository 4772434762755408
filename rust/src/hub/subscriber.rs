//! `Subscription`: a cursor into a topic's shared ring (O(1) memory per subscriber) and the
//! wake-up logic that turns it into awaited batches of ready messages.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use tokio::sync::Notify;

use super::message::{Close, Message};
use super::policy::{Notice, Policy};
use super::topic::Topic;
use crate::codec::Envelope;

/// Where a subscription is in its topic's sequence.
#[derive(Debug, Default, Clone)]
pub(super) struct Cursor {
    /// Next sequence to look at.
    pub next: u64,
    /// Head at subscribe time when replaying (`start` given), else 0.
    pub replay_end: u64,
    /// An end-of-stream marker was met inside the replay range: close once it is sent.
    pub end_in_replay: bool,
    /// Topic epoch the cursor refers to (changes when the sequence restarts).
    pub epoch: u64,
    /// Sequence of the last frame handed out.
    pub last_sequence: u64,
    /// Sequences skipped because they were no longer retained.
    pub missed: u64,
    /// Set once the subscription has ended; terminal.
    pub close: Option<Close>,
    /// The subscriber's options (notices, byte cap, overflow policy).
    pub policy: Policy,
    /// Messages skipped or abandoned by the overflow policy.
    pub dropped: u64,
    /// The topic's interrupt count at subscribe time.
    pub interrupts: u64,
    /// Notices owed before the next data (only with `policy.notify_gaps`).
    pub notices: Vec<Notice>,
}

/// A batch of ready frames, and the close if the subscription has ended.
#[derive(Debug, Default)]
pub struct Batch {
    /// Messages in sequence order; their envelope for this subscription is already encoded.
    pub frames: Vec<Arc<Message>>,
    /// Present once the subscription has ended (after the frames).
    pub close: Option<Close>,
}

/// One subscriber of one topic.
#[derive(Debug)]
pub struct Subscription {
    topic: Arc<Topic>,
    envelope: Envelope,
    cursor: Mutex<Cursor>,
    cancelled: Notify,
    registered: AtomicBool,
}

impl Subscription {
    /// Registers on `topic`; nothing published after this returns is missed.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(super) fn new(topic: Arc<Topic>, start: Option<u64>, envelope: Envelope, now: Instant) -> Self {
        Self::with_policy(topic, start, envelope, Policy::default(), now)
    }

    /// `new` with opt-in notices and a backlog cap.
    pub(super) fn with_policy(
        topic: Arc<Topic>,
        start: Option<u64>,
        envelope: Envelope,
        policy: Policy,
        now: Instant,
    ) -> Self {
        topic.add_subscriber();
        let cursor = topic.cursor(start, policy, now);
        Self {
            topic,
            envelope,
            cursor: Mutex::new(cursor),
            cancelled: Notify::new(),
            registered: AtomicBool::new(true),
        }
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
        let mut cursor = self.cursor.lock();
        let frames = self.topic.read(&mut cursor, max.max(1), now);
        let close = cursor.close.clone();
        drop(cursor);
        for frame in &frames {
            // Encode (JSON lazily, once per message) here, off the Python thread.
            frame.envelope(self.envelope);
        }
        Batch { frames, close }
    }

    /// Whether `try_next` would return a frame or the close now; consumes nothing.
    pub fn is_ready(&self) -> bool {
        let mut peek = self.cursor.lock().clone();
        let frames = self.topic.read(&mut peek, 1, Instant::now());
        !frames.is_empty() || peek.close.is_some()
    }

    /// Waits until `try_next` would return something, without consuming it: a waiter that is
    /// abandoned half-way (e.g. its asyncio task is cancelled) loses no message.
    pub async fn ready(&self) {
        loop {
            // Register for wake-ups before looking, so a publish in between is not lost.
            let published = self.topic.notify.notified();
            let cancelled = self.cancelled.notified();
            if self.is_ready() {
                return;
            }
            tokio::select! {
                () = published => {}
                () = cancelled => {}
            }
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
        self.cursor.lock().close.get_or_insert(Close::CANCELLED);
        self.unregister();
        self.cancelled.notify_waiters();
    }

    /// Sequence of the last frame handed out (0 if none).
    pub fn last_sequence(&self) -> u64 {
        self.cursor.lock().last_sequence
    }

    /// Sequences this subscriber never received because they were evicted.
    pub fn missed(&self) -> u64 {
        self.cursor.lock().missed
    }

    /// Messages dropped by the overflow policy (skipped with `latest`, abandoned with `close`).
    pub fn dropped(&self) -> u64 {
        self.cursor.lock().dropped
    }

    /// Envelope bytes between this subscriber's cursor and the head, past its replay range.
    pub fn backlog_bytes(&self) -> usize {
        let cursor = self.cursor.lock().clone();
        self.topic.backlog(&cursor)
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
