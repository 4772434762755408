//! The persisted part of a dense array write, stored by the engine's zarr writer
//! (`crate::store`) without entering Python, except once per change of shape.
//!
//! Order of a write that grows the array: the data (in chunks or shards past the current
//! shape, invisible to readers), then `zarr.json`'s shape, then the catalog's structure (the
//! control plane's `grow`, which also tells the other processes); only then is the write
//! acknowledged. A reader thus never sees a shape past data on disk, and a process killed at any
//! moment leaves a shape covering every acknowledged write. When the catalog refuses the new
//! shape, `zarr.json` is set back. A process whose catalog is its own acknowledges once
//! `zarr.json` has the shape (after a journal entry naming the array) and records the growth in
//! the catalog behind the writes, coalesced ([`super::unrecorded`]). Each write holds the array's lock shared by all processes
//! (`ZarrArray::lock`) until the catalog has its shape; a write that finds `zarr.json` replaced
//! by another process with another shape than the one the edge knows is refused with 409 (the
//! edge's view is stale) and the node asked for again. Arrays in a layout the writer does not handle (and nodes
//! without a zarr directory) are stored by the control plane as before (`Control::store`).

use std::borrow::Cow;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use http::StatusCode;

use super::arrays::WriteBody;
use super::control::{ArrayInfo, ArrayWrite, Refusal, Stored, WriteKind};
use super::growth::{grown_shape, regrown};
use super::nodes::Node;
use super::shared::Shared;
use crate::error::CoreError;
use crate::store::{Endian, Patch, ZarrArray};

/// Where a write goes in the array, and the shape it leaves.
struct Placement {
    start: Vec<u64>,
    size: Vec<u64>,
    shape: Vec<u64>,
}

fn refused((status, detail): (StatusCode, String)) -> Refusal {
    Refusal::new(status, &detail)
}

fn placement(array: &ArrayInfo, kind: &WriteKind) -> Result<Placement, Refusal> {
    let shape = array.shape.clone();
    Ok(match kind {
        WriteKind::Full => Placement { start: vec![0; shape.len()], size: shape.clone(), shape },
        WriteKind::Block(block) => {
            let mut start = Vec::with_capacity(block.len());
            let mut size = Vec::with_capacity(block.len());
            for ((b, chunks), axis) in block.iter().zip(&array.chunks).zip(&shape) {
                let Some(n) = chunks.block(*b, *axis) else {
                    return Err(Refusal::new(StatusCode::UNPROCESSABLE_ENTITY, "Block index out of range"));
                };
                start.push(chunks.start(*b));
                size.push(n);
            }
            if block.len() != shape.len() {
                return Err(Refusal::new(StatusCode::UNPROCESSABLE_ENTITY, "Block index out of range"));
            }
            Placement { start, size, shape }
        }
        WriteKind::Patch { offset, shape: size, extend } => {
            let grown = grown_shape(array, offset, size, *extend).map_err(refused)?;
            let mut start = offset.clone();
            start.resize(size.len(), 0);
            Placement { start, size: size.clone(), shape: grown }
        }
        WriteKind::Append { frames } => {
            let mut size = shape.clone();
            let Some(first) = size.first_mut() else {
                return Err(Refusal::new(StatusCode::BAD_REQUEST, "cannot append to a 0-dimensional array"));
            };
            *first = *frames;
            let mut start = vec![0; shape.len()];
            start[0] = shape[0];
            let grown = grown_shape(array, &start, &size, true).map_err(refused)?;
            Placement { start, size, shape: grown }
        }
    })
}

/// The refusal for a storage error.
fn storage_refusal(error: &CoreError) -> Refusal {
    match error {
        CoreError::StorageFull(detail) => Refusal::new(
            StatusCode::INSUFFICIENT_STORAGE,
            &format!("Insufficient storage: the disk holding the array is full ({detail}). Nothing was stored."),
        ),
        other => Refusal::new(StatusCode::INTERNAL_SERVER_ERROR, &format!("Storage error: {other}")),
    }
}

/// The body in the order the array stores its elements: swapped if the structure's byte order
/// differs from the stored one.
fn stored_order<'a>(body: &'a [u8], array: &ArrayInfo, zarr: &ZarrArray) -> Cow<'a, [u8]> {
    let meta = zarr.metadata();
    let body_endian = match array.dtype.as_bytes().first() {
        Some(b'>') => Endian::Big,
        Some(b'<') => Endian::Little,
        Some(b'=') if cfg!(target_endian = "big") => Endian::Big,
        Some(b'=') => Endian::Little,
        _ => return Cow::Borrowed(body),
    };
    // Complex numbers swap each half.
    let unit = if array.dtype.get(1..2) == Some("c") { meta.item_size / 2 } else { meta.item_size };
    if body_endian == meta.codec.endian || unit <= 1 {
        return Cow::Borrowed(body);
    }
    let mut swapped = body.to_vec();
    for element in swapped.chunks_exact_mut(unit) {
        element.reverse();
    }
    Cow::Owned(swapped)
}

/// Stores a validated write (see the module docs) given in `pieces`: one, or for an append
/// several of whole frames each, stored one after the other with one change of shape. The
/// pieces are stored where they are (a message's payload in its envelope: no copy) and given
/// back.
pub async fn store(
    shared: &Arc<Shared>,
    node: &Arc<Node>,
    path: &str,
    kind: &WriteKind,
    pieces: Vec<WriteBody>,
) -> Result<(Stored, Vec<WriteBody>), Refusal> {
    let array = node.info.array.clone().ok_or_else(|| Refusal::new(StatusCode::NOT_FOUND, "not an array"))?;
    let handle = match array.zarr.as_deref().map(|dir| shared.arrays.get(node.info.id, &PathBuf::from(dir))) {
        Some(Ok(handle)) => handle,
        Some(Err(CoreError::StoreUnsupported(_))) | None => {
            // The control plane's writer (layouts the engine does not handle) gets one buffer.
            let body = match pieces.as_slice() {
                [one] => one.raw().cloned().unwrap_or_else(|| Bytes::copy_from_slice(one.bytes())),
                several => several.iter().flat_map(WriteBody::bytes).copied().collect::<Vec<u8>>().into(),
            };
            let write = ArrayWrite { node: node.info.id, path: path.to_owned(), kind: kind.clone(), body };
            return Ok((shared.nodes.control().store(write).await?, pieces));
        }
        Some(Err(e)) => return Err(storage_refusal(&e)),
    };
    let place = placement(&array, kind)?;
    let grows = place.shape != array.shape;
    let grown = grows.then(|| regrown(&array, &place.shape));
    let structure = grown.as_ref().map(|g| g.structure.clone());
    // Acknowledged before the catalog records the growth (after the journal names the array).
    let defer = grows && shared.unrecorded.defers();
    let journal = defer.then(|| (Arc::clone(&shared.unrecorded), node.info.id, path.to_owned(), array.zarr.clone()));
    let writer = Arc::clone(&handle);
    let old_shape = array.shape.clone();
    let (start, size, shape) = (place.start.clone(), place.size.clone(), place.shape.clone());
    let info = array.clone();
    let written = tokio::task::spawn_blocking(move || {
        let mut zarr = writer.lock();
        // Held until the catalog has the new shape (or zarr.json is set back): other processes
        // writing this array wait.
        let (held, replaced) = zarr.lock()?;
        if replaced && zarr.metadata().shape.get(..old_shape.len()) != Some(&old_shape[..]) {
            // Another process grew it, and the shape the edge knows is not the one on disk.
            return Ok(None);
        }
        // Fixed-width bytes and strings are stored as bytes along one more axis.
        let opaque = zarr.metadata().shape.len() == shape.len() + 1;
        let with = |v: &[u64], last: u64| if opaque { [v, &[last]].concat() } else { v.to_vec() };
        let bounds = with(&shape, info.itemsize);
        let frame_bytes = size.iter().skip(1).product::<u64>() * info.itemsize;
        let several = pieces.len() > 1;
        let mut at = start;
        let mut boxes = Vec::with_capacity(pieces.len());
        for piece in &pieces {
            let piece = piece.bytes();
            let mut piece_size = size.clone();
            if let (true, Some(first)) = (several, piece_size.first_mut()) {
                // Pieces of an append: whole frames each.
                *first = piece.len() as u64 / frame_bytes.max(1);
            }
            boxes.push((with(&at, 0), with(&piece_size, info.itemsize), stored_order(piece, &info, &zarr)));
            if let (Some(first), Some(n)) = (at.first_mut(), piece_size.first()) {
                *first += n;
            }
        }
        // One call: the pieces' large chunks go to disk together (`ZarrArray::write_all`).
        let patches: Vec<Patch<'_>> =
            boxes.iter().map(|(corner, extent, data)| Patch { start: corner, size: extent, data }).collect();
        zarr.write_all(&patches, &bounds)?;
        if let Some((unrecorded, id, path, Some(dir))) = &journal {
            unrecorded.journal(*id, path, dir)?;
        }
        if shape != old_shape {
            zarr.resize(&bounds, structure.as_ref())?;
        }
        Ok::<_, CoreError>(Some((held, pieces)))
    })
    .await
    .map_err(|e| Refusal::new(StatusCode::INTERNAL_SERVER_ERROR, &format!("Storage task failed: {e}")))?;
    let Some((_held, pieces)) = written.map_err(|e| storage_refusal(&e))? else {
        // Another process changed the array's shape: what the edge knows of it is stale.
        // Nothing was written; the next write asks the control plane.
        shared.nodes.invalidate(&path.split('/').map(str::to_owned).collect::<Vec<_>>(), false);
        return Err(Refusal::new(
            StatusCode::CONFLICT,
            "The array was changed by another server process meanwhile; nothing was stored. Retry the write.",
        ));
    };
    let offset = matches!(kind, WriteKind::Append { .. }).then(|| place.start[..1].to_vec());
    let Some(grown) = grown else { return Ok((Stored { array, offset }, pieces)) };
    if defer {
        let control = shared.nodes.control();
        shared.unrecorded.defer(control, node.info.id, path, &array.shape, grown.shape.clone());
        return Ok((Stored { array: grown, offset }, pieces));
    }
    match shared.nodes.control().grow(node.info.id, path.to_owned(), array.shape.clone(), grown.shape.clone()).await {
        Ok(array) => Ok((Stored { array, offset }, pieces)),
        Err(refusal) => {
            // The catalog keeps the old shape: so does zarr.json (the data past it is unseen).
            let old = array.shape.clone();
            let restored = tokio::task::spawn_blocking(move || {
                let mut zarr = handle.lock();
                let extra = zarr.metadata().shape.len() > old.len();
                let mut bounds = old;
                if extra {
                    bounds.push(array.itemsize);
                }
                zarr.resize(&bounds, Some(&array.structure))
            })
            .await;
            if !matches!(restored, Ok(Ok(()))) {
                shared.arrays.forget(node.info.id);
            }
            Err(refusal)
        }
    }
}
