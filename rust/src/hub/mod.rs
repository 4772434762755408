//! The streaming hub: per-node streams with sequence numbers, retention, replay and fan-out,
//! by sequence (Tiled) and by entry id (Redis Streamer), kept in this process or in Redis.
//!
//! [`Hub`] is the one entry point. Its backend is chosen once, from [`HubConfig::backend`],
//! behind the [`backend::Backend`] trait; whatever it is, subscribers read this process's
//! [`topic::Topic`] rings (the streams in process, mirrors of Redis's otherwise) through ONE
//! subscription type per kind: [`Subscription`] by sequence, [`EntrySubscription`] by entry id.
//! A backend that keeps streams elsewhere also gives them a [`replay::Replay`] to read back
//! what the ring does not hold.
//!
//! Modules from the bottom up: pure data (`config`, `policy`, `close`, `entry_id`, `stats`,
//! `stream_info`), `message` and `notice`, `outgoing`, `budget` (the bytes retained in this
//! process over all topics), `ring` (one stream's state), `topic` (a ring behind a lock, with
//! its wake-up), `cursor` / `entry_cursor` (a subscriber's place and reads), `replay`,
//! `subscription` / `entry_subscription`, `topics` (the map), `backend` and `memory`, then
//! `Hub` here. No module imports one above it.

mod backend;
pub(crate) mod budget;
mod close;
mod config;
mod cursor;
mod entry_cursor;
pub mod entry_id;
mod entry_subscription;
pub(crate) mod memory;
mod message;
mod notice;
mod outgoing;
mod policy;
mod replay;
pub(crate) mod ring;
mod stats;
mod stream_info;
mod subscription;
pub(crate) mod topic;
pub(crate) mod topics;

#[cfg(test)]
mod budget_tests;
#[cfg(test)]
mod entries_tests;
#[cfg(test)]
mod policy_tests;
#[cfg(test)]
mod tests;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub(crate) use backend::Backend;
pub use close::Close;
pub use config::{
    redact, BackendConfig, HubConfig, Retention, RetentionOverride, DEFAULT_MAX_QUEUE_BYTES, DEFAULT_MAX_TOTAL_BYTES,
};
pub use entry_id::{EntryId, IdSpec, Start};
pub use entry_subscription::{EntryRead, EntrySubscription};
pub use message::{Extension, Message, MessageKind};
pub use notice::{GapReason, Notice};
pub use outgoing::{EntryBatch, Outgoing, OutgoingBody};
pub use policy::{EntryOptions, Overflow, Policy};
pub(crate) use replay::{Replay, ReplayBatch};
pub use stats::{BackendCounters, Stats};
pub use stream_info::StreamInfo;
pub use subscription::{Batch, Subscription};

use crate::codec::envelope::Header;
use crate::codec::Envelope;
use crate::error::{CoreError, CoreResult};
use topics::Topics;

/// The streaming hub of one process (see the module docs). Cheap to clone: clones share it.
#[derive(Clone)]
pub struct Hub {
    config: Arc<HubConfig>,
    topics: Arc<Topics>,
    backend: Arc<dyn Backend>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub").field("shared", &self.is_shared()).finish_non_exhaustive()
    }
}

impl Hub {
    /// A hub of validated settings over `backend`, made from the hub's rings (see
    /// `crate::backends`, where the backend a configuration names is chosen). `seq_ttl` is the
    /// rings' own sequence expiry (a Redis mirror never restarts sequences on its own).
    pub(crate) fn with_backend(
        config: HubConfig,
        seq_ttl: Duration,
        backend: impl FnOnce(&HubConfig, Arc<Topics>) -> CoreResult<Arc<dyn Backend>>,
    ) -> CoreResult<Hub> {
        let config = Arc::new(config.validate()?);
        let topics = Arc::new(Topics::new(config.retention(), seq_ttl, config.max_total_bytes));
        let backend = backend(&config, Arc::clone(&topics))?;
        Ok(Hub { config, topics, backend })
    }

    /// Connects the backend: in process nothing to do; Redis: the command connection, the
    /// publish script and this process's reader. Fails with `Unavailable` if unreachable.
    pub fn connect(&self) -> impl Future<Output = CoreResult<()>> + Send + 'static {
        self.backend.connect()
    }

    /// The settings.
    pub fn config(&self) -> &HubConfig {
        &self.config
    }

    /// Whether several processes share the streams (Redis).
    pub fn is_shared(&self) -> bool {
        self.backend.is_shared()
    }

    /// Whether the backend can be used now (in process: always).
    pub fn is_connected(&self) -> bool {
        self.backend.is_connected()
    }

    /// Publishes one validated message; returns its sequence. With Redis, one round trip; the
    /// message reaches this process's subscribers through the reader, like any other's.
    pub fn publish(&self, topic: u64, message: Outgoing) -> impl Future<Output = CoreResult<u64>> + Send + 'static {
        self.backend.publish(topic, vec![message])
    }

    /// Publishes validated messages in order, all or none (a writer's batch: with Redis, one
    /// round trip for all of them); returns the last one's sequence.
    pub fn publish_all(
        &self,
        topic: u64,
        messages: Vec<Outgoing>,
    ) -> impl Future<Output = CoreResult<u64>> + Send + 'static {
        self.backend.publish(topic, messages)
    }

    /// Publishes raw entries (Redis Streamer's push): each payload becomes one data message
    /// whose Tiled envelope is `header` plus `"shape": [len]`, the payload a `uint8` array;
    /// `ids[i]` is the id asked for payload `i`. The whole batch is validated when this is
    /// called, before anything is published (the error comes out of the future); an id not
    /// greater than the stream's last is refused when published: either way nothing of the
    /// batch is published. Returns the ids.
    pub fn publish_entries(
        &self,
        topic: u64,
        header: &Header,
        payloads: &[&[u8]],
        ids: &[IdSpec],
    ) -> impl Future<Output = CoreResult<Vec<EntryId>>> + Send + 'static {
        let batch = EntryBatch::new(header, payloads, ids);
        let backend = Arc::clone(&self.backend);
        async move { backend.publish_entries(topic, batch?).await }
    }

    /// [`Hub::publish_entries`] of an already validated batch.
    pub fn publish_batch(
        &self,
        topic: u64,
        batch: EntryBatch,
    ) -> impl Future<Output = CoreResult<Vec<EntryId>>> + Send + 'static {
        self.backend.publish_entries(topic, batch)
    }

    /// Appends an end-of-stream marker; returns its sequence.
    pub fn close_stream(&self, topic: u64) -> impl Future<Output = CoreResult<u64>> + Send + 'static {
        self.backend.close_stream(topic)
    }

    /// The topic's last sequence, 0 if it has none.
    pub fn current_sequence(&self, topic: u64) -> impl Future<Output = CoreResult<u64>> + Send + 'static {
        self.backend.current_sequence(topic)
    }

    /// The topic's stream description (`None` if it never had an entry).
    pub fn stream_info(&self, topic: u64) -> impl Future<Output = CoreResult<Option<StreamInfo>>> + Send + 'static {
        self.backend.stream_info(topic)
    }

    /// Gives `topic` its own retention (`None` limits: the hub's), applied at once.
    pub fn set_retention(
        &self,
        topic: u64,
        retention: RetentionOverride,
    ) -> impl Future<Output = CoreResult<()>> + Send + 'static {
        let checked = retention.apply(self.config.retention());
        let backend = Arc::clone(&self.backend);
        async move {
            checked?;
            backend.set_retention(topic, retention).await
        }
    }

    /// Subscribes by sequence (Tiled): live from the head (`start=None`), or replaying from
    /// `start` (0: the oldest retained). Registered when this returns: nothing published after
    /// is missed, and with `start=None` nothing published before is delivered. With Redis, a
    /// `start` older than this process's mirror is replayed from Redis inside the reads; while
    /// Redis is unreachable the subscription closes with 1012 at once.
    pub fn subscribe(
        &self,
        topic: u64,
        start: Option<u64>,
        envelope: Envelope,
        policy: Policy,
    ) -> impl Future<Output = CoreResult<Subscription>> + Send + 'static {
        let topics = Arc::clone(&self.topics);
        let backend = Arc::clone(&self.backend);
        async move {
            let ring = topics.topic(topic)?;
            let replay = backend.replay();
            let subscription = Subscription::register(ring, topic, envelope, policy, replay.clone(), Instant::now());
            match replay {
                None => subscription.start(start, None, Instant::now()),
                Some(_) if !backend.is_connected() => subscription.close_with(Close::LIVE_LOST),
                Some(replay) => match replay.head(topic).await {
                    Ok(head) => subscription.start(start, Some(head), Instant::now()),
                    Err(err) => subscription.close_with(Close::backend_failed(&err)),
                },
            }
            Ok(subscription)
        }
    }

    /// Subscribes by entry id (Redis Streamer's pull) to `topics`, each starting at
    /// `starts[i]`. Registered when this returns: nothing published after is missed. With
    /// Redis, a cursor older than this process's mirror is replayed from Redis inside the
    /// reads, and `$` on a stream this process did not follow yet is resolved from Redis here
    /// (entries up to the stream's last id then are skipped even if they reach this process
    /// later: they were published before this returned).
    pub fn subscribe_entries(
        &self,
        topics: &[u64],
        starts: &[Start],
        options: EntryOptions,
    ) -> impl Future<Output = CoreResult<EntrySubscription>> + Send + 'static {
        let checked = check_entry_subscription(topics.len(), starts.len(), options);
        let (ids, starts) = (topics.to_vec(), starts.to_vec());
        let map = Arc::clone(&self.topics);
        let backend = Arc::clone(&self.backend);
        async move {
            checked?;
            let rings = ids.iter().map(|id| Ok((*id, map.topic(*id)?))).collect::<CoreResult<Vec<_>>>()?;
            let subscription = EntrySubscription::register(rings, &starts, options, backend.replay(), Instant::now());
            let Some(replay) = subscription.replay().cloned() else { return Ok(subscription) };
            if !backend.is_connected() {
                subscription.close_with(Close::LIVE_LOST);
                return Ok(subscription);
            }
            for index in subscription.unresolved(&starts) {
                match replay.last_entry_id(subscription.topic_ids()[index]).await {
                    Ok(last) => subscription.settle_new(index, last),
                    Err(err) => subscription.close_with(Close::backend_failed(&err)),
                }
            }
            Ok(subscription)
        }
    }

    /// Closes the current subscribers of `topic` (all topics if `None`) with 1012 "Live
    /// subscription lost", e.g. when the backing store is lost. Topics and their retained
    /// messages stay: clients reconnect and resume from their last sequence.
    pub fn interrupt(&self, topic: Option<u64>) {
        self.topics.interrupt(topic);
    }

    /// Forgets a topic (node deleted); its subscribers close with 1001. With Redis, only this
    /// process's mirror: the keys in Redis expire by themselves, as Tiled's.
    pub fn drop_topic(&self, topic: u64) {
        self.topics.drop_topic(topic);
        self.backend.drop_topic(topic);
    }

    /// Closes every subscription with 1001, stops the backend; later calls fail with
    /// `ShutDown`.
    pub fn shutdown(&self) {
        self.topics.shutdown();
        self.backend.shutdown();
    }

    /// Whether [`Hub::shutdown`] has been called.
    pub fn is_shut_down(&self) -> bool {
        self.topics.is_shut_down()
    }

    /// This process's topics (the Redis mirrors, for the backend's tests).
    #[cfg(test)]
    pub(crate) fn topics(&self) -> &Topics {
        &self.topics
    }

    /// What subscriptions read back from the backend (for the backend's tests).
    #[cfg(test)]
    pub(crate) fn replay(&self) -> Option<Arc<dyn Replay>> {
        self.backend.replay()
    }

    /// This process's figures, after expiring old messages, with the backend's counters.
    pub fn stats(&self) -> Stats {
        let counts = self.topics.counts();
        let budget = self.topics.budget();
        let (evicted_messages, evicted_bytes) = budget.evictions();
        Stats {
            topics: counts.topics,
            retained_messages: counts.retained_messages,
            retained_bytes: counts.retained_bytes,
            subscribers: counts.subscribers,
            max_total_bytes: budget.max(),
            evicted_messages,
            evicted_bytes,
            connected: self.backend.is_connected(),
            backend: self.backend.counters(),
        }
    }
}

/// Checks the arguments of an entry subscription.
fn check_entry_subscription(topics: usize, starts: usize, options: EntryOptions) -> CoreResult<()> {
    if topics == 0 {
        return Err(CoreError::Config("an entry subscription needs at least one topic".into()));
    }
    if starts != topics {
        return Err(CoreError::Config(format!("{topics} topics but {starts} starting points")));
    }
    if options.count == 0 {
        return Err(CoreError::Config("count must be at least 1".into()));
    }
    Ok(())
}
