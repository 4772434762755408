"""Uploaded tables: one Parquet file per partition in a directory of their own.

``<dir>/partition-<i>.parquet`` holds partition ``i`` exactly as last written (the body's
columns converted to the declared types, with the body's pandas metadata so that the index
round-trips). A partition never written reads as zero rows of the declared schema.

Writes go to a temporary file in the same directory, then ``os.replace`` it: a reader sees the
old or the new partition, never a half-written one, and a failed write leaves nothing behind.
All functions are synchronous; the HTTP layer calls them from worker threads.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from .arrow_io import index_columns, select_columns

__all__ = ["ParquetTable"]


class ParquetTable:
    """The partition files of one uploaded table.

    Parameters
    ----------
    directory : Path
        The table's own directory (created by :meth:`create`).
    schema : pyarrow.Schema
        The declared schema (used for partitions never written).
    npartitions : int
        Number of partitions.
    """

    def __init__(self, directory: Path, schema: pa.Schema, npartitions: int) -> None:
        self.directory = directory
        self.schema = schema
        self.npartitions = npartitions

    @staticmethod
    def create(directory: Path) -> None:
        """Make the (empty) directory of a new table; fails if it exists."""
        directory.mkdir(parents=True, exist_ok=False)

    @staticmethod
    def remove(directory: Path) -> None:
        shutil.rmtree(directory, ignore_errors=True)

    def path(self, partition: int) -> Path:
        return self.directory / f"partition-{partition}.parquet"

    def write_partition(self, partition: int, table: pa.Table) -> None:
        """Replace partition ``partition`` with ``table`` (already conformed to the schema)."""
        if not 0 <= partition < self.npartitions:
            raise IndexError(f"Partition {partition} out of range")
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".partition-", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as out:
                pq.write_table(table, out)
            os.replace(tmp, self.path(partition))
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def read_partition(self, partition: int, columns: Sequence[str] | None = None) -> pa.Table:
        """Partition ``partition`` (``columns`` and the index, or everything)."""
        if not 0 <= partition < self.npartitions:
            raise IndexError(f"Partition {partition} out of range")
        try:
            table = pq.read_table(self.path(partition))
        except FileNotFoundError:
            table = self.schema.empty_table()
        return select_columns(table, columns)

    def read(self, columns: Sequence[str] | None = None) -> pa.Table:
        """All partitions, in order."""
        parts = [
            pq.read_table(self.path(i)) for i in range(self.npartitions) if self.path(i).exists()
        ]
        if not parts:
            return select_columns(self.schema.empty_table(), columns)
        try:
            table = pa.concat_tables(parts, promote_options="default")
        except (pa.ArrowException, ValueError):
            # Partitions written from different kinds of frames disagree on their index
            # columns; the data columns (same declared types) still concatenate.
            index = set(index_columns(self.schema))
            data = [
                name
                for name in self.schema.names
                if name not in index and all(name in p.column_names for p in parts)
            ]
            table = pa.concat_tables([p.select(data).replace_schema_metadata() for p in parts])
        return select_columns(table, columns)
