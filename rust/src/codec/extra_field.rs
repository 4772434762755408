//! One field added to an encoded envelope for one subscriber (e.g. `skipped`, the frames its
//! `max_fps` left out before this one), without decoding it: a JSON object gets `,"k":n`
//! before its closing brace; a msgpack map gets its length raised by one and the pair first.

use bytes::Bytes;
use rmp::encode;

use super::msgpack::write_str;
use super::Envelope;

/// `frame` (an envelope encoding an object/map) with `key: value` added; unchanged if it is not
/// one.
pub fn with_count(frame: &[u8], envelope: Envelope, key: &str, value: u64) -> Bytes {
    let mut out = Vec::with_capacity(frame.len() + key.len() + 16);
    match envelope {
        Envelope::Json => {
            let Some(body) = frame.strip_suffix(b"}").filter(|b| b.starts_with(b"{")) else {
                return Bytes::copy_from_slice(frame);
            };
            out.extend_from_slice(body);
            if body.len() > 1 {
                out.push(b',');
            }
            // Serializing a string into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut out, key);
            out.extend_from_slice(format!(":{value}}}").as_bytes());
        }
        Envelope::Msgpack => {
            let (len, rest) = match frame.split_first() {
                Some((&b, rest)) if b & 0xf0 == 0x80 => (u32::from(b & 0x0f), rest),
                Some((&0xde, rest)) if rest.len() >= 2 => {
                    (u32::from(u16::from_be_bytes([rest[0], rest[1]])), &rest[2..])
                }
                Some((&0xdf, rest)) if rest.len() >= 4 => {
                    (u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]), &rest[4..])
                }
                _ => return Bytes::copy_from_slice(frame),
            };
            let Some(len) = len.checked_add(1) else { return Bytes::copy_from_slice(frame) };
            if encode::write_map_len(&mut out, len).is_err() || write_str(&mut out, key).is_err() {
                return Bytes::copy_from_slice(frame);
            }
            // Writing into a Vec cannot fail.
            let _ = encode::write_uint(&mut out, value);
            out.extend_from_slice(rest);
        }
    }
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_and_msgpack() {
        assert_eq!(&with_count(br#"{"a":1}"#, Envelope::Json, "skipped", 3)[..], br#"{"a":1,"skipped":3}"#);
        assert_eq!(&with_count(b"{}", Envelope::Json, "skipped", 0)[..], br#"{"skipped":0}"#);
        let map = rmpv::Value::Map(vec![(rmpv::Value::from("a"), rmpv::Value::from(1))]);
        let mut packed = Vec::new();
        rmpv::encode::write_value(&mut packed, &map).unwrap();
        let out = with_count(&packed, Envelope::Msgpack, "skipped", 300);
        let value = rmpv::decode::read_value(&mut &out[..]).unwrap();
        let pairs: Vec<(String, u64)> =
            value.as_map().unwrap().iter().map(|(k, v)| (k.as_str().unwrap().into(), v.as_u64().unwrap())).collect();
        assert_eq!(pairs, [("skipped".into(), 300), ("a".into(), 1)]);
        let sixteen: Vec<(rmpv::Value, rmpv::Value)> =
            (0..15).map(|i| (rmpv::Value::from(format!("k{i}")), rmpv::Value::from(i))).collect();
        let mut packed = Vec::new();
        rmpv::encode::write_value(&mut packed, &rmpv::Value::Map(sixteen)).unwrap();
        let out = with_count(&packed, Envelope::Msgpack, "skipped", 1);
        assert_eq!(rmpv::decode::read_value(&mut &out[..]).unwrap().as_map().unwrap().len(), 16);
    }
}
