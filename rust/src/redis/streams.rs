//! Per-node stream state kept in Redis for the entries API: `stream_info` read from Redis, and
//! per-node retention overrides stored in Redis (and applied to every process's mirror).

use std::sync::Arc;
use std::time::Instant;

use redis::Value;

use super::reader::{parse_entries, with_records, StreamEntry};
use super::{keys, unavailable, Shared};
use crate::error::CoreResult;
use crate::hub::{EntryId, RetentionOverride, StreamInfo};

/// The node's stream as Redis holds it (`None` if it never had an entry). `length` counts
/// the retained events, end-of-stream markers included (Tiled's `close_stream` writes them).
pub(crate) async fn stream_info(shared: &Shared, topic: u64) -> CoreResult<Option<StreamInfo>> {
    let mut conn = shared.conn()?;
    let stream = shared.keys.stream(topic);
    let mut pipe = redis::pipe();
    pipe.cmd("HMGET").arg(shared.keys.entries(topic)).arg("last").arg("added");
    pipe.cmd("XLEN").arg(&stream);
    pipe.cmd("XRANGE").arg(&stream).arg("-").arg("+").arg("COUNT").arg(2);
    pipe.cmd("XREVRANGE").arg(&stream).arg("+").arg("-").arg("COUNT").arg(2);
    let (hash, length, first, last): ((Option<String>, Option<u64>), u64, Value, Value) =
        pipe.query_async(&mut conn).await.map_err(|e| unavailable(&e))?;
    let first =
        with_records(&mut conn, &shared.keys, topic, parse_entries(first)).await.map_err(|e| unavailable(&e))?;
    let last = with_records(&mut conn, &shared.keys, topic, parse_entries(last)).await.map_err(|e| unavailable(&e))?;
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
pub(crate) async fn set_retention(shared: &Shared, topic: u64, retention: RetentionOverride) -> CoreResult<()> {
    let mut conn = shared.conn()?;
    let text = |v: Option<u64>| v.map(|n| n.to_string()).unwrap_or_default();
    let mut invocation = shared.retention_script.key(shared.keys.stream(topic));
    invocation
        .key(shared.keys.entries(topic))
        .arg(text(retention.max_count.map(|n| n as u64)))
        .arg(text(retention.max_bytes.map(|n| n as u64)))
        .arg(text(retention.max_age.map(keys::millis)))
        .arg(keys::millis(shared.seq_ttl))
        .arg(shared.keys.live())
        .arg(topic);
    invocation.invoke_async::<i64>(&mut conn).await.map_err(|e| unavailable(&e))?;
    if let Some(mirror) = shared.topics.existing(topic) {
        mirror.set_retention(retention, Instant::now())?;
        shared.retention_loaded.lock().insert(topic);
    }
    Ok(())
}
