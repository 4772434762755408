//! `Message`: one retained stream event, with its envelopes encoded once and shared by all
//! subscribers.

use std::any::Any;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use bytes::Bytes;

use super::entry_id::EntryId;
use crate::codec::envelope::JsonSource;
use crate::codec::Envelope;

/// What a retained event is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    /// An update delivered to subscribers.
    Data,
    /// The producer ended the stream (`close_stream`); never delivered as a frame.
    EndOfStream,
}

/// An opaque per-envelope cache slot the binding layer may fill (e.g. with one Python `bytes`).
pub type Extension = Arc<dyn Any + Send + Sync>;

/// One event in a topic's ring. Shared as `Arc<Message>` by the ring and every subscriber.
pub struct Message {
    sequence: u64,
    /// The entry id of a data message; for a marker, the id of the data message before it (so
    /// ids never decrease along a ring).
    entry_id: EntryId,
    kind: MessageKind,
    published: Instant,
    size: usize,
    msgpack: Bytes,
    json_source: Option<JsonSource>,
    json: OnceLock<Bytes>,
    /// One slot per envelope, then one for the raw payload.
    extensions: [OnceLock<Extension>; 3],
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Message")
            .field("sequence", &self.sequence)
            .field("entry_id", &self.entry_id)
            .field("kind", &self.kind)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl Message {
    /// A data message whose msgpack envelope is already encoded.
    pub(crate) fn data(
        sequence: u64,
        entry_id: EntryId,
        published: Instant,
        msgpack: Bytes,
        json_source: JsonSource,
    ) -> Self {
        Self::build(sequence, entry_id, MessageKind::Data, published, msgpack, Some(json_source))
    }

    /// A per-subscriber notice frame (not retained, no sequence): both envelopes ready-made.
    pub(crate) fn notice(msgpack: Bytes, json: Bytes) -> Self {
        let message = Self::build(0, EntryId::ZERO, MessageKind::Data, Instant::now(), msgpack, None);
        let _ = message.json.set(json);
        message
    }

    /// An end-of-stream marker (no envelope) following the data message `after`.
    pub(crate) fn end_of_stream(sequence: u64, after: EntryId, published: Instant) -> Self {
        Self::build(sequence, after, MessageKind::EndOfStream, published, Bytes::new(), None)
    }

    fn build(
        sequence: u64,
        entry_id: EntryId,
        kind: MessageKind,
        published: Instant,
        msgpack: Bytes,
        json_source: Option<JsonSource>,
    ) -> Self {
        let size = msgpack.len();
        Self {
            sequence,
            entry_id,
            kind,
            published,
            size,
            msgpack,
            json_source,
            json: OnceLock::new(),
            extensions: [OnceLock::new(), OnceLock::new(), OnceLock::new()],
        }
    }

    /// The per-topic sequence number (from 1).
    pub fn sequence(&self) -> u64 {
        self.sequence
    }

    /// The entry id (`<ms>-<n>`) of a data message (see the field's note for markers).
    pub fn entry_id(&self) -> EntryId {
        self.entry_id
    }

    /// The raw payload (shared with the msgpack envelope), if the message has one.
    pub fn payload(&self) -> Option<&Bytes> {
        self.json_source.as_ref().and_then(JsonSource::payload)
    }

    /// What the JSON envelope is built from (header, array hint, payload), for a data message.
    pub fn source(&self) -> Option<&JsonSource> {
        self.json_source.as_ref()
    }

    /// Data or end-of-stream marker.
    pub fn kind(&self) -> MessageKind {
        self.kind
    }

    /// When the message was published.
    pub fn published(&self) -> Instant {
        self.published
    }

    /// Bytes retained for this message (its msgpack envelope; the payload is shared with it).
    pub fn size(&self) -> usize {
        self.size
    }

    /// The encoded frame. JSON is encoded on first request, at most once.
    pub fn envelope(&self, envelope: Envelope) -> &Bytes {
        match envelope {
            Envelope::Msgpack => &self.msgpack,
            Envelope::Json => {
                self.json.get_or_init(|| self.json_source.as_ref().map(JsonSource::encode).unwrap_or_default())
            }
        }
    }

    /// Whether the JSON envelope has been encoded yet.
    pub fn json_encoded(&self) -> bool {
        self.json.get().is_some()
    }

    /// The binding layer's cache slot for this envelope.
    pub fn extension(&self, envelope: Envelope) -> &OnceLock<Extension> {
        &self.extensions[envelope.index()]
    }

    /// The binding layer's cache slot for the raw payload.
    pub fn payload_extension(&self) -> &OnceLock<Extension> {
        &self.extensions[2]
    }
}
