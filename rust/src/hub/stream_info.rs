//! `StreamInfo`: a topic's stream as Redis `XINFO STREAM` describes it. Pure data.

use std::sync::Arc;

use super::entry_id::EntryId;
use super::message::Message;

/// A topic's stream as Redis `XINFO STREAM` describes it (data messages only).
#[derive(Debug, Clone)]
pub struct StreamInfo {
    /// Data messages retained.
    pub length: u64,
    /// Data messages ever published.
    pub entries_added: u64,
    /// The oldest retained data message.
    pub first: Option<Arc<Message>>,
    /// The newest retained data message.
    pub last: Option<Arc<Message>>,
    /// The newest id ever assigned.
    pub last_id: EntryId,
    /// The greatest id evicted (`0-0` if none).
    pub max_deleted: EntryId,
}
