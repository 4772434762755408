//! Transcoding raw array bytes (numpy dtype string + shape) into a nested JSON list, like
//! `numpy.frombuffer(payload, dtype).reshape(shape).tolist()` for Tiled's JSON envelope.

use std::io::Write as _;

use crate::error::{CoreError, CoreResult};

/// Byte order of a multi-byte element.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Order {
    Little,
    Big,
}

/// The element kinds numpy's `dtype.str` can name that we know how to transcode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `b1`.
    Bool,
    /// `i1`..`i8`.
    Int,
    /// `u1`..`u8`.
    UInt,
    /// `f2`, `f4`, `f8`.
    Float,
    /// `c8`, `c16`.
    Complex,
    /// `M8[unit]` / `m8[unit]`: written as the raw int64 count.
    Time,
    /// `S<n>`: bytes, decoded lossily as UTF-8.
    Bytes,
    /// `U<n>`: UTF-32 code units.
    Unicode,
}

/// A parsed numpy dtype string such as `<f8`, `|u1`, `<U3` or `<M8[ns]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DType {
    kind: Kind,
    order: Order,
    /// Bytes per element.
    itemsize: usize,
}

impl DType {
    /// Parses `dtype.str` (byte order char, kind char, item size, optional `[unit]` for times).
    pub fn parse(text: &str) -> CoreResult<Self> {
        let bad = || CoreError::envelope(format!("unsupported array dtype {text:?}"));
        let (order, rest) = match text.as_bytes().first() {
            Some(b'<') => (Order::Little, &text[1..]),
            Some(b'>') => (Order::Big, &text[1..]),
            Some(b'|' | b'=') => (native(), &text[1..]),
            _ => (native(), text),
        };
        let mut chars = rest.chars();
        let kind_char = chars.next().ok_or_else(bad)?;
        let mut size_text = chars.as_str();
        if matches!(kind_char, 'M' | 'm') {
            if let Some(open) = size_text.find('[') {
                if !size_text.ends_with(']') {
                    return Err(bad());
                }
                size_text = &size_text[..open];
            }
        }
        let size: usize = size_text.parse().map_err(|_| bad())?;
        let (kind, itemsize) = match (kind_char, size) {
            ('b', 1) => (Kind::Bool, 1),
            ('i', 1 | 2 | 4 | 8) => (Kind::Int, size),
            ('u', 1 | 2 | 4 | 8) => (Kind::UInt, size),
            ('f', 2 | 4 | 8) => (Kind::Float, size),
            ('c', 8 | 16) => (Kind::Complex, size),
            ('M' | 'm', 8) => (Kind::Time, 8),
            ('S', n) => (Kind::Bytes, n),
            ('U', n) => (Kind::Unicode, n.checked_mul(4).ok_or_else(bad)?),
            _ => return Err(bad()),
        };
        Ok(Self { kind, order, itemsize })
    }

    /// Bytes per element.
    pub fn itemsize(&self) -> usize {
        self.itemsize
    }

    /// The element kind.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Whether multi-byte elements are stored most significant byte first.
    pub fn big_endian(&self) -> bool {
        self.order == Order::Big
    }
}

fn native() -> Order {
    if cfg!(target_endian = "big") {
        Order::Big
    } else {
        Order::Little
    }
}

/// A validated array hint: dtype + shape whose byte count matched the payload at publish time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArrayHint {
    dtype: DType,
    /// The dtype as given (e.g. `<M8[ns]`), for messages derived from this one.
    dtype_name: String,
    shape: Vec<usize>,
}

impl ArrayHint {
    /// Parses the dtype and checks that `payload_len` equals `itemsize * prod(shape)`.
    pub fn new(dtype_str: &str, shape: Vec<usize>, payload_len: usize) -> CoreResult<Self> {
        let dtype = DType::parse(dtype_str)?;
        let expected = shape
            .iter()
            .try_fold(dtype.itemsize, |acc, &n| acc.checked_mul(n))
            .ok_or_else(|| CoreError::envelope("array shape is too large"))?;
        if expected != payload_len {
            return Err(CoreError::envelope(format!(
                "payload has {payload_len} bytes but dtype {dtype_str:?} and shape {shape:?} need {expected}"
            )));
        }
        Ok(Self { dtype, dtype_name: dtype_str.to_owned(), shape })
    }

    /// The parsed dtype.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The dtype as given.
    pub fn dtype_name(&self) -> &str {
        &self.dtype_name
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Writes `data` (already validated to the hint's byte count) as a nested JSON list.
    pub fn write_json(&self, out: &mut Vec<u8>, data: &[u8]) {
        write_dims(out, &self.dtype, &self.shape, data);
    }
}

fn write_dims(out: &mut Vec<u8>, dtype: &DType, dims: &[usize], data: &[u8]) {
    let Some((&n, rest)) = dims.split_first() else {
        write_element(out, dtype, data);
        return;
    };
    let stride = rest.iter().product::<usize>() * dtype.itemsize;
    out.push(b'[');
    for i in 0..n {
        if i > 0 {
            out.push(b',');
        }
        write_dims(out, dtype, rest, &data[i * stride..(i + 1) * stride]);
    }
    out.push(b']');
}

fn bytes<const N: usize>(data: &[u8], order: Order) -> [u8; N] {
    let mut b = [0u8; N];
    b.copy_from_slice(&data[..N]);
    if order == Order::Big {
        b.reverse();
    }
    b // now little-endian
}

fn int(data: &[u8], size: usize, order: Order) -> i64 {
    match size {
        1 => i64::from(data[0] as i8),
        2 => i64::from(i16::from_le_bytes(bytes(data, order))),
        4 => i64::from(i32::from_le_bytes(bytes(data, order))),
        _ => i64::from_le_bytes(bytes(data, order)),
    }
}

fn uint(data: &[u8], size: usize, order: Order) -> u64 {
    match size {
        1 => u64::from(data[0]),
        2 => u64::from(u16::from_le_bytes(bytes(data, order))),
        4 => u64::from(u32::from_le_bytes(bytes(data, order))),
        _ => u64::from_le_bytes(bytes(data, order)),
    }
}

fn float(data: &[u8], size: usize, order: Order) -> f64 {
    match size {
        2 => half::f16::from_bits(u16::from_le_bytes(bytes(data, order))).to_f64(),
        4 => f64::from(f32::from_le_bytes(bytes(data, order))),
        _ => f64::from_le_bytes(bytes(data, order)),
    }
}

fn write_float(out: &mut Vec<u8>, value: f64) {
    if value.is_finite() {
        // Writing to a Vec cannot fail; ryu gives the shortest repr, like Python's float repr.
        let _ = serde_json::to_writer(&mut *out, &value);
    } else {
        out.extend_from_slice(b"null");
    }
}

fn write_string(out: &mut Vec<u8>, text: &str) {
    let _ = serde_json::to_writer(&mut *out, text);
}

fn write_element(out: &mut Vec<u8>, dtype: &DType, data: &[u8]) {
    let (size, order) = (dtype.itemsize, dtype.order);
    match dtype.kind {
        Kind::Bool => out.extend_from_slice(if data[0] != 0 { b"true" } else { b"false" }),
        Kind::Int | Kind::Time => {
            let _ = write!(out, "{}", int(data, size, order));
        }
        Kind::UInt => {
            let _ = write!(out, "{}", uint(data, size, order));
        }
        Kind::Float => write_float(out, float(data, size, order)),
        Kind::Complex => {
            let half = size / 2;
            out.push(b'[');
            write_float(out, float(&data[..half], half, order));
            out.push(b',');
            write_float(out, float(&data[half..], half, order));
            out.push(b']');
        }
        Kind::Bytes => {
            let end = data.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1);
            write_string(out, &String::from_utf8_lossy(&data[..end]));
        }
        Kind::Unicode => {
            let mut units: Vec<u32> = data.chunks_exact(4).map(|c| u32::from_le_bytes(bytes(c, order))).collect();
            while units.last() == Some(&0) {
                units.pop();
            }
            let text: String = units.into_iter().map(|u| char::from_u32(u).unwrap_or('\u{FFFD}')).collect();
            write_string(out, &text);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn transcode(dtype: &str, shape: &[usize], data: &[u8]) -> Value {
        let hint = ArrayHint::new(dtype, shape.to_vec(), data.len()).unwrap();
        let mut out = Vec::new();
        hint.write_json(&mut out, data);
        serde_json::from_slice(&out).unwrap()
    }

    fn le<T: Copy, const N: usize>(values: &[T], f: impl Fn(T) -> [u8; N]) -> Vec<u8> {
        values.iter().flat_map(|&v| f(v)).collect()
    }

    #[test]
    fn integers() {
        assert_eq!(transcode("<i8", &[3], &le(&[1i64, 2, 3], i64::to_le_bytes)), json!([1, 2, 3]));
        assert_eq!(transcode("|i1", &[2], &[0xff, 7]), json!([-1, 7]));
        assert_eq!(transcode("<i2", &[1], &le(&[-300i16], i16::to_le_bytes)), json!([-300]));
        assert_eq!(transcode(">i4", &[1], &le(&[-5i32], i32::to_be_bytes)), json!([-5]));
        assert_eq!(transcode("|u1", &[2], &[255, 0]), json!([255, 0]));
        assert_eq!(transcode(">u2", &[1], &[1, 0]), json!([256]));
        assert_eq!(transcode("<u8", &[1], &le(&[u64::MAX], u64::to_le_bytes)), json!([u64::MAX]));
    }

    #[test]
    fn shapes() {
        let data = le(&[0i32, 1, 2, 3, 4, 5], i32::to_le_bytes);
        assert_eq!(transcode("<i4", &[2, 3], &data), json!([[0, 1, 2], [3, 4, 5]]));
        assert_eq!(transcode("<i4", &[3, 1, 2], &data), json!([[[0, 1]], [[2, 3]], [[4, 5]]]));
        assert_eq!(transcode("<i4", &[], &data[..4]), json!(0));
        assert_eq!(transcode("<i4", &[0, 3], &[]), json!([]));
        assert_eq!(transcode("<i4", &[2, 0], &[]), json!([[], []]));
    }

    #[test]
    fn floats_bools_complex() {
        assert_eq!(
            transcode("<f8", &[3], &le(&[1.5f64, f64::NAN, f64::INFINITY], f64::to_le_bytes)),
            json!([1.5, null, null])
        );
        assert_eq!(transcode("<f4", &[1], &le(&[0.5f32], f32::to_le_bytes)), json!([0.5]));
        assert_eq!(transcode("<f4", &[1], &le(&[0.1f32], f32::to_le_bytes)), json!([f64::from(0.1f32)]));
        let h = half::f16::from_f64(2.5).to_bits();
        assert_eq!(transcode("<f2", &[1], &h.to_le_bytes()), json!([2.5]));
        assert_eq!(transcode(">f8", &[1], &2.0f64.to_be_bytes()), json!([2.0]));
        assert_eq!(transcode("|b1", &[3], &[1, 0, 1]), json!([true, false, true]));
        assert_eq!(transcode("<c16", &[1], &le(&[1.0f64, -2.0], f64::to_le_bytes)), json!([[1.0, -2.0]]));
        assert_eq!(transcode("<c8", &[1], &le(&[3.0f32, 4.0], f32::to_le_bytes)), json!([[3.0, 4.0]]));
    }

    #[test]
    fn times_and_strings() {
        assert_eq!(transcode("<M8[ns]", &[1], &le(&[1_700_000_000i64], i64::to_le_bytes)), json!([1_700_000_000]));
        assert_eq!(transcode("<m8[s]", &[1], &le(&[-3i64], i64::to_le_bytes)), json!([-3]));
        assert_eq!(transcode("|S5", &[2], b"ab\0\0\0hello"), json!(["ab", "hello"]));
        let u: Vec<u8> = "hé\0".chars().flat_map(|c| (c as u32).to_le_bytes()).collect();
        assert_eq!(transcode("<U3", &[1], &u), json!(["hé"]));
        let ub: Vec<u8> = "x".chars().flat_map(|c| (c as u32).to_be_bytes()).collect();
        assert_eq!(transcode(">U1", &[], &ub), json!("x"));
    }

    #[test]
    fn rejects_bad_hints() {
        assert!(ArrayHint::new("<i8", vec![3], 23).is_err());
        assert!(ArrayHint::new("<i3", vec![1], 3).is_err());
        assert!(ArrayHint::new("<V8", vec![1], 8).is_err());
        assert!(ArrayHint::new("", vec![], 0).is_err());
        assert!(ArrayHint::new("<M8[ns", vec![1], 8).is_err());
        assert!(ArrayHint::new("<u1", vec![usize::MAX, 2], 0).is_err());
    }
}
