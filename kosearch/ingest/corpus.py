"""Stream documents from corpus files: JSONL (plain or gzip), CSV, TSV, Parquet, a folder, stdin.

Reading is streaming: one record at a time (Parquet one record batch at a time), so a corpus
never sits in memory as Python objects. The only per-document state is a map from each id to
where it was first seen, used to report duplicate ids. Every problem raises a ``CorpusError``
whose message starts with the location at fault: ``file:line`` for JSONL, CSV and TSV (for CSV
the line where the record starts), ``file:row N`` for Parquet and the file path for a folder.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
import os
import sys
import zlib
from collections.abc import Collection, Iterable, Iterator, Sequence
from typing import IO, TYPE_CHECKING, Any, TextIO

from kosearch.errors import CorpusError
from kosearch.settings import Fields
from kosearch.types import Document

if TYPE_CHECKING:
    from hashlib import _Hash

__all__ = ["CorpusReader", "detect_format"]

_BOM = b"\xef\xbb\xbf"
_SUFFIXES = (
    (".jsonl.gz", "jsonl.gz"),
    (".ndjson.gz", "jsonl.gz"),
    (".jsonl", "jsonl"),
    (".ndjson", "jsonl"),
    (".csv", "csv"),
    (".tsv", "tsv"),
    (".parquet", "parquet"),
)
_SUPPORTED = (
    ".jsonl, .ndjson, .jsonl.gz, .ndjson.gz, .csv, .tsv, .parquet, "
    "a directory of .txt/.md files, or '-' for JSONL on stdin"
)
_DIR_SUFFIXES = (".txt", ".md")
_PARQUET_BATCH_ROWS = 1024
_HASH_CHUNK = 1 << 20
_MAX_LISTED = 20
_STDIN_LABEL = "<stdin>"

_Sources = str | os.PathLike[str] | Sequence[str | os.PathLike[str]]


def detect_format(path: str | os.PathLike[str]) -> str:
    """Tell the corpus format of a path from its name (or that it is a directory).

    Args:
        path: A corpus file, a directory, or ``"-"`` for stdin.

    Returns:
        One of ``"jsonl"``, ``"jsonl.gz"``, ``"csv"``, ``"tsv"``, ``"parquet"``, ``"dir"``,
        ``"stdin"``.

    Raises:
        CorpusError: The path does not exist or its extension is not a supported format.

    Example:
        >>> detect_format("-")
        'stdin'
    """
    name = os.fspath(path)
    if name == "-":
        return "stdin"
    if os.path.isdir(name):
        return "dir"
    if not os.path.exists(name):
        raise CorpusError(f"corpus file '{name}' does not exist")
    lower = name.lower()
    for suffix, fmt in _SUFFIXES:
        if lower.endswith(suffix):
            return fmt
    raise CorpusError(f"cannot read '{name}': unknown corpus format (supported: {_SUPPORTED})")


class CorpusReader:
    """Iterate Documents from one or more sources; counts what it skipped.

    Records with empty or whitespace-only text are skipped and counted (``strict=True`` makes
    them an error). Ids must be unique across all sources. Iterating again starts over (a
    stdin source can only be read once).

    Attributes:
        documents: Documents yielded so far by the current iteration.
        skipped_empty: Records skipped so far because their text was empty.

    Example:
        >>> reader = CorpusReader("corpus.jsonl", fields=Fields(text="body"))  # doctest: +SKIP
        >>> for doc in reader: ...                                            # doctest: +SKIP
        >>> reader.documents, reader.skipped_empty, reader.sha256              # doctest: +SKIP
    """

    def __init__(
        self,
        sources: _Sources,
        *,
        fields: Fields = Fields(),
        strict: bool = False,
        stdin: TextIO | None = None,
    ) -> None:
        """Check the sources now so that a missing file or an unknown format fails early.

        Args:
            sources: A path, ``"-"`` for JSONL on stdin, or a sequence of them.
            fields: Which record fields hold the id, text and title.
            strict: Raise on a record with empty text instead of skipping it.
            stdin: The stream read for ``"-"``; defaults to ``sys.stdin``.

        Raises:
            CorpusError: A source does not exist or has an unsupported format.
            ValueError: No sources were given, or ``fields`` names an empty field.
        """
        items = [sources] if isinstance(sources, (str, os.PathLike)) else list(sources)
        if not items:
            raise ValueError("CorpusReader needs at least one source")
        if not fields.text or fields.id == "":
            raise ValueError(f"field names must not be empty: {fields!r}")
        self._sources = [(os.fspath(item), detect_format(item)) for item in items]
        self._fields = fields
        self._strict = strict
        self._stdin = stdin
        self._sha256: str | None = None
        self.documents = 0
        self.skipped_empty = 0

    @property
    def sha256(self) -> str:
        """Hex SHA-256 of the raw bytes read, available once the reader has been fully iterated.

        For a single file (or stdin) it is the digest of its bytes, gzip files included as
        stored. For a directory it covers every file's relative path and bytes; for several
        sources it is the digest of their digests, one per line.

        Raises:
            RuntimeError: The reader has not been iterated to the end yet.
        """
        if self._sha256 is None:
            raise RuntimeError("CorpusReader.sha256 is available only after a full iteration")
        return self._sha256

    def __iter__(self) -> Iterator[Document]:
        """Yield the documents of every source in order."""
        self.documents = 0
        self.skipped_empty = 0
        self._sha256 = None
        first_seen: dict[str, str] = {}
        digests: list[str] = []
        for name, fmt in self._sources:
            digest = hashlib.sha256()
            for where, doc in self._documents(name, fmt, digest):
                if not doc.text.strip():
                    if self._strict:
                        raise CorpusError(
                            f"{where}: document {doc.id!r} has empty text "
                            "(strict mode rejects empty documents)"
                        )
                    self.skipped_empty += 1
                    continue
                first = first_seen.get(doc.id)
                if first is not None:
                    raise CorpusError(f"{where}: duplicate id {doc.id!r} (first seen at {first})")
                first_seen[doc.id] = where
                self.documents += 1
                yield doc
            digests.append(digest.hexdigest())
        if len(digests) == 1:
            self._sha256 = digests[0]
        else:
            self._sha256 = hashlib.sha256("\n".join(digests).encode("ascii")).hexdigest()

    def _documents(self, name: str, fmt: str, digest: _Hash) -> Iterator[tuple[str, Document]]:
        """(location, Document) pairs of one source, before the empty/duplicate checks."""
        if fmt == "dir":
            return _dir_documents(name, digest)
        if fmt == "parquet":
            records = _parquet_records(name, self._fields, digest)
        elif fmt in ("csv", "tsv"):
            records = _csv_records(_file_lines(name, digest), name, self._fields, fmt == "tsv")
        elif fmt == "jsonl.gz":
            records = _jsonl_records(_gzip_lines(name, digest), name)
        elif fmt == "stdin":
            stream = self._stdin if self._stdin is not None else sys.stdin
            records = _jsonl_records(_stdin_lines(stream, digest), _STDIN_LABEL)
        else:
            records = _jsonl_records(_file_lines(name, digest), name)
        return ((where, _to_document(rec, self._fields, where)) for where, rec in records)


# -- records -> documents ----------------------------------------------------------------------


def _to_document(record: dict[str, Any], fields: Fields, where: str) -> Document:
    """Map one record onto a Document; every field not used goes to ``meta`` unchanged."""
    id_key = _require_fields(record, fields, where, "the record has fields")
    doc_id = _id_value(record[id_key], id_key, where)
    text = record[fields.text]
    if not isinstance(text, str):
        raise CorpusError(
            f"{where}: field '{fields.text}' must be a string, not {_type_name(text)}"
        )
    title = record.get(fields.title)
    used = (id_key, fields.text, fields.title)
    meta = {key: value for key, value in record.items() if key not in used}
    return Document(
        id=doc_id,
        text=text,
        title="" if title is None else title if isinstance(title, str) else str(title),
        meta=meta,
    )


def _require_fields(names: Collection[str], fields: Fields, where: str, has: str) -> str:
    """Return the id key to use; raise if the id or the text field is missing."""
    if fields.id is not None:
        id_key: str | None = fields.id if fields.id in names else None
        tried = f"'{fields.id}'"
    else:
        id_key = "id" if "id" in names else "_id" if "_id" in names else None
        tried = "'id', then '_id'"
    if id_key is None:
        raise CorpusError(
            f"{where}: missing id field (tried {tried}); {has}: {_listing(names)} "
            "(choose the id field with --id-field)"
        )
    if fields.text not in names:
        raise CorpusError(
            f"{where}: missing field '{fields.text}'; {has}: {_listing(names)} "
            "(choose the text field with --text-field)"
        )
    return id_key


def _id_value(value: Any, key: str, where: str) -> str:
    """An id as a string: strings stay, integers are converted, anything else is an error."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise CorpusError(
            f"{where}: field '{key}' must be a string or an integer, not {_type_name(value)}"
        )
    doc_id = str(value)
    if not doc_id.strip():
        raise CorpusError(f"{where}: field '{key}' is empty; every document needs an id")
    return doc_id


def _type_name(value: Any) -> str:
    """The JSON name of a value's type (Python's name for non-JSON values)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return f"a number ({value!r})"
    names = {str: "a string", list: "a list", dict: "an object"}
    return names.get(type(value), type(value).__name__)


def _listing(names: Iterable[str]) -> str:
    """Comma-separated names, capped so that a message stays one readable line."""
    items = [str(name).replace("\n", " ") for name in names]
    shown = ", ".join(items[:_MAX_LISTED]) or "(none)"
    extra = len(items) - _MAX_LISTED
    return f"{shown}, ... ({extra} more)" if extra > 0 else shown


# -- byte lines ---------------------------------------------------------------------------------


def _open(path: str) -> IO[bytes]:
    """Open a corpus file for binary reading; failure is a CorpusError."""
    try:
        return open(path, "rb")
    except OSError as e:
        raise CorpusError(f"cannot open corpus file '{path}' ({e.strerror})") from e


def _file_lines(path: str, digest: _Hash) -> Iterator[tuple[int, bytes]]:
    """(1-based line number, raw line) of a plain file, hashing the bytes as they are read."""
    with _open(path) as stream:
        for lineno, raw in enumerate(stream, 1):
            digest.update(raw)
            yield lineno, raw


class _HashingReader:
    """A read-only byte stream that feeds everything read through it into a digest."""

    def __init__(self, stream: IO[bytes], digest: _Hash) -> None:
        self._stream = stream
        self._digest = digest
        self.mode = "rb"

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size)
        self._digest.update(data)
        return data

    def drain(self) -> None:
        """Hash whatever the decompressor left unread (trailing bytes)."""
        while self.read(_HASH_CHUNK):
            pass


def _gzip_lines(path: str, digest: _Hash) -> Iterator[tuple[int, bytes]]:
    """Lines of a gzip file; the digest covers the compressed bytes, as stored."""
    lineno = 0
    with _open(path) as stream:
        source = _HashingReader(stream, digest)
        try:
            with gzip.GzipFile(fileobj=source, mode="rb") as lines:
                for lineno, raw in enumerate(lines, 1):
                    yield lineno, raw
        except (OSError, EOFError, zlib.error) as e:
            raise CorpusError(
                f"{path}: corrupt gzip data near line {lineno + 1} ({_first_line(e)})"
            ) from e
        source.drain()


def _stdin_lines(stream: TextIO, digest: _Hash) -> Iterator[tuple[int, bytes]]:
    """Lines of stdin as bytes: the raw buffer when there is one, else the text re-encoded."""
    buffer = getattr(stream, "buffer", None)
    if buffer is not None:
        for lineno, raw in enumerate(buffer, 1):
            digest.update(raw)
            yield lineno, raw
        return
    for lineno, line in enumerate(stream, 1):
        raw = line.encode("utf-8", "surrogatepass")
        digest.update(raw)
        yield lineno, raw


def _decode(raw: bytes, where: str, first: bool) -> str:
    """Decode one line as UTF-8, accepting a BOM at the start of the file."""
    if first and raw.startswith(_BOM):
        raw = raw[len(_BOM) :]
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        _, column = _position(raw, e.start)
        raise CorpusError(
            f"{where}: not valid UTF-8 (byte 0x{raw[e.start]:02x} at column {column}); "
            "convert the file to UTF-8"
        ) from e


def _position(data: bytes, offset: int) -> tuple[int, int]:
    """1-based (line, column in characters) of a byte offset; the bytes before it are valid."""
    line_start = data.rfind(b"\n", 0, offset) + 1
    column = len(data[line_start:offset].decode("utf-8", "replace")) + 1
    return data.count(b"\n", 0, offset) + 1, column


def _first_line(error: BaseException) -> str:
    """The first line of an exception's message, so that errors stay on one line."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


# -- formats ------------------------------------------------------------------------------------


def _jsonl_records(
    lines: Iterable[tuple[int, bytes]], label: str
) -> Iterator[tuple[str, dict[str, Any]]]:
    """JSON objects of a JSONL stream; blank lines are skipped."""
    for lineno, raw in lines:
        where = f"{label}:{lineno}"
        text = _decode(raw, where, lineno == 1)
        if not text.strip():
            continue
        try:
            record = json.loads(text)
        except json.JSONDecodeError as e:
            raise CorpusError(f"{where}: invalid JSON ({e.msg} at column {e.colno})") from e
        if not isinstance(record, dict):
            raise CorpusError(f"{where}: expected a JSON object, found {_type_name(record)}")
        yield where, record


def _csv_records(
    lines: Iterable[tuple[int, bytes]], label: str, fields: Fields, tsv: bool
) -> Iterator[tuple[str, dict[str, str]]]:
    """Rows of a CSV/TSV file with a header, located at the line where each record starts.

    TSV follows the IANA text/tab-separated-values rules: no quoting, so a quote character is
    ordinary text (fields cannot contain tabs or newlines).
    """
    text_lines = (_decode(raw, f"{label}:{n}", n == 1) for n, raw in lines)
    options: dict[str, Any] = {"delimiter": "\t", "quoting": csv.QUOTE_NONE} if tsv else {}
    reader = csv.reader(text_lines, strict=True, **options)
    header: list[str] | None = None
    start = 1
    try:
        for row in reader:
            if row and header is None:
                header = _check_header(row, fields, f"{label}:{start}")
            elif row:
                if len(row) != len(header or ()):
                    raise CorpusError(
                        f"{label}:{start}: expected {len(header or ())} fields as in the "
                        f"header, found {len(row)}"
                    )
                yield f"{label}:{start}", dict(zip(header or (), row))
            start = reader.line_num + 1
    except csv.Error as e:
        raise CorpusError(f"{label}:{start}: invalid {'TSV' if tsv else 'CSV'} ({e})") from e


def _check_header(header: list[str], fields: Fields, where: str) -> list[str]:
    """Reject a header with repeated columns or without the id and text columns."""
    seen: set[str] = set()
    for name in header:
        if name in seen:
            raise CorpusError(f"{where}: the header repeats the column '{name}'")
        seen.add(name)
    _require_fields(header, fields, where, "the header has columns")
    return header


def _parquet_records(
    path: str, fields: Fields, digest: _Hash
) -> Iterator[tuple[str, dict[str, Any]]]:
    """Rows of a Parquet file, read one record batch at a time."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    errors = (pa.ArrowException, OSError)
    try:
        parquet = pq.ParquetFile(path)
    except errors as e:
        raise CorpusError(f"{path}: not a readable Parquet file ({_first_line(e)})") from e
    row = 0
    with parquet:
        names = parquet.schema_arrow.names
        _require_fields(names, fields, path, "the file has columns")
        batches = parquet.iter_batches(batch_size=_PARQUET_BATCH_ROWS)
        while True:
            try:
                batch = next(batches, None)
            except errors as e:
                raise CorpusError(
                    f"{path}: corrupt Parquet data near row {row + 1} ({_first_line(e)})"
                ) from e
            if batch is None:
                break
            for record in batch.to_pylist():
                row += 1
                yield f"{path}:row {row}", record
    _hash_file(path, digest)


def _hash_file(path: str, digest: _Hash) -> None:
    """Feed a whole file into a digest, a chunk at a time."""
    with _open(path) as stream:
        while chunk := stream.read(_HASH_CHUNK):
            digest.update(chunk)


def _dir_documents(root: str, digest: _Hash) -> Iterator[tuple[str, Document]]:
    """Every .txt/.md file under a directory, in sorted relative-path order."""
    for rel in _text_files(root):
        path = os.path.join(root, *rel.split("/"))
        try:
            with open(path, "rb") as stream:
                data = stream.read()
        except OSError as e:
            raise CorpusError(f"{path}: cannot read the file ({e.strerror})") from e
        # Path and content both count, so that a rename changes the digest too.
        digest.update(rel.encode("utf-8", "surrogateescape") + b"\0")
        digest.update(hashlib.sha256(data).digest())
        text = _decode_file(data, path)
        title = _markdown_title(text) if rel.lower().endswith(".md") else ""
        yield path, Document(id=rel, text=text, title=title, meta={"path": rel})


def _text_files(root: str) -> list[str]:
    """Relative paths ('/'-separated, sorted) of the non-hidden .txt/.md files under root."""

    def fail(error: OSError) -> None:
        raise CorpusError(f"cannot list '{error.filename}' ({error.strerror})") from error

    found: list[str] = []
    for folder, dirs, files in os.walk(root, onerror=fail):
        dirs[:] = [name for name in dirs if not name.startswith(".")]
        for name in files:
            if not name.startswith(".") and name.lower().endswith(_DIR_SUFFIXES):
                rel = os.path.relpath(os.path.join(folder, name), root)
                found.append(rel.replace(os.sep, "/"))
    return sorted(found)


def _decode_file(data: bytes, path: str) -> str:
    """A whole text file as UTF-8; an error names the line of the first bad byte."""
    body = data[len(_BOM) :] if data.startswith(_BOM) else data
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as e:
        line, column = _position(body, e.start)
        raise CorpusError(
            f"{path}:{line}: not valid UTF-8 (byte 0x{body[e.start]:02x} at column {column}); "
            "convert the file to UTF-8"
        ) from e


def _markdown_title(text: str) -> str:
    """The text of the first level-1 ATX heading (``# Title``), or ""."""
    for line in text.splitlines():
        if line.startswith("# "):
            return line[2:].strip()
    return ""
