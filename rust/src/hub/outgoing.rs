//! `Outgoing`: one validated message on its way to a backend: its msgpack envelope built but
//! for the sequence (a [`Draft`]), plus the array hint another process needs to rebuild the
//! JSON envelope (the header JSON is written from the draft only when a backend needs it). `EntryBatch`: a validated batch of raw
//! entries (Redis Streamer's push) with the ids asked for them.

use crate::codec::envelope::{check_reserved, Draft, Header, ENTRY_DTYPE};
use crate::error::{CoreError, CoreResult};

use super::entry_id::{self, IdSpec};

/// An array hint as given: numpy dtype string and shape.
pub(crate) type Hint = (String, Vec<usize>);

/// A validated message: every error is raised when it is built, before a sequence is used.
#[derive(Debug)]
pub struct Outgoing {
    draft: Draft,
    hint: Option<Hint>,
}

impl Outgoing {
    /// Validates and encodes a message: `header_json` a JSON object without `sequence` and
    /// `payload`; `array_hint` `(numpy dtype str, shape)` makes JSON subscribers get the payload
    /// as a nested list; `json_payload` (one JSON value) is their payload instead (not with a
    /// hint). Without either, JSON subscribers get the payload as base64.
    pub fn new(
        header_json: &[u8],
        payload: Option<&[u8]>,
        array_hint: Option<(&str, &[usize])>,
        json_payload: Option<&[u8]>,
    ) -> CoreResult<Self> {
        let header = crate::codec::envelope::parse_header(header_json)?;
        let message = Self::from_header(header, payload, array_hint)?;
        match json_payload {
            Some(json) => Ok(Self { draft: message.draft.with_json_payload(json)?, hint: message.hint }),
            None => Ok(message),
        }
    }

    /// [`Outgoing::new`] from a header built in Rust (no JSON round trip), without a JSON payload.
    pub fn from_header(
        header: Header,
        payload: Option<&[u8]>,
        array_hint: Option<(&str, &[usize])>,
    ) -> CoreResult<Self> {
        let hint = array_hint.map(|(dtype, shape)| (dtype.to_owned(), shape.to_vec()));
        let draft = Draft::from_header(header, payload, hint.as_ref().map(|(d, s)| (d.as_str(), s.clone())))?;
        Ok(Self { draft, hint })
    }

    /// A message whose payload of `payload_len` bytes is still to arrive: append it with
    /// [`OutgoingBody::extend`] (a request body is copied once, into the envelope).
    pub fn open(header: Header, payload_len: usize, array_hint: Option<(&str, &[usize])>) -> CoreResult<OutgoingBody> {
        let hint = array_hint.map(|(dtype, shape)| (dtype.to_owned(), shape.to_vec()));
        let body = Draft::open(header, Some(payload_len), hint.as_ref().map(|(d, s)| (d.as_str(), s.clone())))?;
        Ok(OutgoingBody { body, hint })
    }

    /// The payload (e.g. to store it before publishing).
    pub fn payload(&self) -> &[u8] {
        self.draft.payload().unwrap_or_default()
    }

    /// A raw entry (Redis Streamer's push): `header` (checked for reserved keys) plus
    /// `"shape": [len]`, the payload a `uint8` array.
    pub fn entry(header: &Header, payload: &[u8]) -> CoreResult<Self> {
        let draft = Draft::entry(header, payload)?;
        Ok(Self { draft, hint: Some((ENTRY_DTYPE.to_owned(), vec![payload.len()])) })
    }

    /// Envelope bytes this message will retain.
    pub fn size(&self) -> usize {
        self.draft.size()
    }

    /// The encoded draft (what the in-process backend stores).
    pub(crate) fn into_draft(self) -> Draft {
        self.draft
    }

    /// The header JSON, the array hint and the draft (what a wire record is made of).
    pub(crate) fn into_parts(self) -> (Vec<u8>, Option<Hint>, Draft) {
        (self.draft.header_json(), self.hint, self.draft)
    }
}

/// An [`Outgoing`] whose payload is still arriving (see [`Outgoing::open`]).
#[derive(Debug)]
pub struct OutgoingBody {
    body: crate::codec::envelope::DraftBody,
    hint: Option<Hint>,
}

impl OutgoingBody {
    /// Appends the next piece of the payload (more than announced is an error).
    pub fn extend(&mut self, piece: &[u8]) -> CoreResult<()> {
        self.body.extend(piece)
    }

    /// Payload bytes received so far.
    pub fn received(&self) -> usize {
        self.body.received()
    }

    /// The message, once the whole payload has arrived.
    pub fn finish(self) -> CoreResult<Outgoing> {
        Ok(Outgoing { draft: self.body.finish()?, hint: self.hint })
    }
}

/// A validated batch of raw entries and the id asked for each (see [`EntryBatch::new`]).
#[derive(Debug)]
pub struct EntryBatch {
    items: Vec<(IdSpec, Outgoing)>,
}

impl EntryBatch {
    /// Validates a whole batch before anything is published: the header (no reserved keys),
    /// each envelope, and that explicit ids increase within the batch. `ids[i]` is the id asked
    /// for `payloads[i]`. Whether the first id is greater than the topic's last one is checked
    /// when published (then nothing of the batch is).
    pub fn new(header: &Header, payloads: &[&[u8]], ids: &[IdSpec]) -> CoreResult<Self> {
        if payloads.len() != ids.len() {
            return Err(CoreError::Config(format!("{} payloads but {} entry ids", payloads.len(), ids.len())));
        }
        check_reserved(header)?;
        entry_id::check_batch(ids)?;
        let items = payloads.iter().zip(ids).map(|(p, id)| Ok((*id, Outgoing::entry(header, p)?)));
        Ok(Self { items: items.collect::<CoreResult<_>>()? })
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether the batch has no entry.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The ids asked for and the messages.
    pub(crate) fn into_items(self) -> Vec<(IdSpec, Outgoing)> {
        self.items
    }
}
