//! `Topics`: the topics of this process by node id (the streams themselves in process; the
//! mirrors of the followed streams with Redis), created on first use, and what applies to all
//! of them: interrupt, drop, end, shutdown, counts.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::RwLock;

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
}

impl Topics {
    /// Topics that start with `retention` and restart their sequence after `seq_ttl` idle.
    pub(crate) fn new(retention: Retention, seq_ttl: Duration) -> Self {
        Self { retention, seq_ttl, map: RwLock::default(), shut_down: AtomicBool::new(false) }
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
        let (retention, seq_ttl) = (self.retention, self.seq_ttl);
        Ok(Arc::clone(map.entry(id).or_insert_with(|| Arc::new(Topic::new(retention, seq_ttl)))))
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
