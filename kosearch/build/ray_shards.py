"""The shards a ``ray`` engine run checkpoints as results arrive, so that an interrupted run
resumes from them: ``shards/*.parquet`` (passages and their BM25 terms) beside the
checkpoint's ``vectors.f32``."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from kosearch.build.checkpoint import Checkpoint

if TYPE_CHECKING:
    import pyarrow as pa

SHARDS_DIR = "shards"


class ShardSpool:
    """The shards a Ray run has checkpointed: ``shards/<first row>-<documents done>.parquet``,
    each with its vectors appended to the checkpoint's ``vectors.f32`` after it is written.

    Opening drops shards whose vectors were never checkpointed (a run killed in between).
    """

    def __init__(self, work: Checkpoint) -> None:
        import pyarrow.parquet as pq

        self.work = work
        self.directory = work.path / SHARDS_DIR
        self.directory.mkdir(exist_ok=True)
        self.rows = 0
        self.done = 0  # documents (ranks) complete
        self.files: list[Path] = []
        for stale in self.directory.glob("*.tmp"):
            stale.unlink()
        paths = sorted(self.directory.glob("*.parquet"))
        for at, path in enumerate(paths):
            n = pq.ParquetFile(path).metadata.num_rows
            if self.rows + n > work.encoded:  # its vectors were never checkpointed
                for later in paths[at:]:
                    later.unlink()
                break
            self.rows += n
            self.done = int(path.stem.split("-")[1])
            self.files.append(path)
        if self.rows != work.encoded:  # not a state this class writes: start the pass over
            for path in self.files:
                path.unlink()
            self.rows = self.done = 0
            self.files = []
            if work.chunked is not None:
                work.mark_chunked(work.chunked)  # zero vectors checkpointed

    def write(self, table: pa.Table, dim: int) -> None:
        """Checkpoint one shard of whole documents: its rows, then its vectors."""
        import numpy as np
        import pyarrow.parquet as pq

        vectors = table.column("vector").combine_chunks()
        array = np.asarray(vectors.flatten().to_numpy(zero_copy_only=False), np.float32)
        done = int(table.column("rank")[-1].as_py()) + 1
        path = self.directory / f"{self.rows:012d}-{done:012d}.parquet"
        tmp = path.with_suffix(".tmp")
        pq.write_table(table.drop_columns(["vector"]), tmp, compression="zstd")
        os.replace(tmp, path)
        self.work.append_vectors(array.reshape(table.num_rows, dim))
        self.files.append(path)
        self.rows += table.num_rows
        self.done = done

    def tables(self, columns: list[str]) -> Iterator[pa.Table]:
        import pyarrow.parquet as pq

        for path in self.files:
            yield pq.read_table(path, columns=columns)

    def tables_with(self, columns: list[str]) -> Iterator[pa.Table]:
        """:meth:`tables` of the shards that have all of ``columns`` (a shard written by an
        older kosearch may lack some)."""
        import pyarrow.parquet as pq

        for path in self.files:
            if set(columns) <= set(pq.read_schema(path).names):
                yield pq.read_table(path, columns=columns)
