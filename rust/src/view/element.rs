//! `Element`: the numeric element types a view computes on (numpy's `b1`, `i1`..`i8`,
//! `u1`..`u8`, `f2`, `f4`, `f8`), read in either byte order and written little-endian, with
//! the accumulator a binned sum uses for each; and `with_element!`, which picks the type for a
//! parsed dtype so that every inner loop is monomorphic.

use half::f16;

/// What a binned sum accumulates in: `u64` for booleans and unsigned integers, `i64` for
/// signed ones, `f64` for floats (integer sums wrap on overflow, like numpy's). It is
/// delivered in the narrowest dtype that holds every sum of `count` elements exactly (see
/// [`Accumulator::dtype`]), so a view is no wider than its values need.
pub trait Accumulator<T>: Copy + Default {
    /// The numpy dtype (little-endian) of a sum of `count` elements: for integers and booleans
    /// the narrowest of the same signedness (`u1`..`u8`, `i1`..`i8`) holding `count` times the
    /// input's extremes (`u8`/`i8` when none does: those wrap like numpy's); `f4` for `f2` and
    /// `f4` input (numpy's `float32.sum` is `float32`; `float16` would overflow at 65504), `f8`
    /// for `f8`.
    fn dtype(count: u64) -> &'static str;
    /// Adds one element.
    fn add(&mut self, value: T);
    /// Writes the sum as `itemsize` bytes, little-endian (the itemsize of [`Self::dtype`]).
    fn store(self, itemsize: usize, out: &mut Vec<u8>);
    /// The sum as a float (for the mean).
    fn to_f64(self) -> f64;
}

/// Appends the first `itemsize` of a 64-bit integer's little-endian `bytes`: the low bytes of a
/// two's complement number are the number in a narrower type whenever it fits, which the
/// sum's dtype guarantees. (Fixed lengths per arm: this runs once per output element.)
fn store_low_bytes(bytes: [u8; 8], itemsize: usize, out: &mut Vec<u8>) {
    match itemsize {
        1 => out.push(bytes[0]),
        2 => out.extend_from_slice(&bytes[..2]),
        4 => out.extend_from_slice(&bytes[..4]),
        _ => out.extend_from_slice(&bytes),
    }
}

/// The narrowest unsigned dtype holding `max * count`.
fn unsigned_dtype(max: u128, count: u64) -> &'static str {
    let top = max.saturating_mul(u128::from(count));
    match top {
        t if t <= u128::from(u8::MAX) => "|u1",
        t if t <= u128::from(u16::MAX) => "<u2",
        t if t <= u128::from(u32::MAX) => "<u4",
        _ => "<u8",
    }
}

/// The narrowest signed dtype holding `min * count` and `max * count`.
fn signed_dtype(min: i128, max: i128, count: u64) -> &'static str {
    let (low, high) = (min.saturating_mul(i128::from(count)), max.saturating_mul(i128::from(count)));
    let fits = |lo: i128, hi: i128| low >= lo && high <= hi;
    if fits(i8::MIN.into(), i8::MAX.into()) {
        "|i1"
    } else if fits(i16::MIN.into(), i16::MAX.into()) {
        "<i2"
    } else if fits(i32::MIN.into(), i32::MAX.into()) {
        "<i4"
    } else {
        "<i8"
    }
}

/// One element type (see the module docs).
pub trait Element: Copy {
    /// Bytes per element.
    const SIZE: usize;
    /// Whether this is a floating-point type (casts from it go through `f64`).
    const FLOAT: bool;
    /// The numpy dtype, little-endian (`<u2`, `|u1`, `|b1`).
    const DTYPE: &'static str;
    /// What a binned sum of this type accumulates in.
    type Sum: Accumulator<Self>;
    /// Reads one element from exactly `SIZE` bytes.
    fn load(bytes: &[u8], big_endian: bool) -> Self;
    /// Appends the element, little-endian.
    fn store(self, out: &mut Vec<u8>);
    /// The value as a float.
    fn to_f64(self) -> f64;
    /// The value as an integer (floats truncate toward zero and saturate).
    fn to_i128(self) -> i128;
    /// From a float, as a C cast does in range (Rust's `as`: out of range saturates, NaN is 0).
    fn from_f64(value: f64) -> Self;
    /// From an integer, wrapping like numpy's `astype` between integer types.
    fn from_i128(value: i128) -> Self;
    /// The value a `range=` maps its upper bound to: the type's maximum, 1 for floats and bools.
    fn scale() -> f64;
}

/// Reads `N` bytes as little-endian bytes, swapping them when stored big-endian.
fn ordered<const N: usize>(bytes: &[u8], big_endian: bool) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&bytes[..N]);
    if big_endian {
        out.reverse();
    }
    out
}

macro_rules! accumulator {
    ($name:ident, $acc:ty) => {
        /// A binned sum's accumulator.
        #[derive(Debug, Clone, Copy, Default)]
        pub struct $name($acc);
    };
}

accumulator!(SumU64, u64);
accumulator!(SumI64, i64);
accumulator!(SumF64, f64);

macro_rules! integer_sum {
    ($acc:ident, $inner:ty, $dtype:expr, $($t:ty),*) => {$(
        impl Accumulator<$t> for $acc {
            fn dtype(count: u64) -> &'static str {
                $dtype(<$t>::MIN, <$t>::MAX, count)
            }
            fn add(&mut self, value: $t) {
                self.0 = self.0.wrapping_add(value as $inner);
            }
            fn store(self, itemsize: usize, out: &mut Vec<u8>) {
                store_low_bytes(self.0.to_le_bytes(), itemsize, out);
            }
            fn to_f64(self) -> f64 {
                self.0 as f64
            }
        }
    )*};
}

integer_sum!(SumU64, u64, |_, max, count| unsigned_dtype(u128::from(max), count), u8, u16, u32, u64);
integer_sum!(SumI64, i64, |min, max, count| signed_dtype(i128::from(min), i128::from(max), count), i8, i16, i32, i64);

impl Accumulator<bool> for SumU64 {
    fn dtype(count: u64) -> &'static str {
        unsigned_dtype(1, count)
    }
    fn add(&mut self, value: bool) {
        self.0 = self.0.wrapping_add(u64::from(value));
    }
    fn store(self, itemsize: usize, out: &mut Vec<u8>) {
        store_low_bytes(self.0.to_le_bytes(), itemsize, out);
    }
    fn to_f64(self) -> f64 {
        self.0 as f64
    }
}

macro_rules! float_sum {
    ($($t:ty => $dtype:literal),*) => {$(
        impl Accumulator<$t> for SumF64 {
            fn dtype(_count: u64) -> &'static str {
                $dtype
            }
            fn add(&mut self, value: $t) {
                self.0 += value.to_f64();
            }
            fn store(self, itemsize: usize, out: &mut Vec<u8>) {
                match itemsize {
                    4 => out.extend_from_slice(&(self.0 as f32).to_le_bytes()),
                    _ => out.extend_from_slice(&self.0.to_le_bytes()),
                }
            }
            fn to_f64(self) -> f64 {
                self.0
            }
        }
    )*};
}

float_sum!(f16 => "<f4", f32 => "<f4", f64 => "<f8");

macro_rules! numeric_element {
    ($t:ty, $size:literal, $dtype:literal, $sum:ident, $float:literal, $scale:expr) => {
        impl Element for $t {
            const SIZE: usize = $size;
            const FLOAT: bool = $float;
            const DTYPE: &'static str = $dtype;
            type Sum = $sum;
            fn load(bytes: &[u8], big_endian: bool) -> Self {
                <$t>::from_le_bytes(ordered(bytes, big_endian))
            }
            fn store(self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
            fn to_f64(self) -> f64 {
                self as f64
            }
            fn to_i128(self) -> i128 {
                self as i128
            }
            fn from_f64(value: f64) -> Self {
                value as $t
            }
            fn from_i128(value: i128) -> Self {
                value as $t
            }
            fn scale() -> f64 {
                $scale
            }
        }
    };
}

numeric_element!(u8, 1, "|u1", SumU64, false, u8::MAX as f64);
numeric_element!(u16, 2, "<u2", SumU64, false, u16::MAX as f64);
numeric_element!(u32, 4, "<u4", SumU64, false, u32::MAX as f64);
numeric_element!(u64, 8, "<u8", SumU64, false, u64::MAX as f64);
numeric_element!(i8, 1, "|i1", SumI64, false, i8::MAX as f64);
numeric_element!(i16, 2, "<i2", SumI64, false, i16::MAX as f64);
numeric_element!(i32, 4, "<i4", SumI64, false, i32::MAX as f64);
numeric_element!(i64, 8, "<i8", SumI64, false, i64::MAX as f64);
numeric_element!(f32, 4, "<f4", SumF64, true, 1.0);
numeric_element!(f64, 8, "<f8", SumF64, true, 1.0);

impl Element for f16 {
    const SIZE: usize = 2;
    const FLOAT: bool = true;
    const DTYPE: &'static str = "<f2";
    type Sum = SumF64;
    fn load(bytes: &[u8], big_endian: bool) -> Self {
        f16::from_le_bytes(ordered(bytes, big_endian))
    }
    fn store(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
    fn to_f64(self) -> f64 {
        f16::to_f64(self)
    }
    fn to_i128(self) -> i128 {
        f16::to_f64(self) as i128
    }
    fn from_f64(value: f64) -> Self {
        f16::from_f64(value)
    }
    fn from_i128(value: i128) -> Self {
        f16::from_f64(value as f64)
    }
    fn scale() -> f64 {
        1.0
    }
}

impl Element for bool {
    const SIZE: usize = 1;
    const FLOAT: bool = false;
    const DTYPE: &'static str = "|b1";
    type Sum = SumU64;
    fn load(bytes: &[u8], _big_endian: bool) -> Self {
        bytes[0] != 0
    }
    fn store(self, out: &mut Vec<u8>) {
        out.push(u8::from(self));
    }
    fn to_f64(self) -> f64 {
        f64::from(u8::from(self))
    }
    fn to_i128(self) -> i128 {
        i128::from(self)
    }
    fn from_f64(value: f64) -> Self {
        value != 0.0
    }
    fn from_i128(value: i128) -> Self {
        value != 0
    }
    fn scale() -> f64 {
        1.0
    }
}

/// One arm of [`with_element!`]: `$body` with the type alias `$t` for `$ty`.
macro_rules! element_arm {
    ($t:ident = $ty:ty, $body:expr) => {{
        type $t = $ty;
        $body
    }};
}

/// Runs `$body` with `$t` the element type of `$dtype` (a [`DType`](crate::codec::array_json::DType)),
/// or evaluates `$other` for a dtype that is not numeric.
macro_rules! with_element {
    ($dtype:expr, $t:ident => $body:expr, else $other:expr) => {{
        use $crate::codec::array_json::Kind;
        match ($dtype.kind(), $dtype.itemsize()) {
            (Kind::Bool, 1) => $crate::view::element::element_arm!($t = bool, $body),
            (Kind::UInt, 1) => $crate::view::element::element_arm!($t = u8, $body),
            (Kind::UInt, 2) => $crate::view::element::element_arm!($t = u16, $body),
            (Kind::UInt, 4) => $crate::view::element::element_arm!($t = u32, $body),
            (Kind::UInt, 8) => $crate::view::element::element_arm!($t = u64, $body),
            (Kind::Int, 1) => $crate::view::element::element_arm!($t = i8, $body),
            (Kind::Int, 2) => $crate::view::element::element_arm!($t = i16, $body),
            (Kind::Int, 4) => $crate::view::element::element_arm!($t = i32, $body),
            (Kind::Int, 8) => $crate::view::element::element_arm!($t = i64, $body),
            (Kind::Float, 2) => $crate::view::element::element_arm!($t = half::f16, $body),
            (Kind::Float, 4) => $crate::view::element::element_arm!($t = f32, $body),
            (Kind::Float, 8) => $crate::view::element::element_arm!($t = f64, $body),
            _ => $other,
        }
    }};
}

pub(crate) use {element_arm, with_element};

/// Whether views can compute on `dtype` (bin, dtype conversion).
pub fn is_numeric(dtype: crate::codec::array_json::DType) -> bool {
    with_element!(dtype, T => { let _ = T::SIZE; true }, else false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::array_json::DType;

    #[test]
    fn loads_both_orders_and_stores_little_endian() {
        assert_eq!(u16::load(&[1, 2], false), 0x0201);
        assert_eq!(u16::load(&[1, 2], true), 0x0102);
        let mut out = Vec::new();
        (-2i16).store(&mut out);
        1.5f32.store(&mut out);
        assert_eq!(out, [0xfe, 0xff, 0, 0, 0xc0, 0x3f]);
        assert_eq!(i8::from_i128(300), 44);
        assert_eq!(u8::from_f64(-3.0), 0);
        assert!(bool::from_i128(2));
        let mut sum = SumU64::default();
        Accumulator::<u16>::add(&mut sum, 0);
        Accumulator::<u16>::add(&mut sum, u16::MAX);
        Accumulator::<u16>::add(&mut sum, 1);
        assert_eq!(Accumulator::<u16>::to_f64(sum), 65536.0);
        assert_eq!(<<u16 as Element>::Sum as Accumulator<u16>>::dtype(16), "<u4");
    }

    #[test]
    fn numeric_dtypes() {
        for numeric in ["|b1", "<u2", ">i8", "<f2", "<f8"] {
            assert!(is_numeric(DType::parse(numeric).unwrap()), "{numeric}");
        }
        for other in ["<c8", "<M8[ns]", "|S3", "<U2"] {
            assert!(!is_numeric(DType::parse(other).unwrap()), "{other}");
        }
    }
}
