//! `Close`: why a subscription ended, as a WebSocket close code and reason. Pure data.

use std::borrow::Cow;

use crate::error::CoreError;

/// Why a subscription ended: a WebSocket close code and reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Close {
    /// WebSocket close code (1000, 1001, 1008, 1012).
    pub code: u16,
    /// Close reason sent to the client.
    pub reason: Cow<'static, str>,
}

impl Close {
    const fn fixed(code: u16, reason: &'static str) -> Self {
        Self { code, reason: Cow::Borrowed(reason) }
    }

    /// The producer called `close_stream`.
    pub const PRODUCER_ENDED: Close = Close::fixed(1000, "Producer ended stream");
    /// The node (topic) was deleted.
    pub const NODE_DELETED: Close = Close::fixed(1001, "node was deleted");
    /// The hub is shutting down.
    pub const SHUTTING_DOWN: Close = Close::fixed(1001, "server shutting down");
    /// The live subscription was interrupted (e.g. the backing store was lost): abnormal, so
    /// the stock client reconnects and resumes from its last sequence.
    pub const LIVE_LOST: Close = Close::fixed(1012, "Live subscription lost");
    /// The subscription was cancelled by its owner.
    pub const CANCELLED: Close = Close::fixed(1001, "subscription cancelled");

    /// Redis lost its history (flushed or restarted without persistence).
    pub const HISTORY_LOST: Close = Close::fixed(1012, "Live subscription lost: stream history was reset");

    /// The ring evicted sequences `first..=last` before this subscriber read them.
    pub fn fell_behind(first: u64, last: u64) -> Self {
        let reason = format!("subscriber fell behind: sequences {first}..{last} are no longer retained");
        Self { code: 1008, reason: Cow::Owned(reason) }
    }

    /// The close of `on_overflow=close`: 1008 with the backlog and the dropped count.
    pub fn overflow(dropped: u64, backlog: usize, cap: usize) -> Self {
        let reason =
            format!("subscriber too slow: {backlog} bytes queued > max_queue_bytes={cap}; dropped {dropped} messages");
        Self { code: 1008, reason: Cow::Owned(reason) }
    }

    /// The close of a subscription whose backend failed with `err` (shut down, or unreachable).
    pub(crate) fn backend_failed(err: &CoreError) -> Self {
        match err {
            CoreError::ShutDown => Self::SHUTTING_DOWN,
            _ => Self::LIVE_LOST,
        }
    }
}
