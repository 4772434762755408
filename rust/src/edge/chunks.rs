//! The block sizes along one axis of an array: Tiled's list, or a regular grid held as its
//! block size (`{"regular": step}`), as the control plane keeps an axis regrown by extending
//! writes so that an append costs the same whatever the number of frames before it. Listed in
//! full only when a structure is served (`ArrayInfo::tiled_structure`).

use std::io::Write;

use serde::{Deserialize, Serialize};

/// One axis's chunks; its length is the array's shape along that axis.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum AxisChunks {
    /// Every block's size (sums to the axis's length; `[0]` for an empty axis).
    Listed(Vec<u64>),
    /// Blocks of `regular` elements, the last one what remains.
    Regular {
        /// The size of every block but the last (the control plane writes it >= 1; 0 is
        /// read as 1).
        regular: u64,
    },
}

impl AxisChunks {
    /// The size of block `index` along an axis of `size` elements, if there is one.
    pub fn block(&self, index: u64, size: u64) -> Option<u64> {
        match self {
            Self::Listed(sizes) => sizes.get(usize::try_from(index).ok()?).copied(),
            Self::Regular { .. } if size == 0 => (index == 0).then_some(0),
            Self::Regular { regular } => {
                let step = (*regular).max(1);
                let start = index.checked_mul(step).filter(|start| *start < size)?;
                Some(step.min(size - start))
            }
        }
    }

    /// Where block `index` starts (an existing block: see [`AxisChunks::block`]).
    pub fn start(&self, index: u64) -> u64 {
        match self {
            Self::Listed(sizes) => sizes.iter().take(index as usize).sum(),
            Self::Regular { regular } => index * (*regular).max(1),
        }
    }

    /// The first block's size, if it is not empty: the step the axis keeps when it grows.
    pub fn first(&self) -> Option<u64> {
        match self {
            Self::Listed(sizes) => sizes.first().copied(),
            Self::Regular { regular } => Some(*regular),
        }
        .filter(|step| *step > 0)
    }

    /// Tiled's list of block sizes along an axis of `size` elements, in runs: the listed
    /// sizes, then `count` blocks of `step`, then the rest (if any).
    fn runs(&self, size: u64) -> (&[u64], u64, u64, Option<u64>) {
        match self {
            Self::Listed(sizes) => (sizes, 0, 0, None),
            Self::Regular { .. } if size == 0 => (&[], 0, 0, Some(0)),
            Self::Regular { regular } => {
                let step = (*regular).max(1);
                (&[], step, size / step, (!size.is_multiple_of(step)).then_some(size % step))
            }
        }
    }

    /// Every block's size along an axis of `size` elements (Tiled's form), in order, without
    /// building the list (an axis appended frame by frame has a block per frame).
    pub fn blocks(&self, size: u64) -> impl Iterator<Item = u64> + '_ {
        let (listed, step, count, rest) = self.runs(size);
        listed.iter().copied().chain(std::iter::repeat_n(step, count as usize)).chain(rest)
    }

    /// Appends the JSON list of [`AxisChunks::blocks`] to `out`, a run of equal blocks written
    /// once and copied (doubled in place), not number by number: a PATCH answers it after each
    /// append.
    pub fn write_blocks(&self, size: u64, out: &mut Vec<u8>) {
        let (listed, step, count, rest) = self.runs(size);
        out.push(b'[');
        for n in listed {
            let _ = write!(out, "{n},"); // writing into a Vec cannot fail
        }
        if count > 0 {
            let start = out.len();
            let _ = write!(out, "{step},");
            let unit = out.len() - start;
            let mut written = 1;
            while written < count {
                let more = written.min(count - written);
                out.extend_from_within(start..start + (more as usize) * unit);
                written += more;
            }
        }
        match rest {
            Some(rest) => {
                let _ = write!(out, "{rest}");
            }
            None if out.last() == Some(&b',') => {
                out.pop();
            }
            None => {}
        }
        out.push(b']');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regular_blocks_as_listed() {
        let regular = AxisChunks::Regular { regular: 2 };
        assert_eq!(regular.blocks(7).collect::<Vec<_>>(), [2, 2, 2, 1]);
        assert_eq!(regular.blocks(6).collect::<Vec<_>>(), [2, 2, 2]);
        assert_eq!(regular.blocks(0).collect::<Vec<_>>(), [0]);
        assert_eq!((0..5).map(|b| regular.block(b, 7)).collect::<Vec<_>>(), [Some(2), Some(2), Some(2), Some(1), None]);
        assert_eq!((regular.block(0, 0), regular.block(1, 0)), (Some(0), None));
        assert_eq!((regular.start(3), regular.first()), (6, Some(2)));
        let listed = AxisChunks::Listed(vec![2, 2, 2, 1]);
        assert_eq!(listed.blocks(7).collect::<Vec<_>>(), [2, 2, 2, 1]);
        assert_eq!((listed.block(3, 7), listed.block(4, 7), listed.start(3)), (Some(1), None, 6));
        assert_eq!(AxisChunks::Listed(vec![0]).first(), None);
    }

    #[test]
    fn blocks_written_as_json() {
        let written = |c: &AxisChunks, n: u64| {
            let mut out = Vec::new();
            c.write_blocks(n, &mut out);
            String::from_utf8(out).unwrap()
        };
        let regular = AxisChunks::Regular { regular: 3 };
        for n in [0, 1, 2, 3, 4, 6, 7, 100, 1001] {
            let listed: Vec<u64> = regular.blocks(n).collect();
            assert_eq!(written(&regular, n), serde_json::to_string(&listed).unwrap(), "{n}");
        }
        assert_eq!(written(&AxisChunks::Listed(vec![2, 2, 1]), 5), "[2,2,1]");
        assert_eq!(written(&AxisChunks::Listed(vec![]), 0), "[]");
    }

    #[test]
    fn json_forms() {
        let axes: Vec<AxisChunks> = serde_json::from_str(r#"[{"regular": 1}, [3, 3]]"#).unwrap();
        assert_eq!(axes, vec![AxisChunks::Regular { regular: 1 }, AxisChunks::Listed(vec![3, 3])]);
        assert_eq!(serde_json::to_string(&axes).unwrap(), r#"[{"regular":1},[3,3]]"#);
    }
}
