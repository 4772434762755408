//! The wire record of one event as stored in a Redis stream entry and carried on the live
//! channel: enough to rebuild the message (msgpack envelope, lazily built JSON envelope) in any
//! process without re-encoding the payload.
//!
//! Layout (little-endian): `u8 version=2 | u32 seq_at | u8 has_payload | u32 payload_start |
//! u32 payload_end | u8 has_hint | [u16 dtype_len | dtype | u16 ndim | u64 x ndim] |
//! u8 has_json | [u32 json_len | JSON payload] | u32 header_len | header JSON |
//! msgpack envelope (sequence placeholder zero)`.

use std::io::Write;
use std::ops::Range;
use std::time::Instant;

use bytes::Bytes;
use redis::{RedisWrite, ToRedisArgs};

use crate::codec::array_json::ArrayHint;
use crate::codec::envelope::{self, Draft, Encoded, Header};
use crate::error::{CoreError, CoreResult};
use crate::hub::{EntryId, Message};

const VERSION: u8 = 2;

/// A wire record as it is built: what comes before the envelope (`head`), and the envelope,
/// never copied into one buffer on the way to Redis (each part is written straight into its
/// command, [`RecordBytes`]) nor on the way back into this process's mirror ([`Record::decode`]).
#[derive(Debug, Default)]
pub struct Record {
    head: Vec<u8>,
    envelope: Vec<u8>,
}

impl Record {
    /// The record's length in bytes.
    pub fn len(&self) -> usize {
        self.head.len() + self.envelope.len()
    }

    /// A record of `len` bytes that is not a message (tests of what only counts bytes).
    #[cfg(test)]
    pub fn filled(len: usize) -> Self {
        Self { head: Vec::new(), envelope: vec![0; len] }
    }

    /// Bytes `range` of the record, as an argument of a Redis command.
    pub fn bytes(&self, range: Range<usize>) -> RecordBytes<'_> {
        RecordBytes { record: self, range }
    }

    /// Rebuilds the data message `sequence` with entry id `entry_id` (no payload copy).
    pub fn decode(self, sequence: u64, entry_id: EntryId, now: Instant) -> CoreResult<Message> {
        let head = Head::parse(&self.head)?;
        if head.len != self.head.len() {
            return Err(CoreError::envelope("stream record head is malformed"));
        }
        head.into_message(self.envelope, 0, sequence, entry_id, now)
    }
}

/// Bytes of a [`Record`] written as one argument of a Redis command (no intermediate buffer).
pub struct RecordBytes<'a> {
    record: &'a Record,
    range: Range<usize>,
}

impl ToRedisArgs for RecordBytes<'_> {
    fn write_redis_args<W: ?Sized + RedisWrite>(&self, out: &mut W) {
        let head = self.record.head.len();
        let mut arg = out.writer_for_next_arg();
        let (start, end) = (self.range.start, self.range.end);
        let in_head = &self.record.head[start.min(head)..end.min(head)];
        let in_envelope = &self.record.envelope[start.max(head) - head..end.max(head) - head];
        // Writes into the command's own buffer: they cannot fail.
        let _ = arg.write_all(in_head).and_then(|()| arg.write_all(in_envelope));
    }
}

/// Encodes a validated draft (plus the header and hint it was built from) as a wire record.
pub fn encode(header_json: &[u8], hint: Option<(&str, &[usize])>, draft: Draft) -> CoreResult<Record> {
    let (envelope, seq_at, payload_at, json_payload) = draft.into_wire();
    let mut out = Vec::with_capacity(header_json.len() + 64);
    out.push(VERSION);
    out.extend_from_slice(&u32_of(seq_at)?.to_le_bytes());
    let (has_payload, range) = payload_at.map_or((0u8, 0..0), |r| (1, r));
    out.push(has_payload);
    out.extend_from_slice(&u32_of(range.start)?.to_le_bytes());
    out.extend_from_slice(&u32_of(range.end)?.to_le_bytes());
    match hint {
        Some((dtype, shape)) => {
            out.push(1);
            out.extend_from_slice(&u16_of(dtype.len())?.to_le_bytes());
            out.extend_from_slice(dtype.as_bytes());
            out.extend_from_slice(&u16_of(shape.len())?.to_le_bytes());
            for dim in shape {
                out.extend_from_slice(&(*dim as u64).to_le_bytes());
            }
        }
        None => out.push(0),
    }
    match &json_payload {
        Some(json) => {
            out.push(1);
            out.extend_from_slice(&u32_of(json.len())?.to_le_bytes());
            out.extend_from_slice(json);
        }
        None => out.push(0),
    }
    out.extend_from_slice(&u32_of(header_json.len())?.to_le_bytes());
    out.extend_from_slice(header_json);
    u32_of(out.len() + envelope.len())?;
    Ok(Record { head: out, envelope })
}

/// Rebuilds the data message `sequence` with entry id `entry_id` from a record read from Redis
/// (taking ownership: no payload copy).
pub fn decode(record: Vec<u8>, sequence: u64, entry_id: EntryId, now: Instant) -> CoreResult<Message> {
    let head = Head::parse(&record)?;
    let at = head.len;
    head.into_message(record, at, sequence, entry_id, now)
}

/// What a record's head says.
struct Head {
    /// Its length in bytes: where the envelope starts.
    len: usize,
    seq_at: usize,
    payload: Option<Range<usize>>,
    hint: Option<(String, Vec<usize>)>,
    json_payload: Option<Bytes>,
    header: Header,
}

impl Head {
    fn parse(buf: &[u8]) -> CoreResult<Self> {
        let mut r = Reader { buf, at: 0 };
        if r.u8()? != VERSION {
            return Err(CoreError::envelope("unknown stream record version"));
        }
        let seq_at = r.u32()? as usize;
        let has_payload = r.u8()? == 1;
        let (start, end) = (r.u32()? as usize, r.u32()? as usize);
        let hint = if r.u8()? == 1 {
            let len = r.u16()? as usize;
            let dtype = std::str::from_utf8(r.take(len)?)
                .map_err(|_| CoreError::envelope("stream record dtype is not UTF-8"))?
                .to_owned();
            let ndim = r.u16()? as usize;
            let shape = (0..ndim).map(|_| r.u64().map(|d| d as usize)).collect::<CoreResult<Vec<_>>>()?;
            Some((dtype, shape))
        } else {
            None
        };
        let json_payload = if r.u8()? == 1 {
            let len = r.u32()? as usize;
            Some(Bytes::copy_from_slice(r.take(len)?))
        } else {
            None
        };
        let header_len = r.u32()? as usize;
        let header = envelope::parse_header(r.take(header_len)?)?;
        Ok(Self { len: r.at, seq_at, payload: has_payload.then_some(start..end), hint, json_payload, header })
    }

    /// The message of the envelope at `env_at` in `buf` (after the head in a record read whole,
    /// at 0 in a [`Record`]'s own envelope), its sequence patched in place.
    fn into_message(
        self,
        mut buf: Vec<u8>,
        env_at: usize,
        sequence: u64,
        entry_id: EntryId,
        now: Instant,
    ) -> CoreResult<Message> {
        let env_len = buf.len() - env_at;
        let payload_len = match &self.payload {
            Some(range) if range.start > range.end || range.end > env_len => {
                return Err(CoreError::envelope("stream record payload range is out of bounds"));
            }
            Some(range) => range.end - range.start,
            None => 0,
        };
        let hint = match self.hint {
            Some((dtype, shape)) => Some(ArrayHint::new(&dtype, shape, payload_len)?),
            None => None,
        };
        envelope::patch_sequence(&mut buf[env_at..], self.seq_at, sequence)?;
        let msgpack = Bytes::from(buf).slice(env_at..);
        let encoded = Encoded::from_wire(msgpack, self.payload, self.header, hint, self.json_payload, sequence);
        Ok(Message::data(sequence, entry_id, now, encoded.msgpack, encoded.json))
    }
}

fn u32_of(n: usize) -> CoreResult<u32> {
    u32::try_from(n).map_err(|_| CoreError::envelope("message too large for a stream record (4 GiB)"))
}

fn u16_of(n: usize) -> CoreResult<u16> {
    u16::try_from(n).map_err(|_| CoreError::envelope("array hint too large"))
}

struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> CoreResult<&'a [u8]> {
        let slice = self
            .buf
            .get(self.at..self.at.saturating_add(n))
            .ok_or_else(|| CoreError::envelope("stream record is truncated"))?;
        self.at += n;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self) -> CoreResult<[u8; N]> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u8(&mut self) -> CoreResult<u8> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> CoreResult<u16> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    fn u32(&mut self) -> CoreResult<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> CoreResult<u64> {
        Ok(u64::from_le_bytes(self.array()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::Envelope;

    /// The record as Redis stores it: one argument.
    fn whole(record: &Record) -> Vec<u8> {
        record.bytes(0..record.len()).to_redis_args().pop().unwrap()
    }

    /// The message as another process rebuilds it from Redis, checked against the publisher's
    /// own rebuild of the same record.
    fn roundtrip(header: &[u8], payload: Option<&[u8]>, hint: Option<(&str, Vec<usize>)>, seq: u64) -> Message {
        let local_hint = hint.clone();
        let draft = Draft::new(header, payload, hint).unwrap();
        let record = encode(header, local_hint.as_ref().map(|(d, s)| (*d, s.as_slice())), draft).unwrap();
        let theirs = decode(whole(&record), seq, EntryId::new(1, seq), Instant::now()).unwrap();
        let mine = record.decode(seq, EntryId::new(1, seq), Instant::now()).unwrap();
        for format in [Envelope::Msgpack, Envelope::Json] {
            assert_eq!(mine.envelope(format), theirs.envelope(format));
        }
        theirs
    }

    #[test]
    fn parts_of_a_record_join_into_the_whole() {
        let header = br#"{"type":"array-data","timestamp":"t"}"#;
        let payload: Vec<u8> = (0..5000u32).map(|i| (i * 7) as u8).collect();
        let record = encode(header, None, Draft::new(header, Some(&payload), None).unwrap()).unwrap();
        let all = whole(&record);
        assert_eq!(all.len(), record.len());
        for part in [1, 10, 64, 999, 4096, record.len()] {
            let starts = (0..record.len()).step_by(part);
            let joined: Vec<u8> = starts
                .flat_map(|at| record.bytes(at..(at + part).min(record.len())).to_redis_args().pop().unwrap())
                .collect();
            assert_eq!(joined, all, "parts of {part} bytes");
        }
    }

    #[test]
    fn record_rebuilds_both_envelopes_like_a_local_publish() {
        let header = br#"{"type":"array-data","timestamp":"t","shape":[2]}"#;
        let payload: Vec<u8> = [1i32, -2].iter().flat_map(|v| v.to_le_bytes()).collect();
        let hint = Some(("<i4", vec![2]));
        let local = Draft::new(header, Some(&payload), hint.clone()).unwrap().finish(17);
        let remote = roundtrip(header, Some(&payload), hint, 17);
        assert_eq!(remote.sequence(), 17);
        assert_eq!(remote.envelope(Envelope::Msgpack), &local.msgpack);
        assert_eq!(remote.envelope(Envelope::Json), &local.json.encode());
        let json: serde_json::Value = serde_json::from_slice(remote.envelope(Envelope::Json)).unwrap();
        assert_eq!(json["payload"], serde_json::json!([1, -2]));
    }

    #[test]
    fn record_without_payload_or_hint() {
        let header = br#"{"type":"container-child-created","key":"x"}"#;
        let local = Draft::new(header, None, None).unwrap().finish(3);
        let remote = roundtrip(header, None, None, 3);
        assert_eq!(remote.envelope(Envelope::Msgpack), &local.msgpack);
        assert_eq!(remote.envelope(Envelope::Json), &local.json.encode());
    }

    #[test]
    fn corrupt_records_are_errors_not_panics() {
        let header = br#"{"type":"x"}"#;
        let record = whole(&encode(header, None, Draft::new(header, Some(b"ab"), None).unwrap()).unwrap());
        for cut in 0..record.len() {
            let _ = decode(record[..cut].to_vec(), 1, EntryId::ZERO, Instant::now());
        }
        assert!(decode(vec![9], 1, EntryId::ZERO, Instant::now()).is_err());
        assert!(decode(Vec::new(), 1, EntryId::ZERO, Instant::now()).is_err());
    }
}
