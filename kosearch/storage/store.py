"""Vectors in a FAISS index and the passage table in Parquet; row i of one is row i of the other.

The store knows no model: it takes and returns float32 arrays. Scores are always "higher is
better": cosine and inner-product scores as FAISS computes them, and the *negative squared*
distance for l2. Equal scores are ordered by ascending row, so results are deterministic.

Memory: a :class:`PassageTable` keeps the whole table in memory once read, about 36 bytes per
row plus the UTF-8 bytes of its doc id, text, title and meta JSON (Korean is 3 bytes a
character, so a 500-character passage costs about 1.5 KB).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from kosearch.errors import ConfigError, CorpusError, IndexFormatError
from kosearch.types import Metric, Passage

if TYPE_CHECKING:
    import faiss
    import pyarrow as pa

__all__ = ["PASSAGES_FILE", "VECTORS_FILE", "PassageTable", "PassageWriter", "VectorStore"]

PASSAGES_FILE = "passages.parquet"
VECTORS_FILE = "vectors.faiss"
ROW_GROUP_ROWS = 8192
# Up to this many rows, PassageTable.rows gathers slices: Table.take would import pandas (0.2 s
# of a one-shot query); more rows are cheaper taken.
_SLICE_ROWS = 256
COLUMNS = ("doc_id", "chunk", "text", "title", "start", "end", "meta", "hash")
#: Columns an index written before content hashes may lack (filled with "" = unknown).
OPTIONAL_COLUMNS = ("hash",)


def parse_metric(metric: Metric | str) -> Metric:
    """``metric`` as a :class:`Metric`.

    Raises:
        ConfigError: If it is not one of cosine, ip, l2.
    """
    try:
        return Metric(metric)
    except ValueError:
        choices = ", ".join(m.value for m in Metric)
        raise ConfigError(f"unknown metric {metric!r}; choose one of {choices}") from None


class VectorStore:
    """A FAISS index over float32 vectors whose row numbers are passage rows.

    Build one with :meth:`create` or :meth:`read`. Under ``cosine`` the vectors are
    L2-normalized (copies; the caller's arrays are never changed) and compared by inner product.

    Example:
        >>> store = VectorStore.create(4, "cosine")
        >>> store.add(np.eye(4, dtype=np.float32))
        >>> store.search(np.eye(4, dtype=np.float32)[:1], k=2)[1].tolist()
        [[0, 1]]
    """

    def __init__(
        self, index: faiss.Index, metric: Metric | str, factory: str, *, mapped: bool = False
    ) -> None:
        """Wrap an existing FAISS index (prefer :meth:`create` and :meth:`read`)."""
        self._index = index
        self.metric = parse_metric(metric)
        self.factory = factory
        self._mapped = mapped

    @classmethod
    def create(cls, dim: int, metric: Metric | str, factory: str = "Flat") -> VectorStore:
        """An empty store.

        Args:
            dim: Vector dimension (> 0).
            metric: ``cosine``, ``ip`` or ``l2``.
            factory: A ``faiss.index_factory`` description, e.g. ``"Flat"`` or ``"HNSW32"``.

        Raises:
            ConfigError: If the metric or the factory string is not valid.
            ValueError: If ``dim`` is not positive.
        """
        import faiss

        if dim <= 0:
            raise ValueError(f"dim must be positive, got {dim}")
        parsed = parse_metric(metric)
        try:
            index = faiss.index_factory(dim, factory, _faiss_metric(parsed))
        except RuntimeError as error:
            raise ConfigError(
                f"FAISS cannot build an index from the factory string {factory!r}"
            ) from error
        if hasattr(index, "do_polysemous_training"):
            # The factory turns on polysemous training for IVF-PQ: minutes of training for a
            # Hamming pre-filter kosearch never uses (polysemous_ht stays 0).
            index.do_polysemous_training = False
        return cls(index, parsed, factory)

    @property
    def dim(self) -> int:
        """The vector dimension."""
        return int(self._index.d)

    @property
    def ntotal(self) -> int:
        """How many vectors are stored."""
        return int(self._index.ntotal)

    @property
    def is_trained(self) -> bool:
        """False for an IVF/PQ index that still needs :meth:`train`."""
        return bool(self._index.is_trained)

    @property
    def mapped(self) -> bool:
        """Whether the vectors are memory-mapped from a file (read-only until the next add)."""
        return self._mapped

    @property
    def kind(self) -> str:
        """``flat``, ``hnsw``, ``ivf-flat``, ``ivf-pq``, ``ivf-sq8`` or ``other``."""
        return _kind(self._index)

    def search_params(self) -> dict[str, int]:
        """The query-time knobs in force: ``{"nprobe": ...}`` (IVF), ``{"ef_search": ...}``
        (HNSW) or ``{}``; FAISS stores both in the index file."""
        ivf = _ivf(self._index)
        if ivf is not None:
            return {"nprobe": int(ivf.nprobe)}
        if self.kind == "hnsw":
            return {"ef_search": int(self._index.hnsw.efSearch)}
        return {}

    def set_search_params(self, *, nprobe: int | None = None, ef_search: int | None = None) -> None:
        """Set query-time knobs; None leaves a knob as it is.

        Args:
            nprobe: Inverted lists visited per query (IVF types; more is slower and more exact).
            ef_search: Candidate list size of an HNSW search (at least ``k`` is always used).

        Raises:
            ConfigError: If a knob does not apply to this index type.
            ValueError: If a knob is below 1.
        """
        for name, value in (("nprobe", nprobe), ("ef_search", ef_search)):
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
        ivf = _ivf(self._index)
        if nprobe is not None:
            if ivf is None:
                raise ConfigError(
                    f"nprobe applies only to IVF indexes (ivf-flat, ivf-pq, ivf-sq8), "
                    f"not to this {self.kind} index"
                )
            ivf.nprobe = int(nprobe)
        if ef_search is not None:
            if self.kind != "hnsw":
                raise ConfigError(
                    f"ef_search applies only to hnsw indexes, not to this {self.kind} index"
                )
            self._index.hnsw.efSearch = int(ef_search)

    def set_build_params(self, *, ef_construction: int | None = None) -> None:
        """Set HNSW's build breadth (before adding vectors; higher: better graph, slower add).

        Raises:
            ConfigError: If this is not an HNSW index.
            ValueError: If ``ef_construction`` is below 1.
        """
        if ef_construction is None:
            return
        if ef_construction < 1:
            raise ValueError(f"ef_construction must be at least 1, got {ef_construction}")
        if self.kind != "hnsw":
            raise ConfigError(
                f"ef_construction applies only to hnsw indexes, not to this {self.kind} index"
            )
        self._index.hnsw.efConstruction = int(ef_construction)

    def empty_copy(self) -> VectorStore:
        """A store with the same type, trained parameters and search knobs, but no vectors.

        Re-adding vectors to it needs no retraining (e.g. to rebuild after deletions). The
        vectors are never copied, so this is cheap for a large or memory-mapped index.
        """
        import faiss

        index = self._index
        kind = self.kind
        if kind == "flat":
            empty = faiss.IndexFlat(index.d, index.metric_type)
        elif kind == "hnsw":
            empty = faiss.IndexHNSWFlat(index.d, index.hnsw.nb_neighbors(1), index.metric_type)
            empty.hnsw.efConstruction = index.hnsw.efConstruction
            empty.hnsw.efSearch = index.hnsw.efSearch
        elif _ivf(index) is not None:
            empty = _clone_without_lists(index)
        else:  # clone + reset; FAISS aborts on resetting a clone that views mapped memory
            source = faiss.serialize_index(index) if self._mapped else None
            empty = (
                faiss.deserialize_index(source) if source is not None else faiss.clone_index(index)
            )
            empty.reset()
        return VectorStore(empty, self.metric, self.factory)

    def train(self, vectors: NDArray[np.floating[Any]]) -> None:
        """Train an IVF/PQ index on sample vectors of shape ``(n, dim)`` (no-op for Flat/HNSW)."""
        if not self.is_trained:
            self._index.train(self._prepare(vectors))

    def add(self, vectors: NDArray[np.floating[Any]]) -> None:
        """Append vectors; they get the rows ``ntotal .. ntotal + n - 1``.

        Args:
            vectors: Shape ``(n, dim)``, any float dtype; converted to float32 (a copy is
                normalized under cosine; a zero vector stays zero and scores 0).

        Raises:
            ValueError: On a wrong shape, non-finite values, or an untrained index.
        """
        prepared = self._prepare(vectors)
        if not self.is_trained:
            raise ValueError(
                f"the FAISS index {self.factory!r} must be trained (call train()) before add()"
            )
        if self._mapped:
            self._own()
        self._index.add(prepared)

    def search(
        self, queries: NDArray[np.floating[Any]], k: int
    ) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
        """The ``k`` best rows for each query.

        Args:
            queries: Shape ``(nq, dim)``.
            k: How many results per query (> 0).

        Returns:
            ``(scores, rows)``, both of shape ``(nq, min(k, ntotal))``, best first. Higher
            scores are better for every metric: l2 scores are negative squared distances.
            Equal scores come in ascending row order. An approximate index that finds fewer
            than ``k`` rows pads with row ``-1`` and score ``-inf``.

        Raises:
            ValueError: If ``k <= 0`` or the queries have a wrong shape or non-finite values.
        """
        if k <= 0:
            raise ValueError(f"k must be positive, got {k}")
        prepared = self._prepare(queries)
        want = min(k, self.ntotal)
        if want == 0 or len(prepared) == 0:
            shape = (len(prepared), want)
            return np.zeros(shape, np.float32), np.zeros(shape, np.int64)
        return self._search_block(prepared, want, min(want + 1, self.ntotal))

    def _search_block(
        self, queries: NDArray[np.float32], want: int, fetch: int
    ) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
        """Search ``fetch`` deep; queries whose ties run past the cut are searched deeper."""
        distances, labels = self._index.search(queries, fetch)
        scores = 0.0 - distances if self.metric is Metric.L2 else distances  # 0.0 - d: no -0.0
        scores = np.where(labels < 0, np.float32(-np.inf), scores).astype(np.float32)
        order = np.lexsort((labels, -scores), axis=-1)
        scores = np.take_along_axis(scores, order, axis=1)
        rows = np.take_along_axis(labels, order, axis=1).astype(np.int64)
        # A score equal to the last one fetched may be shared by rows not fetched yet.
        tied = np.isfinite(scores[:, want - 1]) & (scores[:, want - 1] == scores[:, -1])
        if fetch < self.ntotal and tied.any():
            deeper = self._search_block(queries[tied], want, min(2 * fetch, self.ntotal))
            scores, rows = scores[:, :want].copy(), rows[:, :want].copy()
            scores[tied], rows[tied] = deeper
            return scores, rows
        return np.ascontiguousarray(scores[:, :want]), np.ascontiguousarray(rows[:, :want])

    def reconstruct(self, rows: Sequence[int]) -> NDArray[np.float32]:
        """The stored vectors of ``rows``, shape ``(len(rows), dim)``.

        Under cosine these are the normalized vectors; quantized indexes return approximations.

        Raises:
            IndexError: If a row is out of range.
        """
        keys = _checked_rows(rows, self.ntotal)
        if len(keys) == 0:
            return np.zeros((0, self.dim), np.float32)
        try:
            return np.asarray(self._index.reconstruct_batch(keys), dtype=np.float32)
        except RuntimeError:
            import faiss

            if self._mapped:
                self._own()  # FAISS aborts when it builds the map inside a mapped index
            faiss.extract_index_ivf(self._index).make_direct_map()  # IVF needs a row -> list map
            return np.asarray(self._index.reconstruct_batch(keys), dtype=np.float32)

    def write(self, directory: Path) -> int:
        """Write ``vectors.faiss`` into ``directory`` and return its size in bytes.

        Raises:
            ConfigError: If the file cannot be written.
        """
        import faiss

        path = Path(directory) / VECTORS_FILE
        try:
            faiss.write_index(self._index, str(path))
        except RuntimeError as error:
            raise ConfigError(f"cannot write the vector index {path}: {_reason(error)}") from error
        return path.stat().st_size

    @classmethod
    def read(
        cls,
        directory: Path,
        metric: Metric | str,
        *,
        mmap: bool = False,
        factory: str | None = None,
        expected_bytes: int | None = None,
    ) -> VectorStore:
        """Open ``directory/vectors.faiss``.

        Args:
            directory: The index directory.
            metric: The metric the vectors were stored under (from the manifest).
            mmap: Memory-map the vectors instead of reading them (FAISS ``IO_FLAG_MMAP_IFC``);
                falls back to a normal read where the index type does not support it. The first
                :meth:`add` copies a mapped index into memory.
            factory: The factory string to report (default: derived from the index).
            expected_bytes: The file size :meth:`write` returned; a mismatch is reported before
                FAISS touches the file. FAISS can crash on a truncated file when mapping it, so
                pass this with ``mmap=True``.

        Raises:
            IndexFormatError: If the file is missing, truncated, corrupt, or stored under
                another metric.
        """
        import faiss

        parsed = parse_metric(metric)
        path = Path(directory) / VECTORS_FILE
        _check_file(path, expected_bytes)
        index, mapped = None, False
        if mmap:
            try:
                index, mapped = faiss.read_index(str(path), faiss.IO_FLAG_MMAP_IFC), True
            except RuntimeError:
                pass
        if index is None:
            try:
                index = faiss.read_index(str(path))
            except RuntimeError as error:
                raise IndexFormatError(
                    f"{path} is not a readable FAISS index ({_reason(error)})"
                ) from error
        if index.metric_type != _faiss_metric(parsed):
            stored = "l2" if index.metric_type == faiss.METRIC_L2 else "inner-product (cosine, ip)"
            raise IndexFormatError(
                f"{path} holds vectors for the {stored} metric, not {parsed.value}; "
                "the index is inconsistent"
            )
        described = factory if factory is not None else _describe(index)
        return cls(index, parsed, described, mapped=mapped)

    def _prepare(self, vectors: NDArray[np.floating[Any]]) -> NDArray[np.float32]:
        """Validated C-contiguous float32 vectors (a normalized copy under cosine)."""
        import faiss

        array = np.asarray(vectors)
        if array.ndim != 2 or array.shape[1] != self.dim:
            raise ValueError(f"expected vectors of shape (n, {self.dim}), got shape {array.shape}")
        copy = True if self.metric is Metric.COSINE else None  # never normalize the caller's array
        with np.errstate(over="ignore"):  # overflow becomes inf, reported just below
            prepared = np.array(array, dtype=np.float32, order="C", copy=copy)
        if not np.isfinite(prepared).all():
            raise ValueError(
                "vectors contain non-finite values (NaN, or infinity after conversion to float32)"
            )
        if self.metric is Metric.COSINE:
            faiss.normalize_L2(prepared)
        return prepared

    def fill(self, chunks: Iterable[NDArray[np.floating[Any]]], n: int) -> None:
        """Add exactly ``n`` vectors given in chunks, sizing an exact (Flat) index only once.

        ``add`` lets FAISS grow its buffer by doubling, which briefly holds up to three times
        the vectors; here a Flat index's buffer is allocated at its final size and each chunk
        is written into it, so the peak is the vectors plus one chunk. Other index types fall
        back to :meth:`add` per chunk.

        Raises:
            ValueError: If the chunks hold other than ``n`` vectors, or have the wrong shape.
        """
        import faiss

        flat = type(self._index) in (faiss.IndexFlatIP, faiss.IndexFlatL2, faiss.IndexFlat)
        if not flat or self.ntotal or self._mapped:
            added = 0
            for chunk in chunks:
                self.add(chunk)
                added += len(chunk)
            if added != n:
                raise ValueError(f"expected {n} vectors, got {added}")
            return
        size = n * self.dim * 4
        self._index.codes.resize(size)
        view = faiss.rev_swig_ptr(self._index.codes.data(), size).view(np.float32)
        rows = view.reshape(n, self.dim) if n else np.zeros((0, self.dim), np.float32)
        at = 0
        for chunk in chunks:
            prepared = self._prepare(chunk)
            if at + len(prepared) > n:
                self._index.reset()
                raise ValueError(f"expected {n} vectors, got more")
            rows[at:at + len(prepared)] = prepared
            at += len(prepared)
        if at != n:
            self._index.reset()
            raise ValueError(f"expected {n} vectors, got {at}")
        self._index.ntotal = n

    def copy(self) -> VectorStore:
        """An independent in-memory copy (e.g. to add to while this one keeps serving)."""
        import faiss

        index = faiss.deserialize_index(faiss.serialize_index(self._index))
        return VectorStore(index, self.metric, self.factory)

    def _own(self) -> None:
        """Copy a memory-mapped index into memory; FAISS aborts on writes to a mapped one."""
        import faiss

        self._index = faiss.deserialize_index(faiss.serialize_index(self._index))
        self._mapped = False


class PassageWriter:
    """Streams passages into ``passages.parquet`` (zstd, row groups of 8192 rows).

    Use it as a context manager; on an exception the partial file is deleted.
    """

    def __init__(self, directory: Path) -> None:
        """Open ``directory/passages.parquet`` for writing (prefer :meth:`PassageTable.writer`)."""
        import pyarrow.parquet as pq

        self.path = Path(directory) / PASSAGES_FILE
        try:
            self._writer: Any = pq.ParquetWriter(self.path, _schema(), compression="zstd")
        except OSError as error:
            raise ConfigError(f"cannot write the passage table {self.path}: {error}") from error
        self._pending: dict[str, list[Any]] = {name: [] for name in COLUMNS}
        self._rows = 0
        self._closed = False

    def append(
        self,
        passages: Sequence[Passage],
        metas: Sequence[Mapping[str, Any]],
        hashes: Sequence[str] | None = None,
    ) -> None:
        """Add passages with their documents' meta fields and content hashes (one per passage).

        Raises:
            CorpusError: If a meta mapping is not JSON-serializable.
            ValueError: If the lengths differ or the writer is closed.
        """
        if self._closed:
            raise ValueError("the passage writer is closed")
        hashes = [""] * len(passages) if hashes is None else hashes
        if not len(passages) == len(metas) == len(hashes):
            raise ValueError(
                f"got {len(passages)} passages but {len(metas)} metas and {len(hashes)} hashes"
            )
        encoded = [encode_meta(meta, passage.doc_id) for passage, meta in zip(passages, metas)]
        pending = self._pending  # extended only once every meta encoded, so a failure adds nothing
        pending["doc_id"] += [p.doc_id for p in passages]
        pending["chunk"] += [p.chunk for p in passages]
        pending["text"] += [p.text for p in passages]
        pending["title"] += [p.title for p in passages]
        pending["start"] += [p.start for p in passages]
        pending["end"] += [p.end for p in passages]
        pending["meta"] += encoded
        pending["hash"] += list(hashes)
        while len(pending["doc_id"]) >= ROW_GROUP_ROWS:
            self._flush(ROW_GROUP_ROWS)

    def append_table(self, table: pa.Table | pa.RecordBatch) -> None:
        """Add rows that already have the passage columns (e.g. rows kept from another table)."""
        import pyarrow as pa

        self._flush(len(self._pending["doc_id"]))
        if table.num_rows:
            data = pa.Table.from_batches([table]) if isinstance(table, pa.RecordBatch) else table
            self._writer.write_table(
                data.select(list(COLUMNS)).cast(_schema()), row_group_size=ROW_GROUP_ROWS
            )
            self._rows += table.num_rows

    def close(self) -> int:
        """Finish the file (idempotent) and return how many rows it holds."""
        if not self._closed:
            self._flush(len(self._pending["doc_id"]))
            self._writer.close()
            self._closed = True
        return self._rows

    def abort(self) -> None:
        """Close and delete the partial file."""
        self._closed = True
        self._writer.close()
        self.path.unlink(missing_ok=True)

    def __enter__(self) -> PassageWriter:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if kind is None:
            self.close()
        else:
            self.abort()

    def _flush(self, n: int) -> None:
        """Write the first ``n`` pending rows as one row group."""
        import pyarrow as pa

        if n == 0:
            return
        chunk = {name: values[:n] for name, values in self._pending.items()}
        table = pa.Table.from_pydict(chunk, schema=_schema())
        self._writer.write_table(table, row_group_size=ROW_GROUP_ROWS)
        for values in self._pending.values():
            del values[:n]
        self._rows += n


class PassageTable:
    """Row-aligned passage records, stored as Parquet (zstd, row groups of 8192).

    Columns: ``doc_id`` string, ``chunk`` int32, ``text``, ``title`` strings, ``start``,
    ``end`` int64, ``meta`` (the document's other fields as JSON text) and ``hash`` (the
    document's content hash, which tells an update whether to re-encode it; "" if unknown).

    Example:
        >>> table = PassageTable.from_passages([Passage("d1", 0, "안녕", 0, 2)], [{"k": 1}])
        >>> table.rows([0])[0]["meta"]
        {'k': 1}
    """

    def __init__(self, table: pa.Table, path: Path | None = None) -> None:
        """Wrap a pyarrow table with the passage schema (prefer :meth:`read`)."""
        self._table = table
        self._path = path

    @classmethod
    def writer(cls, directory: Path) -> PassageWriter:
        """A streaming writer of ``directory/passages.parquet``."""
        return PassageWriter(directory)

    @classmethod
    def from_passages(
        cls, passages: Sequence[Passage], metas: Sequence[Mapping[str, Any]]
    ) -> PassageTable:
        """An in-memory table of these passages (``metas[i]`` belongs to ``passages[i]``)."""
        import pyarrow as pa

        if len(passages) != len(metas):
            raise ValueError(f"got {len(passages)} passages but {len(metas)} metas")
        columns = {
            "doc_id": [p.doc_id for p in passages],
            "chunk": [p.chunk for p in passages],
            "text": [p.text for p in passages],
            "title": [p.title for p in passages],
            "start": [p.start for p in passages],
            "end": [p.end for p in passages],
            "meta": [encode_meta(m, p.doc_id) for p, m in zip(passages, metas)],
            "hash": [""] * len(passages),
        }
        return cls(pa.Table.from_pydict(columns, schema=_schema()))

    @classmethod
    def read(cls, directory: Path) -> PassageTable:
        """Load ``directory/passages.parquet`` into memory.

        Raises:
            IndexFormatError: If the file is missing, corrupt, or lacks columns.
        """
        import pyarrow as pa
        import pyarrow.parquet as pq

        path = Path(directory) / PASSAGES_FILE
        _check_file(path, None)
        try:
            # ParquetFile, not read_table: that imports pyarrow.dataset and pandas (~0.25 s).
            table = pq.ParquetFile(path).read()
        except (pa.ArrowException, OSError) as error:
            raise IndexFormatError(
                f"{path} is not a readable Parquet file ({_reason(error)})"
            ) from error
        for name in OPTIONAL_COLUMNS:
            if name not in table.column_names:
                table = table.append_column(name, pa.array([""] * table.num_rows, pa.string()))
        missing = [name for name in COLUMNS if name not in table.column_names]
        if missing:
            raise IndexFormatError(
                f"{path} lacks the column(s) {', '.join(missing)}; the index is corrupt"
            )
        try:
            table = table.select(list(COLUMNS)).cast(_schema())
        except (pa.ArrowException, ValueError) as error:
            raise IndexFormatError(
                f"{path} has columns of the wrong type ({_reason(error)})"
            ) from error
        if any(column.null_count for column in table.columns):
            raise IndexFormatError(f"{path} has empty (null) cells; the index is corrupt")
        return cls(table, path)

    def __len__(self) -> int:
        return int(self._table.num_rows)

    @property
    def table(self) -> pa.Table:
        """The underlying pyarrow table (``meta`` still JSON text)."""
        return self._table

    def rows(self, rows: Sequence[int]) -> list[dict[str, Any]]:
        """The records of ``rows``, in the order given, with ``meta`` decoded to a dict.

        Raises:
            IndexError: If a row is out of range.
            IndexFormatError: If a stored meta is not valid JSON.
        """
        import pyarrow as pa

        keys = _checked_rows(rows, len(self))
        if 0 < len(keys) <= _SLICE_ROWS:  # a search's hits: no compute kernel, which imports pandas
            picked = pa.concat_tables([self._table.slice(row, 1) for row in keys.tolist()])
        else:
            picked = self._table.take(keys)
        records: list[dict[str, Any]] = picked.to_pylist()
        for row, record in zip(keys.tolist(), records):
            try:
                record["meta"] = json.loads(record["meta"])
            except ValueError:
                where = self._path or "the passage table"
                raise IndexFormatError(
                    f"{where} row {row} has a meta field that is not valid JSON."
                ) from None
        return records

    def doc_ids(self) -> list[str]:
        """The ``doc_id`` of every row."""
        return [str(value) for value in self._table.column("doc_id").to_pylist()]

    def column(self, name: str) -> pa.ChunkedArray:
        """One column (``meta`` as JSON text)."""
        if name not in COLUMNS:
            raise ValueError(f"unknown column {name!r}; the columns are {', '.join(COLUMNS)}")
        return self._table.column(name)

    def select(self, rows: Sequence[int]) -> PassageTable:
        """A new table of ``rows`` in the order given (e.g. the rows kept after a delete)."""
        return PassageTable(self._table.take(_checked_rows(rows, len(self))))

    def concat(self, other: PassageTable) -> PassageTable:
        """A new table: these rows followed by ``other``'s."""
        import pyarrow as pa

        return PassageTable(pa.concat_tables([self._table, other.table]).combine_chunks())

    def write(self, directory: Path) -> int:
        """Write ``directory/passages.parquet`` and return the number of rows."""
        import pyarrow.parquet as pq

        path = Path(directory) / PASSAGES_FILE
        try:
            pq.write_table(self._table, path, compression="zstd", row_group_size=ROW_GROUP_ROWS)
        except OSError as error:
            raise ConfigError(f"cannot write the passage table {path}: {error}") from error
        return len(self)


def _schema() -> pa.Schema:
    """The passage table schema."""
    import pyarrow as pa

    return pa.schema(
        [
            ("doc_id", pa.string()),
            ("chunk", pa.int32()),
            ("text", pa.string()),
            ("title", pa.string()),
            ("start", pa.int64()),
            ("end", pa.int64()),
            ("meta", pa.string()),
            ("hash", pa.string()),
        ]
    )


def encode_meta(meta: Mapping[str, Any], doc_id: str) -> str:
    """A document's meta fields as JSON text (Korean kept readable)."""
    try:
        return json.dumps(dict(meta), ensure_ascii=False)
    except (TypeError, ValueError) as error:
        raise CorpusError(
            f"the fields of document {doc_id!r} cannot be stored as JSON: {error}"
        ) from error


def _checked_rows(rows: Sequence[int], n: int) -> NDArray[np.int64]:
    """``rows`` as an int64 array, each in ``[0, n)``."""
    keys = np.asarray(rows, dtype=np.int64).reshape(-1)
    if len(keys) and (keys.min() < 0 or keys.max() >= n):
        bad = keys[(keys < 0) | (keys >= n)][0]
        raise IndexError(f"row {bad} is out of range for {n} rows")
    return keys


def _check_file(path: Path, expected_bytes: int | None) -> None:
    """Raise IndexFormatError if ``path`` is missing or not ``expected_bytes`` long."""
    if not path.is_file():
        raise IndexFormatError(f"the index at {path.parent} is incomplete: {path.name} is missing")
    size = path.stat().st_size
    if expected_bytes is not None and size != expected_bytes:
        raise IndexFormatError(
            f"{path} is {size} bytes but should be {expected_bytes}; "
            "the index is truncated or corrupt"
        )


def _faiss_metric(metric: Metric) -> int:
    """The FAISS metric constant: inner product for cosine and ip, L2 for l2."""
    import faiss

    return int(faiss.METRIC_L2 if metric is Metric.L2 else faiss.METRIC_INNER_PRODUCT)


def _ivf(index: faiss.Index) -> Any:
    """The IVF part of ``index``, or None when it has none."""
    import faiss

    try:
        return faiss.extract_index_ivf(index)
    except RuntimeError:
        return None


def _clone_without_lists(index: faiss.Index) -> Any:
    """A copy of an IVF index with its quantizer and codec but empty inverted lists.

    The lists are swapped for empty ones while cloning, so the vectors are never copied and
    mapped lists are never written to (FAISS aborts on clearing a mapped vector).
    """
    import faiss

    ivf = faiss.extract_index_ivf(index)
    lists, owned = ivf.invlists, ivf.own_invlists
    empty = faiss.ArrayInvertedLists(ivf.nlist, ivf.code_size)
    ivf.own_invlists = False  # replace_invlists must not free the real lists
    ivf.replace_invlists(empty, False)
    try:
        clone = faiss.clone_index(index)
    finally:
        ivf.replace_invlists(lists, owned)
    clone_ivf = faiss.extract_index_ivf(clone)
    clone_ivf.direct_map = faiss.DirectMap()  # rebuilt by reconstruct() when needed
    clone_ivf.ntotal = clone.ntotal = 0
    return clone


def _kind(index: faiss.Index) -> str:
    """The kosearch index type of a FAISS index (``other`` when it is none of them)."""
    import faiss

    if isinstance(index, faiss.IndexFlat):
        return "flat"
    if isinstance(index, faiss.IndexHNSWFlat):
        return "hnsw"
    if isinstance(index, faiss.IndexIVFFlat):
        return "ivf-flat"
    if isinstance(index, faiss.IndexIVFPQ):
        return "ivf-pq"
    if isinstance(index, faiss.IndexIVFScalarQuantizer):
        if index.sq.qtype == faiss.ScalarQuantizer.QT_8bit:
            return "ivf-sq8"
    return "other"


def _describe(index: faiss.Index) -> str:
    """The factory string of a FAISS index, or its class name when it cannot be derived."""
    try:
        from faiss.contrib.factory_tools import reverse_index_factory

        return str(reverse_index_factory(index))
    except Exception:  # any failure just means "no factory string"
        return type(index).__name__


def _reason(error: BaseException) -> str:
    """The reason in an exception message, without FAISS's "Error in <fn> at <file>:<line>:"."""
    text = " ".join(str(error).split())
    found = re.search(r" at \S+:\d+: (.+)$", text)
    return (found.group(1) if found else text or type(error).__name__).rstrip(".")
