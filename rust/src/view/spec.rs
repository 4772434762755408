//! `ViewSpec`: what a subscriber asked to see of each array frame: `slice=`, then `bin=`, then
//! `dtype=` (with `range=`), then `compression=`, applied in that order to each message's
//! payload (the array a write carried: a whole frame, a block or a patched region). Its
//! canonical name identifies the view in envelopes, in the cache and in the metrics.

use std::borrow::Cow;

use super::binning::Binning;
use super::compression::Codec;
use super::conversion::Conversion;
use super::element::is_numeric;
use super::selection::Selection;
use crate::codec::array_json::{ArrayHint, DType};

/// A subscriber's view (see the module docs).
#[derive(Debug, Clone, PartialEq)]
pub struct ViewSpec {
    selection: Option<Selection>,
    binning: Option<Binning>,
    conversion: Option<Conversion>,
    codec: Option<Codec>,
    name: String,
}

/// A frame seen through a view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewOutput {
    /// The payload: the view's array (little-endian after `bin` or `dtype`), compressed if the
    /// view says so.
    pub payload: Vec<u8>,
    /// The view's array shape.
    pub shape: Vec<usize>,
    /// Its dtype (numpy's `dtype.str`).
    pub dtype: String,
    /// The array's size in bytes before compression.
    pub raw_bytes: usize,
}

impl ViewSpec {
    /// The view given by the query parameters `get` returns, or `None` when none is given (the
    /// subscriber sees the stream as published). Errors are the 400 details.
    pub fn parse<'a>(get: impl Fn(&str) -> Option<&'a str>) -> Result<Option<Self>, String> {
        let selection = match get("slice") {
            Some(text) => Selection::parse(text).map_err(|e| format!("Invalid slice: {e}"))?,
            None => None,
        };
        let binning = get("bin").map(Binning::parse).transpose()?;
        let conversion = match (get("dtype"), get("range")) {
            (Some(dtype), range) => Some(Conversion::parse(dtype, range)?),
            (None, Some(_)) => return Err("range= needs dtype= (e.g. dtype=uint8&range=0,4095)".into()),
            (None, None) => None,
        };
        let codec = match get("compression") {
            None | Some("none") => None,
            Some(name) => Some(Codec::parse(name)?),
        };
        let mut parts = Vec::new();
        if let Some(selection) = &selection {
            parts.push(format!("slice={}", selection.text()));
        }
        if let Some(binning) = &binning {
            parts.push(format!("bin={}", binning.text()));
        }
        if let Some(conversion) = &conversion {
            parts.push(conversion.text());
        }
        if let Some(codec) = codec {
            parts.push(format!("compression={}", codec.name()));
        }
        if parts.is_empty() {
            return Ok(None);
        }
        Ok(Some(Self { selection, binning, conversion, codec, name: parts.join("&") }))
    }

    /// The canonical name (`slice=0:10,::2&bin=4,sum&dtype=|u1&range=0,4095&compression=zstd`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The compression, if any.
    pub fn codec(&self) -> Option<Codec> {
        self.codec
    }

    /// Whether the view only compresses (the array is the published one).
    pub fn compresses_only(&self) -> bool {
        self.selection.is_none() && self.binning.is_none() && self.conversion.is_none()
    }

    /// Checks the view against an array node's dtype and shape when the subscription starts
    /// (the slice as the array GET checks it); frames that still do not fit are reported one
    /// by one.
    pub fn check(&self, dtype: &str, shape: &[usize]) -> Result<(), String> {
        if let Some(selection) = &self.selection {
            selection.check(shape).map_err(|e| format!("Invalid slice: {e}"))?;
        }
        if self.binning.is_some() || self.conversion.is_some() {
            let numeric = DType::parse(dtype).is_ok_and(is_numeric);
            if !numeric {
                return Err(format!(
                    "bin= and dtype= need an array of numbers, not dtype {}",
                    crate::text::py_repr(dtype)
                ));
            }
        }
        Ok(())
    }

    /// `payload` (an array described by `hint`) seen through the view.
    pub fn apply(&self, payload: &[u8], hint: &ArrayHint) -> Result<ViewOutput, String> {
        let mut dtype = hint.dtype();
        let mut dtype_name: Cow<'_, str> = Cow::Borrowed(hint.dtype_name());
        let mut shape = hint.shape().to_vec();
        let mut data: Cow<'_, [u8]> = Cow::Borrowed(payload);
        if let Some(selection) = &self.selection {
            let (selected, selected_shape) =
                selection.apply(&data, &shape, dtype.itemsize()).map_err(|e| format!("Invalid slice: {e}"))?;
            data = Cow::Owned(selected);
            shape = selected_shape;
        }
        if let Some(binning) = &self.binning {
            let (binned, binned_shape, binned_dtype) = binning.apply(&data, &shape, dtype)?;
            data = Cow::Owned(binned);
            shape = binned_shape;
            dtype = DType::parse(binned_dtype).map_err(|e| e.to_string())?;
            dtype_name = Cow::Borrowed(binned_dtype);
        }
        if let Some(conversion) = &self.conversion {
            data = Cow::Owned(conversion.apply(&data, dtype)?);
            dtype = DType::parse(conversion.dtype()).map_err(|e| e.to_string())?;
            dtype_name = Cow::Borrowed(conversion.dtype());
        }
        let raw_bytes = data.len();
        let payload = match self.codec {
            Some(codec) => codec.compress(&data, dtype.itemsize())?,
            None => data.into_owned(),
        };
        Ok(ViewOutput { payload, shape, dtype: dtype_name.into_owned(), raw_bytes })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(query: &[(&str, &str)]) -> Result<Option<ViewSpec>, String> {
        ViewSpec::parse(|name| query.iter().find(|(k, _)| *k == name).map(|(_, v)| *v))
    }

    #[test]
    fn names_and_order() {
        assert_eq!(parse(&[]).unwrap(), None);
        assert_eq!(parse(&[("slice", "()"), ("compression", "none")]).unwrap(), None);
        let spec = parse(&[
            ("compression", "zstd"),
            ("dtype", "uint8"),
            ("range", "0,4095"),
            ("bin", "4"),
            ("slice", "0, ::2"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(spec.name(), "slice=0,::2&bin=4,sum&dtype=|u1&range=0,4095&compression=zstd");
        assert!(!spec.compresses_only());
        assert!(parse(&[("compression", "lz4")]).unwrap().unwrap().compresses_only());
        assert!(parse(&[("range", "0,1")]).is_err());
        assert_eq!(
            parse(&[("slice", "x")]).unwrap_err(),
            "Invalid slice: Invalid slice parameter 'x': cannot parse 'x'"
        );
    }

    #[test]
    fn applies_slice_bin_dtype_in_order() {
        // 4 x 4 uint16 0..16; slice rows 1: (3 x 4), bin 2 sum -> 1 x 2, dtype uint8 range 0,100.
        let data: Vec<u8> = (0..16u16).flat_map(|v| v.to_le_bytes()).collect();
        let hint = ArrayHint::new("<u2", vec![4, 4], data.len()).unwrap();
        let spec = parse(&[("slice", "1:"), ("bin", "2"), ("dtype", "uint8"), ("range", "0,100")]).unwrap().unwrap();
        let out = spec.apply(&data, &hint).unwrap();
        // bins: 4+5+8+9 = 26, 6+7+10+11 = 34 -> 26*2.55 = 66.3 -> 66, 34*2.55 = 86.7 -> 87
        assert_eq!(out, ViewOutput { payload: vec![66, 87], shape: vec![1, 2], dtype: "|u1".into(), raw_bytes: 2 });
        let compressed = parse(&[("compression", "zstd")]).unwrap().unwrap().apply(&data, &hint).unwrap();
        assert_eq!((compressed.dtype.as_str(), compressed.raw_bytes), ("<u2", 32));
        assert_eq!(Codec::Zstd.decompress(&compressed.payload, 32).unwrap(), data);
    }

    #[test]
    fn checks_against_the_node() {
        let spec = parse(&[("slice", "5")]).unwrap().unwrap();
        assert_eq!(
            spec.check("<u2", &[3, 4]).unwrap_err(),
            "Invalid slice: Index 5 is out of bounds for axis 0 with size 3"
        );
        let spec = parse(&[("bin", "2")]).unwrap().unwrap();
        assert!(spec.check("<U3", &[3]).is_err());
        assert!(spec.check("<f4", &[3]).is_ok());
    }
}
