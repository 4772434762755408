//! `RedisBackend`: the hub's backend that keeps streams in Redis, shared by every worker
//! process.
//!
//! Design (Tiled's semantics, fewer round trips):
//! - **Publish** is one `EVALSHA` of [`keys::PUBLISH_SCRIPT`] (redis-rs `Script` loads it once
//!   and falls back to `EVAL` on `NOSCRIPT`) per batch of events: `INCR {p}seq:{node}` assigns
//!   each sequence, the entry id (`<ms>-<n>`, like `XADD *` from Redis's `TIME`, or the
//!   publisher's explicit id) follows the last one kept in `{p}entries:{node}`,
//!   `XADD {p}stream:{node} MAXLEN ~|= n <seq>-0 d <record> i <id> p <previous id>` appends the
//!   event (the stream ID is the sequence, so replay is `XRANGE <start>-0 +`), `PEXPIRE`
//!   refreshes the stream (data TTL), the counter (sequence TTL; `1 + data TTL` after a close,
//!   as Tiled) and the entries hash (sequence TTL), and
//!   `PUBLISH {p}live <node>:<seq>:<id>:<kind><record>` announces it. A Lua script is atomic,
//!   so a batch is either fully applied or not at all (an explicit id at or below the last one
//!   fails it before any write). The messages are validated and encoded (msgpack envelope with
//!   a placeholder sequence, [`record`]) *before* the round trip. The entry id travels beside
//!   the record (stream field, live-message header), so the script never copies a record to
//!   patch it; every process's mirror gets the same ids.
//! - **Large records never enter Lua**: one of [`keys::KEYED_MIN`] (64 KiB) or more is sent in
//!   the same pipeline as upload keys (`SET ... PX`, parts of at most [`keys::PART_MAX`]) that
//!   the script renames into the record's own keys (`{p}record:{node}:{seq}:{part}`, data TTL,
//!   deleted as they leave the retained window); the stream entry and the live announcement
//!   (`<node>:<seq>:<id>:s<parts>@<upload>`) carry no bytes, and only processes that follow
//!   the node read the parts (one `MGET`), except the publisher itself, whose mirror takes the
//!   record it kept until the announcement came back ([`own`]). Redis 7's Lua hashes every byte
//!   of every string it is given: passing a 256 KiB record through the script cost Redis's one
//!   thread ~0.7 ms per frame and held two workers to ~800 frames/s.
//! - **Retention** in Redis: count via `MAXLEN`; bytes approximately, by trimming to
//!   `max_bytes / size of this event` entries (exact for equal-sized frames, the common case);
//!   age: the stream key expires `max_age` after its last event (Tiled expires each event
//!   `max_age` after it was written; here the local mirror also drops events older than
//!   `max_age` since they were received). A node's own limits (`set_retention`)
//!   live in its entries hash, so the script applies them whichever process publishes; the
//!   live channel announces them to every mirror (a mirror also loads them once when it starts
//!   following a node).
//! - **One reader per process** ([`reader`]): a single pub/sub connection on `{p}live` receives
//!   every event once and inserts it, with its Redis-assigned sequence, into this process's
//!   topic (its mirror); all local subscribers then share that ring exactly as with the
//!   in-process backend. Only topics that have been subscribed to in this
//!   process are mirrored; events of other topics are ignored. A gap on the live feed is filled
//!   from `XRANGE` before the next event is inserted; an unfillable gap rebases the mirror.
//! - **Replay** ([`replay`], the hub's `Replay`): a subscription registers on the mirror at
//!   once (so nothing later is missed) and reads the node's sequence in Redis; a `start` older
//!   than the mirror is served first from `XRANGE` in batches, then the ring takes over with
//!   duplicates dropped by sequence. A subscriber without `start` skips what is at or below the
//!   sequence read, even if it reaches the mirror later (another process published it).
//! - **Epoch**: `{p}epoch` holds a random token (created if missing). The reader checks it
//!   every second and after each reconnect; a missing or different token means Redis lost its
//!   history (flushed, or restarted without persistence): every local subscriber is closed with
//!   `1012` (the stock client then reconnects with `start=last+1`, as after Tiled's own flush),
//!   counted in `stats()["epoch_changes"]`. A counter that restarts at 1 for a mirrored topic
//!   (sequence TTL expired, or a flush seen before the epoch check) restarts the local topic's
//!   sequence like the in-process hub's expiry.
//! - **Redis lost**: publish fails with [`CoreError::Unavailable`] (HTTP 503); the reader ends
//!   every local subscription with `(1012, "Live subscription lost")` and reconnects with
//!   backoff (50 ms doubling to 2 s); subscribing while disconnected gives a subscription that
//!   closes with 1012 at once. On recovery the epoch is checked and mirroring resumes.

mod endpoint;
mod keys;
mod own;
mod reader;
mod record;
mod replay;
mod streams;
#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use parking_lot::Mutex;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, PubSub};
use redis::{ErrorKind, RedisResult, ServerErrorKind};
use tokio::sync::Notify;

pub use keys::Keys;
use record::Record;

use crate::error::{CoreError, CoreResult};
use crate::hub::topics::Topics;
use crate::hub::{
    redact, Backend, BackendCounters, EntryBatch, EntryId, HubConfig, IdSpec, Outgoing, Replay, RetentionOverride,
    StreamInfo,
};

/// Counters of the Redis backend (see [`BackendCounters`]).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub epoch_changes: AtomicU64,
    pub reconnects: AtomicU64,
    pub gap_fills: AtomicU64,
    pub bad_messages: AtomicU64,
    pub received: AtomicU64,
}

/// Connections each process reads kept records on, besides its command connection. Redis writes
/// at most 64 KiB of a reply to one client per turn of its event loop (`NET_MAX_WRITES_PER_EVENT`,
/// unless `maxmemory` is reached), while it also takes in the writers' frames: on one connection
/// a following process read 256 KiB records slower than one writer published them and fell a
/// retained window (1,022 records) behind in the first second of a stream.
const READ_CONNECTIONS: usize = 4;

/// What the backend, its reader and the subscriptions' replays share.
pub(crate) struct Shared {
    pub url: String,
    pub keys: Keys,
    /// Most events retained per node, in Redis (and each mirror).
    pub max_count: usize,
    /// Most bytes retained per node (approximate in Redis, see the module docs).
    pub max_bytes: usize,
    /// How long events are retained (Tiled's `data_ttl`).
    pub max_age: Duration,
    /// A node without events for this long restarts its sequence at 1.
    pub seq_ttl: Duration,
    /// Where the master is (asked again at every reconnect: Sentinels follow a failover).
    pub endpoint: endpoint::Endpoint,
    pub publish_script: redis::Script,
    pub retention_script: redis::Script,
    /// This process's mirrors of the nodes it follows.
    pub topics: Arc<Topics>,
    pub conn: Mutex<Option<ConnectionManager>>,
    /// Connections the reader reads kept records on ([`READ_CONNECTIONS`]), taken in turn.
    pub reads: Mutex<Vec<ConnectionManager>>,
    /// Reads made so far (which read connection is next).
    pub read_turn: AtomicU64,
    pub connected: AtomicBool,
    pub stop: Notify,
    pub counters: Counters,
    pub epoch: Mutex<Option<String>>,
    /// Mirrored nodes whose retention override has been loaded from Redis.
    pub retention_loaded: Mutex<HashSet<u64>>,
    /// This process's part of its upload keys' names (random, see [`new_epoch_token`]).
    pub upload_token: String,
    /// Upload keys named so far.
    pub uploads: AtomicU64,
    /// Records this process uploaded for nodes it follows, until their announcement.
    pub own: own::OwnRecords,
}

impl Shared {
    /// `ShutDown` after shutdown, `Unavailable` while disconnected.
    fn check_connected(&self) -> CoreResult<()> {
        if self.topics.is_shut_down() {
            return Err(CoreError::ShutDown);
        }
        if !self.connected.load(Ordering::Acquire) {
            return Err(CoreError::Unavailable("Redis is not connected".into()));
        }
        Ok(())
    }

    /// The command connection, or `Unavailable` while disconnected.
    pub fn conn(&self) -> CoreResult<ConnectionManager> {
        self.check_connected()?;
        self.conn.lock().clone().ok_or_else(|| CoreError::Unavailable("Redis is not connected".into()))
    }

    /// A connection to read kept records on (the next of [`READ_CONNECTIONS`]), or
    /// `Unavailable` while disconnected.
    pub fn read_conn(&self) -> CoreResult<ConnectionManager> {
        self.check_connected()?;
        let reads = self.reads.lock();
        let turn = self.read_turn.fetch_add(1, Ordering::Relaxed) as usize;
        reads
            .get(turn % reads.len().max(1))
            .cloned()
            .ok_or_else(|| CoreError::Unavailable("Redis is not connected".into()))
    }

    /// Connects (command connection + the reader's pub/sub connection), loads the script,
    /// checks the epoch and starts the reader on the current Tokio runtime.
    async fn connect(self: Arc<Self>) -> CoreResult<()> {
        if self.topics.is_shut_down() {
            return Err(CoreError::ShutDown);
        }
        let url = redact(&self.url);
        let pubsub =
            self.open().await.map_err(|e| CoreError::Unavailable(format!("cannot reach Redis at {url}: {e}")))?;
        tokio::spawn(reader::run(Arc::clone(&self), pubsub));
        Ok(())
    }

    /// Finds the master, opens the command connection and the reader's pub/sub connection,
    /// loads the script and checks the epoch; then marks the backend connected. Used by the
    /// first connect and by every reconnect (so a failover is followed).
    pub(crate) async fn open(&self) -> redis::RedisResult<PubSub> {
        let client = self.endpoint.master().await?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(5)))
            .set_response_timeout(Some(Duration::from_secs(30)))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(1));
        let mut conn = client.get_connection_manager_with_config(config.clone()).await?;
        let mut reads = Vec::with_capacity(READ_CONNECTIONS);
        for _ in 0..READ_CONNECTIONS {
            reads.push(client.get_connection_manager_with_config(config.clone()).await?);
        }
        self.publish_script.prepare_invoke().load_async(&mut conn).await?;
        let pubsub = reader::subscribe(self, &client).await?;
        reader::check_epoch(self, &mut conn).await?;
        *self.conn.lock() = Some(conn);
        *self.reads.lock() = reads;
        self.connected.store(true, Ordering::Release);
        Ok(pubsub)
    }

    /// Runs the publish script on a batch; returns the last sequence and the entry ids. Records
    /// of [`keys::KEYED_MIN`] bytes or more are uploaded beside it, in the same pipeline; if
    /// this process follows the node, they are also kept for its mirror ([`own`]).
    async fn run_script(
        &self,
        topic: u64,
        kind: &str,
        events: Vec<(IdSpec, Record)>,
    ) -> CoreResult<(u64, Vec<EntryId>)> {
        let mut conn = self.conn()?;
        let followed = self.topics.existing(topic).is_some();
        let mut pipe = redis::pipe();
        let mut invocation = self.publish_script.key(self.keys.sequence(topic));
        invocation
            .key(self.keys.stream(topic))
            .key(self.keys.entries(topic))
            .arg(kind)
            .arg(self.max_count)
            .arg(self.max_bytes)
            .arg(keys::millis(self.max_age))
            .arg(keys::millis(self.seq_ttl))
            .arg(self.keys.live())
            .arg(topic)
            .arg(self.keys.record_prefix(topic));
        let mut kept = Vec::new();
        let now = Instant::now();
        for (spec, record) in events {
            let len = record.len();
            if len >= keys::KEYED_MIN {
                let upload = self.keys.upload(&self.next_upload_token());
                let parts = len.div_ceil(keys::PART_MAX);
                for (i, at) in (0..len).step_by(keys::PART_MAX).enumerate() {
                    let end = (at + keys::PART_MAX).min(len);
                    let mut set = redis::Cmd::with_capacity(5, end - at + upload.len() + 32);
                    set.arg("SET").arg(format!("{upload}:{}", i + 1));
                    set.arg(record.bytes(at..end)).arg("PX").arg(keys::UPLOAD_TTL_MS);
                    pipe.add_command(set).ignore();
                }
                invocation.arg(spec.wire()).arg("").arg(&upload).arg(parts);
                if followed {
                    // Kept before the round trip: the announcement may reach the reader first.
                    self.own.keep(upload.clone(), record, now);
                    kept.push(upload);
                }
            } else {
                invocation.arg(spec.wire()).arg(record.bytes(0..len)).arg("").arg(0);
            }
        }
        pipe.invoke_script(&invocation);
        let outcome = self.send(&mut conn, &pipe, &invocation).await;
        if outcome.is_err() {
            self.own.forget(&kept);
        }
        outcome
    }

    /// Sends a publish pipeline (loading the script once more if Redis lost it); returns the
    /// last sequence and the entry ids.
    async fn send(
        &self,
        conn: &mut ConnectionManager,
        pipe: &redis::Pipeline,
        invocation: &redis::ScriptInvocation<'_>,
    ) -> CoreResult<(u64, Vec<EntryId>)> {
        let mut replies: RedisResult<(Vec<redis::Value>,)> = pipe.query_async(conn).await;
        if replies.as_ref().is_err_and(|e| e.kind() == ErrorKind::Server(ServerErrorKind::NoScript)) {
            // Redis lost its script cache (restarted, SCRIPT FLUSH): load it, send the batch again.
            invocation.load_async(conn).await.map_err(|e| unavailable(&e))?;
            replies = pipe.query_async(conn).await;
        }
        let (reply,) = replies.map_err(script_error)?;
        let mut reply = reply.into_iter();
        let seq = match reply.next() {
            Some(redis::Value::Int(seq)) => u64::try_from(seq).unwrap_or_default(),
            _ => return Err(CoreError::Unavailable("Redis: unexpected reply of the publish script".into())),
        };
        let ids = reply
            .map(|v| match v {
                redis::Value::BulkString(b) => std::str::from_utf8(&b).ok().and_then(|t| EntryId::parse(t).ok()),
                _ => None,
            })
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| CoreError::Unavailable("Redis: unexpected entry id from the publish script".into()))?;
        Ok((seq, ids))
    }

    /// A token no other upload of any process uses: this process's random token and a count.
    fn next_upload_token(&self) -> String {
        format!("{}:{}", self.upload_token, self.uploads.fetch_add(1, Ordering::Relaxed))
    }

    /// The node's last sequence in Redis (0 if none).
    pub(crate) async fn current_sequence(&self, topic: u64) -> CoreResult<u64> {
        let mut conn = self.conn()?;
        let seq: Option<u64> = redis::cmd("GET")
            .arg(self.keys.sequence(topic))
            .query_async(&mut conn)
            .await
            .map_err(|e| unavailable(&e))?;
        Ok(seq.unwrap_or(0))
    }
}

/// Maps a Redis error to `Unavailable` (every Redis failure means the event was not applied).
pub(crate) fn unavailable(err: &redis::RedisError) -> CoreError {
    CoreError::Unavailable(format!("Redis: {err}"))
}

/// Maps an error of the publish pipeline: the script's refusal of an entry id, or
/// `Unavailable`.
fn script_error(err: redis::RedisError) -> CoreError {
    let unavailable = unavailable(&err);
    let refused = err.into_server_errors().and_then(|errors| {
        errors.iter().find(|(_, e)| e.code() == "ENTRYID").and_then(|(_, e)| e.details()).map(|d| d.trim().to_owned())
    });
    refused.map_or(unavailable, CoreError::EntryId)
}

/// The wire record of a validated message (see [`record`]).
fn record_of(message: Outgoing) -> CoreResult<Record> {
    let (header_json, hint, draft) = message.into_parts();
    record::encode(&header_json, hint.as_ref().map(|(d, s)| (d.as_str(), s.as_slice())), draft)
}

/// The Redis backend (see the module docs).
pub(crate) struct RedisBackend {
    shared: Arc<Shared>,
}

impl RedisBackend {
    /// Checks the URL's form; does not connect. `topics` are this process's mirrors.
    pub(crate) fn new(config: &HubConfig, url: &str, key_prefix: &str, topics: Arc<Topics>) -> CoreResult<Self> {
        let endpoint = endpoint::Endpoint::parse(url)?;
        let shared = Arc::new(Shared {
            url: url.to_owned(),
            keys: Keys::new(key_prefix),
            max_count: config.max_count,
            max_bytes: config.max_bytes,
            max_age: config.max_age,
            seq_ttl: config.seq_ttl,
            endpoint,
            publish_script: redis::Script::new(keys::PUBLISH_SCRIPT),
            retention_script: redis::Script::new(keys::RETENTION_SCRIPT),
            topics,
            conn: Mutex::new(None),
            reads: Mutex::new(Vec::new()),
            read_turn: AtomicU64::new(0),
            connected: AtomicBool::new(false),
            stop: Notify::new(),
            counters: Counters::default(),
            epoch: Mutex::new(None),
            retention_loaded: Mutex::new(HashSet::new()),
            upload_token: new_epoch_token(),
            uploads: AtomicU64::new(0),
            own: own::OwnRecords::default(),
        });
        Ok(Self { shared })
    }

    /// A future that runs `op` on the shared state.
    fn run<T, F>(&self, op: impl FnOnce(Arc<Shared>) -> F + Send + 'static) -> BoxFuture<'static, CoreResult<T>>
    where
        F: std::future::Future<Output = CoreResult<T>> + Send + 'static,
    {
        let shared = Arc::clone(&self.shared);
        Box::pin(async move { op(shared).await })
    }
}

impl Backend for RedisBackend {
    fn connect(&self) -> BoxFuture<'static, CoreResult<()>> {
        self.run(Shared::connect)
    }

    fn is_shared(&self) -> bool {
        true
    }

    fn is_connected(&self) -> bool {
        self.shared.connected.load(Ordering::Acquire)
    }

    fn publish(&self, topic: u64, messages: Vec<Outgoing>) -> BoxFuture<'static, CoreResult<u64>> {
        // Encoded before the round trip (and before the future is polled).
        let events: CoreResult<Vec<_>> =
            messages.into_iter().map(|message| Ok((IdSpec::Auto, record_of(message)?))).collect();
        self.run(move |shared| async move {
            let events = events?;
            if events.is_empty() {
                return Err(CoreError::Envelope("no message to publish".into()));
            }
            Ok(shared.run_script(topic, keys::DATA, events).await?.0)
        })
    }

    fn publish_entries(&self, topic: u64, batch: EntryBatch) -> BoxFuture<'static, CoreResult<Vec<EntryId>>> {
        let events: CoreResult<Vec<_>> =
            batch.into_items().into_iter().map(|(spec, message)| Ok((spec, record_of(message)?))).collect();
        self.run(move |shared| async move {
            let events = events?;
            if events.is_empty() {
                return Ok(Vec::new());
            }
            Ok(shared.run_script(topic, keys::DATA, events).await?.1)
        })
    }

    fn close_stream(&self, topic: u64) -> BoxFuture<'static, CoreResult<u64>> {
        self.run(move |shared| async move {
            Ok(shared.run_script(topic, keys::END, vec![(IdSpec::Auto, Record::default())]).await?.0)
        })
    }

    fn current_sequence(&self, topic: u64) -> BoxFuture<'static, CoreResult<u64>> {
        self.run(move |shared| async move { shared.current_sequence(topic).await })
    }

    fn stream_info(&self, topic: u64) -> BoxFuture<'static, CoreResult<Option<StreamInfo>>> {
        self.run(move |shared| async move { streams::stream_info(&shared, topic).await })
    }

    fn set_retention(&self, topic: u64, retention: RetentionOverride) -> BoxFuture<'static, CoreResult<()>> {
        self.run(move |shared| async move { streams::set_retention(&shared, topic, retention).await })
    }

    fn replay(&self) -> Option<Arc<dyn Replay>> {
        Some(Arc::clone(&self.shared) as Arc<dyn Replay>)
    }

    fn drop_topic(&self, topic: u64) {
        self.shared.retention_loaded.lock().remove(&topic);
    }

    fn shutdown(&self) {
        self.shared.connected.store(false, Ordering::Release);
        self.shared.stop.notify_one();
        self.shared.conn.lock().take();
        self.shared.reads.lock().clear();
    }

    fn counters(&self) -> BackendCounters {
        let c = &self.shared.counters;
        BackendCounters {
            received: c.received.load(Ordering::Relaxed),
            reconnects: c.reconnects.load(Ordering::Relaxed),
            epoch_changes: c.epoch_changes.load(Ordering::Relaxed),
            gap_fills: c.gap_fills.load(Ordering::Relaxed),
            bad_messages: c.bad_messages.load(Ordering::Relaxed),
        }
    }
}

impl Drop for RedisBackend {
    fn drop(&mut self) {
        self.shared.stop.notify_one();
    }
}

/// A fresh random-enough epoch token (time, process and address entropy; not a secret).
pub(crate) fn new_epoch_token() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos());
    h.write_u32(std::process::id());
    let a = h.finish();
    let mut h2 = std::collections::hash_map::RandomState::new().build_hasher();
    h2.write_u64(a);
    h2.write_u64(Instant::now().elapsed().as_nanos() as u64);
    format!("{a:016x}{:016x}", h2.finish())
}
