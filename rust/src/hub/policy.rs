//! Opt-in subscriber policies beyond Tiled: gap / epoch notices, and a per-subscriber byte cap
//! on the live backlog with an overflow policy; plus the notice frames they produce.
//!
//! The backlog of a subscriber is the envelope bytes between its cursor and the ring head. The
//! ring is shared, so a lagging subscriber costs no memory of its own; the cap bounds how far
//! behind a subscriber may fall before the policy applies (checked whenever it reads).

use std::borrow::Cow;
use std::sync::Arc;

use serde_json::{json, Value};

use super::message::{Close, Message};
use super::subscriber::Cursor;
use crate::codec::envelope::encode_message;
use crate::codec::Envelope;
use crate::error::{CoreError, CoreResult};

/// The server default per-subscriber cap (the WebSocket layer passes it unless told otherwise).
pub const DEFAULT_MAX_QUEUE_BYTES: usize = 64 * 1024 * 1024;

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

/// Per-subscription options. The default is Tiled's behaviour (no notices, no cap).
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

/// Why sequences were skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GapReason {
    /// No longer retained (count, bytes or age limits) when the subscriber asked for them.
    Expired,
    /// The subscriber's backlog exceeded its cap (`on_overflow=latest`).
    Overflow,
}

impl GapReason {
    fn name(self) -> &'static str {
        match self {
            Self::Expired => "expired",
            Self::Overflow => "overflow",
        }
    }
}

/// A notice owed to a subscriber, delivered as a frame before its next data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Notice {
    /// Sequences `from..=to` will never be delivered.
    Gap { from: u64, to: u64, reason: GapReason },
    /// The topic's history was lost: its sequence restarted (or `start` lies beyond it).
    Epoch { last_sequence: u64, current: u64, reason: &'static str },
}

impl Notice {
    fn to_json(&self) -> Value {
        match self {
            Self::Gap { from, to, reason } => json!({
                "type": "stream-gap",
                "missed_from": from,
                "missed_to": to,
                "count": to + 1 - from,
                "reason": reason.name(),
            }),
            Self::Epoch { last_sequence, current, reason } => json!({
                "type": "stream-epoch",
                "last_sequence": last_sequence,
                "current_sequence": current,
                "reason": reason,
            }),
        }
    }

    /// The notice as a frame for this subscriber (never retained in the ring).
    pub(super) fn message(&self) -> Arc<Message> {
        let header = serde_json::to_vec(&self.to_json()).unwrap_or_default();
        // A JSON object always encodes; an empty frame would only be a bug.
        let msgpack = encode_message(&header, Envelope::Msgpack).unwrap_or_default();
        Arc::new(Message::notice(msgpack, header.into()))
    }
}

/// The close of `on_overflow=close`: 1008 with the backlog and the dropped count.
pub(super) fn overflow_close(dropped: u64, backlog: usize, cap: usize) -> Close {
    let reason =
        format!("subscriber too slow: {backlog} bytes queued > max_queue_bytes={cap}; dropped {dropped} messages");
    Close { code: 1008, reason: Cow::Owned(reason) }
}

impl Cursor {
    /// Owes the subscriber `notice` before its next data, if it asked for notices.
    pub(super) fn notice(&mut self, notice: Notice) {
        if self.policy.notify_gaps {
            self.notices.push(notice);
        }
    }

    /// Applies the overflow policy to a live cursor whose backlog (`backlog` bytes up to `head`)
    /// exceeds its cap, or that fell behind the oldest retained message.
    pub(super) fn overflow(&mut self, head: u64, oldest: u64, backlog: usize) {
        let behind = self.next < oldest;
        let over = backlog > self.policy.max_queue_bytes && self.next < head;
        if !behind && !over {
            return;
        }
        match self.policy.on_overflow {
            Overflow::Close if behind => {
                self.missed += oldest - self.next;
                self.close = Some(Close::fell_behind(self.next, oldest - 1));
                self.next = oldest;
            }
            Overflow::Close => {
                let dropped = head + 1 - self.next;
                self.dropped += dropped;
                self.close = Some(overflow_close(dropped, backlog, self.policy.max_queue_bytes));
            }
            Overflow::Latest => {
                let (from, to) = (self.next, head - 1);
                if behind {
                    self.missed += oldest - from;
                }
                self.dropped += head - from;
                let reason = if over { GapReason::Overflow } else { GapReason::Expired };
                self.notice(Notice::Gap { from, to, reason });
                self.next = head;
            }
        }
    }
}
