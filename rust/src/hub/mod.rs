//! `Hub`: the map of topics (node id -> `Topic`), its retention configuration, and the
//! publish / subscribe / close / drop / shutdown entry points, by sequence (Tiled) and by entry
//! id (Redis Streamer).

mod entries;
#[cfg(test)]
mod entries_tests;
pub mod entry_id;
mod message;
mod policy;
#[cfg(test)]
mod policy_tests;
mod subscriber;
#[cfg(test)]
mod tests;
mod topic;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::RwLock;

pub use message::{Close, Extension, Message, MessageKind};
pub use policy::{GapReason, Overflow, Policy, DEFAULT_MAX_QUEUE_BYTES};

/// A `stream-gap` notice frame for one subscriber (not retained, sequence 0): sequences
/// `from..=to` will never be delivered. Used by backends that replay from elsewhere.
pub fn gap_notice(from: u64, to: u64, reason: GapReason) -> std::sync::Arc<Message> {
    policy::Notice::Gap { from, to, reason }.message()
}
/// A `stream-epoch` notice frame for one subscriber (not retained, sequence 0): it resumed
/// after `last_sequence`, but the stream's sequence is now `current` (restarted or flushed).
pub fn epoch_notice(last_sequence: u64, current: u64) -> std::sync::Arc<Message> {
    let reason = "start is beyond the current sequence: the stream restarted or its history was lost";
    policy::Notice::Epoch { last_sequence, current, reason }.message()
}
pub use entries::{EntryOptions, EntryRead, EntrySubscription, StreamInfo};
pub use entry_id::{EntryId, IdSpec, Start};
pub use subscriber::{Batch, Subscription};
pub use topic::{External, Topic};

use crate::codec::envelope::{Draft, Header};
use crate::codec::Envelope;
use crate::error::{CoreError, CoreResult};

/// Retention and expiry limits, applied to each topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HubConfig {
    /// Most messages retained per topic (>= 1).
    pub max_count: usize,
    /// Most envelope bytes retained per topic (the newest message is always kept).
    pub max_bytes: usize,
    /// Messages older than this are evicted; a stream closed this long ago restarts at 1.
    pub max_age: Duration,
    /// A topic without events for this long restarts its sequence at 1.
    pub seq_ttl: Duration,
}

impl Default for HubConfig {
    fn default() -> Self {
        Self {
            max_count: 10_000,
            max_bytes: 256 * 1024 * 1024,
            max_age: Duration::from_secs(3600),
            seq_ttl: Duration::from_secs(30 * 24 * 3600),
        }
    }
}

/// Retention limits of one topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Most messages retained (>= 1).
    pub max_count: usize,
    /// Most envelope bytes retained (the newest message is always kept).
    pub max_bytes: usize,
    /// Messages older than this are evicted.
    pub max_age: Duration,
}

/// A topic's own retention: each `None` keeps the hub's limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RetentionOverride {
    /// Most messages retained (>= 1).
    pub max_count: Option<usize>,
    /// Most envelope bytes retained.
    pub max_bytes: Option<usize>,
    /// Longest a message is retained.
    pub max_age: Option<Duration>,
}

impl RetentionOverride {
    /// The limits with this override applied to `base`.
    pub fn apply(self, base: Retention) -> CoreResult<Retention> {
        if self.max_count == Some(0) {
            return Err(CoreError::Config("max_count must be at least 1".into()));
        }
        Ok(Retention {
            max_count: self.max_count.unwrap_or(base.max_count),
            max_bytes: self.max_bytes.unwrap_or(base.max_bytes),
            max_age: self.max_age.unwrap_or(base.max_age),
        })
    }
}

impl HubConfig {
    /// The retention every topic starts with.
    pub fn retention(&self) -> Retention {
        Retention { max_count: self.max_count, max_bytes: self.max_bytes, max_age: self.max_age }
    }

    /// Checks the limits are usable.
    pub fn validate(self) -> CoreResult<Self> {
        if self.max_count == 0 {
            return Err(CoreError::Config("max_count must be at least 1".into()));
        }
        Ok(self)
    }
}

/// Hub statistics (see `Hub::stats`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Topics known to the hub.
    pub topics: usize,
    /// Messages retained over all topics (after expiry).
    pub retained_messages: usize,
    /// Envelope bytes retained over all topics.
    pub retained_bytes: usize,
    /// Live subscriptions.
    pub subscribers: usize,
}

/// The streaming hub: per-topic sequences, retention rings and fan-out.
#[derive(Debug)]
pub struct Hub {
    config: HubConfig,
    topics: RwLock<HashMap<u64, Arc<Topic>>>,
    shut_down: AtomicBool,
}

impl Hub {
    /// A hub with validated limits.
    pub fn new(config: HubConfig) -> CoreResult<Self> {
        Ok(Self { config: config.validate()?, topics: RwLock::default(), shut_down: AtomicBool::new(false) })
    }

    /// The hub's limits.
    pub fn config(&self) -> HubConfig {
        self.config
    }

    fn topic(&self, id: u64) -> CoreResult<Arc<Topic>> {
        {
            let topics = self.topics.read();
            if self.shut_down.load(Ordering::Acquire) {
                return Err(CoreError::ShutDown);
            }
            if let Some(topic) = topics.get(&id) {
                return Ok(Arc::clone(topic));
            }
        }
        let mut topics = self.topics.write();
        if self.shut_down.load(Ordering::Acquire) {
            return Err(CoreError::ShutDown);
        }
        Ok(Arc::clone(topics.entry(id).or_insert_with(|| Arc::new(Topic::new(self.config)))))
    }

    /// Validates and encodes the message, then assigns it the topic's next sequence.
    /// An invalid message consumes no sequence number.
    pub fn publish(
        &self,
        topic: u64,
        header_json: &[u8],
        payload: Option<&[u8]>,
        array_hint: Option<(&str, Vec<usize>)>,
    ) -> CoreResult<u64> {
        self.publish_draft(topic, Draft::new(header_json, payload, array_hint)?)
    }

    /// Assigns the topic's next sequence to an already validated draft.
    pub fn publish_draft(&self, topic: u64, draft: Draft) -> CoreResult<u64> {
        Ok(self.topic(topic)?.publish(draft, Instant::now()))
    }

    /// Publishes raw entries (Redis Streamer's push): each payload becomes one data message
    /// whose Tiled envelope is `header` plus `"shape": [len]` with the payload as a `uint8`
    /// array. `ids[i]` is the id asked for payload `i`. The whole batch is validated (envelopes
    /// and ids) before anything is assigned: on error nothing is published. Returns the ids.
    pub fn publish_entries(
        &self,
        topic: u64,
        header: &Header,
        payloads: &[&[u8]],
        ids: &[IdSpec],
    ) -> CoreResult<Vec<EntryId>> {
        let drafts = entry_drafts(header, payloads, ids)?;
        let published = self.topic(topic)?.publish_batch(drafts, ids, Instant::now(), entry_id::wall_ms())?;
        Ok(published.into_iter().map(|(_, id)| id).collect())
    }

    /// Subscribes by entry id to `topics` (each starting at `starts[i]`).
    pub fn subscribe_entries(
        &self,
        topics: &[u64],
        starts: &[Start],
        options: EntryOptions,
    ) -> CoreResult<EntrySubscription> {
        check_entry_subscription(topics.len(), starts.len(), options)?;
        let topics = topics.iter().map(|id| self.topic(*id)).collect::<CoreResult<Vec<_>>>()?;
        Ok(EntrySubscription::new(topics, starts, options, Instant::now()))
    }

    /// The topic's stream description (`None` if it never had an entry).
    pub fn stream_info(&self, topic: u64) -> Option<StreamInfo> {
        self.existing(topic).and_then(|t| t.info(Instant::now()))
    }

    /// Gives `topic` its own retention (`None` limits: the hub's), applied at once.
    pub fn set_retention(&self, topic: u64, retention: RetentionOverride) -> CoreResult<()> {
        self.topic(topic)?.set_retention(retention, Instant::now())
    }

    /// Appends an end-of-stream marker; returns its sequence.
    pub fn close_stream(&self, topic: u64) -> CoreResult<u64> {
        Ok(self.topic(topic)?.close_stream(Instant::now()))
    }

    /// Subscribes from the head (`start=None`), or replays from `start` (0 = oldest retained).
    pub fn subscribe(&self, topic: u64, start: Option<u64>, envelope: Envelope) -> CoreResult<Subscription> {
        self.subscribe_with(topic, start, envelope, Policy::default())
    }

    /// `subscribe` with opt-in notices and a backlog cap (see `Policy`).
    pub fn subscribe_with(
        &self,
        topic: u64,
        start: Option<u64>,
        envelope: Envelope,
        policy: Policy,
    ) -> CoreResult<Subscription> {
        Ok(Subscription::with_policy(self.topic(topic)?, start, envelope, policy, Instant::now()))
    }

    /// Closes the current subscriptions of `topic` (all topics if `None`) with 1012 "Live
    /// subscription lost", e.g. when the backing store is lost. Topics and their retained
    /// messages stay: clients reconnect and resume from their last sequence.
    pub fn interrupt(&self, topic: Option<u64>) {
        let topics: Vec<Arc<Topic>> = match topic {
            Some(id) => self.topics.read().get(&id).cloned().into_iter().collect(),
            None => self.topics.read().values().cloned().collect(),
        };
        for topic in topics {
            topic.interrupt();
        }
    }

    /// The topic's last sequence, 0 if it has none.
    pub fn current_sequence(&self, topic: u64) -> u64 {
        let topic = self.topics.read().get(&topic).cloned();
        topic.map_or(0, |t| t.current_sequence(Instant::now()))
    }

    /// Forgets a topic (node deleted); its subscribers close with 1001.
    pub fn drop_topic(&self, topic: u64) {
        let removed = self.topics.write().remove(&topic);
        if let Some(topic) = removed {
            topic.end(Close::NODE_DELETED);
        }
    }

    /// The topic if it exists (the Redis mirror only follows topics someone subscribed to).
    pub fn existing(&self, id: u64) -> Option<Arc<Topic>> {
        self.topics.read().get(&id).cloned()
    }

    /// Forgets every topic, ending their subscriptions with `close` (the Redis mirror lost its
    /// feed); later subscribes start fresh topics.
    pub fn end_all(&self, close: &Close) {
        let removed: Vec<Arc<Topic>> = self.topics.write().drain().map(|(_, t)| t).collect();
        for topic in removed {
            topic.end(close.clone());
        }
    }

    /// Whether `shutdown` has been called.
    pub fn is_shut_down(&self) -> bool {
        self.shut_down.load(Ordering::Acquire)
    }

    /// Closes every subscription with 1001; later publish/subscribe fail with `ShutDown`.
    pub fn shutdown(&self) {
        let topics = self.topics.write();
        self.shut_down.store(true, Ordering::Release);
        for topic in topics.values() {
            topic.end(Close::SHUTTING_DOWN);
        }
    }

    /// Counts over all topics, after expiring old messages.
    pub fn stats(&self) -> Stats {
        let topics: Vec<Arc<Topic>> = self.topics.read().values().cloned().collect();
        let now = Instant::now();
        topics.iter().fold(Stats { topics: topics.len(), ..Stats::default() }, |mut s, t| {
            let (count, bytes) = t.retained(now);
            s.retained_messages += count;
            s.retained_bytes += bytes;
            s.subscribers += t.subscribers();
            s
        })
    }
}

/// The validated drafts of a batch of raw entries (see [`Hub::publish_entries`]).
pub fn entry_drafts(header: &Header, payloads: &[&[u8]], ids: &[IdSpec]) -> CoreResult<Vec<Draft>> {
    if payloads.len() != ids.len() {
        return Err(CoreError::Config(format!("{} payloads but {} entry ids", payloads.len(), ids.len())));
    }
    crate::codec::envelope::check_reserved(header)?;
    entry_id::check_batch(ids)?;
    payloads.iter().map(|p| Draft::entry(header, p)).collect()
}

/// Checks the arguments of an entry subscription.
pub fn check_entry_subscription(topics: usize, starts: usize, options: EntryOptions) -> CoreResult<()> {
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
