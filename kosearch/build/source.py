"""The documents of a run: from corpus files (CorpusReader) or Python objects, peekable.

:class:`DocumentSource` reads a run's corpus once. :meth:`DocumentSource.peek` reads its first
documents ahead, before any model loads, so that a missing file, malformed first records or an
empty corpus fail in milliseconds; iterating afterwards yields the peeked documents and then
continues the same read, so nothing is read twice.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import Any, TextIO

from kosearch.errors import CorpusError
from kosearch.ingest.corpus import CorpusReader
from kosearch.settings import IndexSettings
from kosearch.types import Document

#: Documents read ahead by :meth:`DocumentSource.peek` (enough to meet a bad field or line
#: early, few enough to cost nothing).
PEEK_DOCUMENTS = 32


def is_file_corpus(corpus: Any) -> bool:
    """Whether ``corpus`` names files/folders/stdin (rather than holding Documents)."""
    return isinstance(corpus, (str, os.PathLike)) or (
        isinstance(corpus, (list, tuple)) and bool(corpus)
        and all(isinstance(c, (str, os.PathLike)) for c in corpus)
    )


def sources_label(corpus: Any) -> list[str]:
    """The corpus sources as the manifest and messages name them."""
    if isinstance(corpus, (str, os.PathLike)):
        return [os.fspath(corpus)]
    if is_file_corpus(corpus):
        return [os.fspath(c) for c in corpus]
    return ["<documents>"]


class DocumentSource:
    """Documents from files (CorpusReader) or from Python objects, with the same counters."""

    def __init__(self, corpus: Any, settings: IndexSettings, stdin: TextIO | None) -> None:
        self.reader: CorpusReader | None = None
        self.documents = 0
        self.skipped_empty = 0
        if is_file_corpus(corpus):
            self.reader = CorpusReader(
                corpus, fields=settings.fields, strict=settings.strict, stdin=stdin
            )
            items: Iterable[Document] = self.reader
        else:
            items = self._checked(corpus, settings.strict)
        self._items = iter(items)
        self._ahead: list[Document] = []
        self._peeked = False
        self.empty = False  # set by peek: the corpus holds no document at all

    def peek(self, n: int = PEEK_DOCUMENTS) -> None:
        """Read up to ``n`` documents ahead (once), raising the errors of the first records."""
        if self._peeked:
            return
        self._peeked = True
        for doc in self._items:
            self._ahead.append(doc)
            if len(self._ahead) >= n:
                return
        self.empty = not self._ahead
        self._sync_counts()

    def _checked(self, docs: Iterable[Document], strict: bool) -> Iterator[Document]:
        seen: set[str] = set()
        for n, doc in enumerate(docs, 1):
            if not isinstance(doc, Document):
                raise TypeError(f"item {n} is {type(doc).__name__}, expected kosearch.Document")
            if doc.id in seen:
                raise CorpusError(f"duplicate document id {doc.id!r} (item {n})")
            seen.add(doc.id)
            if not doc.text.strip():
                if strict:
                    raise CorpusError(f"document {doc.id!r} (item {n}) has an empty text")
                self.skipped_empty += 1
                continue
            self.documents += 1
            yield doc

    def __iter__(self) -> Iterator[Document]:
        ahead, self._ahead = self._ahead, []
        yield from ahead
        yield from self._items
        self._sync_counts()

    def _sync_counts(self) -> None:
        if self.reader is not None:
            self.documents = self.reader.documents
            self.skipped_empty = self.reader.skipped_empty

    def sha256(self) -> str | None:
        return self.reader.sha256 if self.reader is not None else None
