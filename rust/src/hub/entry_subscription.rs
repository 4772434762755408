//! `EntrySubscription`: one subscriber of one or more topics by entry id (Redis Streamer's
//! pull), whatever the backend: an [`EntryCursor`] per topic into its shared ring, preceded,
//! when the backend keeps the stream elsewhere and a cursor reaches back further than the
//! ring, by the entries read back from the backend ([`Replay`]), filtered by id.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use tokio::sync::Notify;

use super::close::Close;
use super::entry_cursor::{EntryCursor, Mode};
use super::entry_id::{EntryId, Start};
use super::message::Message;
use super::policy::EntryOptions;
use super::replay::{Replay, ReplayBatch};
use super::topic::Topic;

/// Entries fetched per replay round trip.
const REPLAY_BATCH: usize = 256;
/// Newest entries looked at first when a cursor is older than the ring: a cursor near the head
/// (the common resume) needs no scan of the whole stream.
const PROBE: usize = 64;

/// The entries of one read, each with the index of its topic, and the close if the
/// subscription has ended (after these entries).
#[derive(Debug, Default)]
pub struct EntryRead {
    /// `(topic index, message)`, grouped by topic in subscription order.
    pub entries: Vec<(usize, Arc<Message>)>,
    /// Present once the subscription has ended.
    pub close: Option<Close>,
}

/// What a topic still needs from the backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Job {
    /// Look at the newest [`PROBE`] entries.
    Probe,
    /// Read on from this sequence (0: from the oldest).
    Scan(u64),
    /// The newest `count` entries (`latest`).
    Newest,
}

#[derive(Debug)]
enum Phase {
    /// Read from the ring.
    Live,
    /// Waiting for `job`.
    Fetch(Job),
    /// Replayed entries to hand out; `then` is the next job, `None` once the backend has no more.
    Replay { buffer: VecDeque<Arc<Message>>, then: Option<Job> },
}

/// One topic of a subscription.
#[derive(Debug)]
struct Lane {
    cursor: EntryCursor,
    phase: Phase,
    /// The cursor at subscribe time (replayed entries at or before it are skipped).
    since: EntryId,
}

#[derive(Debug)]
struct State {
    lanes: Vec<Lane>,
    dropped: u64,
    missed: u64,
    close: Option<Close>,
}

/// One subscriber of one or more topics, by entry id (see the module docs).
pub struct EntrySubscription {
    topics: Vec<Arc<Topic>>,
    ids: Vec<u64>,
    options: EntryOptions,
    replay: Option<Arc<dyn Replay>>,
    state: Mutex<State>,
    cancelled: Notify,
    /// Held while a fetch runs, so concurrent waits do not fetch the same batch twice.
    fetching: tokio::sync::Mutex<()>,
    registered: AtomicBool,
}

impl std::fmt::Debug for EntrySubscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EntrySubscription").field("topics", &self.ids).field("options", &self.options).finish()
    }
}

impl EntrySubscription {
    /// Registers on every topic (nothing its ring receives later is missed); with a backend
    /// that replays, a cursor older than its ring is replayed from the backend first.
    pub(crate) fn register(
        topics: Vec<(u64, Arc<Topic>)>,
        starts: &[Start],
        options: EntryOptions,
        replay: Option<Arc<dyn Replay>>,
        now: Instant,
    ) -> Self {
        let mut lanes = Vec::with_capacity(topics.len());
        for ((_, topic), start) in topics.iter().zip(starts) {
            topic.add_subscriber();
            let ring = topic.lock(now);
            let cursor = EntryCursor::new(&ring, *start);
            let phase = match (start, &replay) {
                (_, None) | (Start::New, _) => Phase::Live,
                (Start::After(id), _) if ring.covers(*id) => Phase::Live,
                _ if options.latest => Phase::Fetch(Job::Newest),
                (Start::Oldest, _) => Phase::Fetch(Job::Scan(0)),
                (Start::After(_), _) => Phase::Fetch(Job::Probe),
            };
            lanes.push(Lane { since: cursor.id, cursor, phase });
        }
        let (ids, topics) = topics.into_iter().unzip();
        let state = State { lanes, dropped: 0, missed: 0, close: None };
        Self {
            topics,
            ids,
            options,
            replay,
            state: Mutex::new(state),
            cancelled: Notify::new(),
            fetching: tokio::sync::Mutex::new(()),
            registered: AtomicBool::new(true),
        }
    }

    /// Topics whose `$` start met a ring that knew nothing of its stream (cursor `0-0`): their
    /// last id must come from the backend (see [`EntrySubscription::settle_new`]).
    pub(crate) fn unresolved(&self, starts: &[Start]) -> Vec<usize> {
        let st = self.state.lock();
        let lanes = st.lanes.iter().zip(starts).enumerate();
        lanes.filter(|(_, (l, s))| **s == Start::New && l.cursor.id == EntryId::ZERO).map(|(i, _)| i).collect()
    }

    /// Sets topic `index`'s `$` start to the stream's last id, read from the backend after the
    /// subscription registered (see [`EntryCursor::settle_new`]).
    pub(crate) fn settle_new(&self, index: usize, last: EntryId) {
        if let Some(lane) = self.state.lock().lanes.get_mut(index) {
            lane.cursor.settle_new(last);
            lane.since = last;
        }
    }

    /// The backend that replays, and the topic ids.
    pub(crate) fn replay(&self) -> Option<&Arc<dyn Replay>> {
        self.replay.as_ref()
    }

    /// The topic ids, in subscription order.
    pub(crate) fn topic_ids(&self) -> &[u64] {
        &self.ids
    }

    /// Ends the subscription with `close` (if it has not ended yet).
    pub(crate) fn close_with(&self, close: Close) {
        self.state.lock().close.get_or_insert(close);
        self.cancelled.notify_waiters();
    }

    /// How this subscription reads.
    pub fn options(&self) -> EntryOptions {
        self.options
    }

    /// Number of topics.
    pub fn len(&self) -> usize {
        self.topics.len()
    }

    /// Whether it has no topics (never: subscribing needs at least one).
    pub fn is_empty(&self) -> bool {
        self.topics.is_empty()
    }

    /// Whether no replay round trip is due, so that a read can be trusted (an empty read then
    /// means nothing is there). [`EntrySubscription::ready`] settles.
    pub fn is_settled(&self) -> bool {
        let st = self.state.lock();
        st.close.is_some() || !st.lanes.iter().any(|l| matches!(l.phase, Phase::Fetch(_)))
    }

    /// Takes one read (possibly empty) without waiting: replayed entries of the topics still
    /// replaying, the rings' entries of the others. Topics waiting for a replay round trip are
    /// skipped (see [`EntrySubscription::is_settled`]).
    pub fn try_read(&self) -> EntryRead {
        self.try_read_at(Instant::now())
    }

    pub(crate) fn try_read_at(&self, now: Instant) -> EntryRead {
        let mut st = self.state.lock();
        if st.close.is_some() {
            return EntryRead { entries: Vec::new(), close: st.close.clone() };
        }
        let EntryOptions { count, latest, max_queue_bytes } = self.options;
        let mode = if latest {
            Mode::Latest
        } else if self.backlog(&st.lanes, now) > max_queue_bytes {
            Mode::SkipToNewest
        } else {
            Mode::Oldest
        };
        let mut entries = Vec::new();
        let State { lanes, dropped, missed, close } = &mut *st;
        for (i, (lane, topic)) in lanes.iter_mut().zip(&self.topics).enumerate() {
            match &mut lane.phase {
                Phase::Fetch(_) => {}
                Phase::Replay { buffer, then } => {
                    let n = if latest { buffer.len() } else { count.min(buffer.len()) };
                    let taken: Vec<Arc<Message>> = buffer.drain(..n).collect();
                    if let Some(newest) = taken.iter().map(|m| m.entry_id()).max() {
                        lane.cursor.moved_to(newest);
                    }
                    if buffer.is_empty() {
                        lane.phase = then.map_or(Phase::Live, Phase::Fetch);
                    }
                    entries.extend(taken.into_iter().map(|m| (i, m)));
                }
                Phase::Live => {
                    let read = lane.cursor.read(&topic.lock(now), count, mode);
                    *dropped += read.dropped;
                    *missed += read.missed;
                    entries.extend(read.entries.into_iter().map(|m| (i, m)));
                    if read.close.is_some() {
                        *close = read.close;
                        break;
                    }
                }
            }
        }
        EntryRead { entries, close: close.clone() }
    }

    fn backlog(&self, lanes: &[Lane], now: Instant) -> usize {
        let live = lanes.iter().zip(&self.topics).filter(|(l, _)| matches!(l.phase, Phase::Live));
        live.map(|(l, t)| l.cursor.backlog(&t.lock(now))).fold(0, usize::saturating_add)
    }

    /// Whether `try_read` would give an entry or the close now.
    pub fn is_ready(&self) -> bool {
        let now = Instant::now();
        let st = self.state.lock();
        st.close.is_some()
            || st.lanes.iter().zip(&self.topics).any(|(l, t)| match &l.phase {
                Phase::Live => l.cursor.pending(&t.lock(now)),
                Phase::Replay { buffer, .. } => !buffer.is_empty(),
                Phase::Fetch(_) => false,
            })
    }

    /// Runs the replay round trips due (not bounded by a read's deadline: each is one round
    /// trip).
    pub async fn settle(&self) {
        if self.replay.is_none() {
            return;
        }
        let _guard = self.fetching.lock().await;
        while let Some((index, job)) = self.next_job() {
            self.fetch(index, job).await;
        }
    }

    fn next_job(&self) -> Option<(usize, Job)> {
        let st = self.state.lock();
        if st.close.is_some() {
            return None;
        }
        st.lanes.iter().enumerate().find_map(|(i, lane)| match lane.phase {
            Phase::Fetch(job) => Some((i, job)),
            _ => None,
        })
    }

    /// Waits until `try_read` would give something, without consuming it: a waiter abandoned
    /// half-way (its task cancelled) loses nothing. Settles first.
    pub async fn ready(&self) {
        self.settle().await;
        loop {
            // Register for wake-ups before looking, so a publish in between is not lost.
            let published: Vec<_> = self.topics.iter().map(|t| Box::pin(t.notified())).collect();
            let cancelled = self.cancelled.notified();
            if self.is_ready() {
                return;
            }
            tokio::select! {
                _ = futures_util::future::select_all(published) => {}
                () = cancelled => {}
            }
        }
    }

    /// Waits until at least one entry or the close is available, and takes that read.
    pub async fn next_read(&self) -> EntryRead {
        loop {
            self.ready().await;
            let read = self.try_read();
            if !read.entries.is_empty() || read.close.is_some() {
                return read;
            }
        }
    }

    /// Runs one replay job of topic `index` and records its outcome.
    async fn fetch(&self, index: usize, job: Job) {
        let Some(replay) = &self.replay else { return };
        let node = self.ids[index];
        let result = match job {
            Job::Probe => replay.newest(node, PROBE).await,
            Job::Newest => replay.newest(node, self.options.count).await,
            Job::Scan(from) => replay.range(node, from, REPLAY_BATCH).await,
        };
        let batch = match result {
            Ok(batch) => batch,
            Err(err) => return self.close_with(Close::backend_failed(&err)),
        };
        let mut st = self.state.lock();
        let lane = &mut st.lanes[index];
        let since = lane.since;
        let reached = batch.messages.iter().any(|m| m.entry_id() <= since);
        let mut missed = 0;
        let (messages, then) = match job {
            // Newest first, as `latest` hands them out.
            Job::Newest => (newer(batch, since, &mut missed), None),
            Job::Probe if reached || batch.fetched() < PROBE => {
                let mut oldest_first = newer(batch, since, &mut missed);
                oldest_first.reverse();
                (oldest_first, None)
            }
            // The cursor is older than the newest entries: scan the stream from its start.
            Job::Probe => (Vec::new(), Some(Job::Scan(0))),
            Job::Scan(from) => {
                // Sequences missing from a scan (trimmed meanwhile, or undecodable) are lost.
                missed += gaps(&batch.messages, from);
                let then = batch.next.map(Job::Scan);
                let mut batch = batch;
                batch.undecodable = 0;
                (newer(batch, since, &mut missed), then)
            }
        };
        lane.phase = match (messages.is_empty(), then) {
            (true, Some(job)) => Phase::Fetch(job),
            (true, None) => Phase::Live,
            (false, then) => Phase::Replay { buffer: messages.into(), then },
        };
        st.missed += missed;
    }

    /// Ends the subscription; a pending wait returns the `CANCELLED` close.
    pub fn cancel(&self) {
        self.state.lock().close.get_or_insert(Close::CANCELLED);
        self.unregister();
        self.cancelled.notify_waiters();
    }

    /// Per topic, the last id handed out (or the starting point).
    pub fn cursors(&self) -> Vec<EntryId> {
        self.state.lock().lanes.iter().map(|l| l.cursor.id).collect()
    }

    /// Entries skipped by `latest` or the byte cap.
    pub fn dropped(&self) -> u64 {
        self.state.lock().dropped
    }

    /// Entries evicted before they were read.
    pub fn missed(&self) -> u64 {
        self.state.lock().missed
    }

    /// Whether the subscription has ended.
    pub fn is_closed(&self) -> bool {
        self.state.lock().close.is_some()
    }

    fn unregister(&self) {
        if self.registered.swap(false, Ordering::AcqRel) {
            for topic in &self.topics {
                topic.remove_subscriber();
            }
        }
    }
}

impl Drop for EntrySubscription {
    fn drop(&mut self) {
        self.unregister();
    }
}

/// The data messages of a replayed batch newer than `since`; undecodable entries count as
/// missed.
fn newer(batch: ReplayBatch, since: EntryId, missed: &mut u64) -> Vec<Arc<Message>> {
    *missed += batch.undecodable;
    let fresh = |m: &Arc<Message>| m.kind() == super::message::MessageKind::Data && m.entry_id() > since;
    batch.messages.into_iter().filter(fresh).collect()
}

/// Sequences missing from a scan batch that starts at `from`.
fn gaps(messages: &[Arc<Message>], from: u64) -> u64 {
    let mut next = from;
    let mut missing = 0;
    for message in messages {
        if next > 0 && message.sequence() > next {
            missing += message.sequence() - next;
        }
        next = message.sequence() + 1;
    }
    missing
}
