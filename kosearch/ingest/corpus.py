"""Stream Documents from corpus sources, with the checks that span a whole corpus.

:class:`CorpusReader` reads one or more sources (files of any supported format, folders,
stdin; see :mod:`kosearch.ingest.formats`) one record at a time, so a corpus never sits in
memory as Python objects. It skips or rejects documents with empty text, rejects duplicate ids
across all sources (the only per-document state is where each id was first seen) and computes
the SHA-256 of the bytes read. Every problem raises a ``CorpusError`` whose message starts with
the location at fault.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, TextIO

from kosearch.errors import CorpusError
from kosearch.ingest.formats import detect_format, folder_documents, read_records
from kosearch.ingest.records import to_document
from kosearch.settings import Fields
from kosearch.types import Document

if TYPE_CHECKING:
    from hashlib import _Hash

__all__ = ["CorpusReader"]

_Sources = str | os.PathLike[str] | Sequence[str | os.PathLike[str]]


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
        fields: Fields | None = None,
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
        fields = fields or Fields()
        items = [sources] if isinstance(sources, (str, os.PathLike)) else list(sources)
        if not items:
            raise ValueError("CorpusReader needs at least one source")
        fields = fields or Fields()
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
            return folder_documents(name, digest)
        records = read_records(name, fmt, self._fields, digest, self._stdin)
        return ((where, to_document(rec, self._fields, where)) for where, rec in records)
