//! `Topics`: the topics of this process by node id (the streams themselves in process; the
//! mirrors of the followed streams with Redis), created on first use, and what applies to all
//! of them: interrupt, drop, end, shutdown, counts.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::RwLock;

use super::budget::Budget;
use super::close::Close;
use super::config::Retention;
use super::topic::Topic;
use crate::error::{CoreError, CoreResult};

/// Counts over every topic (see [`Topics::counts`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    pub topics: usize,
    pub retained_messages: usize,
    pub retained_bytes: usize,
    pub subscribers: usize,
}

/// The topics of this process (see the module docs).
#[derive(Debug)]
pub(crate) struct Topics {
    retention: Retention,
    seq_ttl: Duration,
    map: RwLock<HashMap<u64, Arc<Topic>>>,
    shut_down: AtomicBool,
    budget: Arc<Budget>,
}

impl Topics {
    /// Topics that start with `retention`, restart their sequence after `seq_ttl` idle, and
    /// retain at most `max_total_bytes` together.
    pub(crate) fn new(retention: Retention, seq_ttl: Duration, max_total_bytes: usize) -> Self {
        let budget = Arc::new(Budget::new(max_total_bytes));
        Self { retention, seq_ttl, map: RwLock::default(), shut_down: AtomicBool::new(false), budget }
    }

    /// The process-wide budget.
    pub(crate) fn budget(&self) -> &Budget {
        &self.budget
    }

    /// Call after adding messages: if the topics retain more than the budget, evicts the
    /// oldest messages of any topic first (by publish time; each topic keeps its newest) down
    /// to the budget's low-water mark. One sweep at a time; a caller finding one under way
    /// leaves the work to it.
    pub(crate) fn keep_within_budget(&self) {
        let budget = &self.budget;
        if !budget.is_over() {
            return;
        }
        let Some(_sweep) = budget.try_sweep() else { return };
        let topics: Vec<Arc<Topic>> = self.map.read().values().cloned().collect();
        let now = Instant::now();
        // The topics by the publish time of their oldest evictable message.
        let mut oldest: BinaryHeap<Reverse<(Instant, usize)>> = topics
            .iter()
            .enumerate()
            .filter_map(|(i, t)| t.evictable_since(now).map(|since| Reverse((since, i))))
            .collect();
        let target = budget.low_water();
        while budget.retained() > target {
            let Some(Reverse((_, i))) = oldest.pop() else { break };
            let Some((size, next)) = topics[i].evict_oldest() else { continue };
            budget.count_eviction(size);
            if let Some(since) = next {
                oldest.push(Reverse((since, i)));
            }
        }
    }

    /// The topic, created if needed; `ShutDown` after [`Topics::shutdown`].
    pub(crate) fn topic(&self, id: u64) -> CoreResult<Arc<Topic>> {
        {
            let map = self.map.read();
            if self.is_shut_down() {
                return Err(CoreError::ShutDown);
            }
            if let Some(topic) = map.get(&id) {
                return Ok(Arc::clone(topic));
            }
        }
        let mut map = self.map.write();
        if self.is_shut_down() {
            return Err(CoreError::ShutDown);
        }
        let (retention, seq_ttl, budget) = (self.retention, self.seq_ttl, &self.budget);
        let topic = map.entry(id).or_insert_with(|| Arc::new(Topic::new(retention, seq_ttl, Arc::clone(budget))));
        Ok(Arc::clone(topic))
    }

    /// The topic if it exists (the Redis mirror only follows topics someone subscribed to).
    pub(crate) fn existing(&self, id: u64) -> Option<Arc<Topic>> {
        self.map.read().get(&id).cloned()
    }

    /// Closes the current subscriptions of `topic` (all topics if `None`) with 1012.
    pub(crate) fn interrupt(&self, topic: Option<u64>) {
        let topics: Vec<Arc<Topic>> = match topic {
            Some(id) => self.existing(id).into_iter().collect(),
            None => self.map.read().values().cloned().collect(),
        };
        for topic in topics {
            topic.interrupt();
        }
    }

    /// Forgets a topic; its subscribers close with 1001.
    pub(crate) fn drop_topic(&self, id: u64) {
        let removed = self.map.write().remove(&id);
        if let Some(topic) = removed {
            topic.end(Close::NODE_DELETED);
        }
    }

    /// Forgets every topic, ending their subscriptions with `close` (the Redis mirror lost its
    /// feed); later subscribes start fresh topics.
    pub(crate) fn end_all(&self, close: &Close) {
        let removed: Vec<Arc<Topic>> = self.map.write().drain().map(|(_, t)| t).collect();
        for topic in removed {
            topic.end(close.clone());
        }
    }

    /// Whether [`Topics::shutdown`] has been called.
    pub(crate) fn is_shut_down(&self) -> bool {
        self.shut_down.load(Ordering::Acquire)
    }

    /// Closes every subscription with 1001; later topics are refused with `ShutDown`.
    pub(crate) fn shutdown(&self) {
        let map = self.map.write();
        self.shut_down.store(true, Ordering::Release);
        for topic in map.values() {
            topic.end(Close::SHUTTING_DOWN);
        }
    }

    /// Counts over all topics, after expiring old messages.
    pub(crate) fn counts(&self) -> Counts {
        let topics: Vec<Arc<Topic>> = self.map.read().values().cloned().collect();
        let now = Instant::now();
        topics.iter().fold(Counts { topics: topics.len(), ..Counts::default() }, |mut c, t| {
            let (messages, bytes) = t.retained(now);
            c.retained_messages += messages;
            c.retained_bytes += bytes;
            c.subscribers += t.subscribers();
            c
        })
    }
}
