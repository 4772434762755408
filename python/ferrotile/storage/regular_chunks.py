"""One axis of an array cut into blocks of a fixed size, held as two numbers.

Tiled describes chunking with an explicit list of block sizes per axis, and the stock client
reads that list. An axis that grows by appends (one frame per block) makes that list as long
as the number of frames, and rewriting it on every append costs time in proportion to the
frames written so far. An axis regrown regularly (``ArrayStructure.with_shape``) is therefore
kept as its block size and its length, stored in the catalog and the zarr attributes as
``{"regular": step}`` in place of the list, and written out in full only when a structure is
served (``ArrayStructure.to_json``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, overload

__all__ = ["RegularChunks"]


class RegularChunks(Sequence[int]):
    """The block sizes of an axis of ``size`` elements cut every ``step`` elements:
    ``(step, step, ..., size % step)``, and ``(0,)`` for an empty axis (as Tiled writes it).

    Behaves as the tuple of those sizes (length, indexing, iteration, equality with tuples)
    without holding it.
    """

    __slots__ = ("size", "step")

    def __init__(self, step: int, size: int) -> None:
        if step < 1 or size < 0:
            raise ValueError(f"Invalid regular chunks: step {step} and size {size}")
        self.step = step
        self.size = size

    def __len__(self) -> int:
        return 1 if self.size == 0 else -(-self.size // self.step)

    @overload
    def __getitem__(self, index: int) -> int: ...

    @overload
    def __getitem__(self, index: slice) -> tuple[int, ...]: ...

    def __getitem__(self, index: int | slice) -> int | tuple[int, ...]:
        n = len(self)
        if isinstance(index, slice):
            return tuple(self[i] for i in range(*index.indices(n)))
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError("block index out of range")
        return min(self.step, self.size - index * self.step)

    def __iter__(self) -> Iterator[int]:
        return iter(self.listed())

    def listed(self) -> list[int]:
        """Every block's size (Tiled's form)."""
        if self.size == 0:
            return [0]
        full, rest = divmod(self.size, self.step)
        return [self.step] * full + ([rest] if rest else [])

    def __eq__(self, other: object) -> bool:
        if isinstance(other, RegularChunks):  # the same blocks, without listing them
            same_cut = self.step == other.step or len(self) == len(other) == 1
            return self.size == other.size and same_cut
        if isinstance(other, (tuple, list)):
            return len(other) == len(self) and tuple(other) == tuple(self)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(tuple(self))  # equal to the tuple of its sizes, so hashed as that tuple

    def __repr__(self) -> str:
        return f"RegularChunks(step={self.step}, size={self.size})"

    def to_stored(self) -> dict[str, Any]:
        """The compact JSON kept in the catalog and the zarr attributes."""
        return {"regular": self.step}
