//! `Backend`: what differs between keeping streams in this process and keeping them in Redis,
//! behind one trait that [`crate::hub::Hub`] calls; chosen once, when the hub is made. Every
//! I/O method returns a `'static` future (it holds what it needs, not the caller's borrows).

use std::sync::Arc;

use futures_util::future::BoxFuture;

use super::config::RetentionOverride;
use super::entry_id::EntryId;
use super::outgoing::{EntryBatch, Outgoing};
use super::replay::Replay;
use super::stats::BackendCounters;
use super::stream_info::StreamInfo;
use crate::error::CoreResult;

/// A stream backend (see the module docs).
pub(crate) trait Backend: Send + Sync {
    /// Connects (no-op in process).
    fn connect(&self) -> BoxFuture<'static, CoreResult<()>>;

    /// Whether several processes share the streams.
    fn is_shared(&self) -> bool;

    /// Whether the backend can be used now (always in process).
    fn is_connected(&self) -> bool;

    /// Assigns the next sequences to validated messages, in order, and stores them all or
    /// none (with Redis, in one round trip); returns the last one's sequence.
    fn publish(&self, topic: u64, messages: Vec<Outgoing>) -> BoxFuture<'static, CoreResult<u64>>;

    /// Publishes a validated batch of raw entries, all or nothing; returns their ids.
    fn publish_entries(&self, topic: u64, batch: EntryBatch) -> BoxFuture<'static, CoreResult<Vec<EntryId>>>;

    /// Appends an end-of-stream marker; returns its sequence.
    fn close_stream(&self, topic: u64) -> BoxFuture<'static, CoreResult<u64>>;

    /// The topic's last sequence (0 if none).
    fn current_sequence(&self, topic: u64) -> BoxFuture<'static, CoreResult<u64>>;

    /// The topic's stream description (`None` if it never had an entry).
    fn stream_info(&self, topic: u64) -> BoxFuture<'static, CoreResult<Option<StreamInfo>>>;

    /// Gives the topic its own retention.
    fn set_retention(&self, topic: u64, retention: RetentionOverride) -> BoxFuture<'static, CoreResult<()>>;

    /// What subscriptions read back from the backend, if it keeps streams elsewhere.
    fn replay(&self) -> Option<Arc<dyn Replay>>;

    /// The topic was forgotten in this process (node deleted).
    fn drop_topic(&self, topic: u64);

    /// Stops the backend (the topics are already ended).
    fn shutdown(&self);

    /// The backend's counters.
    fn counters(&self) -> BackendCounters;
}
