//! `Conversion`: a `dtype=` view (`dtype=uint8`, `dtype=<f4`), optionally with
//! `range=lo,hi`. Without a range, numpy's `astype` (integers wrap; floats to integers
//! truncate toward zero, and saturate out of range where numpy's result is undefined). With a
//! range, values are clipped to `[lo, hi]` and scaled linearly onto `[0, max]` of an integer
//! type (rounded half to even, like `numpy.rint`) or onto `[0, 1]` of a float type:
//! `rint(clip((x - lo) / (hi - lo), 0, 1) * max)`; NaN becomes 0.

use super::element::{with_element, Element};
use crate::codec::array_json::DType;

/// A parsed `dtype=` and `range=` (see the module docs).
#[derive(Debug, Clone, PartialEq)]
pub struct Conversion {
    target: DType,
    /// The target as numpy names it, little-endian (`|u1`, `<f4`).
    name: &'static str,
    range: Option<(f64, f64)>,
}

/// numpy's names of the numeric types.
const NAMES: [(&str, &str); 13] = [
    ("bool", "|b1"),
    ("uint8", "|u1"),
    ("uint16", "<u2"),
    ("uint32", "<u4"),
    ("uint64", "<u8"),
    ("int8", "|i1"),
    ("int16", "<i2"),
    ("int32", "<i4"),
    ("int64", "<i8"),
    ("float16", "<f2"),
    ("float32", "<f4"),
    ("float64", "<f8"),
    ("double", "<f8"),
];

impl Conversion {
    /// Parses the target (a numpy name such as `uint8`, or a dtype string such as `<u2`; any
    /// byte order is delivered little-endian) and the optional `lo,hi` range (lo < hi).
    pub fn parse(dtype: &str, range: Option<&str>) -> Result<Self, String> {
        let refused = || {
            let names: Vec<&str> = NAMES.iter().map(|(n, _)| *n).collect();
            format!("dtype must be a numeric numpy type ({}), not {}", names.join(", "), crate::text::py_repr(dtype))
        };
        let parsed = NAMES
            .iter()
            .find(|(name, _)| *name == dtype)
            .map(|(_, text)| DType::parse(text))
            .unwrap_or_else(|| DType::parse(dtype))
            .map_err(|_| refused())?;
        let name = with_element!(parsed, T => T::DTYPE, else return Err(refused()));
        let range = match range {
            None => None,
            Some(text) => {
                let bad = || format!("range must be 'lo,hi' with lo < hi, not {}", crate::text::py_repr(text));
                let (lo, hi) = text.split_once(',').ok_or_else(bad)?;
                let (lo, hi) =
                    (lo.trim().parse::<f64>().map_err(|_| bad())?, hi.trim().parse::<f64>().map_err(|_| bad())?);
                if !(lo.is_finite() && hi.is_finite() && lo < hi) {
                    return Err(bad());
                }
                Some((lo, hi))
            }
        };
        Ok(Self { target: DType::parse(name).map_err(|_| refused())?, name, range })
    }

    /// The canonical text (`dtype=|u1&range=0,4095`).
    pub fn text(&self) -> String {
        match self.range {
            Some((lo, hi)) => format!("dtype={}&range={lo},{hi}", self.name),
            None => format!("dtype={}", self.name),
        }
    }

    /// The result's dtype.
    pub fn dtype(&self) -> &'static str {
        self.name
    }

    /// Converts `data` of `dtype`: the result's bytes (little-endian).
    pub fn apply(&self, data: &[u8], dtype: DType) -> Result<Vec<u8>, String> {
        let not_numeric = || String::from("dtype= needs a numeric array");
        with_element!(dtype, S => {
            with_element!(self.target, D => Ok(self.run::<S, D>(data, dtype.big_endian())), else Err(not_numeric()))
        }, else Err(not_numeric()))
    }

    fn run<S: Element, D: Element>(&self, data: &[u8], big_endian: bool) -> Vec<u8> {
        let mut out = Vec::with_capacity(data.len() / S::SIZE * D::SIZE);
        let elements = data.chunks_exact(S::SIZE).map(|e| S::load(e, big_endian));
        match self.range {
            Some((lo, hi)) => {
                let (span, scale) = (hi - lo, D::scale());
                for value in elements {
                    let t = ((value.to_f64() - lo) / span).clamp(0.0, 1.0);
                    let t = if t.is_nan() { 0.0 } else { t * scale };
                    let t = if D::FLOAT { t } else { t.round_ties_even() };
                    D::from_f64(t).store(&mut out);
                }
            }
            None if S::FLOAT => elements.for_each(|v| D::from_f64(v.to_f64()).store(&mut out)),
            None => elements.for_each(|v| D::from_i128(v.to_i128()).store(&mut out)),
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_scales_and_clips() {
        let data: Vec<u8> = [0u16, 4095, 2048, 5000, 1].iter().flat_map(|v| v.to_le_bytes()).collect();
        let conversion = Conversion::parse("uint8", Some("0,4095")).unwrap();
        assert_eq!(conversion.dtype(), "|u1");
        let out = conversion.apply(&data, DType::parse("<u2").unwrap()).unwrap();
        // 2048/4095*255 = 127.53 -> 128; 1/4095*255 = 0.06 -> 0.
        assert_eq!(out, [0, 255, 128, 255, 0]);
        let floats = Conversion::parse("float32", Some("0,10")).unwrap();
        let out = floats.apply(&[5], DType::parse("|u1").unwrap()).unwrap();
        assert_eq!(out, 0.5f32.to_le_bytes());
    }

    #[test]
    fn astype_without_range() {
        let data: Vec<u8> = [-1i16, 300].iter().flat_map(|v| v.to_be_bytes()).collect();
        let out = Conversion::parse("uint8", None).unwrap().apply(&data, DType::parse(">i2").unwrap()).unwrap();
        assert_eq!(out, [255, 44]);
        let out = Conversion::parse("<i4", None).unwrap().apply(&2.9f64.to_le_bytes(), DType::parse("<f8").unwrap());
        assert_eq!(out.unwrap(), 2i32.to_le_bytes());
        assert_eq!(Conversion::parse(">f8", None).unwrap().dtype(), "<f8");
    }

    #[test]
    fn refusals() {
        assert!(Conversion::parse("complex64", None).is_err());
        assert!(Conversion::parse("<U3", None).is_err());
        assert!(Conversion::parse("uint8", Some("5,5")).is_err());
        assert!(Conversion::parse("uint8", Some("0")).is_err());
        assert!(Conversion::parse("uint8", Some("0,nan")).is_err());
        let strings = DType::parse("|S2").unwrap();
        assert!(Conversion::parse("uint8", None).unwrap().apply(b"ab", strings).is_err());
    }
}
