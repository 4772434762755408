//! The one reader of a process: follows the live channel, mirrors events into the local hub,
//! fills gaps from the streams, watches the epoch, and reconnects after Redis is lost.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use redis::aio::{ConnectionManager, PubSub};
use redis::{RedisResult, Value};

use super::keys::{self, LiveMessage};
use super::{new_epoch_token, record, Shared};
use crate::error::CoreResult;
use crate::hub::{Close, External, Message, Topic};

/// How often the epoch (and so the connection) is checked while idle.
const EPOCH_CHECK: Duration = Duration::from_secs(1);
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// Opens the reader's pub/sub connection on the live channel.
pub(crate) async fn subscribe(shared: &Shared) -> RedisResult<PubSub> {
    let mut pubsub = tokio::time::timeout(Duration::from_secs(5), shared.client.get_async_pubsub())
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
        shared.hub.end_all(&Close::HISTORY_LOST);
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
        shared.hub.end_all(&Close::LIVE_LOST);
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
    loop {
        tokio::select! {
            () = shared.stop.notified() => return false,
            msg = stream.next() => match msg {
                Some(msg) => {
                    shared.counters.received.fetch_add(1, Ordering::Relaxed);
                    if handle(shared, msg.get_payload_bytes().to_vec()).await.is_err() {
                        shared.counters.bad_messages.fetch_add(1, Ordering::Relaxed);
                    }
                }
                None => return !shared.hub.is_shut_down(),
            },
            _ = tick.tick() => {
                if shared.hub.is_shut_down() {
                    return false;
                }
                let Ok(mut conn) = shared.conn() else { return true };
                if check_epoch(shared, &mut conn).await.is_err() {
                    return true;
                }
            }
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
        if shared.hub.is_shut_down() {
            return None;
        }
        delay = (delay * 2).min(BACKOFF_MAX);
        let Ok(pubsub) = subscribe(shared).await else { continue };
        let conn = shared.conn.lock().clone();
        let mut conn = conn?;
        if check_epoch(shared, &mut conn).await.is_err() {
            continue;
        }
        shared.counters.reconnects.fetch_add(1, Ordering::Relaxed);
        shared.connected.store(true, Ordering::Release);
        return Some(pubsub);
    }
}

/// Mirrors one live event into its local topic, if this process follows that topic.
async fn handle(shared: &Shared, bytes: Vec<u8>) -> CoreResult<()> {
    let LiveMessage { node, sequence, end, record } = keys::parse_live(bytes)?;
    let Some(topic) = shared.hub.existing(node) else { return Ok(()) };
    let now = Instant::now();
    let message = Arc::new(to_message(sequence, end, record, now)?);
    let (_, head, fresh) = topic.bounds(now);
    if !fresh && sequence > head + 1 {
        fill(shared, &topic, node, head + 1, sequence - 1).await;
    }
    if let External::Gap { .. } = topic.insert_external(Arc::clone(&message), now) {
        topic.rebase(sequence);
        topic.insert_external(message, now);
    }
    Ok(())
}

/// Inserts `from..=to` from the node's stream; what Redis no longer has rebases the mirror.
async fn fill(shared: &Shared, topic: &Topic, node: u64, from: u64, to: u64) {
    shared.counters.gap_fills.fetch_add(1, Ordering::Relaxed);
    let from = from.max((to + 1).saturating_sub(shared.config.max_count as u64));
    let Ok(mut conn) = shared.conn() else { return };
    let Ok(entries) = xrange(&mut conn, &shared.keys.stream(node), Some(from), Some(to), None).await else { return };
    let now = Instant::now();
    for (i, (seq, end, record)) in entries.into_iter().enumerate() {
        if i == 0 && seq > from {
            // Redis no longer has `from..seq`: the mirror restarts at what it has.
            topic.rebase(seq);
        }
        if let Ok(message) = to_message(seq, end, record, now) {
            topic.insert_external(Arc::new(message), now);
        }
    }
}

/// A hub message from a stream entry or live event.
pub(crate) fn to_message(sequence: u64, end: bool, record: Vec<u8>, now: Instant) -> CoreResult<Message> {
    if end {
        Ok(Message::end_of_stream(sequence, now))
    } else {
        record::decode(record, sequence, now)
    }
}

/// `XRANGE key <from>-0 <to>-0 [COUNT n]` as `(sequence, end_of_stream, record)` triples;
/// `None` bounds mean the oldest / newest entry.
pub(crate) async fn xrange(
    conn: &mut ConnectionManager,
    key: &str,
    from: Option<u64>,
    to: Option<u64>,
    count: Option<usize>,
) -> RedisResult<Vec<(u64, bool, Vec<u8>)>> {
    let mut cmd = redis::cmd("XRANGE");
    cmd.arg(key);
    cmd.arg(from.map_or_else(|| "-".to_owned(), |s| format!("{s}-0")));
    cmd.arg(to.map_or_else(|| "+".to_owned(), |s| format!("{s}-0")));
    if let Some(n) = count {
        cmd.arg("COUNT").arg(n);
    }
    let value: Value = cmd.query_async(conn).await?;
    Ok(parse_entries(value))
}

/// Parses XRANGE's reply, skipping anything malformed.
pub(crate) fn parse_entries(value: Value) -> Vec<(u64, bool, Vec<u8>)> {
    let Value::Array(entries) = value else { return Vec::new() };
    let mut out = Vec::with_capacity(entries.len());
    for entry in entries {
        let Value::Array(mut parts) = entry else { continue };
        if parts.len() != 2 {
            continue;
        }
        let fields = parts.pop();
        let id = parts.pop();
        let seq = match id {
            Some(Value::BulkString(id)) => {
                std::str::from_utf8(&id).ok().and_then(|s| s.split('-').next()).and_then(|s| s.parse::<u64>().ok())
            }
            Some(Value::SimpleString(id)) => id.split('-').next().and_then(|s| s.parse::<u64>().ok()),
            _ => None,
        };
        let Some(seq) = seq else { continue };
        let Some(Value::Array(mut fields)) = fields else { continue };
        if fields.len() != 2 {
            continue;
        }
        let value = fields.pop();
        let field = fields.pop();
        let end = matches!(&field, Some(Value::BulkString(f)) if f == keys::END.as_bytes());
        let record = match value {
            Some(Value::BulkString(v)) => v,
            _ => continue,
        };
        out.push((seq, end, record));
    }
    out
}
