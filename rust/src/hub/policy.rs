//! Subscriber options, pure data: `Policy` for subscriptions by sequence (gap / epoch notices,
//! a cap on the live backlog and what happens past it) and `EntryOptions` for subscriptions by
//! entry id.
//!
//! The backlog of a subscriber is the envelope bytes between its cursor and the ring head. The
//! ring is shared, so a lagging subscriber costs no memory of its own; the cap bounds how far
//! behind a subscriber may fall before the policy applies (checked whenever it reads).

use crate::error::{CoreError, CoreResult};

/// What happens when a subscriber's live backlog exceeds its cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Overflow {
    /// Close the subscription with 1008 and the count of messages it would not receive.
    #[default]
    Close,
    /// Skip to the newest message, counting the skipped ones as dropped.
    Latest,
}

impl Overflow {
    /// Parses `"close"` or `"latest"`.
    pub fn parse(name: &str) -> CoreResult<Self> {
        match name {
            "close" => Ok(Self::Close),
            "latest" => Ok(Self::Latest),
            other => Err(CoreError::Config(format!("on_overflow must be \"close\" or \"latest\", not {other:?}"))),
        }
    }
}

/// Options of a subscription by sequence. The default is Tiled's behaviour (no notices, no cap).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Send a notice frame before data that follows a gap or a sequence restart.
    pub notify_gaps: bool,
    /// Most live-backlog bytes before `on_overflow` applies (`usize::MAX`: unbounded).
    pub max_queue_bytes: usize,
    /// What to do past the cap.
    pub on_overflow: Overflow,
}

impl Default for Policy {
    fn default() -> Self {
        Self { notify_gaps: false, max_queue_bytes: usize::MAX, on_overflow: Overflow::Close }
    }
}

/// How a subscription by entry id reads (the same for all its topics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryOptions {
    /// Most entries per topic per read (>= 1).
    pub count: usize,
    /// Only the newest `count` entries past the cursor, newest first; older ones are dropped.
    pub latest: bool,
    /// Most unread envelope bytes past the cursors before a read skips to the newest entries.
    pub max_queue_bytes: usize,
}
