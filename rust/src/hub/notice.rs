//! `Notice`: a frame owed to one subscriber (never retained): `stream-gap` (sequences it will
//! never receive, and why) or `stream-epoch` (the stream's history was lost). Pure data plus
//! its encoding.

use std::sync::Arc;

use serde_json::{json, Value};

use super::message::Message;
use crate::codec::envelope::encode_message;
use crate::codec::Envelope;

/// Why sequences were skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GapReason {
    /// No longer retained (count, bytes or age limits) when the subscriber asked for them.
    Expired,
    /// Evicted early to keep the process within its memory budget.
    Evicted,
    /// The subscriber's backlog exceeded its cap (`on_overflow=latest`).
    Overflow,
}

impl GapReason {
    fn name(self) -> &'static str {
        match self {
            Self::Expired => "expired",
            Self::Evicted => "evicted",
            Self::Overflow => "overflow",
        }
    }
}

/// Why a subscriber is told its stream's history was lost.
pub(crate) const RESTARTED: &str = "the stream's sequence restarted";
/// ... because it resumed beyond the stream's head.
pub(crate) const BEYOND_HEAD: &str =
    "start is beyond the current sequence: the stream restarted or its history was lost";

/// A notice owed to a subscriber, delivered as a frame before its next data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// Sequences `from..=to` will never be delivered.
    Gap {
        /// First missing sequence.
        from: u64,
        /// Last missing sequence.
        to: u64,
        /// Why they are missing.
        reason: GapReason,
    },
    /// The topic's history was lost: its sequence restarted (or `start` lies beyond it).
    Epoch {
        /// The last sequence the subscriber saw (or asked to resume after).
        last_sequence: u64,
        /// The stream's sequence now.
        current: u64,
        /// Why (see [`RESTARTED`], [`BEYOND_HEAD`]).
        reason: &'static str,
    },
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

    /// The notice as a frame for this subscriber (never retained in the ring; sequence 0).
    pub fn message(&self) -> Arc<Message> {
        let header = serde_json::to_vec(&self.to_json()).unwrap_or_default();
        // A JSON object always encodes; an empty frame would only be a bug.
        let msgpack = encode_message(&header, Envelope::Msgpack).unwrap_or_default();
        Arc::new(Message::notice(msgpack, header.into()))
    }
}
