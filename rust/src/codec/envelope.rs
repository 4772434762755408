//! Tiled stream envelopes: a JSON header (from Python's orjson) becomes a msgpack map or a JSON
//! object with `"sequence"` inserted after `"type"` and the payload attached. Encoded once per
//! message and shared by every subscriber.

use std::ops::Range;

use base64::Engine as _;
use bytes::Bytes;
use rmp::encode;
use serde_json::{Map, Value};

use super::array_json::ArrayHint;
use super::msgpack::{check, len32, write_str, write_value};
use super::Envelope;
use crate::error::{CoreError, CoreResult};

/// A JSON object header, as parsed from the bytes Python hands over.
pub type Header = Map<String, Value>;

/// Parses the header bytes; anything but a JSON object is an envelope error.
pub fn parse_header(json: &[u8]) -> CoreResult<Header> {
    match serde_json::from_slice(json) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(CoreError::envelope("message header must be a JSON object")),
        Err(e) => Err(CoreError::envelope(format!("message header is not valid JSON: {e}"))),
    }
}

/// Encodes a one-off message (e.g. a schema) without sequence or payload.
pub fn encode_message(header_json: &[u8], envelope: Envelope) -> CoreResult<Bytes> {
    let header = parse_header(header_json)?;
    let mut buf = Vec::with_capacity(header_json.len());
    match envelope {
        Envelope::Msgpack => write_value(&mut buf, &Value::Object(header))?,
        Envelope::Json => serde_json::to_writer(&mut buf, &header)
            .map_err(|e| CoreError::envelope(format!("json encoding failed: {e}")))?,
    }
    Ok(Bytes::from(buf))
}

/// The dtype of a raw entry's payload in its Tiled message.
pub const ENTRY_DTYPE: &str = "|u1";

/// Refuses a header that sets what the envelope sets itself.
pub fn check_reserved(header: &Header) -> CoreResult<()> {
    for reserved in ["sequence", "payload"] {
        if header.contains_key(reserved) {
            return Err(CoreError::envelope(format!("message header must not contain {reserved:?}")));
        }
    }
    Ok(())
}

/// A validated message whose msgpack envelope is built except for the sequence number, so that
/// all the work (and every error) happens before a sequence is assigned.
#[derive(Debug)]
pub struct Draft {
    header: Header,
    hint: Option<ArrayHint>,
    buf: Vec<u8>,
    /// Offset of the 9-byte `uint64` placeholder for the sequence.
    seq_at: usize,
    payload_at: Option<Range<usize>>,
    /// The payload as a ready JSON value for the JSON envelope (e.g. a table's columns).
    json_payload: Option<Bytes>,
}

/// Header fields in envelope order: `type`, then `sequence`, then the rest as given.
fn ordered(header: &Header) -> (Option<&Value>, impl Iterator<Item = (&String, &Value)>) {
    (header.get("type"), header.iter().filter(|(k, _)| k.as_str() != "type"))
}

impl Draft {
    /// Validates the header and the optional array hint `(dtype, shape)`, and writes the msgpack
    /// envelope with a placeholder sequence.
    pub fn new(header_json: &[u8], payload: Option<&[u8]>, hint: Option<(&str, Vec<usize>)>) -> CoreResult<Self> {
        Self::from_header(parse_header(header_json)?, payload, hint)
    }

    /// The raw entry `payload` of a Redis-Streamer-style publish as a Tiled message: `header`
    /// (checked by [`check_reserved`]) plus `"shape": [len]`, the payload a `uint8` array.
    pub fn entry(header: &Header, payload: &[u8]) -> CoreResult<Self> {
        let mut header = header.clone();
        header.insert("shape".into(), Value::from(vec![payload.len()]));
        Self::from_header(header, Some(payload), Some((ENTRY_DTYPE, vec![payload.len()])))
    }

    /// [`Draft::new`] from an already parsed header.
    pub fn from_header(header: Header, payload: Option<&[u8]>, hint: Option<(&str, Vec<usize>)>) -> CoreResult<Self> {
        let Some(payload) = payload else {
            if hint.is_some() {
                return Err(CoreError::envelope("an array hint needs a payload"));
            }
            return Self::open(header, None, None)?.finish();
        };
        let mut body = Self::open(header, Some(payload.len()), hint)?;
        body.extend(payload)?;
        body.finish()
    }

    /// The envelope written up to its payload of `payload_len` bytes (`None`: no payload), which
    /// is then appended in place ([`DraftBody::extend`]): a request body arriving in pieces is
    /// copied once, into the envelope. Header and hint are validated here.
    pub fn open(header: Header, payload_len: Option<usize>, hint: Option<(&str, Vec<usize>)>) -> CoreResult<DraftBody> {
        check_reserved(&header)?;
        let hint = match (hint, payload_len) {
            (None, _) => None,
            (Some((dtype, shape)), Some(len)) => Some(ArrayHint::new(dtype, shape, len)?),
            (Some(_), None) => return Err(CoreError::envelope("an array hint needs a payload")),
        };
        let mut buf = Vec::with_capacity(32 * header.len() + payload_len.unwrap_or(0) + 32);
        let fields = header.len() + 1 + usize::from(payload_len.is_some());
        check(encode::write_map_len(&mut buf, len32(fields)?))?;
        let (kind, rest) = ordered(&header);
        if let Some(kind) = kind {
            write_str(&mut buf, "type")?;
            write_value(&mut buf, kind)?;
        }
        write_str(&mut buf, "sequence")?;
        let seq_at = buf.len();
        // Fixed width so the real sequence can be patched in under the topic lock.
        check(encode::write_u64(&mut buf, 0))?;
        for (key, value) in rest {
            write_str(&mut buf, key)?;
            write_value(&mut buf, value)?;
        }
        let payload_at = match payload_len {
            Some(len) => {
                write_str(&mut buf, "payload")?;
                check(encode::write_bin_len(&mut buf, len32(len)?))?;
                Some(buf.len()..buf.len() + len)
            }
            None => None,
        };
        Ok(DraftBody { draft: Self { header, hint, buf, seq_at, payload_at, json_payload: None } })
    }

    /// The payload, if any (e.g. to store it before the message is published).
    pub fn payload(&self) -> Option<&[u8]> {
        self.payload_at.as_ref().and_then(|r| self.buf.get(r.clone()))
    }

    /// Makes the JSON envelope carry `json` (one JSON value, encoded once by the publisher) as
    /// the payload instead of base64; the msgpack envelope keeps the raw payload.
    pub fn with_json_payload(mut self, json: &[u8]) -> CoreResult<Self> {
        if self.payload_at.is_none() {
            return Err(CoreError::envelope("a JSON payload needs a payload"));
        }
        if self.hint.is_some() {
            return Err(CoreError::envelope("give either an array hint or a JSON payload, not both"));
        }
        if let Err(e) = serde_json::from_slice::<Value>(json) {
            return Err(CoreError::envelope(format!("JSON payload is not valid JSON: {e}")));
        }
        self.json_payload = Some(Bytes::copy_from_slice(json));
        Ok(self)
    }

    /// The header as JSON (what a remote process rebuilds the JSON envelope from).
    pub fn header_json(&self) -> Vec<u8> {
        serde_json::to_vec(&self.header).unwrap_or_default()
    }

    /// Size of the msgpack envelope in bytes (what retention accounts for).
    pub fn size(&self) -> usize {
        self.buf.len()
    }

    /// The msgpack envelope with a zero sequence, the offset of the sequence placeholder, the
    /// payload's range in it and the publisher's JSON payload, if any: what a remote process
    /// needs to rebuild the message (see [`Encoded::from_wire`]).
    pub(crate) fn into_wire(self) -> (Vec<u8>, usize, Option<Range<usize>>, Option<Bytes>) {
        (self.buf, self.seq_at, self.payload_at, self.json_payload)
    }

    /// Writes the sequence into the envelope and freezes it.
    pub fn finish(mut self, sequence: u64) -> Encoded {
        self.buf[self.seq_at + 1..self.seq_at + 9].copy_from_slice(&sequence.to_be_bytes());
        let msgpack = Bytes::from(self.buf);
        let payload = self.payload_at.map(|r| msgpack.slice(r));
        let json =
            JsonSource { header: self.header, hint: self.hint, payload, json_payload: self.json_payload, sequence };
        Encoded { msgpack, json }
    }
}

/// A [`Draft`] whose payload is still arriving (see [`Draft::open`]).
#[derive(Debug)]
pub struct DraftBody {
    draft: Draft,
}

impl DraftBody {
    /// Appends the next piece of the payload; more than the length announced is an error.
    pub fn extend(&mut self, piece: &[u8]) -> CoreResult<()> {
        let end = self.draft.payload_at.as_ref().map_or(0, |r| r.end);
        if self.draft.buf.len() + piece.len() > end {
            return Err(CoreError::envelope(format!("payload longer than the {} bytes announced", self.expected())));
        }
        self.draft.buf.extend_from_slice(piece);
        Ok(())
    }

    /// Payload bytes received so far.
    pub fn received(&self) -> usize {
        self.draft.payload_at.as_ref().map_or(0, |r| self.draft.buf.len() - r.start)
    }

    /// Payload bytes announced.
    pub fn expected(&self) -> usize {
        self.draft.payload_at.as_ref().map_or(0, ExactSizeIterator::len)
    }

    /// The finished draft, once the whole payload has arrived.
    pub fn finish(self) -> CoreResult<Draft> {
        if self.received() != self.expected() {
            let message = format!("payload of {} bytes, {} announced", self.received(), self.expected());
            return Err(CoreError::envelope(message));
        }
        Ok(self.draft)
    }
}

/// A finished message: the msgpack envelope plus what the JSON envelope is built from, lazily.
#[derive(Debug)]
pub struct Encoded {
    /// The msgpack envelope.
    pub msgpack: Bytes,
    /// Source of the JSON envelope (payload shares the msgpack buffer).
    pub json: JsonSource,
}

impl Encoded {
    /// Rebuilds a message from [`Draft::into_wire`] parts received from another process.
    /// `msgpack` must already carry its sequence (see [`patch_sequence`]).
    pub(crate) fn from_wire(
        msgpack: Bytes,
        payload_at: Option<Range<usize>>,
        header: Header,
        hint: Option<ArrayHint>,
        json_payload: Option<Bytes>,
        sequence: u64,
    ) -> Self {
        let payload = payload_at.map(|r| msgpack.slice(r));
        Self { msgpack, json: JsonSource { header, hint, payload, json_payload, sequence } }
    }
}

/// Writes `sequence` into the fixed-width placeholder of a wire envelope at `seq_at`.
pub(crate) fn patch_sequence(buf: &mut [u8], seq_at: usize, sequence: u64) -> CoreResult<()> {
    match buf.get_mut(seq_at..seq_at + 9) {
        Some(slot) if slot[0] == 0xcf => {
            slot[1..].copy_from_slice(&sequence.to_be_bytes());
            Ok(())
        }
        _ => Err(CoreError::envelope("wire envelope has no sequence placeholder")),
    }
}

/// Everything needed to build the JSON envelope on first demand.
#[derive(Debug)]
pub struct JsonSource {
    header: Header,
    hint: Option<ArrayHint>,
    payload: Option<Bytes>,
    json_payload: Option<Bytes>,
    sequence: u64,
}

impl JsonSource {
    /// The raw payload (a slice of the msgpack envelope), if any.
    pub fn payload(&self) -> Option<&Bytes> {
        self.payload.as_ref()
    }

    /// The header as published (without sequence and payload).
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The array hint, for a payload that is an array.
    pub fn hint(&self) -> Option<&ArrayHint> {
        self.hint.as_ref()
    }

    /// Builds the JSON envelope: payload transcoded (array hint) or base64, plus `content-type`.
    pub fn encode(&self) -> Bytes {
        let mut out = Vec::with_capacity(64 + self.payload.as_ref().map_or(0, |p| p.len() * 4));
        out.push(b'{');
        let (kind, rest) = ordered(&self.header);
        if let Some(kind) = kind {
            push_entry(&mut out, "type", kind);
            out.push(b',');
        }
        push_entry(&mut out, "sequence", &Value::from(self.sequence));
        for (key, value) in rest {
            out.push(b',');
            push_entry(&mut out, key, value);
        }
        if let Some(payload) = &self.payload {
            out.extend_from_slice(b",\"payload\":");
            match (&self.hint, &self.json_payload) {
                (_, Some(json)) => out.extend_from_slice(json),
                (Some(hint), None) => hint.write_json(&mut out, payload),
                (None, None) => {
                    let text = base64::engine::general_purpose::STANDARD.encode(payload);
                    let _ = serde_json::to_writer(&mut out, &text);
                }
            }
            out.extend_from_slice(b",\"content-type\":\"application/json\"");
        }
        out.push(b'}');
        Bytes::from(out)
    }
}

fn push_entry(out: &mut Vec<u8>, key: &str, value: &Value) {
    // Serializing JSON values into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, key);
    out.push(b':');
    let _ = serde_json::to_writer(&mut *out, value);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn decode(buf: &[u8]) -> rmpv::Value {
        rmpv::decode::read_value(&mut &buf[..]).unwrap()
    }

    fn keys(v: &rmpv::Value) -> Vec<String> {
        v.as_map().unwrap().iter().map(|(k, _)| k.as_str().unwrap().to_owned()).collect()
    }

    #[test]
    fn msgpack_envelope_has_sequence_second_and_bin_payload() {
        let header = br#"{"type":"array-data","timestamp":"2024-01-01T00:00:00","shape":[3],"offset":null}"#;
        let draft = Draft::new(header, Some(b"\x01\x02\x03"), None).unwrap();
        let size = draft.size();
        let enc = draft.finish(42);
        assert_eq!(enc.msgpack.len(), size);
        let v = decode(&enc.msgpack);
        assert_eq!(keys(&v), ["type", "sequence", "timestamp", "shape", "offset", "payload"]);
        let map = v.as_map().unwrap();
        assert_eq!(map[1].1.as_u64(), Some(42));
        assert_eq!(map[4].1, rmpv::Value::Nil);
        assert_eq!(map[5].1, rmpv::Value::Binary(vec![1, 2, 3]));
        assert_eq!(enc.json.payload.as_deref(), Some(&b"\x01\x02\x03"[..]));
    }

    #[test]
    fn type_moves_first_and_missing_type_puts_sequence_first() {
        let enc = Draft::new(br#"{"a":1,"type":"t"}"#, None, None).unwrap().finish(1);
        assert_eq!(keys(&decode(&enc.msgpack)), ["type", "sequence", "a"]);
        let enc = Draft::new(br#"{"a":1}"#, None, None).unwrap().finish(7);
        assert_eq!(keys(&decode(&enc.msgpack)), ["sequence", "a"]);
        assert_eq!(&enc.json.encode()[..], br#"{"sequence":7,"a":1}"#);
    }

    #[test]
    fn json_envelope_transcodes_array_payload() {
        let payload: Vec<u8> = [1i64, 2, 3].iter().flat_map(|v| v.to_le_bytes()).collect();
        let draft =
            Draft::new(br#"{"type":"array-data","shape":[3]}"#, Some(&payload), Some(("<i8", vec![3]))).unwrap();
        let json = draft.finish(5).json.encode();
        let v: Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(
            v,
            json!({"type": "array-data", "sequence": 5, "shape": [3], "payload": [1, 2, 3], "content-type": "application/json"})
        );
        let order: Vec<&String> = v.as_object().unwrap().keys().collect();
        assert_eq!(order, ["type", "sequence", "shape", "payload", "content-type"]);
    }

    #[test]
    fn json_envelope_base64_without_hint_and_plain_without_payload() {
        let json = Draft::new(br#"{"type":"table-data"}"#, Some(b"hi"), None).unwrap().finish(1).json.encode();
        let v: Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(v["payload"], "aGk=");
        assert_eq!(v["content-type"], "application/json");
        let json = Draft::new(br#"{"type":"x","m":{"k":[1.5]}}"#, None, None).unwrap().finish(2).json.encode();
        assert_eq!(&json[..], br#"{"type":"x","sequence":2,"m":{"k":[1.5]}}"#);
    }

    #[test]
    fn json_envelope_carries_a_ready_json_payload() {
        let draft = Draft::new(br#"{"type":"table-data"}"#, Some(b"ARROW1"), None).unwrap();
        let enc = draft.with_json_payload(br#"{"x": [1, 2]}"#).unwrap().finish(3);
        let v: Value = serde_json::from_slice(&enc.json.encode()).unwrap();
        assert_eq!(v["payload"], json!({"x": [1, 2]}));
        assert_eq!(decode(&enc.msgpack).as_map().unwrap()[2].1, rmpv::Value::Binary(b"ARROW1".to_vec()));
        let no_payload = Draft::new(b"{}", None, None).unwrap();
        assert!(no_payload.with_json_payload(b"[]").is_err());
        let bad = Draft::new(b"{}", Some(b"x"), None).unwrap();
        assert!(bad.with_json_payload(b"{oops").is_err());
    }

    #[test]
    fn errors() {
        let bad = |h: &[u8], p: Option<&[u8]>, hint| Draft::new(h, p, hint).unwrap_err();
        assert!(matches!(bad(b"[1]", None, None), CoreError::Envelope(_)));
        assert!(matches!(bad(b"{not json", None, None), CoreError::Envelope(_)));
        assert!(matches!(bad(br#"{"sequence":1}"#, None, None), CoreError::Envelope(_)));
        assert!(matches!(bad(b"{}", Some(b"abc"), Some(("<i8", vec![1]))), CoreError::Envelope(_)));
        assert!(matches!(bad(b"{}", None, Some(("<i8", vec![1]))), CoreError::Envelope(_)));
        assert!(matches!(encode_message(b"3", Envelope::Json), Err(CoreError::Envelope(_))));
    }

    #[test]
    fn one_off_messages() {
        let h = br#"{"type":"array-schema","version":1,"data_type":{"kind":"i","itemsize":8}}"#;
        assert_eq!(&encode_message(h, Envelope::Json).unwrap()[..], &h[..]);
        let v = decode(&encode_message(h, Envelope::Msgpack).unwrap());
        assert_eq!(keys(&v), ["type", "version", "data_type"]);
    }
}
