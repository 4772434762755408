//! Writing JSON values (`serde_json::Value`) as msgpack, the way Python's `msgpack.packb` would.

use std::fmt::Display;

use rmp::encode;
use serde_json::Value;

use crate::error::{CoreError, CoreResult};

/// Maps a (practically impossible) msgpack write failure, e.g. a string over 4 GiB.
pub(crate) fn check<T, E: Display>(result: Result<T, E>) -> CoreResult<T> {
    result.map_err(|e| CoreError::envelope(format!("msgpack encoding failed: {e}")))
}

/// Converts a length to the `u32` msgpack requires.
pub(crate) fn len32(len: usize) -> CoreResult<u32> {
    u32::try_from(len).map_err(|_| CoreError::envelope("value too large for msgpack (over 4 GiB)"))
}

/// Writes a string as msgpack `str`.
pub(crate) fn write_str(buf: &mut Vec<u8>, s: &str) -> CoreResult<()> {
    check(encode::write_str_len(buf, len32(s.len())?))?;
    buf.extend_from_slice(s.as_bytes());
    Ok(())
}

/// Writes one JSON value: ints as the smallest msgpack int, floats as float64, null as nil.
pub(crate) fn write_value(buf: &mut Vec<u8>, value: &Value) -> CoreResult<()> {
    match value {
        Value::Null => check(encode::write_nil(buf)),
        Value::Bool(b) => check(encode::write_bool(buf, *b)),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                check(encode::write_uint(buf, u)).map(drop)
            } else if let Some(i) = n.as_i64() {
                check(encode::write_sint(buf, i)).map(drop)
            } else {
                check(encode::write_f64(buf, n.as_f64().unwrap_or(f64::NAN)))
            }
        }
        Value::String(s) => write_str(buf, s),
        Value::Array(items) => {
            check(encode::write_array_len(buf, len32(items.len())?))?;
            items.iter().try_for_each(|v| write_value(buf, v))
        }
        Value::Object(map) => {
            check(encode::write_map_len(buf, len32(map.len())?))?;
            map.iter().try_for_each(|(k, v)| {
                write_str(buf, k)?;
                write_value(buf, v)
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(json: &str) -> rmpv::Value {
        let value: Value = serde_json::from_str(json).unwrap();
        let mut buf = Vec::new();
        write_value(&mut buf, &value).unwrap();
        rmpv::decode::read_value(&mut buf.as_slice()).unwrap()
    }

    #[test]
    fn scalars_and_containers() {
        let v =
            roundtrip(r#"{"a": 1, "b": -2, "c": 1.5, "d": null, "e": [true, "x"], "f": {"g": 18446744073709551615}}"#);
        let map = v.as_map().unwrap();
        assert_eq!(map[0], (rmpv::Value::from("a"), rmpv::Value::from(1u64)));
        assert_eq!(map[1].1, rmpv::Value::from(-2i64));
        assert_eq!(map[2].1, rmpv::Value::F64(1.5));
        assert_eq!(map[3].1, rmpv::Value::Nil);
        assert_eq!(map[4].1, rmpv::Value::Array(vec![true.into(), "x".into()]));
        assert_eq!(map[5].1.as_map().unwrap()[0].1, rmpv::Value::from(u64::MAX));
    }

    #[test]
    fn small_ints_are_compact() {
        let mut buf = Vec::new();
        write_value(&mut buf, &Value::from(5)).unwrap();
        assert_eq!(buf, [5]);
    }
}
