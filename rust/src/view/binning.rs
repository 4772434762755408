//! `Binning`: a `bin=k,sum|mean` view: sums or means over k x k pixels of the last two axes
//! (along the only axis of a 1-D frame), like numpy's reshape-based binning
//! `a[..., :h//k*k, :w//k*k].reshape(..., h//k, k, w//k, k).sum(axis=(-3, -1))`: rows and
//! columns beyond the last whole bin are dropped. Sums accumulate in `int64`, `uint64` (and
//! booleans) or `float64` and are delivered in the narrowest dtype that holds every sum of the
//! bin's pixels exactly (`uint16` binned 4 x 4 is `uint32`; see [`Accumulator::dtype`]); means
//! are `float64`.

use super::element::{with_element, Accumulator, Element};
use crate::codec::array_json::DType;

/// How the pixels of a bin are combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reduce {
    /// Their sum, in the widened type.
    Sum,
    /// Their mean, as `float64`.
    Mean,
}

/// A parsed `bin=` (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Binning {
    factor: usize,
    reduce: Reduce,
}

impl Binning {
    /// Parses `k`, `k,sum` or `k,mean` (k >= 1; sum when not given).
    pub fn parse(text: &str) -> Result<Self, String> {
        let (factor, reduce) = match text.split_once(',') {
            Some((factor, reduce)) => (factor, reduce.trim()),
            None => (text, "sum"),
        };
        let reduce = match reduce {
            "sum" => Reduce::Sum,
            "mean" => Reduce::Mean,
            other => return Err(format!("bin must be 'k,sum' or 'k,mean', not {}", crate::text::py_repr(other))),
        };
        match factor.trim().parse::<usize>() {
            Ok(factor) if factor >= 1 => Ok(Self { factor, reduce }),
            _ => Err(format!("bin needs a whole number of pixels >= 1, not {}", crate::text::py_repr(factor))),
        }
    }

    /// The canonical text (`4,sum`).
    pub fn text(&self) -> String {
        let reduce = match self.reduce {
            Reduce::Sum => "sum",
            Reduce::Mean => "mean",
        };
        format!("{},{reduce}", self.factor)
    }

    /// The result's dtype for input `dtype` binned over `count` pixels, or `None` if it is not
    /// numeric.
    fn dtype(&self, dtype: DType, count: usize) -> Option<&'static str> {
        match self.reduce {
            Reduce::Mean => with_element!(dtype, T => { let _ = T::SIZE; Some("<f8") }, else None),
            Reduce::Sum => {
                with_element!(dtype, T => Some(<<T as Element>::Sum as Accumulator<T>>::dtype(count as u64)), else None)
            }
        }
    }

    /// Bins `data` (of `shape` and `dtype`, C order): the result's bytes (little-endian), shape
    /// and dtype.
    pub fn apply(
        &self,
        data: &[u8],
        shape: &[usize],
        dtype: DType,
    ) -> Result<(Vec<u8>, Vec<usize>, &'static str), String> {
        if shape.is_empty() {
            return Err("bin= needs an array of at least one dimension, not a scalar".into());
        }
        let dims = if shape.len() == 1 { 1 } else { 2 };
        let lead = &shape[..shape.len() - dims];
        let (rows, cols) = if dims == 1 { (1, shape[0]) } else { (shape[shape.len() - 2], shape[shape.len() - 1]) };
        let row_factor = if dims == 1 { 1 } else { self.factor };
        let Some(out_dtype) = self.dtype(dtype, row_factor * self.factor) else {
            return Err("bin= needs a numeric array".into());
        };
        let out_itemsize = DType::parse(out_dtype).map_err(|e| e.to_string())?.itemsize();
        let grid = Grid {
            batches: lead.iter().product(),
            rows,
            cols,
            row_factor,
            col_factor: self.factor,
            big_endian: dtype.big_endian(),
            mean: self.reduce == Reduce::Mean,
            out_itemsize,
        };
        let mut out_shape = lead.to_vec();
        if dims == 2 {
            out_shape.push(rows / row_factor);
        }
        out_shape.push(cols / self.factor);
        let binned = with_element!(dtype, T => grid.run::<T>(data), else {
            return Err("bin= needs a numeric array".into())
        });
        Ok((binned, out_shape, out_dtype))
    }
}

/// One binning pass over `batches` frames of `rows` x `cols`.
struct Grid {
    batches: usize,
    rows: usize,
    cols: usize,
    row_factor: usize,
    col_factor: usize,
    big_endian: bool,
    mean: bool,
    /// Bytes per element of the result.
    out_itemsize: usize,
}

impl Grid {
    fn run<T: Element>(&self, data: &[u8]) -> Vec<u8> {
        let (out_rows, out_cols) = (self.rows / self.row_factor, self.cols / self.col_factor);
        let mut out = Vec::with_capacity(self.batches * out_rows * out_cols * self.out_itemsize);
        let mut sums = vec![T::Sum::default(); out_cols];
        let row_bytes = self.cols * T::SIZE;
        let used = out_cols * self.col_factor * T::SIZE;
        let count = (self.row_factor * self.col_factor) as f64;
        for batch in 0..self.batches {
            let frame = &data[batch * self.rows * row_bytes..];
            for out_row in 0..out_rows {
                sums.fill(T::Sum::default());
                for r in 0..self.row_factor {
                    let start = (out_row * self.row_factor + r) * row_bytes;
                    let row = &frame[start..start + used];
                    for (sum, bin) in sums.iter_mut().zip(row.chunks_exact(self.col_factor * T::SIZE)) {
                        for element in bin.chunks_exact(T::SIZE) {
                            sum.add(T::load(element, self.big_endian));
                        }
                    }
                }
                for sum in &sums {
                    if self.mean {
                        out.extend_from_slice(&(sum.to_f64() / count).to_le_bytes());
                    } else {
                        sum.store(self.out_itemsize, &mut out);
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u16s(values: &[u16]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    #[test]
    fn sums_and_means_drop_the_remainder() {
        // 3 x 5 frame, bin 2: one row of two bins (the last row and column dropped).
        let data = u16s(&(0..15).collect::<Vec<_>>());
        let dtype = DType::parse("<u2").unwrap();
        let (out, shape, out_dtype) = Binning::parse("2").unwrap().apply(&data, &[3, 5], dtype).unwrap();
        assert_eq!((shape, out_dtype), (vec![1, 2], "<u4")); // 4 x 65535 needs 32 bits
        let sums: Vec<u32> = out.chunks_exact(4).map(|c| u32::from_le_bytes(c.try_into().unwrap())).collect();
        assert_eq!(sums, [1 + 5 + 6, 2 + 3 + 7 + 8]);
        let (out, _, out_dtype) = Binning::parse("2,mean").unwrap().apply(&data, &[3, 5], dtype).unwrap();
        assert_eq!(out_dtype, "<f8");
        let means: Vec<f64> = out.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap())).collect();
        assert_eq!(means, [3.0, 5.0]);
    }

    #[test]
    fn sums_take_the_narrowest_dtype_holding_them() {
        let sum_dtype = |dtype: &str, bin: &str, shape: &[usize]| {
            let dtype = DType::parse(dtype).unwrap();
            let data = vec![0u8; shape.iter().product::<usize>() * dtype.itemsize()];
            Binning::parse(bin).unwrap().apply(&data, shape, dtype).unwrap().2
        };
        assert_eq!(sum_dtype("|u1", "1", &[4, 4]), "|u1");
        assert_eq!(sum_dtype("|u1", "4", &[4, 4]), "<u2"); // 16 x 255 = 4080
        assert_eq!(sum_dtype("|u1", "16", &[16, 16]), "<u2"); // 256 x 255 = 65280
        assert_eq!(sum_dtype("|u1", "17", &[17, 17]), "<u4");
        assert_eq!(sum_dtype(">u2", "4", &[4, 4]), "<u4");
        assert_eq!(sum_dtype("<u2", "256", &[256]), "<u4"); // 1-D: 256 pixels
        assert_eq!(sum_dtype("<u4", "2", &[2, 2]), "<u8");
        assert_eq!(sum_dtype("<u8", "1", &[2, 2]), "<u8");
        assert_eq!(sum_dtype("|b1", "15", &[15, 15]), "|u1"); // 225 trues
        assert_eq!(sum_dtype("|b1", "16", &[16, 16]), "<u2");
        assert_eq!(sum_dtype("|i1", "1", &[2]), "|i1");
        assert_eq!(sum_dtype("|i1", "2", &[2, 2]), "<i2");
        assert_eq!(sum_dtype("<i2", "4", &[4, 4]), "<i4");
        assert_eq!(sum_dtype("<i4", "2", &[2, 2]), "<i8");
        assert_eq!(sum_dtype("<f2", "2", &[2, 2]), "<f4");
        assert_eq!(sum_dtype("<f4", "2", &[2, 2]), "<f4");
        assert_eq!(sum_dtype(">f8", "2", &[2, 2]), "<f8");
    }

    #[test]
    fn narrow_sums_hold_the_extremes() {
        let data = u16s(&[u16::MAX; 16]);
        let (out, _, dtype) = Binning::parse("4").unwrap().apply(&data, &[4, 4], DType::parse("<u2").unwrap()).unwrap();
        assert_eq!((out, dtype), (1_048_560u32.to_le_bytes().to_vec(), "<u4"));
        let data: Vec<u8> = [i8::MIN; 4].iter().map(|v| *v as u8).collect();
        let (out, _, dtype) = Binning::parse("2").unwrap().apply(&data, &[2, 2], DType::parse("|i1").unwrap()).unwrap();
        assert_eq!((out, dtype), ((-512i16).to_le_bytes().to_vec(), "<i2"));
        let data: Vec<u8> = [1.5f32, 2.25, -1.0, 0.125].iter().flat_map(|v| v.to_le_bytes()).collect();
        let (out, _, dtype) = Binning::parse("2").unwrap().apply(&data, &[2, 2], DType::parse("<f4").unwrap()).unwrap();
        assert_eq!((out, dtype), (2.875f32.to_le_bytes().to_vec(), "<f4"));
    }

    #[test]
    fn one_dimension_and_batches() {
        let data: Vec<u8> = [1i8, -2, 3, 4, 5].iter().map(|v| *v as u8).collect();
        let dtype = DType::parse("|i1").unwrap();
        let (out, shape, out_dtype) = Binning::parse("2,sum").unwrap().apply(&data, &[5], dtype).unwrap();
        assert_eq!((shape, out_dtype), (vec![2], "<i2"));
        let sums: Vec<i16> = out.chunks_exact(2).map(|c| i16::from_le_bytes(c.try_into().unwrap())).collect();
        assert_eq!(sums, [-1, 7]);
        let data = u16s(&[1, 2, 3, 4, 10, 20, 30, 40]);
        let (out, shape, _) =
            Binning::parse("2").unwrap().apply(&data, &[2, 2, 2], DType::parse("<u2").unwrap()).unwrap();
        assert_eq!(shape, [2, 1, 1]);
        assert_eq!(out, [10u32.to_le_bytes(), 100u32.to_le_bytes()].concat());
    }

    #[test]
    fn refusals() {
        assert!(Binning::parse("0").is_err());
        assert!(Binning::parse("2,max").is_err());
        assert!(Binning::parse("x").is_err());
        let text = DType::parse("|S2").unwrap();
        assert!(Binning::parse("2").unwrap().apply(b"abcd", &[2], text).is_err());
        assert!(Binning::parse("2").unwrap().apply(b"a", &[], DType::parse("|u1").unwrap()).is_err());
    }
}
