//! `Replay`: what a backend that keeps streams outside this process (Redis) offers the
//! subscriptions, whose rings here only mirror it: the stream's head, and its older messages.
//! The in-process backend has none: its rings are the streams.

use std::sync::Arc;

use futures_util::future::BoxFuture;

use super::entry_id::EntryId;
use super::message::Message;
use crate::error::CoreResult;

/// Messages read back from a backend, oldest first (or newest first, see [`Replay::newest`]).
#[derive(Debug, Default)]
pub(crate) struct ReplayBatch {
    /// Data messages and end-of-stream markers, with their sequences and entry ids.
    pub messages: Vec<Arc<Message>>,
    /// Entries the backend returned that could not be decoded (skipped).
    pub undecodable: u64,
    /// The sequence to continue from, if the batch was full (more may follow).
    pub next: Option<u64>,
}

impl ReplayBatch {
    /// Entries the backend returned (decoded or not).
    pub(crate) fn fetched(&self) -> usize {
        self.messages.len() + usize::try_from(self.undecodable).unwrap_or(usize::MAX)
    }
}

/// A backend's read side for subscriptions (see the module docs). Errors mean the backend is
/// unreachable (the subscription closes with 1012) or shut down.
pub(crate) trait Replay: Send + Sync {
    /// The topic's last sequence in the backend (0 if none).
    fn head(&self, topic: u64) -> BoxFuture<'_, CoreResult<u64>>;

    /// The topic's id of its newest data message (`0-0` if none).
    fn last_entry_id(&self, topic: u64) -> BoxFuture<'_, CoreResult<EntryId>>;

    /// At most `limit` messages from sequence `from` (0: the oldest retained), oldest first.
    fn range(&self, topic: u64, from: u64, limit: usize) -> BoxFuture<'_, CoreResult<ReplayBatch>>;

    /// The newest `limit` messages, newest first.
    fn newest(&self, topic: u64, limit: usize) -> BoxFuture<'_, CoreResult<ReplayBatch>>;
}
