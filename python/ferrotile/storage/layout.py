"""How a new array's chunks are laid out in files: plain chunks, or zarr v3 shards of several.

An array written frame by frame (a detector's images, PATCH ``extend`` or the push WebSocket)
has one chunk per frame when its first block is one frame; stored plainly, that is a file per
frame. Arrays whose chunks are small are therefore created sharded: chunks are grouped along the
first axis into shard files of about :data:`SHARD_BYTES`, at most :data:`MAX_CHUNKS_PER_SHARD`
chunks each. The shard index sits at the start of the file without a checksum, so that the
edge's writer appends a chunk to its shard and rewrites its one index entry in place
(``rust/src/store/shard_file.rs``). zarr-python and every zarr v3 reader open the result.

A node chooses its own layout with the data source parameter ``chunks_per_shard`` (an integer;
1 means plain chunks), see ``docs/storage.md``.
"""

from __future__ import annotations

import math
from typing import Any

from zarr.codecs import BytesCodec, ShardingCodec, ZstdCodec

__all__ = ["MAX_CHUNKS_PER_SHARD", "SHARD_BYTES", "chunks_per_shard", "sharding"]

#: Target size of a shard file.
SHARD_BYTES = 16 * 1024 * 1024
#: Most chunks in one shard (its index is 16 bytes per chunk).
MAX_CHUNKS_PER_SHARD = 4096
#: Chunks this big or bigger are files of their own by default.
LARGE_CHUNK_BYTES = 1024 * 1024


def chunks_per_shard(chunk_shape: tuple[int, ...], itemsize: int, asked: int | None) -> int:
    """How many chunks (along the first axis) one shard holds: ``asked`` if given, else
    chosen from the chunk size (1: no sharding)."""
    if not chunk_shape:
        return 1
    if asked is not None:
        return max(1, min(int(asked), MAX_CHUNKS_PER_SHARD))
    chunk_bytes = math.prod(chunk_shape) * itemsize
    if chunk_bytes >= LARGE_CHUNK_BYTES:
        return 1
    return max(1, min(SHARD_BYTES // max(chunk_bytes, 1), MAX_CHUNKS_PER_SHARD))


def sharding(chunk_shape: tuple[int, ...], per_shard: int) -> dict[str, Any]:
    """``zarr.create_array`` arguments for shards of ``per_shard`` chunks (none if 1)."""
    if per_shard <= 1:
        return {"chunks": chunk_shape}
    shard_shape = (chunk_shape[0] * per_shard, *chunk_shape[1:])
    codec = ShardingCodec(
        chunk_shape=chunk_shape,
        codecs=[BytesCodec(), ZstdCodec(level=0, checksum=False)],
        index_codecs=[BytesCodec()],
        index_location="start",
    )
    return {"chunks": shard_shape, "serializer": codec, "compressors": None}
