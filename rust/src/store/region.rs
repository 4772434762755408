//! Geometry of C-ordered n-dimensional buffers: copying a box from one into another, and
//! listing the grid cells a box touches.

/// Row-major strides (in elements) of `shape`.
fn strides(shape: &[u64]) -> Vec<u64> {
    let mut strides = vec![1; shape.len()];
    for d in (0..shape.len().saturating_sub(1)).rev() {
        strides[d] = strides[d + 1] * shape[d + 1];
    }
    strides
}

/// One side of a copy: a buffer, its shape, and where the box starts in it.
pub struct Side<'a, B> {
    /// The elements.
    pub bytes: B,
    /// Its shape.
    pub shape: &'a [u64],
    /// The box's corner in it.
    pub at: &'a [u64],
}

/// Copies a box of shape `size` from `src` to `dst` (elements of `item` bytes). The innermost
/// dimensions that both buffers and the box span whole are copied as one run.
pub fn copy_box(src: Side<'_, &[u8]>, dst: Side<'_, &mut [u8]>, size: &[u64], item: usize) {
    if size.contains(&0) {
        return;
    }
    let rank = size.len();
    if rank == 0 {
        dst.bytes[..item].copy_from_slice(&src.bytes[..item]);
        return;
    }
    // Dimensions from `outer` on are copied in one run.
    let mut outer = rank - 1;
    let mut run = size[rank - 1];
    while outer > 0 && size[outer] == src.shape[outer] && size[outer] == dst.shape[outer] {
        outer -= 1;
        run *= size[outer];
    }
    let (src_strides, dst_strides) = (strides(src.shape), strides(dst.shape));
    let run_bytes = run as usize * item;
    let mut index = vec![0u64; outer];
    loop {
        let (mut s, mut d) = (0u64, 0u64);
        for dim in 0..rank {
            let i = index.get(dim).copied().unwrap_or(0);
            s += (src.at[dim] + i) * src_strides[dim];
            d += (dst.at[dim] + i) * dst_strides[dim];
        }
        let (s, d) = (s as usize * item, d as usize * item);
        dst.bytes[d..d + run_bytes].copy_from_slice(&src.bytes[s..s + run_bytes]);
        // Next index of the outer dimensions (an odometer).
        let mut dim = outer;
        loop {
            if dim == 0 {
                return;
            }
            dim -= 1;
            index[dim] += 1;
            if index[dim] < size[dim] {
                break;
            }
            index[dim] = 0;
        }
    }
}

/// Every cell index of a grid of `cell` sized cells that the box at `start` of `size` touches,
/// in C order.
pub fn cells_touched(start: &[u64], size: &[u64], cell: &[u64]) -> Vec<Vec<u64>> {
    if size.contains(&0) {
        return Vec::new();
    }
    let lo: Vec<u64> = start.iter().zip(cell).map(|(s, c)| s / c).collect();
    let hi: Vec<u64> = start.iter().zip(size).zip(cell).map(|((s, n), c)| (s + n - 1) / c).collect();
    let mut cells = Vec::new();
    let mut index = lo.clone();
    loop {
        cells.push(index.clone());
        let mut dim = index.len();
        loop {
            if dim == 0 {
                return cells;
            }
            dim -= 1;
            index[dim] += 1;
            if index[dim] <= hi[dim] {
                break;
            }
            index[dim] = lo[dim];
        }
    }
}

/// The part of the box (`start`, `size`) inside the cell at `origin` of `cell` size: its
/// corner relative to the box, relative to the cell, and its size.
pub fn overlap(start: &[u64], size: &[u64], origin: &[u64], cell: &[u64]) -> (Vec<u64>, Vec<u64>, Vec<u64>) {
    let mut in_box = Vec::with_capacity(start.len());
    let mut in_cell = Vec::with_capacity(start.len());
    let mut extent = Vec::with_capacity(start.len());
    for d in 0..start.len() {
        let lo = start[d].max(origin[d]);
        let hi = (start[d] + size[d]).min(origin[d] + cell[d]);
        in_box.push(lo - start[d]);
        in_cell.push(lo - origin[d]);
        extent.push(hi.saturating_sub(lo));
    }
    (in_box, in_cell, extent)
}

/// The inner chunks of `inner` shape, in the shard of `shard` shape at `origin`, that the box
/// (`start`, `size`) touches: each one's origin and its number within the shard (C order).
pub fn inner_cells(start: &[u64], size: &[u64], origin: &[u64], shard: &[u64], inner: &[u64]) -> Vec<(Vec<u64>, u64)> {
    let per_dim: Vec<u64> = shard.iter().zip(inner).map(|(s, i)| s / i).collect();
    let (_, in_shard, extent) = overlap(start, size, origin, shard);
    let corner: Vec<u64> = origin.iter().zip(&in_shard).map(|(o, i)| o + i).collect();
    cells_touched(&corner, &extent, inner)
        .into_iter()
        .map(|cell| {
            let inner_origin: Vec<u64> = cell.iter().zip(inner).map(|(c, n)| c * n).collect();
            let index =
                (0..origin.len()).fold(0, |index, d| index * per_dim[d] + (inner_origin[d] - origin[d]) / inner[d]);
            (inner_origin, index)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_boxes() {
        // A 2x3 box from a 4x5 source at (1, 1) into a 3x3 destination at (1, 0).
        let src: Vec<u8> = (0..20).collect();
        let mut dst = vec![0u8; 9];
        let source = Side { bytes: &src[..], shape: &[4, 5], at: &[1, 1] };
        copy_box(source, Side { bytes: &mut dst[..], shape: &[3, 3], at: &[1, 0] }, &[2, 3], 1);
        assert_eq!(dst, vec![0, 0, 0, 6, 7, 8, 11, 12, 13]);
        // Whole rows: one run of 2-byte elements.
        let src: Vec<u8> = (0..12).collect();
        let mut dst = [0u8; 24];
        let source = Side { bytes: &src[..], shape: &[2, 3], at: &[0, 0] };
        copy_box(source, Side { bytes: &mut dst[..], shape: &[4, 3], at: &[2, 0] }, &[2, 3], 2);
        assert_eq!(&dst[12..], &src[..]);
        assert!(dst[..12].iter().all(|b| *b == 0));
        // Rank 0.
        let mut one = [0u8; 4];
        copy_box(
            Side { bytes: &[1, 2, 3, 4][..], shape: &[], at: &[] },
            Side { bytes: &mut one[..], shape: &[], at: &[] },
            &[],
            4,
        );
        assert_eq!(one, [1, 2, 3, 4]);
    }

    #[test]
    fn inner_cells_are_numbered_in_c_order() {
        // A shard of 4 x 6 at (4, 6) in inner chunks of 2 x 3: a box over its lower right part.
        let cells = inner_cells(&[5, 8], &[3, 4], &[4, 6], &[4, 6], &[2, 3]);
        assert_eq!(cells, vec![(vec![4, 6], 0), (vec![4, 9], 1), (vec![6, 6], 2), (vec![6, 9], 3)]);
        assert_eq!(inner_cells(&[7, 10], &[1, 1], &[4, 6], &[4, 6], &[2, 3]), vec![(vec![6, 9], 3)]);
    }

    #[test]
    fn cells_and_overlaps() {
        assert_eq!(cells_touched(&[3, 0], &[4, 2], &[2, 5]), vec![vec![1, 0], vec![2, 0], vec![3, 0]]);
        assert_eq!(cells_touched(&[0], &[0], &[2]), Vec::<Vec<u64>>::new());
        assert_eq!(cells_touched(&[], &[], &[]), vec![Vec::<u64>::new()]);
        assert_eq!(overlap(&[3], &[4], &[2], &[2]), (vec![0], vec![1], vec![1]));
        assert_eq!(overlap(&[3], &[4], &[6], &[2]), (vec![3], vec![0], vec![1]));
    }
}
