//! The block sizes along one axis of an array: Tiled's list, or a regular grid held as its
//! block size (`{"regular": step}`), as the control plane keeps an axis regrown by extending
//! writes so that an append costs the same whatever the number of frames before it. Listed in
//! full only when a structure is served (`ArrayInfo::tiled_structure`).

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

    /// Every block's size along an axis of `size` elements (Tiled's form), in order, without
    /// building the list (an axis appended frame by frame has a block per frame).
    pub fn blocks(&self, size: u64) -> impl Iterator<Item = u64> + '_ {
        let (listed, step, count, rest): (&[u64], u64, u64, Option<u64>) = match self {
            Self::Listed(sizes) => (sizes, 0, 0, None),
            Self::Regular { .. } if size == 0 => (&[], 0, 0, Some(0)),
            Self::Regular { regular } => {
                let step = (*regular).max(1);
                (&[], step, size / step, (!size.is_multiple_of(step)).then_some(size % step))
            }
        };
        listed.iter().copied().chain(std::iter::repeat_n(step, count as usize)).chain(rest)
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
    fn json_forms() {
        let axes: Vec<AxisChunks> = serde_json::from_str(r#"[{"regular": 1}, [3, 3]]"#).unwrap();
        assert_eq!(axes, vec![AxisChunks::Regular { regular: 1 }, AxisChunks::Listed(vec![3, 3])]);
        assert_eq!(serde_json::to_string(&axes).unwrap(), r#"[{"regular":1},[3,3]]"#);
    }
}
