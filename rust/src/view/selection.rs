//! `Selection`: a `slice=` view, in the syntax of Tiled's array GET (`0:10,::2`, `3`, `...`,
//! negative indices and steps), parsed and checked with the control plane's wording
//! (`python/ferrotile/storage/slicing.py`), and applied to a frame's bytes by strided copies.

use crate::text::py_repr;

/// One dimension of a selection as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Index {
    /// An integer: the axis is dropped.
    At(i64),
    /// `start:stop:step`, each optional.
    Range(Option<i64>, Option<i64>, Option<i64>),
    /// `...`: as many full ranges as needed.
    Ellipsis,
}

/// One input axis once resolved against a shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Axis {
    /// Index `i`; the axis is dropped.
    Take(usize),
    /// `len` positions from `start` by `step` (which may be negative).
    Range { start: i64, step: i64, len: usize },
}

/// A parsed `slice=` (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    /// The text without spaces or brackets (the canonical form in a view's name).
    text: String,
    parts: Vec<Index>,
}

/// Parses an integer as Python does, saturating beyond 64 bits (such an index is out of bounds
/// and such a bound is clamped either way).
fn integer(text: &str) -> i64 {
    text.parse::<i64>().unwrap_or(if text.starts_with('-') { i64::MIN } else { i64::MAX })
}

fn is_integer(text: &str) -> bool {
    let digits = text.strip_prefix('-').unwrap_or(text);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

/// `start:stop[:step]` with every part optional, or `None`.
fn range(part: &str) -> Option<Index> {
    let mut pieces = part.splitn(3, ':');
    let start = pieces.next()?;
    let stop = pieces.next()?;
    let step = pieces.next();
    let bound = |p: &str| -> Option<Option<i64>> {
        if p.is_empty() {
            Some(None)
        } else if is_integer(p) {
            Some(Some(integer(p)))
        } else {
            None
        }
    };
    Some(Index::Range(bound(start)?, bound(stop)?, step.map_or(Some(None), bound)?))
}

/// Python's `slice(start, stop, step).indices(size)` and the length of its range.
fn indices(start: Option<i64>, stop: Option<i64>, step: i64, size: i64) -> (i64, i64) {
    let clamp = |value: Option<i64>, default: i64| -> i64 {
        match value {
            None => default,
            Some(v) if v < 0 => {
                let v = v.saturating_add(size);
                if v < 0 {
                    if step < 0 {
                        -1
                    } else {
                        0
                    }
                } else {
                    v
                }
            }
            Some(v) if v >= size => {
                if step < 0 {
                    size - 1
                } else {
                    size
                }
            }
            Some(v) => v,
        }
    };
    let (start, stop) =
        if step < 0 { (clamp(start, size - 1), clamp(stop, -1)) } else { (clamp(start, 0), clamp(stop, size)) };
    let len = if step > 0 && stop > start {
        (stop - start - 1) / step + 1
    } else if step < 0 && start > stop {
        (start - stop - 1) / (-step) + 1
    } else {
        0
    };
    (start, len)
}

impl Selection {
    /// Parses `param`; `None` when it selects everything (empty text). The error is the
    /// control plane's detail without its `Invalid slice: ` prefix.
    pub fn parse(param: &str) -> Result<Option<Self>, String> {
        let text: String = param.chars().filter(|c| *c != ' ').collect();
        let text = text.trim_matches(|c| matches!(c, '(' | ')' | '[' | ']')).to_owned();
        if text.is_empty() {
            return Ok(None);
        }
        let mut parts = Vec::new();
        for part in text.split(',') {
            let index = if part == "..." {
                Index::Ellipsis
            } else if is_integer(part) {
                Index::At(integer(part))
            } else if let Some(range) = range(part) {
                range
            } else {
                return Err(format!("Invalid slice parameter {}: cannot parse {}", py_repr(param), py_repr(part)));
            };
            parts.push(index);
        }
        Ok(Some(Self { text, parts }))
    }

    /// The canonical text (spaces and brackets removed).
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The selection against `shape`: one entry per input axis; errors as the control plane's.
    fn resolve(&self, shape: &[usize]) -> Result<Vec<Axis>, String> {
        let ellipses = self.parts.iter().filter(|p| **p == Index::Ellipsis).count();
        if ellipses > 1 {
            return Err("Invalid slice: an index can only have a single ellipsis ('...')".into());
        }
        let explicit = self.parts.len() - ellipses;
        if explicit > shape.len() {
            return Err(format!(
                "Too many indices for array: array is {}-dimensional, but {explicit} were indexed",
                shape.len()
            ));
        }
        let fill = shape.len() - explicit;
        let mut expanded = Vec::with_capacity(shape.len());
        for part in &self.parts {
            if *part == Index::Ellipsis {
                expanded.extend(std::iter::repeat_n(Index::Range(None, None, None), fill));
            } else {
                expanded.push(*part);
            }
        }
        if ellipses == 0 {
            expanded.extend(std::iter::repeat_n(Index::Range(None, None, None), fill));
        }
        let mut axes = Vec::with_capacity(shape.len());
        for (axis, (index, &size)) in expanded.into_iter().zip(shape).enumerate() {
            let size = i64::try_from(size).unwrap_or(i64::MAX);
            axes.push(match index {
                Index::At(i) => {
                    if !(-size..size).contains(&i) {
                        return Err(format!("Index {i} is out of bounds for axis {axis} with size {size}"));
                    }
                    Axis::Take(usize::try_from(if i < 0 { i + size } else { i }).unwrap_or(0))
                }
                Index::Range(start, stop, step) => {
                    let step = step.unwrap_or(1);
                    if step == 0 {
                        return Err("Invalid slice: slice step cannot be zero".into());
                    }
                    let (start, len) = indices(start, stop, step, size);
                    Axis::Range { start, step, len: usize::try_from(len).unwrap_or(0) }
                }
                Index::Ellipsis => unreachable!("ellipses were expanded"),
            });
        }
        Ok(axes)
    }

    /// Checks the selection against `shape` (the control plane's errors).
    pub fn check(&self, shape: &[usize]) -> Result<(), String> {
        self.resolve(shape).map(|_| ())
    }

    /// The selected elements of `data` (an array of `shape` with `itemsize`-byte elements, C
    /// order) and the result's shape.
    pub fn apply(&self, data: &[u8], shape: &[usize], itemsize: usize) -> Result<(Vec<u8>, Vec<usize>), String> {
        let axes = self.resolve(shape)?;
        let out_shape: Vec<usize> = axes
            .iter()
            .filter_map(|a| match a {
                Axis::Range { len, .. } => Some(*len),
                Axis::Take(_) => None,
            })
            .collect();
        // Byte strides of the input, and from which axis on everything is taken whole (copied
        // as one block).
        let mut strides = vec![itemsize; shape.len()];
        for i in (0..shape.len().saturating_sub(1)).rev() {
            strides[i] = strides[i + 1] * shape[i + 1];
        }
        let whole_from = axes
            .iter()
            .zip(shape)
            .rposition(|(axis, &size)| *axis != Axis::Range { start: 0, step: 1, len: size })
            .map_or(0, |i| i + 1);
        let block = shape[whole_from..].iter().product::<usize>() * itemsize;
        let mut out = Vec::with_capacity(out_shape.iter().product::<usize>() * itemsize);
        let copy = Copy { data, axes: &axes, strides: &strides, whole_from, block };
        copy.run(0, 0, &mut out);
        Ok((out, out_shape))
    }
}

/// One strided copy (see [`Selection::apply`]).
struct Copy<'a> {
    data: &'a [u8],
    axes: &'a [Axis],
    strides: &'a [usize],
    whole_from: usize,
    block: usize,
}

impl Copy<'_> {
    fn run(&self, axis: usize, offset: usize, out: &mut Vec<u8>) {
        if axis == self.whole_from {
            out.extend_from_slice(&self.data[offset..offset + self.block]);
            return;
        }
        let stride = self.strides[axis];
        match self.axes[axis] {
            Axis::Take(i) => self.run(axis + 1, offset + i * stride, out),
            Axis::Range { start, step, len } => {
                for j in 0..len as i64 {
                    // In range: `indices` keeps every position within the axis.
                    let position = usize::try_from(start + j * step).unwrap_or(0);
                    self.run(axis + 1, offset + position * stride, out);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn select(text: &str, shape: &[usize]) -> Result<(Vec<u8>, Vec<usize>), String> {
        let data: Vec<u8> = (0..shape.iter().product::<usize>()).map(|i| i as u8).collect();
        Selection::parse(text)?.unwrap().apply(&data, shape, 1)
    }

    #[test]
    fn python_slices() {
        assert_eq!(select("1:3", &[5]).unwrap(), (vec![1, 2], vec![2]));
        assert_eq!(select("::-2", &[5]).unwrap(), (vec![4, 2, 0], vec![3]));
        assert_eq!(select("4:-6:-1", &[5]).unwrap(), (vec![4, 3, 2, 1, 0], vec![5]));
        assert_eq!(select("-2:", &[5]).unwrap(), (vec![3, 4], vec![2]));
        assert_eq!(select("10:20", &[5]).unwrap(), (vec![], vec![0]));
        assert_eq!(select("1", &[2, 3]).unwrap(), (vec![3, 4, 5], vec![3]));
        assert_eq!(select("...,-1", &[2, 3]).unwrap(), (vec![2, 5], vec![2]));
        assert_eq!(select("(:,0:2)", &[2, 3]).unwrap(), (vec![0, 1, 3, 4], vec![2, 2]));
        assert_eq!(select("1:,::2", &[3, 3]).unwrap(), (vec![3, 5, 6, 8], vec![2, 2]));
        assert_eq!(Selection::parse(" ").unwrap(), None);
        assert_eq!(Selection::parse("[0:2, 1]").unwrap().unwrap().text(), "0:2,1");
    }

    #[test]
    fn errors_as_the_control_plane_words_them() {
        assert_eq!(select("a", &[3]).unwrap_err(), "Invalid slice parameter 'a': cannot parse 'a'");
        assert_eq!(select("1,,2", &[3, 3, 3]).unwrap_err(), "Invalid slice parameter '1,,2': cannot parse ''");
        assert_eq!(select("::0", &[3]).unwrap_err(), "Invalid slice: slice step cannot be zero");
        assert_eq!(select("3", &[3]).unwrap_err(), "Index 3 is out of bounds for axis 0 with size 3");
        assert_eq!(
            select("0,0", &[3]).unwrap_err(),
            "Too many indices for array: array is 1-dimensional, but 2 were indexed"
        );
        assert_eq!(
            select("...,...", &[3]).unwrap_err(),
            "Invalid slice: an index can only have a single ellipsis ('...')"
        );
    }
}
