//! `ArrayMetadata`: the parts of a zarr v3 array's `zarr.json` the writer understands (shape,
//! chunk grid, chunk keys, fill value, codecs), and the rewrite of its shape.
//!
//! Anything outside that subset (other codecs, chunk grids or key encodings, an index checksum
//! in a shard) is [`CoreError::StoreUnsupported`]: the control plane's zarr-python writer
//! stores such arrays instead.

use serde_json::Value;

use super::chunk_codec::{ChunkCodec, Endian};
use crate::error::{CoreError, CoreResult};

/// `sharding_indexed`: each chunk of the grid is a shard file of inner chunks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sharding {
    /// The shape of an inner chunk.
    pub inner_shape: Vec<u64>,
    /// How inner chunks are encoded.
    pub codec: ChunkCodec,
}

impl Sharding {
    /// How many inner chunks a shard of `shard` shape holds.
    pub fn chunks_per_shard(&self, shard: &[u64]) -> u64 {
        shard.iter().zip(&self.inner_shape).map(|(s, i)| s / i).product()
    }
}

/// A zarr v3 array's metadata, as far as writes need it.
#[derive(Debug, Clone, PartialEq)]
pub struct ArrayMetadata {
    /// The whole `zarr.json` (kept so that a rewrite changes nothing it does not mean to).
    pub document: Value,
    /// Current shape.
    pub shape: Vec<u64>,
    /// The chunk grid's chunk shape (the shard shape when sharded).
    pub chunk_shape: Vec<u64>,
    /// Bytes per element.
    pub item_size: usize,
    /// One element of the fill value, in the stored byte order.
    pub fill: Vec<u8>,
    /// How whole chunks are encoded (unsharded arrays).
    pub codec: ChunkCodec,
    /// Set for sharded arrays.
    pub sharding: Option<Sharding>,
    /// Separator of chunk keys (`c/0/1` or `c.0.1`).
    pub separator: char,
}

fn unsupported(what: impl Into<String>) -> CoreError {
    CoreError::StoreUnsupported(what.into())
}

fn u64_list(value: &Value, what: &str) -> CoreResult<Vec<u64>> {
    value
        .as_array()
        .and_then(|items| items.iter().map(Value::as_u64).collect::<Option<Vec<_>>>())
        .ok_or_else(|| unsupported(format!("{what} is not a list of sizes")))
}

/// Bytes per element of a zarr v3 data type, and how many bytes one endianness swap covers.
fn item_size(data_type: &Value) -> CoreResult<(usize, usize)> {
    let name = match data_type {
        Value::String(name) => name.as_str(),
        Value::Object(object) => object.get("name").and_then(Value::as_str).unwrap_or(""),
        _ => "",
    };
    let sizes = match name {
        "bool" | "int8" | "uint8" => (1, 1),
        "int16" | "uint16" | "float16" => (2, 2),
        "int32" | "uint32" | "float32" => (4, 4),
        "int64" | "uint64" | "float64" | "numpy.datetime64" | "numpy.timedelta64" => (8, 8),
        "complex64" => (8, 4),
        "complex128" => (16, 8),
        other => return Err(unsupported(format!("data type {other:?}"))),
    };
    Ok(sizes)
}

/// One number of a fill value, as `size` bytes in `endian` order.
fn scalar_bytes(value: &Value, name: &str, size: usize, endian: Endian) -> CoreResult<Vec<u8>> {
    let float = |v: &Value| -> Option<f64> {
        match v {
            Value::String(s) if s == "NaN" => Some(f64::NAN),
            Value::String(s) if s == "Infinity" => Some(f64::INFINITY),
            Value::String(s) if s == "-Infinity" => Some(f64::NEG_INFINITY),
            other => other.as_f64(),
        }
    };
    let little: Vec<u8> = if let Some(hex) = value.as_str().and_then(|s| s.strip_prefix("0x")) {
        // Raw bits, most significant first.
        let bits = u64::from_str_radix(hex, 16).map_err(|_| unsupported(format!("fill value {value}")))?;
        bits.to_le_bytes()[..size].to_vec()
    } else if name.starts_with("float") || name.starts_with("complex") {
        let v = float(value).ok_or_else(|| unsupported(format!("fill value {value}")))?;
        match size {
            2 => half::f16::from_f64(v).to_le_bytes().to_vec(),
            4 => (v as f32).to_le_bytes().to_vec(),
            _ => v.to_le_bytes().to_vec(),
        }
    } else if let Some(b) = value.as_bool() {
        vec![u8::from(b)]
    } else if let Some(i) = value.as_i64() {
        i.to_le_bytes()[..size].to_vec()
    } else if let Some(u) = value.as_u64() {
        u.to_le_bytes()[..size].to_vec()
    } else {
        return Err(unsupported(format!("fill value {value}")));
    };
    Ok(match endian {
        Endian::Little => little,
        Endian::Big => little.into_iter().rev().collect(),
    })
}

fn fill_bytes(document: &Value, item_size: usize, swap_unit: usize, endian: Endian) -> CoreResult<Vec<u8>> {
    let name = match &document["data_type"] {
        Value::String(name) => name.clone(),
        other => other["name"].as_str().unwrap_or("").to_owned(),
    };
    let fill = &document["fill_value"];
    if let (true, Some(parts)) = (name.starts_with("complex"), fill.as_array()) {
        let mut bytes = Vec::with_capacity(item_size);
        for part in parts {
            bytes.extend(scalar_bytes(part, &name, swap_unit, endian)?);
        }
        return Ok(bytes);
    }
    if fill.is_null() {
        return Ok(vec![0; item_size]);
    }
    scalar_bytes(fill, &name, item_size, endian)
}

impl ArrayMetadata {
    /// Parses a `zarr.json`.
    ///
    /// # Errors
    /// [`CoreError::StoreUnsupported`] for anything outside the subset this writer handles.
    pub fn parse(text: &[u8]) -> CoreResult<Self> {
        let document: Value = serde_json::from_slice(text).map_err(|e| unsupported(format!("zarr.json: {e}")))?;
        if document["zarr_format"] != 3 || document["node_type"] != "array" {
            return Err(unsupported("not a zarr v3 array"));
        }
        if document["storage_transformers"].as_array().is_some_and(|t| !t.is_empty()) {
            return Err(unsupported("storage transformers"));
        }
        let shape = u64_list(&document["shape"], "shape")?;
        if document["chunk_grid"]["name"] != "regular" {
            return Err(unsupported("a chunk grid other than regular"));
        }
        let chunk_shape = u64_list(&document["chunk_grid"]["configuration"]["chunk_shape"], "chunk_shape")?;
        let separator = match (
            &document["chunk_key_encoding"]["name"],
            &document["chunk_key_encoding"]["configuration"]["separator"],
        ) {
            (Value::String(name), Value::String(sep)) if name == "default" && sep == "." => '.',
            (Value::String(name), Value::String(sep)) if name == "default" && sep == "/" => '/',
            (Value::String(name), Value::Null) if name == "default" => '/',
            _ => return Err(unsupported("a chunk key encoding other than default")),
        };
        let (item_size, swap_unit) = item_size(&document["data_type"])?;
        let codecs = document["codecs"].as_array().ok_or_else(|| unsupported("codecs"))?;
        let (codec, sharding) = match codecs.as_slice() {
            [one] if one["name"] == "sharding_indexed" => {
                let config = &one["configuration"];
                let inner = config["codecs"].as_array().ok_or_else(|| unsupported("sharding codecs"))?;
                let index_codecs = config["index_codecs"].as_array().ok_or_else(|| unsupported("index codecs"))?;
                let index = ChunkCodec::parse(index_codecs, 8)?;
                if index.compressed() || index.endian != Endian::Little {
                    // A checksum or compression of the index cannot be updated one entry at a time.
                    return Err(unsupported("a shard index other than plain little-endian bytes"));
                }
                if config["index_location"] != "start" {
                    // At the end, every append would move the index (see `shard_file.rs`).
                    return Err(unsupported("a shard index that is not at the start of the shard"));
                }
                let inner_shape = u64_list(&config["chunk_shape"], "inner chunk_shape")?;
                let sharding = Sharding { inner_shape, codec: ChunkCodec::parse(inner, swap_unit)? };
                (sharding.codec.clone(), Some(sharding))
            }
            chain => (ChunkCodec::parse(chain, swap_unit)?, None),
        };
        let ranks = [chunk_shape.len(), sharding.as_ref().map_or(shape.len(), |s| s.inner_shape.len())];
        if ranks.iter().any(|r| *r != shape.len()) {
            return Err(unsupported("chunk shapes of another rank than the array"));
        }
        if chunk_shape.contains(&0) {
            return Err(unsupported("zero chunk size"));
        }
        if let Some(sharding) = &sharding {
            let divides = chunk_shape.iter().zip(&sharding.inner_shape).all(|(s, i)| *i > 0 && s % i == 0);
            if !divides {
                return Err(unsupported("inner chunks that do not divide the shard"));
            }
        }
        let fill = fill_bytes(&document, item_size, swap_unit, codec.endian)?;
        Ok(Self { document, shape, chunk_shape, item_size, fill, codec, sharding, separator })
    }

    /// The key of the grid chunk at `index` (relative to the array's directory).
    pub fn chunk_key(&self, index: &[u64]) -> String {
        let mut key = String::from("c");
        for i in index {
            key.push(self.separator);
            key.push_str(&i.to_string());
        }
        key
    }

    /// The document with a new shape and, if given, a new value of the ferrotile attributes'
    /// `structure`.
    pub fn resized(&self, shape: &[u64], structure: Option<&Value>) -> Self {
        let mut next = self.clone();
        next.shape = shape.to_vec();
        next.document["shape"] = Value::from(shape.to_vec());
        if let Some(structure) = structure {
            if !next.document["attributes"].is_object() {
                next.document["attributes"] = Value::Object(serde_json::Map::new());
            }
            let attributes = &mut next.document["attributes"];
            if !attributes["ferrotile"].is_object() {
                attributes["ferrotile"] = Value::Object(serde_json::Map::new());
            }
            attributes["ferrotile"]["structure"] = structure.clone();
        }
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLAIN: &str = r#"{"shape":[3,4],"data_type":"float64","chunk_grid":{"name":"regular","configuration":{"chunk_shape":[1,4]}},"chunk_key_encoding":{"name":"default","configuration":{"separator":"/"}},"fill_value":0.0,"codecs":[{"name":"bytes","configuration":{"endian":"little"}},{"name":"zstd","configuration":{"level":0,"checksum":false}}],"attributes":{},"zarr_format":3,"node_type":"array","storage_transformers":[]}"#;

    #[test]
    fn parses_what_zarr_python_writes() {
        let meta = ArrayMetadata::parse(PLAIN.as_bytes()).unwrap();
        assert_eq!((meta.shape.clone(), meta.chunk_shape.clone(), meta.item_size), (vec![3, 4], vec![1, 4], 8));
        assert_eq!(meta.fill, vec![0; 8]);
        assert_eq!(meta.chunk_key(&[2, 0]), "c/2/0");
        assert!(meta.sharding.is_none());
        let grown = meta.resized(&[5, 4], Some(&serde_json::json!({"shape": [5, 4]})));
        assert_eq!(grown.document["shape"], serde_json::json!([5, 4]));
        assert_eq!(grown.document["attributes"]["ferrotile"]["structure"]["shape"], serde_json::json!([5, 4]));
        let again = ArrayMetadata::parse(&serde_json::to_vec(&grown.document).unwrap()).unwrap();
        assert_eq!(again.shape, vec![5, 4]);
    }

    #[test]
    fn fill_values_and_types() {
        let nan = PLAIN.replace("\"fill_value\":0.0", "\"fill_value\":\"NaN\"");
        let meta = ArrayMetadata::parse(nan.as_bytes()).unwrap();
        assert!(f64::from_le_bytes(meta.fill.clone().try_into().unwrap()).is_nan());
        let int = PLAIN.replace("float64", "int16").replace("\"fill_value\":0.0", "\"fill_value\":-2");
        assert_eq!(ArrayMetadata::parse(int.as_bytes()).unwrap().fill, (-2i16).to_le_bytes().to_vec());
        let strange = PLAIN.replace("float64", "string");
        assert!(matches!(ArrayMetadata::parse(strange.as_bytes()), Err(CoreError::StoreUnsupported(_))));
    }

    #[test]
    fn shards_with_a_checksummed_index_are_left_to_zarr_python() {
        let sharded = r#"{"shape":[10,4],"data_type":"float64","chunk_grid":{"name":"regular","configuration":{"chunk_shape":[5,4]}},"chunk_key_encoding":{"name":"default","configuration":{"separator":"/"}},"fill_value":0.0,"codecs":[{"name":"sharding_indexed","configuration":{"chunk_shape":[1,4],"codecs":[{"name":"bytes","configuration":{"endian":"little"}},{"name":"zstd","configuration":{"level":0,"checksum":false}}],"index_codecs":[{"name":"bytes","configuration":{"endian":"little"}},{"name":"crc32c"}],"index_location":"end"}}],"attributes":{},"zarr_format":3,"node_type":"array","storage_transformers":[]}"#;
        assert!(matches!(ArrayMetadata::parse(sharded.as_bytes()), Err(CoreError::StoreUnsupported(_))));
        let plain_index = sharded.replace(",{\"name\":\"crc32c\"}", "").replace("\"end\"", "\"start\"");
        let meta = ArrayMetadata::parse(plain_index.as_bytes()).unwrap();
        let sharding = meta.sharding.unwrap();
        assert_eq!(sharding.inner_shape, vec![1, 4]);
    }
}
