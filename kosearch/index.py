"""``Index``: the facade a RAG pipeline uses — build, load, search, save.

Example:
    >>> from kosearch import Index
    >>> index = Index.build("corpus.jsonl", path="my-index")          # doctest: +SKIP
    >>> index = Index.load("my-index")                                 # doctest: +SKIP
    >>> hits = index.search("전세 계약 갱신 요구권은 언제 쓸 수 있나요?", k=5)  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import tempfile
import threading
from collections.abc import Iterable, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import numpy as np

from kosearch.build.checkpoint import Checkpoint, checkpoint_path
from kosearch.build.run import Run, RunMode
from kosearch.build.write import EMBEDDINGS_FILE
from kosearch.errors import (
    ConfigError,
    IndexFormatError,
    IndexNotFoundError,
    KosearchError,
    ModelMismatchError,
)
from kosearch.lazy import Lazy
from kosearch.retrieval import candidates as retrieval
from kosearch.retrieval.candidates import Candidate
from kosearch.settings import Fusion, IndexSettings
from kosearch.storage.atomic import atomic_directory
from kosearch.storage.manifest import LEXICAL_DIR, MANIFEST_FILE, Manifest, read_manifest
from kosearch.storage.store import PassageTable, VectorStore
from kosearch.types import Document, Hit, Mode, UpdateReport

if TYPE_CHECKING:
    from kosearch.encoding.encoder import Encoder
    from kosearch.encoding.rerank import Reranker
    from kosearch.lexical.bm25 import LexicalIndex
    from kosearch.lexical.child_analysis import ChildAnalysis

log = logging.getLogger(__name__)

LOAD_ATTEMPTS = 5  # reads of an index that a writer keeps replacing meanwhile
HYBRID_DEPTH = 100  # candidates per retriever before fusion
RERANK_TOP = 30  # passages re-scored by a cross-encoder


class Index:
    """A searchable index: vectors, passages, optional BM25, and the model that made them.

    Build one with :meth:`build` or open one with :meth:`load`; do not call the constructor.
    """

    def __init__(
        self,
        manifest: Manifest,
        store: VectorStore,
        passages: PassageTable,
        lexical: LexicalIndex | None,
        *,
        encoder: Encoder | None = None,
        path: Path | None = None,
        device: str | None = None,
        raw: Any = None,
        query_backend: str = "torch",
    ) -> None:
        self.manifest = manifest
        self.query_backend = query_backend
        self.store = store
        self.passages = passages
        self.lexical = lexical
        self.path = path
        self._encoder = encoder
        # A function of values, not a bound method: no reference cycle keeps an Index alive.
        self._query_encoder: Lazy[Encoder] = Lazy(
            functools.partial(_load_query_encoder, manifest, query_backend, device),
            name="query-encoder",
        )
        self._device = device
        self._rerankers: dict[str, Reranker] = {}
        # Kiwi, the tokenizer and lazy model loading are not safe to share between threads:
        # searches on one Index are serialized (a server batches queued queries instead).
        self._lock = threading.RLock()
        self._write_lock = threading.Lock()  # one update at a time; searches go on meanwhile
        self._doc_ids = passages.doc_ids()
        self._raw = raw  # the original vectors of a lossy (PQ/SQ8) index, for updates
        self.last_report: UpdateReport | None = None  # what the last build or update did

    # ------------------------------------------------------------------ building and loading
    @classmethod
    def build(
        cls,
        corpus: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | Iterable[Document],
        path: str | os.PathLike[str] | None = None,
        *,
        encoder: Encoder | None = None,
        progress: bool = False,
        stdin: TextIO | None = None,
        restart: bool = False,
        **options: Any,
    ) -> Index:
        """Encode a corpus into a new index, saved atomically at ``path`` when given.

        An interrupted build of file corpora into ``path`` resumes when run again with the same
        model, settings and files: the encoded passages are checkpointed in ``<path>.partial``.

        Args:
            corpus: a file (JSONL, JSONL.gz, CSV, TSV, Parquet), a folder of .txt/.md files,
                ``"-"`` for JSONL on stdin, a list of those, or an iterable of :class:`Document`.
            path: where to save the index; an existing index there is replaced only once the
                new one is complete. ``None`` keeps the index in memory.
            encoder: an already loaded encoder (default: load ``options["model"]``).
            progress: show progress bars on stderr.
            stdin: the stream read for ``"-"`` (default ``sys.stdin``).
            restart: discard the checkpoint of an interrupted build instead of resuming it.
            **options: fields of :class:`~kosearch.build.run.IndexSettings` (model, metric,
                batch_size, fields, strict, chunking, lexical, device, query_prompt,
                passage_prompt, index_type).

        Returns:
            The new index, ready to search.

        Raises:
            CorpusError: the corpus cannot be read or holds no documents.
            ModelLoadError: the model cannot be loaded.
            ConfigError: an invalid setting.
        """
        run = _build_run(corpus, encoder, progress, stdin, options)
        target = Path(path) if path is not None else None
        index, report = _execute(run, target, restart=restart)
        if index is None:
            index = cls.load(target, encoder=run.get_encoder())  # type: ignore[arg-type]
        index._encoder = run.get_encoder()
        index.last_report = report
        return index

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        *,
        encoder: Encoder | None = None,
        model: str | None = None,
        device: str | None = None,
        mmap: bool = True,
        query_backend: str = "torch",
    ) -> Index:
        """Open an index directory and check that its parts agree.

        The query encoder is the index's own model, loaded on first use, unless ``encoder``
        (an object) or ``model`` (an id or path) is given; either must match the index's model.
        ``query_backend="auto"`` encodes queries with onnxruntime on a cached ONNX export of
        the model (no torch import; see :mod:`kosearch.encoding.onnx_runtime`), making it on first use.

        Raises:
            IndexNotFoundError: no index at ``path``.
            IndexFormatError: a missing or corrupt part, counts that disagree, a newer format.
            ModelMismatchError: ``encoder``/``model`` differs from the index's model.
        """
        directory = Path(path)
        for attempt in range(LOAD_ATTEMPTS):
            manifest = read_manifest(directory)
            try:
                parts = _read_parts(directory, manifest, mmap=mmap)
            except (IndexFormatError, IndexNotFoundError):
                if attempt + 1 == LOAD_ATTEMPTS or _unchanged(directory, manifest):
                    raise
                continue  # a writer swapped in a new index while we read: read that one
            if _unchanged(directory, manifest):
                break
        store, passages, lexical, raw = parts
        if encoder is None and model is not None:
            encoder = _load_encoder(model, None, device=device)
        if encoder is not None:
            check_encoder(manifest, encoder)
        return cls(
            manifest, store, passages, lexical, encoder=encoder, path=directory, device=device,
            raw=raw, query_backend=query_backend,
        )

    def save(self, path: str | os.PathLike[str] | None = None) -> Path:
        """Write the index to ``path`` (default: where it was loaded from), atomically."""
        from kosearch.storage.manifest import write_manifest

        target = Path(path) if path is not None else self.path
        if target is None:
            raise ConfigError("this index was built in memory; give save() a path")
        with atomic_directory(target, marker=MANIFEST_FILE) as tmp:
            self.store.write(tmp)
            self.passages.write(tmp)
            if self.lexical is not None:
                self.lexical.save(tmp / LEXICAL_DIR)
            if self._raw is not None:
                np.save(tmp / EMBEDDINGS_FILE, np.asarray(self._raw), allow_pickle=False)
            write_manifest(tmp, self.manifest)
        self.path = target
        return target

    def set_search_params(self, *, nprobe: int | None = None, ef_search: int | None = None) -> None:
        """Trade speed for recall on an approximate index: IVF ``nprobe`` (lists scanned),
        HNSW ``ef_search`` (candidates explored). Defaults come from the index (see
        ``manifest.faiss``); None leaves a knob as it is.

        Raises:
            ConfigError: the knob does not apply to this index type (e.g. nprobe on hnsw).
            ValueError: a value below 1.
        """
        with self._lock:
            self.store.set_search_params(nprobe=nprobe, ef_search=ef_search)

    # ------------------------------------------------------------------ updating
    def add(self, corpus: Any, *, progress: bool = False, **options: Any) -> UpdateReport:
        """Add new documents; an id the index already holds is an error (see :meth:`upsert`).

        Takes the same ``corpus`` as :meth:`build`. Changes are saved atomically to the index
        directory right away (in-memory indexes change in memory). Searches on this object keep
        working during the update and see the new index once it is complete.

        Raises:
            CorpusError: a document id is already in the index, or the corpus is unreadable.
        """
        return self._update(corpus, RunMode.ADD, progress=progress, **options)

    def upsert(
        self, corpus: Any, *, sync: bool = False, progress: bool = False, **options: Any
    ) -> UpdateReport:
        """Add new documents and re-encode changed ones; unchanged ones are not encoded again.

        A document is changed when its title or text differs (content hash); a change of only
        its other fields updates the stored metadata without encoding. With ``sync=True``,
        documents the corpus no longer holds are deleted. This is what ``kosearch index`` does
        on an existing index.

        Args:
            corpus: as for :meth:`build`.
            sync: delete the documents missing from ``corpus``.
            progress: show progress bars on stderr.
            **options: ``fields``, ``strict``, ``batch_size``, ``device``, ``index_type``,
                ``restart``, ``stdin``, and ``exclusive`` (hold off searches on this object
                while updating, e.g. when they share a tokenizer with the update's encoding).
                The model, prompts, metric, chunking and lexical settings are the index's own;
                to change them, rebuild.

        Returns:
            What changed.
        """
        mode = RunMode.SYNC if sync else RunMode.UPSERT
        return self._update(corpus, mode, progress=progress, **options)

    def delete(self, ids: Iterable[str], *, exclusive: bool = False) -> UpdateReport:
        """Delete documents by id, without encoding anything. Unknown ids are reported, not fatal.

        Returns:
            What changed; ``report.unknown`` lists the ids the index does not hold.
        """
        wanted = [str(i) for i in ids]
        return self._update(None, RunMode.DELETE, delete_ids=wanted, exclusive=exclusive)

    def _passage_encoder(self, settings: IndexSettings) -> Encoder:
        """An encoder for new passages: in the index's model and precision, checked."""
        mine = self._encoder
        if (
            mine is not None and hasattr(mine, "encode_passages")
            and getattr(mine, "precision", "fp32") == self.manifest.model.precision
        ):
            return mine
        info = self.manifest.model
        encoder = _load_encoder(info.name, settings)
        check_encoder(self.manifest, encoder)
        return encoder

    def _update(
        self,
        corpus: Any,
        mode: RunMode,
        *,
        progress: bool = False,
        delete_ids: Sequence[str] = (),
        restart: bool = False,
        stdin: TextIO | None = None,
        exclusive: bool = False,
        **options: Any,
    ) -> UpdateReport:
        from kosearch.build.write import Base

        with self._write_lock, (self._lock if exclusive else contextlib.nullcontext()):
            settings = _update_settings(self.manifest, options)
            run = Run(
                corpus, settings, functools.cache(lambda: self._passage_encoder(settings)),
                mode=mode,
                base=Base(self.manifest, self.store, self.passages, self.lexical, self._raw),
                delete_ids=delete_ids, progress=progress, stdin=stdin,
            )
            if mode is RunMode.DELETE and not set(delete_ids) & set(self._doc_ids):
                report = UpdateReport(unknown=tuple(dict.fromkeys(delete_ids)))
            else:
                fresh, report = _execute(run, self.path, restart=restart)
                if fresh is None:
                    fresh = Index.load(self.path, encoder=self._encoder)  # type: ignore[arg-type]
                with self._lock:
                    self.manifest, self.store = fresh.manifest, fresh.store
                    self.passages, self.lexical = fresh.passages, fresh.lexical
                    self._doc_ids, self._raw = fresh._doc_ids, fresh._raw
            if report.unknown:
                shown = ", ".join(report.unknown[:10])
                more = f" and {len(report.unknown) - 10} more" if len(report.unknown) > 10 else ""
                log.warning("%d id(s) are not in the index and were ignored: %s%s",
                            len(report.unknown), shown, more)
            self.last_report = report
            return report

    # ------------------------------------------------------------------ the encoder
    @property
    def encoder(self) -> Encoder:
        """The query encoder, loaded from the manifest's model on first use."""
        if self._encoder is None:
            self._encoder = self._query_encoder.get()
        return self._encoder

    def warm_up(
        self,
        mode: Mode | str | None = None,
        queries: Sequence[str] | None = None,
        *,
        analysis: ChildAnalysis | None = None,
    ) -> None:
        """Start loading what searches in ``mode`` need, in the background; return at once.

        ``mode`` defaults to :attr:`default_mode`. The query encoder (unless already loaded)
        loads in a background thread, so the first search waits only for what is not ready
        yet; errors are raised by that search. For BM25, Kiwi loads in another thread, except
        in hybrid mode given the ``queries`` about to be searched: a child process on another
        core then analyzes them (Kiwi holds the GIL while it loads, so a thread would stall
        the encoder's load), and this process never loads Kiwi. ``analysis`` is such a child
        already started (:meth:`kosearch.lexical.child_analysis.ChildAnalysis.for_index`).

        Example:
            >>> index = Index.load("my-index", query_backend="auto")  # doctest: +SKIP
            >>> index.warm_up(queries=["한글은 누가 만들었나요?"])        # doctest: +SKIP
            >>> index.search("한글은 누가 만들었나요?")                   # doctest: +SKIP
        """
        chosen = self.default_mode if mode is None else retrieval.parse_mode(mode)
        if chosen != Mode.DENSE and self.lexical is not None:
            if (analysis is None and queries is not None and chosen == Mode.HYBRID
                    and self.path is not None and self._encoder is None):
                from kosearch.lexical.child_analysis import ChildAnalysis

                analysis = ChildAnalysis.for_index(self.path, queries)
            self.lexical.warm_up(analysis)
        if chosen != Mode.LEXICAL and self._encoder is None:
            self._query_encoder.start()

    # ------------------------------------------------------------------ searching
    @property
    def default_mode(self) -> Mode:
        """Hybrid when the index has a BM25 part, else dense."""
        return Mode.HYBRID if self.lexical is not None else Mode.DENSE

    def search(
        self,
        query: str,
        k: int = 10,
        *,
        mode: Mode | str | None = None,
        passages: bool = False,
        rerank: Reranker | str | None = None,
        rerank_top: int = RERANK_TOP,
        fusion: Fusion | None = None,
    ) -> list[Hit]:
        """The ``k`` best hits for one query.

        Args:
            query: the question, in any language the model reads.
            k: how many hits (documents, or passages with ``passages=True``).
            mode: ``hybrid`` (default when the index has BM25), ``dense`` or ``lexical``.
            passages: return raw passage hits instead of one (best) passage per document.
            rerank: a cross-encoder (model id, local path, or a ``Reranker``) that re-scores
                the ``rerank_top`` best passages; the hit score is then its score.
            rerank_top: how many fused passages the cross-encoder re-scores.
            fusion: how hybrid mode merges the two lists (default: equal-weight convex
                combination of min-max-normalized scores).

        Returns:
            Hits best first; ``score`` is higher-is-better.

        Example:
            >>> index.search("한글은 누가 만들었나요?", k=3)  # doctest: +SKIP
        """
        return self.search_batch(
            [query], k, mode=mode, passages=passages, rerank=rerank, rerank_top=rerank_top,
            fusion=fusion,
        )[0]

    def search_batch(
        self,
        queries: Sequence[str],
        k: int = 10,
        *,
        mode: Mode | str | None = None,
        passages: bool = False,
        rerank: Reranker | str | None = None,
        rerank_top: int = RERANK_TOP,
        fusion: Fusion | None = None,
        query_vectors: Any = None,
    ) -> list[list[Hit]]:
        """Like :meth:`search` for many queries at once (encoded in one batch).

        ``query_vectors`` (shape ``(len(queries), dim)``, from :meth:`encode_queries`) skips
        encoding, e.g. to compare modes or time searches without re-encoding.
        """
        if isinstance(k, bool) or not isinstance(k, int) or k <= 0:
            raise ConfigError(f"k must be a positive integer, got {k!r}")
        if isinstance(rerank_top, bool) or not isinstance(rerank_top, int) or rerank_top <= 0:
            raise ConfigError(f"rerank_top must be a positive integer, got {rerank_top!r}")
        queries = list(queries)
        for n, query in enumerate(queries, 1):
            if not isinstance(query, str) or not query.strip():
                raise ConfigError(f"query {n} is empty; give some text to search for")
        chosen = self._resolve_mode(mode)
        if not queries or self.store.ntotal == 0:
            return [[] for _ in queries]
        with self._lock:
            return self._search_locked(
                queries, k, chosen, passages, rerank, rerank_top, fusion, query_vectors
            )

    def _search_locked(
        self,
        queries: list[str],
        k: int,
        chosen: Mode,
        passages: bool,
        rerank: Reranker | str | None,
        rerank_top: int,
        fusion: Fusion | None,
        query_vectors: Any,
    ) -> list[list[Hit]]:
        reranker = self._reranker(rerank)
        vectors = None
        if chosen == Mode.HYBRID and query_vectors is None:
            assert self.lexical is not None  # guaranteed by _resolve_mode
            self.lexical.warm_up()  # Kiwi loads beside the GIL-free parts of encoding
        if chosen != Mode.LEXICAL:
            vectors = self._query_vectors(queries, query_vectors)
        ranked = self._rank(
            queries, vectors, chosen, k, passages, reranker, rerank_top, fusion or Fusion()
        )
        return [self._hits(cands) for cands in ranked]

    def encode_queries(self, queries: Sequence[str]) -> Any:
        """Query embeddings (with the model's query prompt), as the search would compute them."""
        return self.encoder.encode_queries(list(queries))

    def _query_vectors(self, queries: list[str], given: Any) -> Any:
        if given is None:
            return self.encoder.encode_queries(queries)
        shape = getattr(given, "shape", None)
        if shape is None or tuple(shape) != (len(queries), self.store.dim):
            raise ValueError(
                f"query_vectors must have shape ({len(queries)}, {self.store.dim}), got {shape}"
            )
        return given

    def _reranker(self, rerank: Reranker | str | None) -> Reranker | None:
        if rerank is None or not isinstance(rerank, str):
            return rerank
        if rerank not in self._rerankers:
            from kosearch.encoding.rerank import CrossEncoderReranker

            self._rerankers[rerank] = CrossEncoderReranker(rerank, device=self._device)
        return self._rerankers[rerank]

    def _resolve_mode(self, mode: Mode | str | None) -> Mode:
        chosen = self.default_mode if mode is None else retrieval.parse_mode(mode)
        if chosen != Mode.DENSE and self.lexical is None:
            if chosen == Mode.LEXICAL:
                raise ConfigError(
                    "this index has no lexical (BM25) part; rebuild it without --no-lexical "
                    "or search with --mode dense"
                )
            log.warning("this index has no lexical (BM25) part; searching in dense mode")
            return Mode.DENSE
        return chosen

    def _rank(
        self,
        queries: list[str],
        vectors: Any,
        mode: RunMode,
        k: int,
        passages: bool,
        reranker: Reranker | None,
        rerank_top: int,
        fusion: Fusion,
    ) -> list[list[Candidate]]:
        total = self.store.ntotal
        depth = min(total, k if passages else max(4 * k, 20))
        if mode == Mode.HYBRID:
            depth = min(total, max(depth, HYBRID_DEPTH))
        if reranker is not None:
            depth = min(total, max(depth, rerank_top))
        while True:
            lists = self._candidates(queries, vectors, mode, depth, fusion)
            if reranker is not None:
                pool = max(rerank_top, k)
                lists = [self._rerank(reranker, q, c[:pool]) for q, c in zip(queries, lists)]
            if passages:
                return [c[:k] for c in lists]
            grouped = [retrieval.best_per_document(c, self._doc_ids.__getitem__, k) for c in lists]
            short = any(len(g) < k for g in grouped)
            # a reranked pool is final: deeper candidates were never re-scored
            if not short or depth >= total or reranker is not None:
                return grouped
            depth = min(total, depth * 4)

    def _rerank(self, reranker: Reranker, query: str, pool: list[Candidate]) -> list[Candidate]:
        from kosearch.encoding.rerank import rerank

        records = self.passages.rows([c.row for c in pool])
        texts = [f"{r['title']}\n{r['text']}" if r["title"] else r["text"] for r in records]
        ranked = rerank(reranker, query, list(zip(pool, texts)), lambda item: item[1])
        return [
            Candidate(cand.row, score, {**cand.detail, "fused_score": cand.score,
                                        "rerank_rank": i, "rerank_score": score})
            for i, ((cand, _), score) in enumerate(ranked, 1)
        ]

    def _candidates(
        self, queries: list[str], vectors: Any, mode: Mode, depth: int, fusion: Fusion
    ) -> list[list[Candidate]]:
        dense = lexical = None
        if mode != Mode.LEXICAL:
            dense = retrieval.dense_candidates(self.store, vectors, depth)
        if mode != Mode.DENSE:
            assert self.lexical is not None  # guaranteed by _resolve_mode
            lexical = retrieval.lexical_candidates(self.lexical, queries, depth)
        if dense is None:
            return lexical or []
        if lexical is None:
            return dense
        return [retrieval.fuse(d, lex, fusion) for d, lex in zip(dense, lexical)]

    def _hits(self, candidates: list[Candidate]) -> list[Hit]:
        records = self.passages.rows([c.row for c in candidates])
        return [
            Hit(
                id=rec["doc_id"], chunk=rec["chunk"], score=cand.score, rank=rank,
                text=rec["text"], title=rec["title"], meta=rec["meta"],
                start=rec["start"], end=rec["end"], scores=cand.detail,
            )
            for rank, (cand, rec) in enumerate(zip(candidates, records), 1)
        ]

    # ------------------------------------------------------------------ reporting
    def info(self) -> dict[str, Any]:
        """The manifest plus live counts and on-disk size, as a JSON-ready dict."""
        from dataclasses import asdict

        data = asdict(self.manifest)
        data["path"] = str(self.path) if self.path else None
        memory = {
            "vectors": int(self.manifest.faiss.get("bytes") or 0),
            "passages": int(self.passages.table.nbytes),
            "lexical": self.lexical.nbytes if self.lexical is not None else 0,
        }
        data["memory"] = memory
        data["memory_bytes"] = sum(memory.values())
        if self.path is not None:
            data["disk_bytes"] = sum(
                f.stat().st_size for f in self.path.rglob("*") if f.is_file()
            )
        return data

    def __len__(self) -> int:
        return self.store.ntotal

    def __repr__(self) -> str:
        m = self.manifest
        return (
            f"Index(path={str(self.path) if self.path else None!r}, model={m.model.name!r}, "
            f"documents={m.counts.get('documents')}, passages={self.store.ntotal}, "
            f"lexical={self.lexical is not None})"
        )


def _load_encoder(
    model: str | None,
    settings: IndexSettings | None,
    *,
    device: str | None = None,
    query_prompt: str | None = None,
    passage_prompt: str | None = None,
) -> Encoder:
    from kosearch.encoding.encoder import SentenceTransformerEncoder
    from kosearch.encoding.registry import DEFAULT_MODEL

    if settings is not None:
        device = settings.device
        query_prompt = settings.query_prompt
        passage_prompt = settings.passage_prompt
    return SentenceTransformerEncoder(
        model or DEFAULT_MODEL,
        device=device,
        batch_size=settings.batch_size if settings is not None else 32,
        query_prompt=query_prompt,
        passage_prompt=passage_prompt,
        precision=settings.precision if settings is not None else None,
        processes=settings.processes if settings is not None else None,
    )


def _load_query_encoder(manifest: Manifest, backend: str, device: str | None) -> Encoder:
    """The query encoder of an index with ``manifest`` (see :attr:`Index.encoder`)."""
    from kosearch.encoding.onnx_runtime import load_query_encoder

    info = manifest.model
    encoder: Encoder = load_query_encoder(info, backend, device, lambda: (
        _load_encoder(info.name, None, device=device,
                      query_prompt=info.query_prompt, passage_prompt=info.passage_prompt)
    ))
    check_encoder(manifest, encoder)
    return encoder


def check_encoder(manifest: Manifest, encoder: Encoder) -> None:
    """Refuse a query encoder whose model or dimension differs from the index's."""
    info = manifest.model
    if encoder.dim != info.dim:
        raise ModelMismatchError(
            f"the index was built with {info.name} (dim {info.dim}) but the query model "
            f"{encoder.name} has dim {encoder.dim}; query with the index's model"
        )
    if encoder.fingerprint != info.fingerprint:
        raise ModelMismatchError(
            f"the index was built with {info.name} but the query model is {encoder.name} "
            "(different weights); query with the index's model or rebuild the index"
        )


def _check_counts(
    directory: Path,
    manifest: Manifest,
    store: VectorStore,
    passages: PassageTable,
    lexical: LexicalIndex | None,
) -> None:
    expected = manifest.counts.get("passages")
    found = {"vectors": store.ntotal, "passages": len(passages)}
    if lexical is not None:
        found["lexical"] = len(lexical)
    if any(n != expected for n in found.values()):
        parts = ", ".join(f"{name} {n}" for name, n in found.items())
        raise IndexFormatError(
            f"the index at {directory} is inconsistent: the manifest lists {expected} passages "
            f"but found {parts}; rebuild it"
        )
    if store.dim != manifest.model.dim:
        raise IndexFormatError(
            f"the index at {directory} is inconsistent: vectors have dim {store.dim}, "
            f"the manifest says {manifest.model.dim}; rebuild it"
        )


def build_directory(
    corpus: Any,
    path: str | os.PathLike[str],
    *,
    encoder: Encoder | None = None,
    progress: bool = False,
    stdin: TextIO | None = None,
    restart: bool = False,
    **options: Any,
) -> tuple[Manifest, UpdateReport, Encoder]:
    """Like :meth:`Index.build` with a ``path``, without opening the result afterwards.

    For callers that only need the counts (the CLI): opening would read every passage text
    into memory, which the build itself never does. Returns the manifest, what the run did,
    and the encoder it used.
    """
    run = _build_run(corpus, encoder, progress, stdin, options)
    _, report = _execute(run, Path(path), restart=restart)
    return read_manifest(path), report, run.get_encoder()


def _build_run(
    corpus: Any, encoder: Encoder | None, progress: bool, stdin: TextIO | None,
    options: dict[str, Any],
) -> Run:
    from kosearch.storage.ann import plan_index

    settings = IndexSettings(**options)
    settings.validated_metric()
    plan_index(settings.index_type, 1, 1)  # an unknown type fails before any work
    loaded: list[Encoder] = [encoder] if encoder is not None else []

    def get_encoder() -> Encoder:
        if not loaded:
            loaded.append(_load_encoder(settings.model, settings))
        return loaded[0]

    get_encoder()
    return Run(corpus, settings, get_encoder, progress=progress, stdin=stdin)


def _read_parts(directory: Path, manifest: Manifest, *, mmap: bool) -> tuple[Any, ...]:
    """Vectors, passages, lexical index and original vectors, checked against ``manifest``."""
    store = VectorStore.read(
        directory, manifest.metric, mmap=mmap, factory=manifest.faiss.get("factory"),
        expected_bytes=manifest.faiss.get("bytes"),
    )
    passages = PassageTable.read(directory)
    lexical = None
    if manifest.lexical is not None:
        from kosearch.lexical.bm25 import LexicalIndex

        lexical = LexicalIndex.load(directory / LEXICAL_DIR)
    _check_counts(directory, manifest, store, passages, lexical)
    return store, passages, lexical, _read_raw(directory, manifest, mmap=mmap)


def _unchanged(directory: Path, manifest: Manifest) -> bool:
    """Whether ``directory`` still holds the index ``manifest`` describes (no swap meanwhile)."""
    try:
        return read_manifest(directory) == manifest
    except KosearchError:
        return False


def _read_raw(directory: Path, manifest: Manifest, *, mmap: bool) -> Any:
    """The original vectors a lossy index keeps in ``embeddings.npy`` (None for other types)."""
    if not manifest.faiss.get("embeddings"):
        return None
    path = directory / EMBEDDINGS_FILE
    try:
        raw = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:
        raise IndexFormatError(
            f"{path} is missing or unreadable ({error}); rebuild the index"
        ) from None
    expected = (manifest.counts.get("passages"), manifest.model.dim)
    if raw.dtype != np.float32 or raw.shape != expected:
        raise IndexFormatError(
            f"{path} holds {raw.dtype} vectors of shape {raw.shape}, expected float32 {expected}; "
            "the index is inconsistent"
        )
    return raw


#: Settings an update may change; the others are fixed when the index is built.
_UPDATE_OPTIONS = ("fields", "strict", "batch_size", "device", "index_type", "processes")


def _update_settings(manifest: Manifest, options: dict[str, Any]) -> IndexSettings:
    """The settings of an update: the index's own, plus the few an update may change."""
    from kosearch.settings import ChunkSettings, Fields

    fixed = sorted(set(options) - set(_UPDATE_OPTIONS))
    if fixed:
        raise ConfigError(
            f"an update cannot change {', '.join(fixed)}: the index keeps the settings it was "
            "built with; rebuild it to change them"
        )
    chunking = {k: manifest.chunking[k] for k in ("max_tokens", "overlap", "enabled")
                if k in manifest.chunking}
    settings = IndexSettings(
        model=manifest.model.name, metric=manifest.metric,
        fields=Fields(**manifest.fields) if manifest.fields else Fields(),
        chunking=ChunkSettings(**chunking), lexical=manifest.lexical is not None,
        query_prompt=manifest.model.query_prompt, passage_prompt=manifest.model.passage_prompt,
        index_type=manifest.faiss.get("requested") or "flat",
        precision=manifest.model.precision,
    )
    return replace(settings, **{k: v for k, v in options.items() if v is not None})


def _execute(run: Run, target: Path | None, *, restart: bool) -> tuple[Index | None, UpdateReport]:
    """Run ``run`` into ``target`` atomically (resumably when it can), or in memory.

    Returns the loaded in-memory index for ``target=None``, else None (load it from ``target``).
    """
    if target is None:
        with tempfile.TemporaryDirectory(prefix="kosearch-") as tmp:
            out = Path(tmp) / "index"
            out.mkdir()
            _, report = run.execute(out, Checkpoint.open(Path(tmp) / "work", {}, restart=True))
            index = Index.load(out, mmap=False)
        index.path = None
        return index, report
    key = _run_key(run, target)
    with contextlib.ExitStack() as stack:
        if key is None:  # stdin or Python objects: nothing to recognise a rerun by
            scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="kosearch-")))
            work = Checkpoint.open(scratch / "work", {}, restart=True)
        else:
            work = Checkpoint.open(checkpoint_path(target), key, restart=restart)
        try:
            with atomic_directory(target, marker=MANIFEST_FILE) as tmp:
                _, report = run.execute(tmp, work)
        except KosearchError:
            if work.encoded == 0:
                work.discard()  # nothing costly to resume; a rerun starts clean
            raise
        work.discard()
    return None, report


def _run_key(run: Run, target: Path) -> dict[str, Any] | None:
    """What identifies a run for resuming: inputs, model, settings and the index it updates."""
    if run.mode is RunMode.DELETE:
        return None  # encodes nothing, so nothing to resume (and no other run's checkpoint to meet)
    sources = _source_stamps(run.corpus)
    if sources is None:
        return None
    s = run.settings
    base = run.base.manifest if run.base is not None else None
    return {
        "mode": run.mode.value,
        "target": str(target.resolve()),
        "sources": sources,
        "model": base.model.fingerprint if base is not None else s.model,
        "prompts": [s.query_prompt, s.passage_prompt],
        "precision": s.precision,
        "chunking": asdict(s.chunking),
        "fields": asdict(s.fields),
        "strict": s.strict,
        "base": [base.created, base.updated, base.counts.get("passages")] if base else None,
    }


def _source_stamps(corpus: Any) -> list[list[Any]] | None:
    """(path, size, mtime) of every corpus file; None when the corpus is not files on disk."""
    paths = [corpus] if isinstance(corpus, (str, os.PathLike)) else corpus
    if not isinstance(paths, (list, tuple)) or not paths:
        return None
    stamps: list[list[Any]] = []
    for item in paths:
        if not isinstance(item, (str, os.PathLike)) or os.fspath(item) == "-":
            return None
        path = Path(item)
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            try:
                info = file.stat()
            except OSError:
                return None  # the reader reports a missing file properly
            stamps.append([str(file.resolve()), info.st_size, info.st_mtime_ns])
    return stamps
