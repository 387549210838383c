"""Building an index directory from a corpus, streaming, with bounded memory.

Two passes over a spool on disk: documents are read and chunked into ``passages.parquet``
(so no corpus text stays in memory), then the passages are read back in windows, encoded and
added to the vector store, and tokenized into the lexical index. Everything is written into a
temporary directory that replaces the target only when complete.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from kosearch import __version__
from kosearch.chunk import Chunker, ChunkSettings, SentenceSplitter, TokenCounter
from kosearch.corpus import CorpusReader, Fields
from kosearch.errors import ConfigError, CorpusError
from kosearch.manifest import Manifest, ModelInfo, now_iso, write_manifest
from kosearch.store import PASSAGES_FILE, VectorStore
from kosearch.types import Document, Metric, Passage

if TYPE_CHECKING:
    from kosearch.encoder import Encoder

log = logging.getLogger(__name__)

DOC_BATCH = 256  # documents chunked per kiwi/tokenizer batch call
ENCODE_WINDOW = 2048  # passages length-sorted and encoded together
LEXICAL_DIR = "lexical"


@dataclass(frozen=True, slots=True)
class IndexSettings:
    """How to build an index; every field has a sensible default.

    Attributes:
        model: sentence-transformers model id or local directory (None = the registry default).
        metric: ``cosine`` (default), ``ip`` or ``l2``.
        batch_size: passages per encoder forward pass.
        fields: which record fields hold the id, text and title.
        strict: fail on empty texts instead of skipping them.
        chunking: passage splitting settings (see :class:`kosearch.chunk.ChunkSettings`).
        lexical: also build the Kiwi BM25 index (enables hybrid search).
        device: ``cpu``, ``cuda``, ... (None = auto).
        query_prompt: override the model's query prompt.
        passage_prompt: override the model's passage prompt.
        precision: ``auto``, ``fp32``, ``bf16``, ``fp16`` or ``int8`` (see
            :mod:`kosearch.precision`; None = fp32).
        processes: encoder worker processes (None = decide by corpus size and machine).
    """

    model: str | None = None
    metric: Metric | str = Metric.COSINE
    batch_size: int = 32
    fields: Fields = field(default_factory=Fields)
    strict: bool = False
    chunking: ChunkSettings = field(default_factory=ChunkSettings)
    lexical: bool = True
    device: str | None = None
    query_prompt: str | None = None
    passage_prompt: str | None = None
    precision: str | None = None
    processes: int | None = None

    def validated_metric(self) -> Metric:
        try:
            return Metric(self.metric)
        except ValueError:
            valid = ", ".join(m.value for m in Metric)
            raise ConfigError(f"unknown metric {self.metric!r}; choose one of: {valid}") from None


def _batched(items: Iterable[Document], size: int) -> Iterator[list[Document]]:
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch


def _progress(total: int, desc: str, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(
        total=total, desc=desc, unit=" passages", file=sys.stderr, disable=not enabled,
        dynamic_ncols=True, smoothing=0.1,
    )


def _sources_label(corpus: Any) -> list[str]:
    if isinstance(corpus, (str, os.PathLike)):
        return [os.fspath(corpus)]
    if isinstance(corpus, (list, tuple)) and all(isinstance(c, (str, os.PathLike)) for c in corpus):
        return [os.fspath(c) for c in corpus]
    return ["<documents>"]


class _DocumentSource:
    """Documents from files (through CorpusReader) or from Python objects, with the same counters."""

    def __init__(self, corpus: Any, settings: IndexSettings, stdin: TextIO | None) -> None:
        self.reader: CorpusReader | None = None
        self.documents = 0
        self.skipped_empty = 0
        if isinstance(corpus, (str, os.PathLike)) or (
            isinstance(corpus, (list, tuple)) and corpus
            and all(isinstance(c, (str, os.PathLike)) for c in corpus)
        ):
            self.reader = CorpusReader(corpus, fields=settings.fields, strict=settings.strict, stdin=stdin)
            self._items: Iterable[Document] = self.reader
        else:
            self._items = self._checked(corpus, settings.strict)

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
        yield from self._items
        if self.reader is not None:
            self.documents = self.reader.documents
            self.skipped_empty = self.reader.skipped_empty

    def sha256(self) -> str | None:
        return self.reader.sha256 if self.reader is not None else None


def _spool_passages(
    source: _DocumentSource, chunker: Chunker, directory: Path
) -> int:
    from kosearch.store import PassageTable

    with PassageTable.writer(directory) as writer:
        for docs in _batched(source, DOC_BATCH):
            passages = chunker.chunk(docs)
            meta_of = {doc.id: doc.meta for doc in docs}
            writer.append(passages, [meta_of[p.doc_id] for p in passages])
        return writer.close()


def _encode_texts(directory: Path, chunker: Chunker) -> Iterator[list[str]]:
    """Windows of encoder input texts, read back from the passage spool."""
    import pyarrow.parquet as pq

    columns = ["doc_id", "chunk", "text", "start", "end", "title"]
    spool = pq.ParquetFile(directory / PASSAGES_FILE)
    for batch in spool.iter_batches(batch_size=ENCODE_WINDOW, columns=columns):
        rows = batch.to_pydict()
        yield [
            chunker.encode_text(Passage(*values))
            for values in zip(*(rows[c] for c in columns))
        ]


def build_into(
    directory: Path,
    corpus: Any,
    encoder: Encoder,
    settings: IndexSettings,
    *,
    progress: bool = False,
    stdin: TextIO | None = None,
) -> Manifest:
    """Build a complete index in ``directory`` (an empty, private directory)."""
    metric = settings.validated_metric()
    counter = TokenCounter(
        encoder.backend_tokenizer, max_tokens=encoder.max_tokens, prompt=encoder.passage_prompt
    )
    splitter = SentenceSplitter()  # one Kiwi for sentence splitting and BM25 (~300 MB each)
    chunker = Chunker(counter, settings.chunking, splitter=splitter)
    source = _DocumentSource(corpus, settings, stdin)
    n_passages = _spool_passages(source, chunker, directory)
    _report_documents(source, chunker, _sources_label(corpus), encoder.max_tokens)

    store = VectorStore.create(encoder.dim, metric)
    with _progress(n_passages, "encoding", progress) as bar:
        for texts in _encode_texts(directory, chunker):
            store.add(encoder.encode_passages(texts, on_batch=bar.update))
    vector_bytes = store.write(directory)

    lexical_config = None
    if settings.lexical:
        lexical_config = _build_lexical(directory, chunker, n_passages, progress, splitter.kiwi)

    stamp = now_iso()
    manifest = Manifest(
        model=ModelInfo(
            name=encoder.name, dim=encoder.dim, fingerprint=encoder.fingerprint,
            max_tokens=encoder.max_tokens, query_prompt=encoder.query_prompt,
            passage_prompt=encoder.passage_prompt,
            precision=getattr(encoder, "precision", "fp32"),
        ),
        metric=metric.value,
        faiss={"factory": store.factory, "ntotal": store.ntotal, "bytes": vector_bytes},
        counts={
            "documents": source.documents, "passages": n_passages,
            "skipped_empty": source.skipped_empty,
        },
        chunking={**asdict(settings.chunking), "budget": chunker.budget},
        lexical=lexical_config,
        fields=asdict(settings.fields),
        corpus={"sources": _sources_label(corpus), "sha256": source.sha256()},
        created=stamp, updated=stamp, kosearch_version=__version__,
    )
    write_manifest(directory, manifest)
    return manifest


def _report_documents(
    source: _DocumentSource, chunker: Chunker, labels: list[str], max_tokens: int
) -> None:
    if source.documents == 0:
        what = ", ".join(labels)
        extra = f" ({source.skipped_empty} had an empty text)" if source.skipped_empty else ""
        raise CorpusError(f"no documents to index in {what}{extra}")
    if source.skipped_empty:
        log.warning("skipped %d document(s) with an empty text (use --strict to fail instead)",
                    source.skipped_empty)
    stats = chunker.stats
    if stats.over_limit:
        log.warning(
            "%d document(s) are longer than the model's %d-token limit and will be truncated by "
            "the model; drop --no-chunk to split them into passages instead",
            stats.over_limit, max_tokens,
        )
    if stats.sentences_split:
        log.info("%d sentence(s) longer than the passage budget were split at token boundaries",
                 stats.sentences_split)


def _build_lexical(
    directory: Path, chunker: Chunker, n_passages: int, progress: bool, kiwi: Any
) -> dict[str, Any]:
    from kosearch.lexical import LexicalIndex, MorphemeAnalyzer

    def texts() -> Iterator[str]:
        for window in _encode_texts(directory, chunker):
            yield from window

    with _progress(n_passages, "BM25", progress) as bar:
        lexical = LexicalIndex.build(
            texts(), analyzer=MorphemeAnalyzer(kiwi=kiwi), on_batch=bar.update
        )
    lexical.save(directory / LEXICAL_DIR)
    return lexical.config()
