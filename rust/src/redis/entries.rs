//! The entries API of the Redis backend: `RedisEntrySubscription` (an entry subscription on
//! this process's mirrors, preceded per topic, when its cursor reaches back further than the
//! mirror, by a replay from the node's Redis stream filtered by entry id), `stream_info` read
//! from Redis, and per-node retention overrides stored in Redis.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use redis::Value;

use super::reader::{parse_entries, xrange, StreamEntry};
use super::{keys, unavailable, RedisHub, Shared};
use crate::error::{CoreError, CoreResult};
use crate::hub::entry_id::wall_ms;
use crate::hub::{
    Close, EntryId, EntryOptions, EntryRead, EntrySubscription, Message, RetentionOverride, Start, StreamInfo,
};

/// Entries fetched per `XRANGE` during a replay.
const REPLAY_BATCH: usize = 256;
/// Newest entries looked at first when a cursor is older than the mirror: a cursor near the
/// head (the common resume) needs no scan of the whole stream.
const PROBE: usize = 64;

/// What a topic of a Redis entry subscription still needs from Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Job {
    /// `$` on a node this process knew nothing of: learn the stream's last id.
    Resolve,
    /// Look at the newest [`PROBE`] entries.
    Probe,
    /// `XRANGE` from this sequence (0: from the oldest).
    Scan(u64),
    /// The newest `count` entries (`latest`).
    Newest,
}

#[derive(Debug)]
enum Phase {
    /// Read from the mirror's ring.
    Live,
    /// Waiting for `job` (the topic is paused in the local subscription, except for `Resolve`).
    Fetch(Job),
    /// Replayed entries to hand out; `then` is the next job, `None` once Redis has no more.
    Replay { buffer: VecDeque<Arc<Message>>, then: Option<Job> },
}

/// One subscriber of one or more nodes of a Redis-backed hub, by entry id.
pub struct RedisEntrySubscription {
    shared: Arc<Shared>,
    topics: Vec<u64>,
    /// Registered on the mirrors at subscribe time, so nothing later is missed.
    local: EntrySubscription,
    /// Per topic: its cursor at subscribe time and its phase.
    phases: Mutex<Vec<(EntryId, Phase)>>,
    /// Held while a fetch runs, so concurrent waits do not fetch the same batch twice.
    fetching: tokio::sync::Mutex<()>,
    /// Wall-clock milliseconds when the subscription was made (bounds a resolved `$` start).
    subscribed_ms: u64,
}

impl RedisEntrySubscription {
    pub(super) fn new(
        shared: &Arc<Shared>,
        topics: &[u64],
        starts: &[Start],
        options: EntryOptions,
    ) -> CoreResult<Self> {
        let hub = &shared.hub;
        let local = hub.subscribe_entries(topics, starts, options)?;
        if !shared.connected.load(Ordering::Acquire) {
            local.close_with(Close::LIVE_LOST);
        }
        let now = Instant::now();
        let subscribed_ms = wall_ms();
        let cursors = local.cursors();
        let mut phases = Vec::with_capacity(topics.len());
        for (i, ((topic, start), cursor)) in topics.iter().zip(starts).zip(cursors).enumerate() {
            let mirror = hub.existing(*topic).ok_or(CoreError::ShutDown)?;
            let phase = match start {
                // Decided on the cursor, not the mirror: an entry may reach the mirror in between.
                Start::New if cursor == EntryId::ZERO => Phase::Fetch(Job::Resolve),
                Start::New => Phase::Live,
                Start::After(id) if mirror.covers(*id, now) => Phase::Live,
                _ if options.latest => Phase::Fetch(Job::Newest),
                Start::Oldest => Phase::Fetch(Job::Scan(0)),
                Start::After(_) => Phase::Fetch(Job::Probe),
            };
            if matches!(phase, Phase::Fetch(job) if job != Job::Resolve) {
                local.steer(i, true, None);
            }
            phases.push((cursor, phase));
        }
        Ok(Self {
            shared: Arc::clone(shared),
            topics: topics.to_vec(),
            local,
            phases: Mutex::new(phases),
            fetching: tokio::sync::Mutex::new(()),
            subscribed_ms,
        })
    }

    /// The subscription on this process's mirrors (cursors and counts live there).
    pub fn local(&self) -> &EntrySubscription {
        &self.local
    }

    /// Whether a Redis fetch is due before a read can be trusted.
    pub fn unsettled(&self) -> bool {
        !self.local.is_closed() && self.next_job().is_some()
    }

    fn next_job(&self) -> Option<(usize, Job)> {
        self.phases.lock().iter().enumerate().find_map(|(i, (_, phase))| match phase {
            Phase::Fetch(job) => Some((i, *job)),
            _ => None,
        })
    }

    /// Runs the fetches due (not bounded by a read's timeout: each is one round trip).
    pub async fn settle(&self) {
        let _guard = self.fetching.lock().await;
        while !self.local.is_closed() {
            let Some((index, job)) = self.next_job() else { return };
            self.fetch(index, job).await;
        }
    }

    /// Waits until `try_read` would give something, without consuming it.
    pub async fn ready(&self) {
        self.settle().await;
        let buffered = self.phases.lock().iter().any(|(_, p)| matches!(p, Phase::Replay { .. }));
        if !buffered {
            self.local.ready().await;
        }
    }

    /// Runs one job of topic `index` and records its outcome.
    async fn fetch(&self, index: usize, job: Job) {
        let node = self.topics[index];
        let count = self.local.options().count;
        let stream = self.shared.keys.stream(node);
        let result = match self.shared.conn() {
            Err(_) => None,
            Ok(mut conn) => match job {
                Job::Resolve => {
                    let query = redis::cmd("HGET").arg(self.shared.keys.entries(node)).arg("last").clone();
                    let last: Option<String> = query.query_async(&mut conn).await.ok().flatten();
                    let last = last.and_then(|l| EntryId::parse(&l).ok()).unwrap_or_default();
                    self.local.settle_new(index, last, self.subscribed_ms);
                    Some(Vec::new())
                }
                Job::Probe => xrevrange(&mut conn, &stream, PROBE).await,
                Job::Newest => xrevrange(&mut conn, &stream, count).await,
                Job::Scan(from) => {
                    xrange(&mut conn, &stream, (from > 0).then_some(from), None, Some(REPLAY_BATCH)).await.ok()
                }
            },
        };
        let mut phases = self.phases.lock();
        let (cursor, phase) = &mut phases[index];
        let Some(entries) = result else {
            drop(phases);
            self.local.close_with(Close::LIVE_LOST);
            return;
        };
        if job == Job::Resolve {
            *phase = Phase::Live;
            return;
        }
        let now = Instant::now();
        let fetched = entries.len();
        let reached = entries.iter().any(|e| e.entry_id.is_some_and(|id| id <= *cursor));
        let mut missed = 0;
        let (messages, then) = match job {
            // Newest first, as `latest` hands them out.
            Job::Newest => (self.decode(entries, *cursor, now, &mut missed), None),
            Job::Probe if reached || fetched < PROBE => {
                let mut oldest_first = entries;
                oldest_first.reverse();
                (self.decode(oldest_first, *cursor, now, &mut missed), None)
            }
            // The cursor is older than the newest entries: scan the stream from its start.
            Job::Probe => (Vec::new(), Some(Job::Scan(0))),
            Job::Scan(from) => {
                let next = entries.last().map_or(from, |e| e.sequence + 1);
                missed += gaps(&entries, from);
                let then = (fetched == REPLAY_BATCH).then_some(Job::Scan(next));
                (self.decode(entries, *cursor, now, &mut missed), then)
            }
            Job::Resolve => (Vec::new(), None),
        };
        *phase = if messages.is_empty() {
            match then {
                Some(job) => Phase::Fetch(job),
                None => {
                    self.local.steer(index, false, None);
                    Phase::Live
                }
            }
        } else {
            Phase::Replay { buffer: messages.into_iter().map(Arc::new).collect(), then }
        };
        drop(phases);
        self.local.count_lost(missed, 0);
    }

    /// The data messages of `entries` newer than `cursor`; undecodable ones count as missed.
    fn decode(&self, entries: Vec<StreamEntry>, cursor: EntryId, now: Instant, missed: &mut u64) -> Vec<Message> {
        let mut out = Vec::with_capacity(entries.len());
        for entry in entries {
            if entry.end || entry.entry_id.is_some_and(|id| id <= cursor) {
                continue;
            }
            match entry.into_message(now) {
                Ok(message) => out.push(message),
                Err(_) => *missed += 1,
            }
        }
        out
    }

    /// Takes one read (possibly empty) without waiting: replayed entries of the topics still
    /// replaying, then the mirrors' entries of the others.
    pub fn try_read(&self) -> EntryRead {
        if self.local.is_closed() {
            return self.local.try_read();
        }
        let EntryOptions { count, latest, .. } = self.local.options();
        let mut replayed = Vec::new();
        let mut phases = self.phases.lock();
        for (index, (_, phase)) in phases.iter_mut().enumerate() {
            let Phase::Replay { buffer, then } = phase else { continue };
            let n = if latest { buffer.len() } else { count.min(buffer.len()) };
            let taken: Vec<Arc<Message>> = buffer.drain(..n).collect();
            let newest = taken.iter().map(|m| m.entry_id()).max();
            let exhausted = buffer.is_empty();
            let next = *then;
            self.local.steer(index, !(exhausted && next.is_none()), newest);
            if exhausted {
                *phase = next.map_or(Phase::Live, Phase::Fetch);
            }
            replayed.extend(taken.into_iter().map(|m| (index, m)));
        }
        drop(phases);
        let mut read = self.local.try_read();
        if !replayed.is_empty() {
            replayed.append(&mut read.entries);
            // Grouped by topic in subscription order; within a topic the order is kept.
            replayed.sort_by_key(|(index, _)| *index);
            read.entries = replayed;
        }
        read
    }

    /// Ends the subscription; a pending wait returns the `CANCELLED` close.
    pub fn cancel(&self) {
        self.local.cancel();
    }
}

/// Sequences missing from a scan batch that starts at `from` (trimmed while scanning).
fn gaps(entries: &[StreamEntry], from: u64) -> u64 {
    let mut next = from;
    let mut missing = 0;
    for entry in entries {
        if next > 0 && entry.sequence > next {
            missing += entry.sequence - next;
        }
        next = entry.sequence + 1;
    }
    missing
}

/// `XREVRANGE key + - COUNT n` (newest first).
async fn xrevrange(conn: &mut redis::aio::ConnectionManager, key: &str, count: usize) -> Option<Vec<StreamEntry>> {
    let query = redis::cmd("XREVRANGE").arg(key).arg("+").arg("-").arg("COUNT").arg(count).clone();
    query.query_async::<Value>(conn).await.ok().map(parse_entries)
}

impl RedisHub {
    /// Subscribes by entry id to `topics` (see [`crate::hub::Hub::subscribe_entries`]); a
    /// cursor older than this process's mirror is replayed from Redis first, inside the reads.
    pub fn subscribe_entries(
        &self,
        topics: &[u64],
        starts: &[Start],
        options: EntryOptions,
    ) -> CoreResult<RedisEntrySubscription> {
        RedisEntrySubscription::new(&self.shared, topics, starts, options)
    }

    /// The node's stream as Redis holds it (`None` if it never had an entry). `length` counts
    /// the retained events, end-of-stream markers included (Tiled's `close_stream` writes them).
    pub async fn stream_info(&self, topic: u64) -> CoreResult<Option<StreamInfo>> {
        let shared = &self.shared;
        let mut conn = shared.conn()?;
        let stream = shared.keys.stream(topic);
        let mut pipe = redis::pipe();
        pipe.cmd("HMGET").arg(shared.keys.entries(topic)).arg("last").arg("added");
        pipe.cmd("XLEN").arg(&stream);
        pipe.cmd("XRANGE").arg(&stream).arg("-").arg("+").arg("COUNT").arg(2);
        pipe.cmd("XREVRANGE").arg(&stream).arg("+").arg("-").arg("COUNT").arg(2);
        let (hash, length, first, last): ((Option<String>, Option<u64>), u64, Value, Value) =
            pipe.query_async(&mut conn).await.map_err(|e| unavailable(&e))?;
        let (first, last) = (parse_entries(first), parse_entries(last));
        let entries_added = hash.1.unwrap_or(0);
        if length == 0 && entries_added == 0 {
            return Ok(None);
        }
        let now = Instant::now();
        let max_deleted = first
            .first()
            .map_or_else(|| hash.0.as_deref().and_then(|l| EntryId::parse(l).ok()).unwrap_or_default(), |e| e.previous);
        let data = |entries: Vec<StreamEntry>| {
            entries.into_iter().find(|e| !e.end).and_then(|e| e.into_message(now).ok()).map(Arc::new)
        };
        let last_id = hash.0.as_deref().and_then(|l| EntryId::parse(l).ok()).unwrap_or_default();
        Ok(Some(StreamInfo { length, entries_added, first: data(first), last: data(last), last_id, max_deleted }))
    }

    /// Gives the node its own retention (`None` limits: the hub's) in Redis, for every process
    /// that publishes to it, and in every process's mirror. A new `max_count` trims the stream
    /// at once; `max_bytes` applies from the next publish (trimmed to `max_bytes / that event's
    /// size` events, as the hub's); `max_age` is the stream's time to live after its last event
    /// (each mirror drops events older than it).
    pub async fn set_retention(&self, topic: u64, retention: RetentionOverride) -> CoreResult<()> {
        let shared = &self.shared;
        retention.apply(shared.hub.config().retention())?;
        let mut conn = shared.conn()?;
        let text = |v: Option<u64>| v.map(|n| n.to_string()).unwrap_or_default();
        let mut invocation = self.retention.key(shared.keys.stream(topic));
        invocation
            .key(shared.keys.entries(topic))
            .arg(text(retention.max_count.map(|n| n as u64)))
            .arg(text(retention.max_bytes.map(|n| n as u64)))
            .arg(text(retention.max_age.map(keys::millis)))
            .arg(keys::millis(shared.config.seq_ttl))
            .arg(shared.keys.live())
            .arg(topic);
        invocation.invoke_async::<i64>(&mut conn).await.map_err(|e| unavailable(&e))?;
        if let Some(mirror) = shared.hub.existing(topic) {
            mirror.set_retention(retention, Instant::now())?;
            shared.retention_loaded.lock().insert(topic);
        }
        Ok(())
    }
}
