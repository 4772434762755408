//! The wire record of one event as stored in a Redis stream entry and carried on the live
//! channel: enough to rebuild the message (msgpack envelope, lazily built JSON envelope) in any
//! process without re-encoding the payload.
//!
//! Layout (little-endian): `u8 version=2 | u32 seq_at | u8 has_payload | u32 payload_start |
//! u32 payload_end | u8 has_hint | [u16 dtype_len | dtype | u16 ndim | u64 x ndim] |
//! u8 has_json | [u32 json_len | JSON payload] | u32 header_len | header JSON |
//! msgpack envelope (sequence placeholder zero)`.

use std::time::Instant;

use bytes::Bytes;

use crate::codec::array_json::ArrayHint;
use crate::codec::envelope::{self, Draft, Encoded};
use crate::error::{CoreError, CoreResult};
use crate::hub::{EntryId, Message};

const VERSION: u8 = 2;

/// Encodes a validated draft (plus the header and hint it was built from) as a wire record.
pub fn encode(header_json: &[u8], hint: Option<(&str, &[usize])>, draft: Draft) -> CoreResult<Vec<u8>> {
    let (envelope, seq_at, payload_at, json_payload) = draft.into_wire();
    let mut out = Vec::with_capacity(envelope.len() + header_json.len() + 64);
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
    out.extend_from_slice(&envelope);
    Ok(out)
}

/// Rebuilds the data message `sequence` with entry id `entry_id` from a record (taking
/// ownership: no payload copy).
pub fn decode(mut record: Vec<u8>, sequence: u64, entry_id: EntryId, now: Instant) -> CoreResult<Message> {
    let mut r = Reader { buf: &record, at: 0 };
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
    let env_at = r.at;
    let env_len = record.len() - env_at;
    if has_payload && (start > end || end > env_len) {
        return Err(CoreError::envelope("stream record payload range is out of bounds"));
    }
    let hint = match hint {
        Some((dtype, shape)) => Some(ArrayHint::new(&dtype, shape, end - start)?),
        None => None,
    };
    envelope::patch_sequence(&mut record[env_at..], seq_at, sequence)?;
    let msgpack = Bytes::from(record).slice(env_at..);
    let encoded = Encoded::from_wire(msgpack, has_payload.then_some(start..end), header, hint, json_payload, sequence);
    Ok(Message::data(sequence, entry_id, now, encoded.msgpack, encoded.json))
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

    fn roundtrip(header: &[u8], payload: Option<&[u8]>, hint: Option<(&str, Vec<usize>)>, seq: u64) -> Message {
        let local_hint = hint.clone();
        let draft = Draft::new(header, payload, hint).unwrap();
        let record = encode(header, local_hint.as_ref().map(|(d, s)| (*d, s.as_slice())), draft).unwrap();
        decode(record, seq, EntryId::new(1, seq), Instant::now()).unwrap()
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
        let record = encode(header, None, Draft::new(header, Some(b"ab"), None).unwrap()).unwrap();
        for cut in 0..record.len() {
            let _ = decode(record[..cut].to_vec(), 1, EntryId::ZERO, Instant::now());
        }
        assert!(decode(vec![9], 1, EntryId::ZERO, Instant::now()).is_err());
        assert!(decode(Vec::new(), 1, EntryId::ZERO, Instant::now()).is_err());
    }
}
