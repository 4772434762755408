//! The Redis backend: streams shared by every worker process through one Redis.
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
//! - **Retention** in Redis: count via `MAXLEN`; bytes approximately, by trimming to
//!   `max_bytes / size of this event` entries (exact for equal-sized frames, the common case);
//!   age: the stream key expires `data_ttl` after its last event (Tiled expires each event
//!   `data_ttl` after it was written; here the local mirror also drops events older than
//!   `data_ttl` since they were received). A node's own limits ([`RedisHub::set_retention`])
//!   live in its entries hash, so the script applies them whichever process publishes; the
//!   live channel announces them to every mirror (a mirror also loads them once when it starts
//!   following a node).
//! - **One reader per process** ([`reader`]): a single pub/sub connection on `{p}live` receives
//!   every event once and inserts it, with its Redis-assigned sequence, into the local [`Hub`]
//!   topic ([`crate::hub::Topic::insert_external`]); all local subscribers then share that ring
//!   exactly as with the in-process hub. Only topics that have been subscribed to in this
//!   process are mirrored; events of other topics are ignored. A gap on the live feed is filled
//!   from `XRANGE` before the next event is inserted; an unfillable gap rebases the mirror.
//! - **Replay** ([`RedisSubscription`]): a subscription registers on the local topic at once
//!   (so nothing later is missed); a `start` older than the local ring is served first from
//!   `XRANGE` in batches, then the local ring takes over with duplicates dropped by sequence.
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

mod entries;
mod keys;
mod reader;
mod record;
mod subscription;
#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::Notify;

pub use entries::RedisEntrySubscription;
pub use keys::Keys;
pub use subscription::RedisSubscription;

use crate::codec::envelope::{Draft, Header, ENTRY_DTYPE};
use crate::codec::Envelope;
use crate::error::{CoreError, CoreResult};
use crate::hub::{entry_drafts, EntryId, Hub, HubConfig, IdSpec, Policy};

/// Limits and TTLs of a Redis-backed hub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisConfig {
    /// `redis://[:password@]host:port[/db]` or `rediss://...`.
    pub url: String,
    /// Most events retained per node (in Redis and in each process's mirror).
    pub max_count: usize,
    /// Most bytes retained per node (approximate in Redis, see the module docs).
    pub max_bytes: usize,
    /// Tiled's `data_ttl`: how long events are retained.
    pub data_ttl: Duration,
    /// Tiled's `seq_ttl`: a node without events for this long restarts its sequence at 1.
    pub seq_ttl: Duration,
    /// Prefix of every key and of the live channel.
    pub key_prefix: String,
}

/// Counters of the Redis backend (added to `Hub::stats` by the binding).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub epoch_changes: AtomicU64,
    pub reconnects: AtomicU64,
    pub gap_fills: AtomicU64,
    pub bad_messages: AtomicU64,
    pub received: AtomicU64,
}

/// What the hub, its reader and its subscriptions share.
pub(crate) struct Shared {
    pub config: RedisConfig,
    pub keys: Keys,
    pub client: redis::Client,
    pub hub: Hub,
    pub conn: Mutex<Option<ConnectionManager>>,
    pub connected: AtomicBool,
    pub stop: Notify,
    pub counters: Counters,
    pub epoch: Mutex<Option<String>>,
    /// Mirrored nodes whose retention override has been loaded from Redis.
    pub retention_loaded: Mutex<HashSet<u64>>,
}

impl Shared {
    /// The command connection, or `Unavailable` while disconnected.
    pub fn conn(&self) -> CoreResult<ConnectionManager> {
        if self.hub.is_shut_down() {
            return Err(CoreError::ShutDown);
        }
        if !self.connected.load(Ordering::Acquire) {
            return Err(CoreError::Unavailable("Redis is not connected".into()));
        }
        self.conn.lock().clone().ok_or_else(|| CoreError::Unavailable("Redis is not connected".into()))
    }
}

/// Maps a Redis error to `Unavailable` (every Redis failure means the event was not applied).
pub(crate) fn unavailable(err: &redis::RedisError) -> CoreError {
    CoreError::Unavailable(format!("Redis: {err}"))
}

/// Maps a publish script error: its refusal of an entry id, or `Unavailable`.
fn script_error(err: &redis::RedisError) -> CoreError {
    match (err.code(), err.detail()) {
        (Some("ENTRYID"), Some(detail)) => CoreError::EntryId(detail.trim().to_owned()),
        _ => unavailable(err),
    }
}

/// A streaming hub backed by Redis (see the module docs).
pub struct RedisHub {
    shared: Arc<Shared>,
    script: redis::Script,
    retention: redis::Script,
}

impl RedisHub {
    /// Validates the configuration and the URL; does not connect.
    pub fn new(config: RedisConfig) -> CoreResult<Self> {
        let client = redis::Client::open(config.url.as_str())
            .map_err(|e| CoreError::Config(format!("invalid Redis URL {:?}: {e}", redact(&config.url))))?;
        // The mirror never restarts sequences on its own: Redis's counter TTL decides.
        let hub = Hub::new(HubConfig {
            max_count: config.max_count,
            max_bytes: config.max_bytes,
            max_age: config.data_ttl,
            seq_ttl: Duration::from_secs(u64::MAX / 4),
        })?;
        let shared = Arc::new(Shared {
            keys: Keys::new(&config.key_prefix),
            config,
            client,
            hub,
            conn: Mutex::new(None),
            connected: AtomicBool::new(false),
            stop: Notify::new(),
            counters: Counters::default(),
            epoch: Mutex::new(None),
            retention_loaded: Mutex::new(HashSet::new()),
        });
        Ok(Self {
            shared,
            script: redis::Script::new(keys::PUBLISH_SCRIPT),
            retention: redis::Script::new(keys::RETENTION_SCRIPT),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &RedisConfig {
        &self.shared.config
    }

    /// Connects (command connection + the reader's pub/sub connection), loads the script,
    /// checks the epoch and starts the reader on the current Tokio runtime.
    pub async fn connect(&self) -> CoreResult<()> {
        let shared = &self.shared;
        if shared.hub.is_shut_down() {
            return Err(CoreError::ShutDown);
        }
        let url = redact(&shared.config.url);
        let unreachable = |e: redis::RedisError| CoreError::Unavailable(format!("cannot reach Redis at {url}: {e}"));
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(5)))
            .set_response_timeout(Some(Duration::from_secs(30)))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(1));
        let mut conn = shared.client.get_connection_manager_with_config(config).await.map_err(unreachable)?;
        self.script.prepare_invoke().load_async(&mut conn).await.map_err(unreachable)?;
        let pubsub = reader::subscribe(shared).await.map_err(unreachable)?;
        reader::check_epoch(shared, &mut conn).await.map_err(unreachable)?;
        *shared.conn.lock() = Some(conn);
        shared.connected.store(true, Ordering::Release);
        tokio::spawn(reader::run(Arc::clone(shared), pubsub));
        Ok(())
    }

    /// Validates and encodes the message, then assigns its sequence and stores and announces
    /// it in one Redis round trip. An invalid message consumes no sequence number.
    pub fn prepare(
        &self,
        header_json: &[u8],
        payload: Option<&[u8]>,
        array_hint: Option<(&str, Vec<usize>)>,
        json_payload: Option<&[u8]>,
    ) -> CoreResult<Vec<u8>> {
        let hint = array_hint.as_ref().map(|(d, s)| (*d, s.clone()));
        let mut draft = Draft::new(header_json, payload, hint)?;
        if let Some(json) = json_payload {
            draft = draft.with_json_payload(json)?;
        }
        record::encode(header_json, array_hint.as_ref().map(|(d, s)| (*d, s.as_slice())), draft)
    }

    /// Publishes a record made by [`RedisHub::prepare`]; returns its sequence.
    pub async fn publish_prepared(&self, topic: u64, record: Vec<u8>) -> CoreResult<u64> {
        Ok(self.run_script(topic, keys::DATA, vec![(IdSpec::Auto, record)]).await?.0)
    }

    /// Validates and encodes a batch of raw entries (see [`Hub::publish_entries`]): the
    /// records to hand to [`RedisHub::publish_prepared_entries`].
    pub fn prepare_entries(
        &self,
        header: &Header,
        payloads: &[&[u8]],
        ids: &[IdSpec],
    ) -> CoreResult<Vec<(IdSpec, Vec<u8>)>> {
        let drafts = entry_drafts(header, payloads, ids)?;
        let events = drafts.into_iter().zip(payloads).zip(ids).map(|((draft, payload), spec)| {
            let header_json = draft.header_json();
            Ok((*spec, record::encode(&header_json, Some((ENTRY_DTYPE, &[payload.len()])), draft)?))
        });
        events.collect()
    }

    /// Publishes prepared entries in one round trip; returns their ids. If an explicit id is
    /// not greater than the last one, nothing is published ([`CoreError::EntryId`]).
    pub async fn publish_prepared_entries(
        &self,
        topic: u64,
        events: Vec<(IdSpec, Vec<u8>)>,
    ) -> CoreResult<Vec<EntryId>> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        Ok(self.run_script(topic, keys::DATA, events).await?.1)
    }

    /// [`RedisHub::prepare`] then [`RedisHub::publish_prepared`].
    pub async fn publish(
        &self,
        topic: u64,
        header_json: &[u8],
        payload: Option<&[u8]>,
        array_hint: Option<(&str, Vec<usize>)>,
    ) -> CoreResult<u64> {
        let record = self.prepare(header_json, payload, array_hint, None)?;
        self.publish_prepared(topic, record).await
    }

    /// Appends an end-of-stream marker; returns its sequence.
    pub async fn close_stream(&self, topic: u64) -> CoreResult<u64> {
        Ok(self.run_script(topic, keys::END, vec![(IdSpec::Auto, Vec::new())]).await?.0)
    }

    /// Runs the publish script on a batch; returns the last sequence and the entry ids.
    async fn run_script(
        &self,
        topic: u64,
        kind: &str,
        events: Vec<(IdSpec, Vec<u8>)>,
    ) -> CoreResult<(u64, Vec<EntryId>)> {
        let shared = &self.shared;
        let mut conn = shared.conn()?;
        let c = &shared.config;
        let mut invocation = self.script.key(shared.keys.sequence(topic));
        invocation
            .key(shared.keys.stream(topic))
            .key(shared.keys.entries(topic))
            .arg(kind)
            .arg(c.max_count)
            .arg(c.max_bytes)
            .arg(keys::millis(c.data_ttl))
            .arg(keys::millis(c.seq_ttl))
            .arg(shared.keys.live())
            .arg(topic);
        for (spec, record) in events {
            invocation.arg(spec.wire()).arg(record);
        }
        let reply: Vec<redis::Value> = invocation.invoke_async(&mut conn).await.map_err(|e| script_error(&e))?;
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

    /// Subscribes from the head (`start=None`) or replays from `start` (0 = oldest retained),
    /// from Redis where the local mirror does not reach back far enough.
    pub fn subscribe(&self, topic: u64, start: Option<u64>, envelope: Envelope) -> CoreResult<RedisSubscription> {
        RedisSubscription::new(&self.shared, topic, start, envelope, Policy::default())
    }

    /// [`RedisHub::subscribe`] with a subscriber policy (gap notices, backlog cap) applied to the
    /// live part; the replay from Redis before it is delivered whole.
    pub fn subscribe_with(
        &self,
        topic: u64,
        start: Option<u64>,
        envelope: Envelope,
        policy: Policy,
    ) -> CoreResult<RedisSubscription> {
        RedisSubscription::new(&self.shared, topic, start, envelope, policy)
    }

    /// Closes this process's current subscribers (of `topic`, or all) with 1012.
    pub fn interrupt(&self, topic: Option<u64>) {
        self.shared.hub.interrupt(topic);
    }

    /// The node's last sequence in Redis (0 if none).
    pub async fn current_sequence(&self, topic: u64) -> CoreResult<u64> {
        let mut conn = self.shared.conn()?;
        let seq: Option<u64> = redis::cmd("GET")
            .arg(self.shared.keys.sequence(topic))
            .query_async(&mut conn)
            .await
            .map_err(|e| unavailable(&e))?;
        Ok(seq.unwrap_or(0))
    }

    /// Forgets the local mirror of a topic (node deleted; its Redis keys expire, as Tiled's).
    pub fn drop_topic(&self, topic: u64) {
        self.shared.hub.drop_topic(topic);
        self.shared.retention_loaded.lock().remove(&topic);
    }

    /// Closes every local subscriber with 1001, stops the reader, refuses later calls.
    pub fn shutdown(&self) {
        self.shared.hub.shutdown();
        self.shared.connected.store(false, Ordering::Release);
        self.shared.stop.notify_one();
        self.shared.conn.lock().take();
    }

    /// Whether the backend is connected now.
    pub fn is_connected(&self) -> bool {
        self.shared.connected.load(Ordering::Acquire)
    }

    /// Local hub statistics plus the backend's counters, as `(name, value)` pairs.
    pub fn stats(&self) -> Vec<(&'static str, u64)> {
        let s = self.shared.hub.stats();
        let c = &self.shared.counters;
        let n = |v: usize| v as u64;
        vec![
            ("topics", n(s.topics)),
            ("retained_messages", n(s.retained_messages)),
            ("retained_bytes", n(s.retained_bytes)),
            ("subscribers", n(s.subscribers)),
            ("connected", u64::from(self.is_connected())),
            ("received", c.received.load(Ordering::Relaxed)),
            ("reconnects", c.reconnects.load(Ordering::Relaxed)),
            ("epoch_changes", c.epoch_changes.load(Ordering::Relaxed)),
            ("gap_fills", c.gap_fills.load(Ordering::Relaxed)),
            ("bad_messages", c.bad_messages.load(Ordering::Relaxed)),
        ]
    }
}

impl Drop for RedisHub {
    fn drop(&mut self) {
        self.shared.stop.notify_one();
    }
}

/// The URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => format!("{}://***@{}", &url[..scheme], &url[at + 1..]),
        _ => url.to_owned(),
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
