"""``Index``: the facade a RAG pipeline uses — build, load, search, update, save.

It composes the stages and holds no pipeline of its own: builds and updates run in
:mod:`kosearch.build`, searches in :mod:`kosearch.retrieval.search`, the parts on disk are
:mod:`kosearch.storage`'s and the models :mod:`kosearch.encoding`'s.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from kosearch.encoding.factory import check_encoder, load_encoder, load_query_encoder
from kosearch.encoding.rerank import RerankerCache
from kosearch.errors import ConfigError
from kosearch.lazy import Lazy
from kosearch.retrieval.search import (
    Searcher,
    check_query_vectors,
    check_request,
    per_query_filters,
    resolve_mode,
)
from kosearch.settings import RERANK_TOP
from kosearch.storage.atomic import atomic_directory
from kosearch.storage.layout import LEXICAL_DIR, MANIFEST_FILE
from kosearch.storage.parts import IndexParts, describe, read_parts, save_parts
from kosearch.types import Document, Hit, Mode, UpdateReport, parse_mode

if TYPE_CHECKING:
    from kosearch.build.run import RunMode
    from kosearch.encoding.encoder import Encoder
    from kosearch.encoding.rerank import Reranker
    from kosearch.lexical.analyzers import MorphemeAnalyzer
    from kosearch.lexical.child_analysis import ChildAnalysis
    from kosearch.retrieval.highlight import Highlighter
    from kosearch.settings import Fusion

log = logging.getLogger(__name__)

#: What :meth:`Index.build` and the updates read: files, folders, "-" (stdin) or Documents.
Corpus = str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | Iterable[Document]


class Index:
    """A searchable index: vectors, passages, optional BM25, and the model that made them.

    Build one with :meth:`build` or open one with :meth:`load`; do not call the constructor.
    ``manifest`` (what it was built from), ``store`` (the FAISS vectors), ``passages`` (the
    passage table) and ``lexical`` (the BM25 part or None) are read-only views of its parts.
    """

    def __init__(self, parts: IndexParts, *, encoder: Encoder | None = None,
                 path: Path | None = None, device: str | None = None,
                 query_backend: str = "torch") -> None:
        self._parts = parts
        self._searcher = Searcher.of(parts)
        self.path = path
        self.query_backend = query_backend
        self._encoder = encoder
        # A function of values, not a bound method: no reference cycle keeps an Index alive.
        self._query_encoder: Lazy[Encoder] = Lazy(
            functools.partial(load_query_encoder, parts.manifest.model, query_backend, device),
            name="query-encoder",
        )
        self._device = device
        self._rerankers = RerankerCache(device)
        # Kiwi, the tokenizer and lazy model loading are not safe to share between threads:
        # searches on one Index are serialized (a server batches queued queries instead).
        self._lock = threading.RLock()
        self._write_lock = threading.Lock()  # one update at a time; searches go on meanwhile
        self.last_report: UpdateReport | None = None  # what the last build or update did
        self._highlighter: Highlighter | None = None  # made on the first search with highlights
        self._fallback_analyzer: MorphemeAnalyzer | None = None  # Kiwi for an index without BM25
        self._analysis: ChildAnalysis | None = None  # a child analyzing the next search's texts

    manifest = property(lambda self: self._parts.manifest, doc="What the index was built from.")
    store = property(lambda self: self._parts.store, doc="The FAISS vectors.")
    passages = property(lambda self: self._parts.passages, doc="The passage table.")
    lexical = property(lambda self: self._parts.lexical, doc="The BM25 part, or None.")

    # ------------------------------------------------------------------ building and loading
    @classmethod
    def build(cls, corpus: Corpus, path: str | os.PathLike[str] | None = None, *,
              encoder: Encoder | None = None, progress: bool = False,
              stdin: TextIO | None = None, restart: bool = False, engine: str = "local",
              ray_address: str | None = None, workers: int | None = None,
              gpus_per_worker: float | None = None, **options: Any) -> Index:
        """Encode a corpus into a new index, saved atomically at ``path`` when given.

        An interrupted build of file corpora into ``path`` resumes when run again with the same
        model, settings and files (checkpointed in ``<path>.partial``).

        Args:
            corpus: a file (JSONL, JSONL.gz, CSV, TSV, Parquet), a folder of .txt/.md files,
                ``"-"`` for JSONL on stdin, a list of those, or an iterable of :class:`Document`.
            path: where to save the index; an existing index there is replaced only once the
                new one is complete. ``None`` keeps the index in memory.
            encoder: an already loaded encoder (default: load ``options["model"]``).
            progress: show progress bars on stderr.
            stdin: the stream read for ``"-"`` (default ``sys.stdin``).
            restart: discard the checkpoint of an interrupted build instead of resuming it.
            engine: ``local`` (this process) or ``ray``: read, chunk, encode and analyze on a
                Ray cluster (the ``ray`` extra), at ``ray_address`` (default ``$RAY_ADDRESS``,
                else a local Ray), with ``workers`` actors of ``gpus_per_worker`` GPUs each.
                The index is the same; see README, "Large collections on a cluster".
            **options: fields of :class:`~kosearch.settings.IndexSettings` (model, metric,
                batch_size, fields, strict, chunking, lexical, device, query_prompt,
                passage_prompt, index_type, precision, processes).

        Raises:
            CorpusError: the corpus cannot be read or holds no documents.
            ModelLoadError: the model cannot be loaded.
            ConfigError: an invalid setting.
        """
        from kosearch.build import lifecycle  # not at import: a search needs none of it

        ray = lifecycle.engine_options(engine, ray_address, workers, gpus_per_worker)
        run = lifecycle.new_build(corpus, encoder, progress, stdin, options, engine=ray)
        if path is None:
            with lifecycle.execute_in_scratch(run) as (scratch, report):
                index = cls.load(scratch, mmap=False)
            index.path = None
        else:
            report = lifecycle.execute(run, Path(path), restart=restart)
            index = cls.load(path, encoder=run.get_encoder())
        index._encoder = run.get_encoder()
        index.last_report = report
        return index

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, encoder: Encoder | None = None,
             model: str | None = None, device: str | None = None, mmap: bool = True,
             query_backend: str = "torch") -> Index:
        """Open an index directory and check that its parts agree.

        The query encoder is the index's own model, loaded on first use, unless ``encoder``
        (an object) or ``model`` (an id or path) is given; either must match the index's model.
        ``query_backend="auto"`` encodes queries with onnxruntime on a cached ONNX export of
        the model (no torch import; see :mod:`kosearch.encoding.onnx_runtime`), made on first
        use.

        Raises:
            IndexNotFoundError: no index at ``path``.
            IndexFormatError: a missing or corrupt part, counts that disagree, a newer format.
            ModelMismatchError: ``encoder``/``model`` differs from the index's model.
        """
        directory = Path(path)
        parts = read_parts(directory, mmap=mmap)
        if encoder is None and model is not None:
            encoder = load_encoder(model, device=device)
        if encoder is not None:
            check_encoder(parts.manifest.model, encoder)
        return cls(parts, encoder=encoder, path=directory, device=device,
                   query_backend=query_backend)

    def save(self, path: str | os.PathLike[str] | None = None) -> Path:
        """Write the index to ``path`` (default: where it was loaded from), atomically."""
        target = Path(path) if path is not None else self.path
        if target is None:
            raise ConfigError("this index was built in memory; give save() a path")
        with atomic_directory(target, marker=MANIFEST_FILE) as tmp:
            save_parts(tmp, self._parts)
        self.path = target
        return target

    def set_search_params(self, *, nprobe: int | None = None, ef_search: int | None = None) -> None:
        """Trade speed for recall on an approximate index: IVF ``nprobe`` (lists scanned),
        HNSW ``ef_search`` (candidates explored); None keeps the index's (``manifest.faiss``).
        A knob that does not apply to the index type is a ConfigError, a value below 1 a
        ValueError.
        """
        with self._lock:
            self.store.set_search_params(nprobe=nprobe, ef_search=ef_search)

    # ------------------------------------------------------------------ updating
    def add(self, corpus: Any, *, progress: bool = False, **options: Any) -> UpdateReport:
        """Add new documents; an id the index already holds is a CorpusError (see :meth:`upsert`).

        Takes the same ``corpus`` as :meth:`build`. Changes are saved atomically to the index
        directory right away (in-memory indexes change in memory); searches on this object go
        on meanwhile and see the new index once it is complete.
        """
        from kosearch.build.run import RunMode

        return self._update(corpus, RunMode.ADD, progress=progress, **options)

    def upsert(self, corpus: Any, *, sync: bool = False, progress: bool = False,
               **options: Any) -> UpdateReport:
        """Add new documents and re-encode changed ones (title or text differ); a change of
        only other fields updates the stored metadata without encoding. With ``sync=True``,
        documents the corpus no longer holds are deleted: this is ``kosearch index`` on an
        existing index. ``options``: ``fields``, ``strict``, ``batch_size``, ``device``,
        ``index_type``, ``processes``, ``restart``, ``stdin``, and ``exclusive`` (hold off
        searches on this object while updating); the other settings are the index's own.
        ``engine``, ``ray_address``, ``workers`` and ``gpus_per_worker`` are as for
        :meth:`build`.
        """
        from kosearch.build.run import RunMode

        mode = RunMode.SYNC if sync else RunMode.UPSERT
        return self._update(corpus, mode, progress=progress, **options)

    def delete(self, ids: Iterable[str], *, exclusive: bool = False) -> UpdateReport:
        """Delete documents by id, without encoding; unknown ids land in ``report.unknown``."""
        from kosearch.build.run import RunMode

        wanted = [str(i) for i in ids]
        return self._update(None, RunMode.DELETE, delete_ids=wanted, exclusive=exclusive)

    def _update(self, corpus: Any, mode: RunMode, *, progress: bool = False,
                delete_ids: Sequence[str] = (), restart: bool = False,
                stdin: TextIO | None = None, exclusive: bool = False, engine: str = "local",
                ray_address: str | None = None, workers: int | None = None,
                gpus_per_worker: float | None = None, **options: Any) -> UpdateReport:
        from kosearch.build import lifecycle
        from kosearch.build.run import RunMode

        ray = lifecycle.engine_options(engine, ray_address, workers, gpus_per_worker)
        with self._write_lock, (self._lock if exclusive else contextlib.nullcontext()):
            run = lifecycle.new_update(corpus, mode, self._parts, self._encoder, options,
                                       delete_ids=delete_ids, progress=progress, stdin=stdin,
                                       engine=ray)
            if mode is RunMode.DELETE and not self._parts.passages.holds_any(delete_ids):
                report = UpdateReport(unknown=tuple(dict.fromkeys(delete_ids)))
            else:
                parts, report = lifecycle.execute_update(run, self.path, restart=restart)
                searcher = Searcher.of(parts)
                with self._lock:  # searches see the old index or the new one
                    self._parts, self._searcher = parts, searcher
            lifecycle.warn_unknown(report)
            self.last_report = report
            return report

    # ------------------------------------------------------------------ searching
    @property
    def encoder(self) -> Encoder:
        """The query encoder, loaded from the manifest's model on first use."""
        if self._encoder is None:
            self._encoder = self._query_encoder.get()
        return self._encoder

    @property
    def default_mode(self) -> Mode:
        """Hybrid when the index has a BM25 part, else dense."""
        return Mode.HYBRID if self.lexical is not None else Mode.DENSE

    def warm_up(self, mode: Mode | str | None = None, queries: Sequence[str] | None = None, *,
                analysis: ChildAnalysis | None = None, highlights: bool = True) -> None:
        """Start loading what searches in ``mode`` need, in the background; return at once.

        ``mode`` defaults to :attr:`default_mode`. The query encoder loads in a background
        thread (errors are raised by the first search). For BM25, Kiwi loads in another thread,
        except given the ``queries`` about to be searched: then a child process on another core
        analyzes them (Kiwi holds the GIL while it loads), and with ``highlights`` also the hits
        of the next search, in any mode, so this process never loads Kiwi. ``analysis`` is such
        a child already started (``ChildAnalysis.start``); the next search stops it.
        """
        chosen = self.default_mode if mode is None else parse_mode(mode)
        bm25 = chosen != Mode.DENSE and self.lexical is not None
        if (analysis is None and queries is not None and (bm25 or highlights)
                and self.path is not None and self._encoder is None):
            from kosearch.lexical.child_analysis import ChildAnalysis

            lexical_dir = self.path / LEXICAL_DIR
            analysis = ChildAnalysis.start(lexical_dir if lexical_dir.is_dir() else None,
                                           queries)
        if analysis is not None:
            if self._analysis is not None and self._analysis is not analysis:
                self._analysis.close()
            self._analysis = analysis if highlights else None
        if bm25:
            self.lexical.warm_up(analysis)
        elif analysis is not None and not highlights:
            analysis.close()
        if chosen != Mode.LEXICAL and self._encoder is None:
            self._query_encoder.start()

    def search(self, query: str, k: int = 10, *, mode: Mode | str | None = None,
               passages: bool = False, rerank: Reranker | str | None = None,
               rerank_top: int = RERANK_TOP, fusion: Fusion | None = None,
               filter: Mapping[str, Any] | None = None, highlights: bool = True) -> list[Hit]:
        """The ``k`` best hits for one query.

        Args:
            query: the question, in any language the model reads.
            k: how many hits (documents, or passages with ``passages=True``).
            mode: ``hybrid`` (default when the index has BM25), ``dense`` or ``lexical``.
            passages: return raw passage hits instead of one (best) passage per document.
            rerank: a cross-encoder (model id, local path, or a ``Reranker``) that re-scores
                the ``rerank_top`` best passages; the hit score is then its score.
            rerank_top: how many fused passages the cross-encoder re-scores.
            fusion: how hybrid mode merges the two lists (default: equal-weight sum of
                z-score-normalized scores; see :class:`~kosearch.settings.Fusion`).
            filter: search only documents whose metadata match, e.g. ``{"year": {"$gte":
                2020}}`` (:mod:`kosearch.retrieval.filters`); ``k`` hits come back whenever
                ``k`` documents match.
            highlights: fill in each hit's ``highlights`` (its best sentence for the query and
                the matched words; :mod:`kosearch.retrieval.highlight`). Costs a Kiwi analysis
                of the ``k`` hits (and Kiwi's load on an index without BM25).

        Returns:
            Hits best first; ``score`` is higher-is-better.

        Raises:
            FilterError: an unknown field or operator, or a value of the wrong type.
        """
        return self.search_batch([query], k, mode=mode, passages=passages, rerank=rerank,
                                 rerank_top=rerank_top, fusion=fusion, filter=filter,
                                 highlights=highlights)[0]

    def search_batch(self, queries: Sequence[str], k: int = 10, *,
                     mode: Mode | str | None = None, passages: bool = False,
                     rerank: Reranker | str | None = None, rerank_top: int = RERANK_TOP,
                     fusion: Fusion | None = None, query_vectors: Any = None,
                     filter: Mapping[str, Any] | Sequence[Mapping[str, Any] | None] | None = None,
                     highlights: bool = True) -> list[list[Hit]]:
        """Like :meth:`search` for many queries at once (encoded in one batch).

        ``query_vectors`` (shape ``(len(queries), dim)``, from :meth:`encode_queries`) skips
        encoding, e.g. to compare modes or time searches without re-encoding. ``filter`` is one
        filter for every query, or a list with one filter (or None) per query.
        """
        queries = check_request(queries, k, rerank_top)
        chosen = resolve_mode(mode, self.lexical is not None)
        filters = per_query_filters(filter, len(queries))
        if not queries or self.store.ntotal == 0:
            return [[] for _ in queries]
        with self._lock:
            analysis, self._analysis = self._analysis, None  # serves this search only
            try:
                return self._search_batch(queries, k, chosen, filters, query_vectors, analysis,
                                          highlights, passages=passages, rerank=rerank,
                                          rerank_top=rerank_top, fusion=fusion)
            finally:
                if analysis is not None:
                    analysis.close()

    def _search_batch(self, queries: list[str], k: int, chosen: Mode, filters: Any,
                      query_vectors: Any, analysis: ChildAnalysis | None, highlights: bool, *,
                      passages: bool, rerank: Reranker | str | None, rerank_top: int,
                      fusion: Fusion | None) -> list[list[Hit]]:
        for spec in filters or ():  # a bad filter fails before the model loads
            if spec is not None:
                self._searcher.subset(spec)
        reranker = self._rerankers.get(rerank)
        vectors = None
        if chosen == Mode.HYBRID and query_vectors is None:
            self.lexical.warm_up()  # Kiwi loads beside the GIL-free parts of encoding
        if chosen != Mode.LEXICAL:
            vectors = (self.encoder.encode_queries(queries) if query_vectors is None else
                       check_query_vectors(query_vectors, len(queries), self.store.dim))
        results = self._searcher.search(queries, vectors, chosen, k, passages=passages,
                                        reranker=reranker, rerank_top=rerank_top,
                                        fusion=fusion, filters=filters)
        if not highlights:
            return results
        return self._highlight(queries, results, analysis)

    def _highlight(self, queries: list[str], results: list[list[Hit]],
                   analysis: ChildAnalysis | None = None) -> list[list[Hit]]:
        """The hits with their highlights, by the BM25 analyzer (a Kiwi one if there is none),
        analyzed by the ``analysis`` child where Kiwi is not loaded here."""
        from kosearch.lexical.analyzers import MorphemeAnalyzer
        from kosearch.lexical.child_analysis import ChildAnalyzer
        from kosearch.retrieval.highlight import Highlighter, highlight_hits

        lexical = self.lexical
        analyzer = getattr(lexical, "analyzer", None)
        if not isinstance(analyzer, MorphemeAnalyzer):
            lexical = None  # no BM25, or one over other terms: highlight Kiwi morphemes
            analyzer = self._fallback_analyzer
            if analyzer is None:
                analyzer = self._fallback_analyzer = MorphemeAnalyzer()
        weights = None if lexical is None else lexical.idf
        if analysis is not None and not analyzer.loaded:
            remote = Highlighter(ChildAnalyzer(analysis, analyzer))  # type: ignore[arg-type]
            return highlight_hits(remote, queries, results, weights)
        if self._highlighter is None or self._highlighter.analyzer is not analyzer:
            self._highlighter = Highlighter(analyzer)
        return highlight_hits(self._highlighter, queries, results, weights)

    def encode_queries(self, queries: Sequence[str]) -> Any:
        """Query embeddings (with the model's query prompt), as the search would compute them."""
        return self.encoder.encode_queries(list(queries))

    # ------------------------------------------------------------------ reporting
    def info(self) -> dict[str, Any]:
        """The manifest plus live counts, memory and on-disk size, as a JSON-ready dict."""
        return describe(self._parts, self.path)

    def __len__(self) -> int:
        return self.store.ntotal

    def __repr__(self) -> str:
        m = self.manifest
        return (
            f"Index(path={str(self.path) if self.path else None!r}, model={m.model.name!r}, "
            f"documents={m.counts.get('documents')}, passages={self.store.ntotal}, "
            f"lexical={self.lexical is not None})"
        )

