"""The passage table of an index: row-aligned passage records in Parquet (``passages.parquet``).

Row i of the table is row i of the vectors (:mod:`kosearch.storage.vectors`).

Memory: every write also leaves the rows in ``passages.arrow`` (:mod:`kosearch.storage.mapped`),
and :meth:`PassageTable.load` memory-maps that file: a loaded table holds no rows in memory, a
search reads the rows of its hits (and a filter its columns) from the page cache. Without that
file (an index written by kosearch 0.1, or ``mmap=False``) the whole Parquet is read into
memory: about 36 bytes per row plus the UTF-8 bytes of its doc id, text, title and meta JSON
(Korean is 3 bytes a character, so a 500-character passage costs about 1.5 KB).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from kosearch.errors import ConfigError, CorpusError, IndexFormatError
from kosearch.storage import metadata
from kosearch.storage.checks import check_file, checked_rows, error_reason
from kosearch.storage.layout import PASSAGES_ARROW_FILE, PASSAGES_FILE
from kosearch.storage.mapped import Mirror, open_mirror, write_mirror
from kosearch.types import Passage

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["DocIds", "PassageTable", "PassageWriter", "encode_meta"]

ROW_GROUP_ROWS = 8192
# Up to this many rows, PassageTable.rows gathers slices: Table.take would import pandas (0.2 s
# of a one-shot query); more rows are cheaper taken.
_SLICE_ROWS = 256
COLUMNS = ("doc_id", "chunk", "text", "title", "start", "end", "meta", "hash")
#: Columns an index written before content hashes may lack (filled with "" = unknown).
OPTIONAL_COLUMNS = ("hash",)
#: Schema metadata marking a table whose typed ``meta.*`` columns are complete (none may mean
#: "no fields"); a table without it (kosearch 0.1) gets them computed when first filtered.
TYPED_KEY, TYPED_VALUE = b"kosearch.typed_meta", b"1"


class PassageWriter:
    """Streams passages into ``passages.parquet`` (zstd, row groups of 8192 rows).

    Use it as a context manager; on an exception the partial file is deleted. With ``typed``,
    :meth:`close` adds the typed metadata columns (:mod:`kosearch.storage.metadata`), inferred
    over every row written: a second pass over the file, one row group at a time.
    """

    def __init__(self, directory: Path, *, typed: bool = True) -> None:
        """Open ``directory/passages.parquet`` for writing (prefer :meth:`PassageTable.writer`)."""
        import pyarrow.parquet as pq

        self.path = Path(directory) / PASSAGES_FILE
        self._typed = typed
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
            if self._typed:  # the final table (a spool copied later needs neither)
                _add_typed_columns(self.path)
                write_mirror(self.path)
        return self._rows

    def abort(self) -> None:
        """Close and delete the partial file."""
        self._closed = True
        self._writer.close()
        self.path.unlink(missing_ok=True)
        self.path.with_name(PASSAGES_ARROW_FILE).unlink(missing_ok=True)

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


def passage_columns(passages: Sequence[Passage]) -> dict[str, list[Any]]:
    """The columns a passage row takes from the passage itself (``meta`` and ``hash`` come from
    its document)."""
    return {
        "doc_id": [p.doc_id for p in passages],
        "chunk": [p.chunk for p in passages],
        "text": [p.text for p in passages],
        "title": [p.title for p in passages],
        "start": [p.start for p in passages],
        "end": [p.end for p in passages],
    }


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

    def __init__(self, table: pa.Table, path: Path | None = None, *,
                 mirror: Mirror | None = None) -> None:
        """Wrap a pyarrow table with the passage schema (prefer :meth:`load`); ``mirror``:
        the memory map ``table`` lives in."""
        self._table = table
        self._path = path
        self._mirror = mirror

    @classmethod
    def writer(cls, directory: Path, *, typed: bool = True) -> PassageWriter:
        """A streaming writer of ``directory/passages.parquet`` (``typed``: add the typed
        metadata columns on close; a spool that is copied later needs none)."""
        return PassageWriter(directory, typed=typed)

    @classmethod
    def from_passages(
        cls, passages: Sequence[Passage], metas: Sequence[Mapping[str, Any]]
    ) -> PassageTable:
        """An in-memory table of these passages (``metas[i]`` belongs to ``passages[i]``)."""
        import pyarrow as pa

        if len(passages) != len(metas):
            raise ValueError(f"got {len(passages)} passages but {len(metas)} metas")
        columns = {
            **passage_columns(passages),
            "meta": [encode_meta(m, p.doc_id) for p, m in zip(passages, metas)],
            "hash": [""] * len(passages),
        }
        return cls(_typed(pa.Table.from_pydict(columns, schema=_schema())))

    @classmethod
    def load(cls, directory: Path, *, mmap: bool = True) -> PassageTable:
        """Open the passage table of ``directory``.

        With ``mmap`` and a ``passages.arrow`` that mirrors ``passages.parquet``
        (:mod:`kosearch.storage.mapped`), the table is memory-mapped: nothing is read until a
        row is asked for. Otherwise ``passages.parquet`` is read into memory.

        Raises:
            IndexFormatError: If the file is missing, corrupt, or lacks columns.
        """
        import pyarrow as pa
        import pyarrow.parquet as pq

        path = Path(directory) / PASSAGES_FILE
        check_file(path, None)
        mirror = open_mirror(path) if mmap else None
        if mirror is not None and _is_current(mirror.table):
            return cls(mirror.table, path, mirror=mirror)
        try:
            # ParquetFile, not read_table: that imports pyarrow.dataset and pandas (~0.25 s).
            table = pq.ParquetFile(path).read()
        except (pa.ArrowException, OSError) as error:
            raise IndexFormatError(
                f"{path} is not a readable Parquet file ({error_reason(error)})"
            ) from error
        for name in OPTIONAL_COLUMNS:
            if name not in table.column_names:
                table = table.append_column(name, pa.array([""] * table.num_rows, pa.string()))
        missing = [name for name in COLUMNS if name not in table.column_names]
        if missing:
            raise IndexFormatError(
                f"{path} lacks the column(s) {', '.join(missing)}; the index is corrupt"
            )
        typed = [name for name in table.column_names if name.startswith(metadata.PREFIX)]
        try:
            base = table.select(list(COLUMNS))
            if not base.schema.equals(_schema()):  # cast imports pyarrow.compute (0.1-0.3 s)
                base = base.cast(_schema())
        except (pa.ArrowException, ValueError) as error:
            raise IndexFormatError(
                f"{path} has columns of the wrong type ({error_reason(error)})"
            ) from error
        if any(column.null_count for column in base.columns):
            raise IndexFormatError(f"{path} has empty (null) cells; the index is corrupt")
        if (table.schema.metadata or {}).get(TYPED_KEY) == TYPED_VALUE:
            for name in typed:
                base = base.append_column(table.schema.field(name), table.column(name))
            base = base.replace_schema_metadata({TYPED_KEY: TYPED_VALUE})
        return cls(base, path)

    def __len__(self) -> int:
        return int(self._table.num_rows)

    @property
    def mapped(self) -> bool:
        """Whether the rows are memory-mapped from ``passages.arrow`` (not held in memory)."""
        return self._mirror is not None

    @property
    def nbytes(self) -> int:
        """Memory the table holds: 0 when memory-mapped (its pages belong to the page cache)."""
        return 0 if self._mirror is not None else int(self._table.nbytes)

    @property
    def table(self) -> pa.Table:
        """The underlying pyarrow table (``meta`` still JSON text, then any typed columns)."""
        return self._table

    def filterable(self) -> pa.Table:
        """``doc_id`` and the typed ``meta.<field>`` columns, for evaluating filters.

        An index written before typed columns (kosearch 0.1) gets them computed from its
        ``meta`` JSON here, on first use (slower, same results); they are kept in memory.
        """
        if (self._table.schema.metadata or {}).get(TYPED_KEY) != TYPED_VALUE:
            self._table = _typed(self._table)
        names = ["doc_id"] + [n for n in self._table.column_names
                              if n.startswith(metadata.PREFIX)]
        return self._table.select(names)

    def fields(self) -> dict[str, dict[str, Any]]:
        """The filterable metadata fields: ``{name: {"type": ..., ["kinds": [...]]}}``."""
        return metadata.schema_of(self.filterable().schema)

    def rows(self, rows: Sequence[int]) -> list[dict[str, Any]]:
        """The records of ``rows``, in the order given, with ``meta`` decoded to a dict.

        Raises:
            IndexError: If a row is out of range.
            IndexFormatError: If a stored meta is not valid JSON.
        """
        import pyarrow as pa

        keys = checked_rows(rows, len(self))
        table = self._table.select(list(COLUMNS))
        if len(keys) <= _SLICE_ROWS:  # a search's hits: no compute kernel, which imports pandas
            picked = pa.concat_tables([table.slice(row, 1) for row in keys.tolist()]
                                      or [table.slice(0, 0)])
        else:
            picked = table.take(keys)
        records: list[dict[str, Any]] = picked.to_pylist()
        if self._mirror is not None:  # unmap what this and earlier reads touched: bounded RSS
            self._mirror.release()
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
        """The ``doc_id`` of every row, as a list (memory: all of them; see :meth:`doc_id_view`)."""
        return [str(value) for value in self._table.column("doc_id").to_pylist()]

    def doc_id_view(self) -> DocIds:
        """The ``doc_id`` of every row as a read-only sequence over the column (no copy)."""
        return DocIds(self._table.column("doc_id"))

    def holds_any(self, doc_ids: Sequence[str]) -> bool:
        """Whether any row belongs to one of ``doc_ids``."""
        import pyarrow as pa
        import pyarrow.compute as pc

        if not doc_ids or not len(self):
            return False
        found = pc.is_in(self._table.column("doc_id"), value_set=pa.array(list(doc_ids),
                                                                          pa.string()))
        return bool(pc.any(found).as_py())

    def column(self, name: str) -> pa.ChunkedArray:
        """One column (``meta`` as JSON text)."""
        if name not in COLUMNS:
            raise ValueError(f"unknown column {name!r}; the columns are {', '.join(COLUMNS)}")
        return self._table.column(name)

    def select(self, rows: Sequence[int]) -> PassageTable:
        """A new table of ``rows`` in the order given (e.g. the rows kept after a delete)."""
        return PassageTable(_typed(self._table.take(checked_rows(rows, len(self)))))

    def concat(self, other: PassageTable) -> PassageTable:
        """A new table: these rows followed by ``other``'s."""
        import pyarrow as pa

        tables = [t.select(list(COLUMNS)) for t in (self._table, other.table)]
        return PassageTable(_typed(pa.concat_tables(tables).combine_chunks()))

    def save(self, directory: Path) -> int:
        """Write ``directory/passages.parquet`` and return the number of rows."""
        import pyarrow.parquet as pq

        path = Path(directory) / PASSAGES_FILE
        try:
            pq.write_table(self._table, path, compression="zstd", row_group_size=ROW_GROUP_ROWS)
            write_mirror(path)
        except OSError as error:
            raise ConfigError(f"cannot write the passage table {path}: {error}") from error
        return len(self)


class DocIds(Sequence[str]):
    """The document id of each row, read from the (possibly memory-mapped) ``doc_id`` column
    one row at a time: a search looks up the ids of its candidates only."""

    def __init__(self, column: pa.ChunkedArray) -> None:
        self._column = column

    def __len__(self) -> int:
        return len(self._column)

    def __getitem__(self, row: Any) -> Any:
        if isinstance(row, slice):
            return [self[i] for i in range(*row.indices(len(self)))]
        value = self._column[row].as_py()
        if value is None:
            raise IndexError(row)
        return value

    def __iter__(self) -> Any:
        for chunk in self._column.chunks:
            yield from chunk.to_pylist()


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


def _is_current(table: pa.Table) -> bool:
    """Whether a mapped table has the current layout: every column of the current schema with
    its type (no cast, which would copy) and typed metadata columns marked complete."""
    schema = table.schema
    if (schema.metadata or {}).get(TYPED_KEY) != TYPED_VALUE:
        return False
    for field in _schema():
        index = schema.get_field_index(field.name)
        if index < 0 or schema.field(index).type != field.type:
            return False
    return not any(table.column(name).null_count for name in COLUMNS)


def _typed(table: pa.Table) -> pa.Table:
    """``table`` with fresh typed metadata columns, marked complete."""
    typed = metadata.with_typed_columns(table)
    return typed.replace_schema_metadata({TYPED_KEY: TYPED_VALUE})


def _add_typed_columns(path: Path) -> None:
    """Rewrite ``path`` with typed metadata columns: infer over all rows, then add them.

    Two streaming passes (the ``meta`` column, then one row group at a time), so memory stays
    at one row group plus the field statistics; the file is replaced atomically.
    """
    import os

    import pyarrow as pa
    import pyarrow.parquet as pq

    source = pq.ParquetFile(path)

    def metas() -> Any:
        for batch in source.iter_batches(batch_size=ROW_GROUP_ROWS, columns=["meta"]):
            yield from metadata.decode_metas(batch.column(0))

    schema = metadata.infer(metas())
    tmp = path.with_name(path.name + ".typed")
    writer = None
    try:
        for batch in source.iter_batches(batch_size=ROW_GROUP_ROWS):
            table = pa.Table.from_batches([batch])
            for field, array in metadata.columns(metadata.decode_metas(batch.column("meta")),
                                                 schema):
                table = table.append_column(field, array)
            table = table.replace_schema_metadata({TYPED_KEY: TYPED_VALUE})
            if writer is None:
                writer = pq.ParquetWriter(tmp, table.schema, compression="zstd")
            writer.write_table(table, row_group_size=ROW_GROUP_ROWS)
        if writer is None:  # no rows: the schema alone
            empty = _schema().empty_table().replace_schema_metadata({TYPED_KEY: TYPED_VALUE})
            pq.write_table(empty, tmp, compression="zstd")
        else:
            writer.close()
        os.replace(tmp, path)
    except BaseException:
        if writer is not None:
            writer.close()
        tmp.unlink(missing_ok=True)
        raise


def encode_meta(meta: Mapping[str, Any], doc_id: str) -> str:
    """A document's meta fields as JSON text (Korean kept readable)."""
    try:
        return json.dumps(dict(meta), ensure_ascii=False)
    except (TypeError, ValueError) as error:
        raise CorpusError(
            f"the fields of document {doc_id!r} cannot be stored as JSON: {error}"
        ) from error
