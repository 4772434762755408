//! The one reader of a process: follows the live channel, mirrors events into the local hub,
//! fills gaps from the streams, watches the epoch, and reconnects after Redis is lost.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use futures_util::stream::FuturesOrdered;
use futures_util::StreamExt;
use redis::aio::{ConnectionManager, PubSub};
use redis::{RedisResult, Value};

use super::keys::{self, Keys, Live};
use super::{new_epoch_token, record, Shared};
use crate::error::{CoreError, CoreResult};
use crate::hub::ring::External;
use crate::hub::topic::Topic;
use crate::hub::{Close, EntryId, Message, RetentionOverride};

/// How often the epoch (and so the connection, and with Sentinels where the master is) is
/// checked.
const EPOCH_CHECK: Duration = Duration::from_secs(1);
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// Live messages read ahead while earlier records are still being read: a record kept apart
/// is one round trip to Redis, and one at a time held the mirror below the rate frames were
/// published at (it fell behind the retained window and lost frames; 4 still lost some of
/// 256 KiB frames pushed flat out).
const READS_IN_FLIGHT: usize = 16;
/// Parts of kept records ([`keys::PART_MAX`] bytes each) being read at once, at most (one
/// record larger than this is still read whole): 32 MiB.
const PARTS_IN_FLIGHT: usize = 32;

/// Opens the reader's pub/sub connection on the live channel.
pub(crate) async fn subscribe(shared: &Shared, client: &redis::Client) -> RedisResult<PubSub> {
    let mut pubsub = tokio::time::timeout(Duration::from_secs(5), client.get_async_pubsub())
        .await
        .map_err(|_| redis::RedisError::from((redis::ErrorKind::Io, "connection timed out")))??;
    pubsub.subscribe(shared.keys.live()).await?;
    Ok(pubsub)
}

/// Reads (creating if missing) the epoch token. If this process knew another one, Redis lost
/// its history: every local subscription closes with 1012. Returns whether it changed.
pub(crate) async fn check_epoch(shared: &Shared, conn: &mut ConnectionManager) -> RedisResult<bool> {
    let key = shared.keys.epoch();
    let mut current: Option<String> = redis::cmd("GET").arg(&key).query_async(conn).await?;
    if current.is_none() {
        let _: Option<String> = redis::cmd("SET").arg(&key).arg(new_epoch_token()).arg("NX").query_async(conn).await?;
        current = redis::cmd("GET").arg(&key).query_async(conn).await?;
    }
    let mut known = shared.epoch.lock();
    let changed = known.is_some() && *known != current;
    *known = current;
    drop(known);
    if changed {
        shared.counters.epoch_changes.fetch_add(1, Ordering::Relaxed);
        shared.topics.end_all(&Close::HISTORY_LOST);
        shared.retention_loaded.lock().clear();
    }
    Ok(changed)
}

/// The reader task: follow, and after a loss close local subscribers with 1012 and reconnect.
pub(crate) async fn run(shared: Arc<Shared>, mut pubsub: PubSub) {
    loop {
        if !follow(&shared, pubsub).await {
            return;
        }
        shared.connected.store(false, Ordering::Release);
        shared.topics.end_all(&Close::LIVE_LOST);
        // Their announcements were lost with the connection.
        shared.own.clear();
        // Retention overrides may change while nobody listens: reload them.
        shared.retention_loaded.lock().clear();
        match reconnect(&shared).await {
            Some(p) => pubsub = p,
            None => return,
        }
    }
}

/// Follows the live channel until the connection is lost (`true`) or the hub stops (`false`).
async fn follow(shared: &Shared, pubsub: PubSub) -> bool {
    let mut stream = pubsub.into_on_message();
    let mut tick = tokio::time::interval(EPOCH_CHECK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    // Messages in arrival order, each resolved once its record (if kept apart) is read: reads
    // overlap, and the mirror still takes the events in order.
    let mut arriving = FuturesOrdered::new();
    let mut parts_in_flight = 0;
    loop {
        tokio::select! {
            // Biased, in this order: the epoch check (ready once a second) is never starved by
            // a live channel that is always ready.
            biased;
            () = shared.stop.notified() => return false,
            _ = tick.tick() => {
                if shared.topics.is_shut_down() {
                    return false;
                }
                let Ok(mut conn) = shared.conn() else { return true };
                if check_epoch(shared, &mut conn).await.is_err() || shared.endpoint.moved().await {
                    return true;
                }
            }
            Some((parts, step)) = arriving.next(), if !arriving.is_empty() => {
                parts_in_flight -= parts;
                let applied = match step {
                    Ok(step) => apply(shared, step).await,
                    Err(error) => Err(error),
                };
                if applied.is_err() {
                    shared.counters.bad_messages.fetch_add(1, Ordering::Relaxed);
                }
            }
            msg = stream.next(), if arriving.len() < READS_IN_FLIGHT && parts_in_flight < PARTS_IN_FLIGHT => match msg {
                Some(msg) => {
                    shared.counters.received.fetch_add(1, Ordering::Relaxed);
                    let (parts, step) = prepare(shared, msg.get_payload_bytes().to_vec());
                    parts_in_flight += parts;
                    arriving.push_back(async move { (parts, step.await) });
                }
                None => return !shared.topics.is_shut_down(),
            },
        }
    }
}

/// Reconnects with backoff; `None` if the hub was shut down meanwhile.
async fn reconnect(shared: &Shared) -> Option<PubSub> {
    let mut delay = BACKOFF_MIN;
    loop {
        tokio::select! {
            () = shared.stop.notified() => return None,
            () = tokio::time::sleep(delay) => {}
        }
        if shared.topics.is_shut_down() {
            return None;
        }
        delay = (delay * 2).min(BACKOFF_MAX);
        let Ok(pubsub) = shared.open().await else { continue };
        shared.counters.reconnects.fetch_add(1, Ordering::Relaxed);
        return Some(pubsub);
    }
}

/// What one live message asks of this process's mirrors.
enum Step {
    /// Insert an event into the node's mirror.
    Insert(u64, Arc<Message>),
    /// Apply the node's new retention override.
    Retention(u64, RetentionOverride),
    /// Nothing: a node this process does not follow, or a record already trimmed (a gap the
    /// next event fills or rebases past).
    Nothing,
}

/// Decodes one live message at once (whether this process follows its node is decided on
/// arrival, as the subscriptions' live-start rule expects); a record kept apart is read by the
/// returned future (only for followed nodes, and not when this process published it and kept
/// it), whose number of parts comes first.
fn prepare(shared: &Shared, bytes: Vec<u8>) -> (usize, BoxFuture<'_, CoreResult<Step>>) {
    let now = Instant::now();
    let followed = |node| shared.topics.existing(node).is_some();
    let step = match keys::parse_live(bytes) {
        Err(error) => Err(error),
        Ok(Live::Event { node, sequence, entry_id, end, record }) if followed(node) => {
            to_message(sequence, Some(entry_id), end, record, now).map(|m| Step::Insert(node, Arc::new(m)))
        }
        Ok(Live::Stored { node, sequence, entry_id, parts, upload }) => match shared.own.take(&upload) {
            _ if !followed(node) => Ok(Step::Nothing),
            Some(record) => record.decode(sequence, entry_id, now).map(|m| Step::Insert(node, Arc::new(m))),
            None => return (parts, read_stored(shared, node, sequence, entry_id, parts, now)),
        },
        Ok(Live::Retention { node, retention }) if followed(node) => Ok(Step::Retention(node, retention)),
        Ok(_) => Ok(Step::Nothing),
    };
    (0, Box::pin(std::future::ready(step)))
}

/// Reads a record kept apart from its keys (one `MGET`): the step that inserts it.
fn read_stored(
    shared: &Shared,
    node: u64,
    sequence: u64,
    entry_id: EntryId,
    parts: usize,
    now: Instant,
) -> BoxFuture<'_, CoreResult<Step>> {
    Box::pin(async move {
        let mut conn = shared.read_conn()?;
        let entry = StreamEntry {
            sequence,
            entry_id: Some(entry_id),
            previous: EntryId::ZERO,
            end: false,
            parts,
            record: Vec::new(),
        };
        let read = with_records(&mut conn, &shared.keys, node, vec![entry]).await;
        let Some(entry) = read.map_err(|e| super::unavailable(&e))?.pop() else { return Ok(Step::Nothing) };
        Ok(Step::Insert(node, Arc::new(entry.into_message(now)?)))
    })
}

/// Mirrors one step into its local topic, if this process still follows that topic.
async fn apply(shared: &Shared, step: Step) -> CoreResult<()> {
    let now = Instant::now();
    let (node, message) = match step {
        Step::Insert(node, message) => (node, message),
        Step::Retention(node, retention) => {
            if let Some(topic) = shared.topics.existing(node) {
                topic.set_retention(retention, now)?;
                shared.retention_loaded.lock().insert(node);
            }
            return Ok(());
        }
        Step::Nothing => return Ok(()),
    };
    let Some(topic) = shared.topics.existing(node) else { return Ok(()) };
    if !shared.retention_loaded.lock().contains(&node) {
        load_retention(shared, &topic, node).await;
    }
    let sequence = message.sequence();
    let (_, head, fresh) = topic.bounds(now);
    if !fresh && sequence > head + 1 {
        fill(shared, &topic, node, head + 1, sequence - 1).await;
    }
    if let External::Gap { .. } = topic.insert_external(Arc::clone(&message), now) {
        topic.rebase(sequence);
        topic.insert_external(message, now);
    }
    shared.topics.keep_within_budget();
    Ok(())
}

/// Applies the node's retention override (set by any process) to its mirror, once.
async fn load_retention(shared: &Shared, topic: &Topic, node: u64) {
    let Ok(mut conn) = shared.conn() else { return };
    let query = redis::cmd("HMGET").arg(shared.keys.entries(node)).arg(&["max_count", "max_bytes", "max_age"]).clone();
    let Ok(values) = query.query_async::<Vec<Option<u64>>>(&mut conn).await else { return };
    let get = |i: usize| values.get(i).copied().flatten();
    let retention = RetentionOverride {
        max_count: get(0).map(|n| n as usize),
        max_bytes: get(1).map(|n| n as usize),
        max_age: get(2).map(Duration::from_millis),
    };
    if topic.set_retention(retention, Instant::now()).is_ok() {
        shared.retention_loaded.lock().insert(node);
    }
}

/// Inserts `from..=to` from the node's stream; what Redis no longer has rebases the mirror.
async fn fill(shared: &Shared, topic: &Topic, node: u64, from: u64, to: u64) {
    shared.counters.gap_fills.fetch_add(1, Ordering::Relaxed);
    let from = from.max((to + 1).saturating_sub(shared.max_count as u64));
    let Ok(mut conn) = shared.conn() else { return };
    let Ok(entries) = xrange(&mut conn, &shared.keys, node, Some(from), Some(to), None).await else { return };
    let now = Instant::now();
    for (i, entry) in entries.into_iter().enumerate() {
        if i == 0 && entry.sequence > from {
            // Redis no longer has `from..seq`: the mirror restarts at what it has.
            topic.rebase(entry.sequence);
        }
        match entry.into_message(now) {
            Ok(message) => {
                topic.insert_external(Arc::new(message), now);
            }
            Err(_) => {
                shared.counters.bad_messages.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// A hub message from a stream entry or live event. A data message needs its entry id (an
/// entry written by an older ferrotile has none and is refused).
pub(crate) fn to_message(
    sequence: u64,
    entry_id: Option<EntryId>,
    end: bool,
    record: Vec<u8>,
    now: Instant,
) -> CoreResult<Message> {
    match (end, entry_id) {
        (true, after) => Ok(Message::end_of_stream(sequence, after.unwrap_or_default(), now)),
        (false, Some(id)) => record::decode(record, sequence, id, now),
        (false, None) => Err(CoreError::envelope("stream entry without an entry id (written by an older ferrotile)")),
    }
}

/// One entry of a node's Redis stream.
#[derive(Debug)]
pub(crate) struct StreamEntry {
    /// The event's sequence (the stream ID is `<sequence>-0`).
    pub sequence: u64,
    /// Its entry id (a marker: the last data entry's id).
    pub entry_id: Option<EntryId>,
    /// The id of the data entry before it (`0-0` if none; a marker: its `entry_id`).
    pub previous: EntryId,
    /// An end-of-stream marker.
    pub end: bool,
    /// The number of parts of a record kept in keys of its own ([`Keys::record`]; 0: inline);
    /// `record` is empty until [`with_records`] reads them.
    pub parts: usize,
    /// The wire record of a data message.
    pub record: Vec<u8>,
}

impl StreamEntry {
    /// The hub message of this entry.
    pub(crate) fn into_message(self, now: Instant) -> CoreResult<Message> {
        to_message(self.sequence, self.entry_id, self.end, self.record, now)
    }
}

/// `XRANGE` of the node's stream from `<from>-0` to `<to>-0` (`None` bounds: the oldest / newest
/// entry), at most `count` entries, with the records kept in their own keys read in.
pub(crate) async fn xrange(
    conn: &mut ConnectionManager,
    keys: &Keys,
    node: u64,
    from: Option<u64>,
    to: Option<u64>,
    count: Option<usize>,
) -> RedisResult<Vec<StreamEntry>> {
    let mut cmd = redis::cmd("XRANGE");
    cmd.arg(keys.stream(node));
    cmd.arg(from.map_or_else(|| "-".to_owned(), |s| format!("{s}-0")));
    cmd.arg(to.map_or_else(|| "+".to_owned(), |s| format!("{s}-0")));
    if let Some(n) = count {
        cmd.arg("COUNT").arg(n);
    }
    let value: Value = cmd.query_async(conn).await?;
    with_records(conn, keys, node, parse_entries(value)).await
}

/// Reads the records of keyed entries (one `MGET`); an entry whose parts are gone (trimmed or
/// expired: always the oldest ones) is left out, as if the stream no longer had it.
pub(crate) async fn with_records(
    conn: &mut ConnectionManager,
    keys: &Keys,
    node: u64,
    mut entries: Vec<StreamEntry>,
) -> RedisResult<Vec<StreamEntry>> {
    let wanted: Vec<String> =
        entries.iter().flat_map(|e| (1..=e.parts).map(move |part| keys.record(node, e.sequence, part))).collect();
    if wanted.is_empty() {
        return Ok(entries);
    }
    let mut found = redis::cmd("MGET").arg(&wanted).query_async::<Vec<Option<Vec<u8>>>>(conn).await?.into_iter();
    entries.retain_mut(|entry| {
        if entry.parts == 0 {
            return true;
        }
        let parts = found.by_ref().take(entry.parts).collect();
        entry.parts = 0;
        joined(parts).map(|record| entry.record = record).is_some()
    });
    Ok(entries)
}

/// A record from its parts, or `None` if any is missing.
fn joined(parts: Vec<Option<Vec<u8>>>) -> Option<Vec<u8>> {
    let mut parts: Vec<Vec<u8>> = parts.into_iter().collect::<Option<_>>()?;
    if parts.len() == 1 {
        return parts.pop();
    }
    Some(parts.concat())
}

fn text(value: &Value) -> Option<&str> {
    match value {
        Value::BulkString(bytes) => std::str::from_utf8(bytes).ok(),
        Value::SimpleString(text) => Some(text),
        _ => None,
    }
}

/// Parses an `XRANGE` / `XREVRANGE` reply, skipping anything malformed; keyed records are not
/// read (see [`with_records`]).
pub(crate) fn parse_entries(value: Value) -> Vec<StreamEntry> {
    let Value::Array(entries) = value else { return Vec::new() };
    entries.into_iter().filter_map(parse_entry).collect()
}

fn parse_entry(entry: Value) -> Option<StreamEntry> {
    let Value::Array(parts) = entry else { return None };
    let [id, Value::Array(fields)] = <[Value; 2]>::try_from(parts).ok()? else { return None };
    let sequence = text(&id)?.split('-').next()?.parse::<u64>().ok()?;
    let mut entry =
        StreamEntry { sequence, entry_id: None, previous: EntryId::ZERO, end: false, parts: 0, record: Vec::new() };
    let mut record = None;
    let mut fields = fields.into_iter();
    while let (Some(name), Some(value)) = (fields.next(), fields.next()) {
        match (text(&name)?, value) {
            (keys::DATA, Value::BulkString(bytes)) => record = Some(bytes),
            (keys::KEYED, value) => {
                entry.parts = text(&value)?.parse::<usize>().ok().filter(|p| *p > 0)?;
                record = Some(Vec::new());
            }
            (keys::END, Value::BulkString(bytes)) => {
                entry.end = true;
                record = Some(bytes);
            }
            (keys::ID, value) => entry.entry_id = EntryId::parse(text(&value)?).ok(),
            (keys::PREVIOUS, value) => entry.previous = EntryId::parse(text(&value)?).unwrap_or_default(),
            _ => {}
        }
    }
    entry.record = record?;
    if entry.end {
        entry.previous = entry.entry_id.unwrap_or_default();
    }
    Some(entry)
}
