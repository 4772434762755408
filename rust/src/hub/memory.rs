//! `Memory`: the in-process backend. The rings of this process's topics are the streams: a
//! publish is stored and fanned out before its future is first polled to completion, and
//! subscriptions never replay from elsewhere.

use std::sync::Arc;
use std::time::Instant;

use futures_util::future::BoxFuture;

use super::backend::Backend;
use super::config::RetentionOverride;
use super::entry_id::{self, EntryId, IdSpec};
use super::outgoing::{EntryBatch, Outgoing};
use super::replay::Replay;
use super::stats::BackendCounters;
use super::stream_info::StreamInfo;
use super::topics::Topics;
use crate::error::{CoreError, CoreResult};

/// The in-process backend (see the module docs).
#[derive(Debug)]
pub(crate) struct Memory {
    topics: Arc<Topics>,
}

impl Memory {
    pub(crate) fn new(topics: Arc<Topics>) -> Self {
        Self { topics }
    }

    /// A future that runs `op` on the topics when first polled (so nothing happens for a
    /// future that is never awaited, as with Redis).
    fn run<T: Send + 'static>(
        &self,
        op: impl FnOnce(&Topics) -> CoreResult<T> + Send + 'static,
    ) -> BoxFuture<'static, CoreResult<T>> {
        let topics = Arc::clone(&self.topics);
        Box::pin(async move { op(&topics) })
    }
}

impl Backend for Memory {
    fn connect(&self) -> BoxFuture<'static, CoreResult<()>> {
        self.run(|_| Ok(()))
    }

    fn is_shared(&self) -> bool {
        false
    }

    fn is_connected(&self) -> bool {
        true
    }

    fn publish(&self, topic: u64, messages: Vec<Outgoing>) -> BoxFuture<'static, CoreResult<u64>> {
        self.run(move |topics| {
            let (topic, now) = (topics.topic(topic)?, Instant::now());
            let seq = messages.into_iter().map(|message| topic.publish(message.into_draft(), now)).last();
            topics.keep_within_budget();
            seq.ok_or_else(|| CoreError::Envelope("no message to publish".into()))
        })
    }

    fn publish_entries(&self, topic: u64, batch: EntryBatch) -> BoxFuture<'static, CoreResult<Vec<EntryId>>> {
        self.run(move |topics| {
            let (specs, drafts): (Vec<IdSpec>, Vec<_>) =
                batch.into_items().into_iter().map(|(spec, message)| (spec, message.into_draft())).unzip();
            let topic = topics.topic(topic)?;
            let published = topic.publish_batch(drafts, &specs, Instant::now(), entry_id::wall_ms())?;
            topics.keep_within_budget();
            Ok(published.into_iter().map(|(_, id)| id).collect())
        })
    }

    fn close_stream(&self, topic: u64) -> BoxFuture<'static, CoreResult<u64>> {
        self.run(move |topics| {
            let seq = topics.topic(topic)?.close_stream(Instant::now());
            topics.keep_within_budget();
            Ok(seq)
        })
    }

    fn current_sequence(&self, topic: u64) -> BoxFuture<'static, CoreResult<u64>> {
        self.run(move |topics| Ok(topics.existing(topic).map_or(0, |t| t.current_sequence(Instant::now()))))
    }

    fn stream_info(&self, topic: u64) -> BoxFuture<'static, CoreResult<Option<StreamInfo>>> {
        self.run(move |topics| Ok(topics.existing(topic).and_then(|t| t.info(Instant::now()))))
    }

    fn set_retention(&self, topic: u64, retention: RetentionOverride) -> BoxFuture<'static, CoreResult<()>> {
        self.run(move |topics| topics.topic(topic)?.set_retention(retention, Instant::now()))
    }

    fn replay(&self) -> Option<Arc<dyn Replay>> {
        None
    }

    fn drop_topic(&self, _topic: u64) {}

    fn shutdown(&self) {}

    fn counters(&self) -> BackendCounters {
        BackendCounters::default()
    }
}
