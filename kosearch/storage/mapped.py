"""``passages.arrow``: the passage table as an uncompressed Arrow IPC file, read memory-mapped.

``passages.parquet`` is compressed: reading a few rows decodes whole row groups (about 128 ms
for 10 random rows of 1M), so a served index used to read the whole table into memory
(~1.5 KB a passage). Beside it, every write now leaves the same rows, columns and schema
metadata in Arrow's IPC file format, uncompressed, in record batches of :data:`BATCH_ROWS`.
Opened through a memory map, that table costs no memory up front: its buffers point into the
file, and the kernel pages in what a search touches (the rows of its hits, the filter columns)
and can drop those pages again (10 random rows of 1M: about 2 ms).

Pages a process has touched count in its resident set (RSS) until it unmaps them, and Linux maps
whole large folios of the page cache (up to 2 MB for one row's text); :meth:`Mirror.release`
drops this process's mappings of the file (``MADV_DONTNEED``: the pages stay in the page cache,
the next read maps them again), so that the RSS of a served index stays at what one search
touches instead of growing towards the file's size.

The Parquet stays the index's table of record (for polars, DuckDB, pandas and older kosearch).
The IPC file records the Parquet's size and row count in its schema metadata; one that does not
match the Parquet beside it (a table rewritten by another tool, an older kosearch that updated
the index without it) is ignored, and the Parquet is read as before.
"""

from __future__ import annotations

import mmap
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from kosearch.storage.layout import PASSAGES_ARROW_FILE

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["BATCH_ROWS", "Mirror", "open_mirror", "write_mirror"]

BATCH_ROWS = 65536  # rows per record batch: 153 batches at 10M rows
SOURCE_BYTES_KEY = b"kosearch.parquet_bytes"  # the size of the Parquet this file mirrors
SOURCE_ROWS_KEY = b"kosearch.parquet_rows"


def write_mirror(parquet: Path) -> Path:
    """Write ``passages.arrow`` beside ``parquet`` from its rows, streaming (one batch in memory).

    The file is written under a temporary name and renamed into place.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    source = pq.ParquetFile(parquet)
    stamp = {SOURCE_BYTES_KEY: str(parquet.stat().st_size).encode(),
             SOURCE_ROWS_KEY: str(source.metadata.num_rows).encode()}
    schema = source.schema_arrow
    schema = schema.with_metadata({**(schema.metadata or {}), **stamp})
    target = parquet.with_name(PASSAGES_ARROW_FILE)
    tmp = target.with_name(target.name + ".tmp")
    try:
        with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, schema) as writer:
            for batch in source.iter_batches(batch_size=BATCH_ROWS):
                writer.write_batch(pa.RecordBatch.from_arrays(batch.columns, schema=schema))
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target


@dataclass(frozen=True, eq=False)
class Mirror:
    """The memory-mapped passage table and the map it lives in."""

    table: pa.Table
    region: mmap.mmap

    def release(self) -> None:
        """Unmap the pages this process touched (they stay cached); a no-op where the platform
        has no ``madvise``."""
        if len(self.region) and hasattr(self.region, "madvise"):
            self.region.madvise(mmap.MADV_DONTNEED)


def open_mirror(parquet: Path) -> Mirror | None:
    """The memory-mapped table of ``passages.arrow`` beside ``parquet``, or None when there is
    none or it does not mirror that Parquet (then the caller reads the Parquet)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = parquet.with_name(PASSAGES_ARROW_FILE)
    if not path.is_file():
        return None
    try:
        with open(path, "rb") as handle:
            region = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        table = pa.ipc.open_file(pa.BufferReader(pa.py_buffer(region))).read_all()
        rows = pq.ParquetFile(parquet).metadata.num_rows
    except (pa.ArrowException, OSError, ValueError):
        return None  # unreadable: the Parquet (checked by the caller) is the table of record
    stamp = table.schema.metadata or {}
    if (stamp.get(SOURCE_BYTES_KEY) != str(parquet.stat().st_size).encode()
            or stamp.get(SOURCE_ROWS_KEY) != str(rows).encode() or table.num_rows != rows):
        return None
    metadata = {k: v for k, v in stamp.items() if k not in (SOURCE_BYTES_KEY, SOURCE_ROWS_KEY)}
    return Mirror(table.replace_schema_metadata(metadata or None), region)
