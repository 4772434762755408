//! How a write grows an array: the shape after an extending write (within the server's
//! limits, as `ferrotile.validation.check_array_extension` words them), the structure with its
//! chunks regrown (as `ArrayStructure.with_shape` does: regular, kept compact).

use http::StatusCode;
use serde_json::Value;

use super::arrays::py_tuple;
use super::chunks::AxisChunks;
use super::control::ArrayInfo;

/// Most blocks an extended array may have along one axis (`MAX_BLOCKS_PER_AXIS`).
const MAX_BLOCKS_PER_AXIS: u64 = 4_000_000;

/// A refusal: status and detail.
pub type Refused = (StatusCode, String);

/// The block size an axis keeps when it grows (the first block's, or one block if empty).
fn step(chunks: &AxisChunks, size: u64) -> u64 {
    chunks.first().unwrap_or(size.max(1))
}

/// The shape after writing a box of `shape` at `offset` (which must fit unless `extend`).
pub fn grown_shape(array: &ArrayInfo, offset: &[u64], shape: &[u64], extend: bool) -> Result<Vec<u64>, Refused> {
    let current = &array.shape;
    if shape.len() != current.len() || offset.len() > current.len() {
        let detail = format!("shape {} does not match the array's rank {}", py_tuple(shape), current.len());
        return Err((StatusCode::UNPROCESSABLE_ENTITY, detail));
    }
    let mut grown = Vec::with_capacity(current.len());
    for (d, (size, n)) in current.iter().zip(shape).enumerate() {
        let end = offset.get(d).copied().unwrap_or(0).checked_add(*n);
        let end = end.ok_or_else(|| (StatusCode::UNPROCESSABLE_ENTITY, "offset and shape overflow".to_owned()))?;
        grown.push((*size).max(end));
    }
    if &grown == current {
        return Ok(grown);
    }
    if !extend {
        let slices: Vec<String> = (0..shape.len())
            .map(|d| {
                let start = offset.get(d).copied().unwrap_or(0);
                format!("{start}:{}", start + shape[d])
            })
            .collect();
        let detail = format!(
            "Slice [{}] does not fit within current array shape {}. Use ?extend=true to extend the array dimensions to fit.",
            slices.join(", "),
            py_tuple(current)
        );
        return Err((StatusCode::CONFLICT, detail));
    }
    let nbytes = grown.iter().try_fold(array.itemsize, |acc, n| acc.checked_mul(*n)).unwrap_or(u64::MAX);
    if nbytes > array.max_bytes {
        let detail = format!(
            "Extending the array to shape {} would make it {nbytes} bytes; the server's limit is {} bytes (--max-array-bytes). Nothing was written.",
            py_tuple(&grown),
            array.max_bytes
        );
        return Err((StatusCode::UNPROCESSABLE_ENTITY, detail));
    }
    for (axis, size) in grown.iter().enumerate() {
        if *size == current[axis] {
            continue;
        }
        let step = step(&array.chunks[axis], *size);
        let blocks = size.div_ceil(step);
        if blocks > MAX_BLOCKS_PER_AXIS {
            let detail = format!(
                "Extending the array to shape {} would split axis {axis} into {blocks} blocks of {step}; the limit is {MAX_BLOCKS_PER_AXIS} blocks per axis (create the array with larger blocks). Nothing was written.",
                py_tuple(&grown)
            );
            return Err((StatusCode::UNPROCESSABLE_ENTITY, detail));
        }
    }
    Ok(grown)
}

/// `array` with shape `shape`, its chunks regrown regularly with each axis's first block size
/// (compact: the same cost whatever the shape).
pub fn regrown(array: &ArrayInfo, shape: &[u64]) -> ArrayInfo {
    let chunks: Vec<AxisChunks> = array
        .chunks
        .iter()
        .zip(shape)
        .map(|(chunks, size)| AxisChunks::Regular { regular: step(chunks, *size) })
        .collect();
    let mut structure = array.structure.clone();
    if let Value::Object(fields) = &mut structure {
        fields.insert("shape".into(), Value::from(shape.to_vec()));
        fields.insert("chunks".into(), serde_json::to_value(&chunks).unwrap_or(Value::Null));
    }
    ArrayInfo { shape: shape.to_vec(), chunks, structure, ..array.clone() }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn array() -> ArrayInfo {
        ArrayInfo {
            dtype: "<i2".into(),
            itemsize: 2,
            shape: vec![5, 3],
            chunks: vec![AxisChunks::Listed(vec![2, 2, 1]), AxisChunks::Listed(vec![3])],
            structure: json!({"shape": [5, 3], "chunks": [[2, 2, 1], [3]], "dims": null}),
            max_bytes: 1000,
            zarr: None,
        }
    }

    #[test]
    fn grows_within_limits() {
        assert_eq!(grown_shape(&array(), &[5], &[2, 3], true).unwrap(), vec![7, 3]);
        assert_eq!(grown_shape(&array(), &[1], &[2, 3], false).unwrap(), vec![5, 3]);
        let (status, detail) = grown_shape(&array(), &[5], &[2, 3], false).unwrap_err();
        assert_eq!(status, StatusCode::CONFLICT);
        assert!(detail.starts_with("Slice [5:7, 0:3] does not fit within current array shape (5, 3)."), "{detail}");
        let (status, detail) = grown_shape(&array(), &[500], &[1, 3], true).unwrap_err();
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(detail.contains("--max-array-bytes"), "{detail}");
        assert_eq!(grown_shape(&array(), &[0, 0, 0], &[1, 3], true).unwrap_err().0, StatusCode::UNPROCESSABLE_ENTITY);
        let grown = regrown(&array(), &[7, 3]);
        assert_eq!(grown.chunks, vec![AxisChunks::Regular { regular: 2 }, AxisChunks::Regular { regular: 3 }]);
        assert_eq!(grown.structure, json!({"shape": [7, 3], "chunks": [{"regular": 2}, {"regular": 3}], "dims": null}));
        let served = json!({"shape": [7, 3], "chunks": [[2, 2, 2, 1], [3]], "dims": null});
        let tiled = |a: &ArrayInfo| serde_json::from_slice::<serde_json::Value>(&a.tiled_structure()).unwrap();
        assert_eq!(tiled(&grown), served);
        // Grown again from the compact form: the same step.
        assert_eq!(tiled(&regrown(&grown, &[8, 3]))["chunks"], json!([[2, 2, 2, 2], [3]]));
        assert_eq!(tiled(&regrown(&grown, &[0, 3]))["chunks"], json!([[0], [3]]));
        for n in [1, 2, 3, 5, 8, 100, 1001] {
            let expected: Vec<u64> = (0..n / 2).map(|_| 2).chain((n % 2 == 1).then_some(1)).collect();
            assert_eq!(tiled(&regrown(&grown, &[n, 3]))["chunks"], json!([expected, [3]]), "{n}");
        }
        // Listed (not regrown) chunks as they are; a structure without chunks gets them.
        assert_eq!(tiled(&array())["chunks"], json!([[2, 2, 1], [3]]));
        let bare = ArrayInfo { structure: json!({"shape": [5, 3]}), ..array() };
        assert_eq!(tiled(&bare), json!({"shape": [5, 3], "chunks": [[2, 2, 1], [3]]}));
    }
}
