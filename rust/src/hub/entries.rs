//! Entry-cursor subscriptions (Redis Streamer's pull) over the shared rings: one cursor by
//! entry id per topic, reads of up to `count` entries per topic (oldest first, or the newest
//! with `latest`), a byte cap on what is unread, loss counts, and per-topic stream info.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use tokio::sync::Notify;

use super::entry_id::{EntryId, Start, MAX_PART};
use super::message::{Close, Message, MessageKind};
use super::topic::{State, Topic};

/// How a subscription reads (the same for all its topics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryOptions {
    /// Most entries per topic per read (>= 1).
    pub count: usize,
    /// Only the newest `count` entries past the cursor, newest first; older ones are dropped.
    pub latest: bool,
    /// Most unread envelope bytes past the cursors before a read skips to the newest entries.
    pub max_queue_bytes: usize,
}

/// Where a subscription is on one topic.
#[derive(Debug, Clone, Default)]
pub(crate) struct EntryCursor {
    /// The last id handed out (or the starting point).
    pub id: EntryId,
    /// Data messages of the topic up to the cursor, when known (to count evicted entries).
    pub ordinal: Option<u64>,
    /// The topic's interrupt count at subscribe time.
    pub interrupts: u64,
    /// Not read from the ring for now (the Redis backend is replaying this topic from Redis).
    pub paused: bool,
    /// What `cursors` reports until an entry is handed out, if not `id` (a `$` start the Redis
    /// backend resolved: the stream's last id, while delivery still takes all the ring gets).
    pub reported: Option<EntryId>,
}

/// How one read takes entries from a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Up to `count` oldest entries past the cursor.
    Oldest,
    /// The newest `count`, newest first (Redis Streamer's `latest`).
    Latest,
    /// The newest `count`, oldest first (the byte cap was exceeded).
    SkipToNewest,
}

/// What one read of one topic gave.
#[derive(Debug, Default)]
struct TopicRead {
    entries: Vec<Arc<Message>>,
    dropped: u64,
    missed: u64,
    close: Option<Close>,
}

/// The entries of one read, each with the index of its topic, and the close if the
/// subscription has ended (after these entries).
#[derive(Debug, Default)]
pub struct EntryRead {
    /// `(topic index, message)`, grouped by topic in subscription order.
    pub entries: Vec<(usize, Arc<Message>)>,
    /// Present once the subscription has ended.
    pub close: Option<Close>,
}

/// A topic's stream as Redis `XINFO STREAM` describes it (data messages only).
#[derive(Debug, Clone)]
pub struct StreamInfo {
    /// Data messages retained.
    pub length: u64,
    /// Data messages ever published.
    pub entries_added: u64,
    /// The oldest retained data message.
    pub first: Option<Arc<Message>>,
    /// The newest retained data message.
    pub last: Option<Arc<Message>>,
    /// The newest id ever assigned.
    pub last_id: EntryId,
    /// The greatest id evicted (`0-0` if none).
    pub max_deleted: EntryId,
}

/// Ring index of the first message with an id greater than `id` (ids never decrease along a
/// ring: a marker carries the id of the data message before it).
fn after_index(st: &State, id: EntryId) -> usize {
    st.ring.partition_point(|m| m.entry_id() <= id)
}

/// Data messages published before ring index `index` (evicted ones included).
fn ordinal_before(st: &State, index: usize) -> u64 {
    match index.checked_sub(1).and_then(|i| st.ordinals.get(i)) {
        Some(ordinal) => *ordinal,
        None => match (st.ring.front(), st.ordinals.front()) {
            (Some(m), Some(o)) => o - u64::from(m.kind() == MessageKind::Data),
            _ => st.added,
        },
    }
}

fn is_data(message: &&Arc<Message>) -> bool {
    message.kind() == MessageKind::Data
}

impl Topic {
    /// A cursor for a new entry subscription.
    pub(crate) fn entry_cursor(&self, start: Start, now: Instant) -> EntryCursor {
        let st = self.lock_maintained(now);
        let id = start.cursor(st.last_id);
        let ordinal = match start {
            Start::New => Some(st.added),
            // From the oldest retained: what was evicted before is not this subscriber's loss.
            Start::Oldest => None,
            Start::After(_) => {
                let index = after_index(&st, id);
                // A cursor older than the ring: the count evicted after it is known only if
                // none of the evicted entries is newer than it.
                (index > 0 || id >= st.max_deleted).then(|| ordinal_before(&st, index))
            }
        };
        EntryCursor { id, ordinal, interrupts: st.interrupts, paused: false, reported: None }
    }

    /// Whether a read would give an entry or a close.
    fn entry_pending(&self, cursor: &EntryCursor, now: Instant) -> bool {
        let st = self.lock_maintained(now);
        st.ended.is_some()
            || cursor.interrupts != st.interrupts
            || st.added > ordinal_before(&st, after_index(&st, cursor.id))
    }

    /// Envelope bytes of the messages past the cursor.
    fn entry_backlog(&self, cursor: &EntryCursor, now: Instant) -> usize {
        let st = self.lock_maintained(now);
        let index = after_index(&st, cursor.id);
        match (st.ring.get(index), st.ends.get(index)) {
            (Some(m), Some(end)) => usize::try_from(st.total - (end - m.size() as u64)).unwrap_or(usize::MAX),
            _ => 0,
        }
    }

    /// Takes entries past the cursor and moves it to the newest one taken.
    fn read_entries(&self, cursor: &mut EntryCursor, count: usize, mode: Mode, now: Instant) -> TopicRead {
        let st = self.lock_maintained(now);
        if let Some(close) = &st.ended {
            return TopicRead { close: Some(close.clone()), ..TopicRead::default() };
        }
        if cursor.interrupts != st.interrupts {
            return TopicRead { close: Some(Close::LIVE_LOST), ..TopicRead::default() };
        }
        let start = after_index(&st, cursor.id);
        let before = ordinal_before(&st, start);
        let available = st.added - before;
        if available == 0 {
            return TopicRead::default();
        }
        let mut read = TopicRead::default();
        if let Some(seen) = cursor.ordinal {
            read.missed = before.saturating_sub(seen);
        }
        let window = st.ring.range(start..);
        read.entries = match mode {
            Mode::Oldest => window.filter(is_data).take(count).cloned().collect(),
            Mode::Latest => window.rev().filter(is_data).take(count).cloned().collect(),
            Mode::SkipToNewest => {
                let mut newest: Vec<Arc<Message>> = window.rev().filter(is_data).take(count).cloned().collect();
                newest.reverse();
                newest
            }
        };
        read.dropped = available - read.entries.len() as u64;
        if mode == Mode::Oldest {
            read.dropped = 0;
        }
        let newest = read.entries.iter().map(|m| m.entry_id()).max().unwrap_or(cursor.id);
        let newest_index = after_index(&st, newest);
        cursor.id = newest;
        cursor.ordinal = Some(ordinal_before(&st, newest_index));
        cursor.reported = None;
        read
    }

    /// The stream's description, `None` if it has no retained entry and never had one.
    pub fn info(&self, now: Instant) -> Option<StreamInfo> {
        let st = self.lock_maintained(now);
        let length = st.added - ordinal_before(&st, 0);
        if length == 0 && st.added == 0 {
            return None;
        }
        Some(StreamInfo {
            length,
            entries_added: st.added,
            first: st.ring.iter().find(is_data).cloned(),
            last: st.ring.iter().rev().find(is_data).cloned(),
            last_id: st.last_id,
            max_deleted: st.max_deleted,
        })
    }
}

#[derive(Debug)]
struct ReadState {
    cursors: Vec<EntryCursor>,
    dropped: u64,
    missed: u64,
    close: Option<Close>,
}

/// One subscriber of one or more topics, by entry id.
#[derive(Debug)]
pub struct EntrySubscription {
    topics: Vec<Arc<Topic>>,
    options: EntryOptions,
    state: Mutex<ReadState>,
    cancelled: Notify,
    registered: AtomicBool,
}

impl EntrySubscription {
    /// Registers on every topic; nothing published after this returns is missed.
    pub(super) fn new(topics: Vec<Arc<Topic>>, starts: &[Start], options: EntryOptions, now: Instant) -> Self {
        let cursors = topics
            .iter()
            .zip(starts)
            .map(|(topic, start)| {
                topic.add_subscriber();
                topic.entry_cursor(*start, now)
            })
            .collect();
        let state = ReadState { cursors, dropped: 0, missed: 0, close: None };
        Self { topics, options, state: Mutex::new(state), cancelled: Notify::new(), registered: AtomicBool::new(true) }
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

    /// Takes one read (possibly empty) without waiting.
    pub fn try_read(&self) -> EntryRead {
        self.try_read_at(Instant::now())
    }

    pub(crate) fn try_read_at(&self, now: Instant) -> EntryRead {
        let mut st = self.state.lock();
        if st.close.is_some() {
            return EntryRead { entries: Vec::new(), close: st.close.clone() };
        }
        let mode = if self.options.latest {
            Mode::Latest
        } else if self.backlog(&st.cursors, now) > self.options.max_queue_bytes {
            Mode::SkipToNewest
        } else {
            Mode::Oldest
        };
        let mut entries = Vec::new();
        for (i, topic) in self.topics.iter().enumerate() {
            if st.cursors[i].paused {
                continue;
            }
            let read = topic.read_entries(&mut st.cursors[i], self.options.count, mode, now);
            st.dropped += read.dropped;
            st.missed += read.missed;
            entries.extend(read.entries.into_iter().map(|m| (i, m)));
            if read.close.is_some() {
                st.close = read.close;
                break;
            }
        }
        EntryRead { entries, close: st.close.clone() }
    }

    fn backlog(&self, cursors: &[EntryCursor], now: Instant) -> usize {
        let live = self.topics.iter().zip(cursors).filter(|(_, c)| !c.paused);
        live.map(|(t, c)| t.entry_backlog(c, now)).fold(0, usize::saturating_add)
    }

    /// Whether `try_read` would give an entry or the close now.
    pub fn is_ready(&self) -> bool {
        let now = Instant::now();
        let st = self.state.lock();
        st.close.is_some() || self.topics.iter().zip(&st.cursors).any(|(t, c)| !c.paused && t.entry_pending(c, now))
    }

    /// Waits until `try_read` would give something, without consuming it: a waiter abandoned
    /// half-way (its asyncio task cancelled) loses nothing.
    pub async fn ready(&self) {
        loop {
            // Register for wake-ups before looking, so a publish in between is not lost.
            let published: Vec<_> = self.topics.iter().map(|t| Box::pin(t.notify.notified())).collect();
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

    /// Ends the subscription; a pending wait returns the `CANCELLED` close.
    pub fn cancel(&self) {
        self.state.lock().close.get_or_insert(Close::CANCELLED);
        self.unregister();
        self.cancelled.notify_waiters();
    }

    /// Per topic, the last id handed out (or the starting point).
    pub fn cursors(&self) -> Vec<EntryId> {
        self.state.lock().cursors.iter().map(|c| c.reported.unwrap_or(c.id)).collect()
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

    /// Pauses or resumes reading topic `index` from its ring (the Redis backend replays it
    /// meanwhile); `cursor`, if given, becomes the topic's cursor (its ordinal unknown).
    pub(crate) fn steer(&self, index: usize, paused: bool, cursor: Option<EntryId>) {
        let mut st = self.state.lock();
        if let Some(c) = st.cursors.get_mut(index) {
            c.paused = paused;
            if let Some(id) = cursor.filter(|id| *id != c.id) {
                c.id = id;
                c.ordinal = None;
                c.reported = None;
            }
        }
    }

    /// For a `$` start made while this process knew nothing of topic `index`: `last` is the
    /// stream's last id, read from the backend after the subscription was registered. Until an
    /// entry is handed out, `cursors` reports it instead of `0-0`, and entries still on their way
    /// to this process that were published before the subscription are skipped: those with an
    /// id up to `last` and older than `subscribed_ms` (the wall clock when it was made; a later
    /// publish can have an id up to `last` only if it raced the read of `last`).
    pub(crate) fn settle_new(&self, index: usize, last: EntryId, subscribed_ms: u64) {
        let mut st = self.state.lock();
        if let Some(cursor) = st.cursors.get_mut(index).filter(|c| c.id == EntryId::ZERO) {
            let before_subscribing = EntryId::new(subscribed_ms.saturating_sub(1), MAX_PART);
            cursor.id = last.min(before_subscribing);
            cursor.ordinal = None;
            cursor.reported = Some(last);
        }
    }

    /// Adds losses counted outside the rings (the Redis backend's replay).
    pub(crate) fn count_lost(&self, missed: u64, dropped: u64) {
        let mut st = self.state.lock();
        st.missed += missed;
        st.dropped += dropped;
    }

    /// Ends the subscription with `close` (if it has not ended yet).
    pub(crate) fn close_with(&self, close: Close) {
        self.state.lock().close.get_or_insert(close);
        self.cancelled.notify_waiters();
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
