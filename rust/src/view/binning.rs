//! `Binning`: a `bin=k,sum|mean` view: sums or means over k x k pixels of the last two axes
//! (along the only axis of a 1-D frame), like numpy's reshape-based binning
//! `a[..., :h//k*k, :w//k*k].reshape(..., h//k, k, w//k, k).sum(axis=(-3, -1))`: rows and
//! columns beyond the last whole bin are dropped. Sums accumulate in `int64`, `uint64` (and
//! booleans) or `float64`; means are `float64`.

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

    /// The result's dtype for input `dtype`, or `None` if it is not numeric.
    pub fn dtype(&self, dtype: DType) -> Option<&'static str> {
        match self.reduce {
            Reduce::Mean => with_element!(dtype, T => { let _ = T::SIZE; Some("<f8") }, else None),
            Reduce::Sum => with_element!(dtype, T => Some(<<T as Element>::Sum as Accumulator<T>>::DTYPE), else None),
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
        let grid = Grid {
            batches: lead.iter().product(),
            rows,
            cols,
            row_factor,
            col_factor: self.factor,
            big_endian: dtype.big_endian(),
            mean: self.reduce == Reduce::Mean,
        };
        let mut out_shape = lead.to_vec();
        if dims == 2 {
            out_shape.push(rows / row_factor);
        }
        out_shape.push(cols / self.factor);
        let binned = with_element!(dtype, T => grid.run::<T>(data), else {
            return Err("bin= needs a numeric array".into())
        });
        let dtype = self.dtype(dtype).unwrap_or("<f8");
        Ok((binned, out_shape, dtype))
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
}

impl Grid {
    fn run<T: Element>(&self, data: &[u8]) -> Vec<u8> {
        let (out_rows, out_cols) = (self.rows / self.row_factor, self.cols / self.col_factor);
        let out_size = if self.mean { 8 } else { std::mem::size_of::<T::Sum>().max(8) };
        let mut out = Vec::with_capacity(self.batches * out_rows * out_cols * out_size);
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
                        sum.store(&mut out);
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
        assert_eq!((shape, out_dtype), (vec![1, 2], "<u8"));
        let sums: Vec<u64> = out.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().unwrap())).collect();
        assert_eq!(sums, [1 + 5 + 6, 2 + 3 + 7 + 8]);
        let (out, _, out_dtype) = Binning::parse("2,mean").unwrap().apply(&data, &[3, 5], dtype).unwrap();
        assert_eq!(out_dtype, "<f8");
        let means: Vec<f64> = out.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap())).collect();
        assert_eq!(means, [3.0, 5.0]);
    }

    #[test]
    fn one_dimension_and_batches() {
        let data: Vec<u8> = [1i8, -2, 3, 4, 5].iter().map(|v| *v as u8).collect();
        let dtype = DType::parse("|i1").unwrap();
        let (out, shape, out_dtype) = Binning::parse("2,sum").unwrap().apply(&data, &[5], dtype).unwrap();
        assert_eq!((shape, out_dtype), (vec![2], "<i8"));
        let sums: Vec<i64> = out.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap())).collect();
        assert_eq!(sums, [-1, 7]);
        let data = u16s(&[1, 2, 3, 4, 10, 20, 30, 40]);
        let (out, shape, _) =
            Binning::parse("2").unwrap().apply(&data, &[2, 2, 2], DType::parse("<u2").unwrap()).unwrap();
        assert_eq!(shape, [2, 1, 1]);
        assert_eq!(out, [10u64.to_le_bytes(), 100u64.to_le_bytes()].concat());
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
