"""Read the records of one corpus source, format by format, hashing the bytes as they are read.

Formats: JSONL (plain, gzip or stdin), CSV and TSV with a header, Parquet (one record batch at
a time) and folders of ``.txt``/``.md`` files (each file one Document). :func:`detect_format`
tells the format from a path; :func:`read_records` yields ``(location, record)`` pairs of a file
and :func:`folder_documents` the Documents of a folder. Locations are ``file:line`` for JSONL,
CSV and TSV (for CSV the line where the record starts), ``file:row N`` for Parquet and the file
path for a folder; every problem is a ``CorpusError`` that starts with one.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import os
import sys
import zlib
from collections.abc import Iterable, Iterator
from typing import IO, TYPE_CHECKING, Any, TextIO

from kosearch.errors import CorpusError
from kosearch.ingest.jsonl import read_jsonl
from kosearch.ingest.records import require_fields
from kosearch.settings import Fields
from kosearch.types import Document

if TYPE_CHECKING:
    from hashlib import _Hash

__all__ = ["detect_format", "folder_documents", "read_records"]

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
_STDIN_LABEL = "<stdin>"


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


def read_records(
    name: str, fmt: str, fields: Fields, digest: _Hash, stdin: TextIO | None = None
) -> Iterator[tuple[str, dict[str, Any]]]:
    """(location, record) pairs of one file source of format ``fmt`` (not ``"dir"``).

    Args:
        name: The path (ignored for ``"stdin"``).
        fmt: Its format, from :func:`detect_format`.
        fields: The id and text fields, checked against a CSV/TSV header or Parquet columns
            before any row is read.
        digest: Fed with the raw bytes read (a gzip file's bytes as stored).
        stdin: The stream read for ``"stdin"``; defaults to ``sys.stdin``.
    """
    if fmt == "parquet":
        return _parquet_records(name, fields, digest)
    if fmt in ("csv", "tsv"):
        return _csv_records(_file_lines(name, digest), name, fields, fmt == "tsv")
    if fmt == "jsonl.gz":
        return _jsonl_records(_gzip_lines(name, digest), name)
    if fmt == "stdin":
        stream = stdin if stdin is not None else sys.stdin
        return _jsonl_records(_stdin_lines(stream, digest), _STDIN_LABEL)
    return _jsonl_records(_file_lines(name, digest), name)


def _decode_utf8(data: bytes, label: str, line: int = 1) -> str:
    """Decode bytes that start at line ``line`` of ``label`` (one line, or a whole file) as
    UTF-8, dropping a BOM at the start of the file; an error names the line and column of the
    first bad byte."""
    body = data[len(_BOM) :] if line == 1 and data.startswith(_BOM) else data
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as e:
        lines_before, column = _position(body, e.start)
        raise CorpusError(
            f"{label}:{line + lines_before - 1}: not valid UTF-8 (byte 0x{body[e.start]:02x} "
            f"at column {column}); convert the file to UTF-8"
        ) from e


def _jsonl_records(
    lines: Iterable[tuple[int, bytes]], label: str
) -> Iterator[tuple[str, dict[str, Any]]]:
    """JSON objects of a JSONL stream; blank lines are skipped."""
    texts = (_decode_utf8(raw, label, n) for n, raw in lines)
    for n, record in read_jsonl(texts, error=CorpusError, label=label):
        yield f"{label}:{n}", record


def _csv_records(
    lines: Iterable[tuple[int, bytes]], label: str, fields: Fields, tsv: bool
) -> Iterator[tuple[str, dict[str, str]]]:
    """Rows of a CSV/TSV file with a header, located at the line where each record starts.

    TSV follows the IANA text/tab-separated-values rules: no quoting, so a quote character is
    ordinary text (fields cannot contain tabs or newlines).
    """
    text_lines = (_decode_utf8(raw, label, n) for n, raw in lines)
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
    require_fields(header, fields, where, "the header has columns")
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
        require_fields(names, fields, path, "the file has columns")
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


def folder_documents(root: str, digest: _Hash) -> Iterator[tuple[str, Document]]:
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
        text = _decode_utf8(data, path)
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


def _markdown_title(text: str) -> str:
    """The text of the first level-1 ATX heading (``# Title``), or ""."""
    for line in text.splitlines():
        if line.startswith("# "):
            return line[2:].strip()
    return ""


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


def _position(data: bytes, offset: int) -> tuple[int, int]:
    """1-based (line, column in characters) of a byte offset; the bytes before it are valid."""
    line_start = data.rfind(b"\n", 0, offset) + 1
    column = len(data[line_start:offset].decode("utf-8", "replace")) + 1
    return data.count(b"\n", 0, offset) + 1, column


def _first_line(error: BaseException) -> str:
    """The first line of an exception's message, so that errors stay on one line."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
