"""The search pipeline over one index: candidates, fusion, reranking, grouping, hits.

:class:`Searcher` holds the parts of an index it reads (vectors, passages, BM25) and turns
already-encoded queries into :class:`~kosearch.types.Hit` lists; encoding the queries and
loading models are the caller's (the :class:`~kosearch.index.Index` facade).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from kosearch.errors import ConfigError, FilterError
from kosearch.retrieval import candidates as retrieval
from kosearch.retrieval.candidates import Candidate
from kosearch.retrieval.filters import Filter, canonical, evaluate
from kosearch.settings import RERANK_TOP, Fusion
from kosearch.types import Hit, Mode, join_title, parse_mode

if TYPE_CHECKING:
    from kosearch.encoding.rerank import Reranker
    from kosearch.lexical.bm25 import LexicalIndex
    from kosearch.storage.parts import IndexParts
    from kosearch.storage.passages import PassageTable
    from kosearch.storage.selection import Subset
    from kosearch.storage.vectors import VectorStore

log = logging.getLogger(__name__)

SUBSET_CACHE = 16  # filters whose allowed rows a Searcher keeps (about 1.1 bytes a row each)


def per_query_filters(spec: Any, n: int) -> list[Filter | None] | None:
    """One filter (or None) per query: ``spec`` is None, one filter for all queries (a mapping),
    or a sequence of ``n`` filters/None."""
    if spec is None:
        return None
    if isinstance(spec, Mapping):
        return [spec] * n
    if isinstance(spec, (list, tuple)):
        if len(spec) != n:
            raise FilterError(f"got {len(spec)} filters for {n} queries; give one filter for "
                              "all queries, or one (or None) per query")
        return list(spec)
    raise FilterError(f"a filter must be a JSON object, got {spec!r}")


def check_request(queries: Sequence[Any], k: Any, rerank_top: Any) -> list[str]:
    """The queries as a list, after refusing a bad ``k``, ``rerank_top`` or empty query."""
    if isinstance(k, bool) or not isinstance(k, int) or k <= 0:
        raise ConfigError(f"k must be a positive integer, got {k!r}")
    if isinstance(rerank_top, bool) or not isinstance(rerank_top, int) or rerank_top <= 0:
        raise ConfigError(f"rerank_top must be a positive integer, got {rerank_top!r}")
    queries = list(queries)
    for n, query in enumerate(queries, 1):
        if not isinstance(query, str) or not query.strip():
            raise ConfigError(f"query {n} is empty; give some text to search for")
    return queries


def check_query_vectors(given: Any, n: int, dim: int) -> Any:
    """``given`` query vectors, after checking their shape is ``(n, dim)``."""
    shape = getattr(given, "shape", None)
    if shape is None or tuple(shape) != (n, dim):
        raise ValueError(f"query_vectors must have shape ({n}, {dim}), got {shape}")
    return given


def resolve_mode(mode: Mode | str | None, has_lexical: bool) -> Mode:
    """The mode a search runs in: hybrid by default when the index has BM25, else dense."""
    default = Mode.HYBRID if has_lexical else Mode.DENSE
    chosen = default if mode is None else parse_mode(mode)
    if chosen != Mode.DENSE and not has_lexical:
        if chosen == Mode.LEXICAL:
            raise ConfigError(
                "this index has no lexical (BM25) part; rebuild it without --no-lexical "
                "or search with --mode dense"
            )
        log.warning("this index has no lexical (BM25) part; searching in dense mode")
        return Mode.DENSE
    return chosen


@dataclass(frozen=True)
class Searcher:
    """Searches the parts of one index; ``doc_ids[row]`` is the document of passage ``row``."""

    store: VectorStore
    passages: PassageTable
    lexical: LexicalIndex | None
    doc_ids: Sequence[str]
    _subsets: OrderedDict[str, Subset] = field(default_factory=OrderedDict, repr=False,
                                               compare=False)

    def subset(self, spec: Filter) -> Subset:
        """The rows ``spec`` allows (cached per filter: the last :data:`SUBSET_CACHE` filters).

        Raises:
            FilterError: a bad filter (see :mod:`kosearch.retrieval.filters`).
        """
        from kosearch.storage.selection import Subset

        key = str(canonical(spec))
        found = self._subsets.get(key)
        if found is None:
            mask = evaluate(spec, self.passages.filterable(), self.passages.fields())
            found = self._subsets[key] = Subset.of(mask)
            while len(self._subsets) > SUBSET_CACHE:
                self._subsets.popitem(last=False)
        self._subsets.move_to_end(key)
        return found

    @classmethod
    def of(cls, parts: IndexParts) -> Searcher:
        """A searcher over the parts of one index."""
        return cls(parts.store, parts.passages, parts.lexical, parts.passages.doc_id_view())

    def search(
        self,
        queries: list[str],
        vectors: Any,
        mode: Mode,
        k: int,
        *,
        passages: bool = False,
        reranker: Reranker | None = None,
        rerank_top: int = RERANK_TOP,
        fusion: Fusion | None = None,
        filters: Sequence[Filter | None] | None = None,
    ) -> list[list[Hit]]:
        """The hits of each query; ``vectors`` are the encoded queries (None in lexical mode).

        ``filters`` holds one metadata filter (or None) per query: a filtered query ranks only
        the passages its filter allows, so it gets ``k`` hits whenever ``k`` documents match.
        Queries sharing a filter are searched together, the filter evaluated once.
        """
        fusion = fusion or Fusion()
        if filters is None or all(f is None for f in filters):
            ranked = self._rank(queries, vectors, mode, k, passages, reranker, rerank_top,
                                fusion, None)
            return [self._hits(cands) for cands in ranked]
        groups: dict[str | None, list[int]] = {}
        for i, spec in enumerate(filters):
            groups.setdefault(canonical(spec), []).append(i)
        subsets = {key: None if key is None else self.subset(filters[rows[0]])  # type: ignore[arg-type]
                   for key, rows in groups.items()}  # every filter checked before any search
        out: list[list[Hit]] = [[] for _ in queries]
        for key, rows in groups.items():
            subset = subsets[key]
            if subset is not None and subset.count == 0:
                log.info("the filter %s matches no passages", key)
                continue
            picked = None if vectors is None else np.asarray(vectors)[rows]
            ranked = self._rank([queries[i] for i in rows], picked, mode, k, passages,
                                reranker, rerank_top, fusion, subset)
            for i, cands in zip(rows, ranked):
                out[i] = self._hits(cands)
        return out

    def _rank(
        self,
        queries: list[str],
        vectors: Any,
        mode: Mode,
        k: int,
        passages: bool,
        reranker: Reranker | None,
        rerank_top: int,
        fusion: Fusion,
        subset: Subset | None,
    ) -> list[list[Candidate]]:
        """Each query's best ``k`` passages (or documents), the same first ones at every ``k``.

        Every retriever searches at least ``fusion.depth`` deep, whatever ``k``; the search goes
        deeper (x4) until the hits are certain: no passage left unseen could rank among them.
        A reranker re-scores the certain best ``rerank_top`` passages; hits past them keep
        their fused order below the reranked ones.
        """
        total = self.store.ntotal if subset is None else subset.count
        need = k if passages else 4 * k
        depth = min(total, max(fusion.depth, need, rerank_top if reranker is not None else 0))
        while True:
            ranked = self._candidates(queries, vectors, mode, depth, fusion, subset)
            lists = [r.candidates[: r.certain] for r in ranked]
            if reranker is not None:
                pool = min(rerank_top, total)
                if depth < total and any(len(c) < pool for c in lists):
                    depth = min(total, depth * 4)
                    continue
                lists = [_floor_tail(self._rerank(reranker, q, c[:pool]) + c[pool:], pool)
                         for q, c in zip(queries, lists)]
            if passages:
                out = [c[:k] for c in lists]
            else:
                out = [retrieval.best_per_document(c, self.doc_ids.__getitem__, k) for c in lists]
            if depth >= total or all(len(c) == k for c in out):
                return out
            depth = min(total, depth * 4)

    def _rerank(self, reranker: Reranker, query: str, pool: list[Candidate]) -> list[Candidate]:
        from kosearch.encoding.rerank import rerank

        records = self.passages.rows([c.row for c in pool])
        texts = [join_title(r["title"], r["text"]) for r in records]
        ranked = rerank(reranker, query, list(zip(pool, texts)), lambda item: item[1])
        return [
            Candidate(cand.row, score, {**cand.detail, "fused_score": cand.score,
                                        "rerank_rank": i, "rerank_score": score})
            for i, ((cand, _), score) in enumerate(ranked, 1)
        ]

    def _candidates(
        self, queries: list[str], vectors: Any, mode: Mode, depth: int, fusion: Fusion,
        subset: Subset | None = None,
    ) -> list[retrieval.Ranked]:
        if mode == Mode.DENSE:
            return retrieval.dense_candidates(self.store, vectors, depth, subset)
        if self.lexical is None:  # resolve_mode refuses this mode first
            raise ConfigError("this index has no lexical (BM25) part")
        if mode == Mode.LEXICAL:
            return retrieval.lexical_candidates(self.lexical, queries, depth, subset)
        return retrieval.hybrid_candidates(self.store, self.lexical, queries, vectors, depth,
                                           fusion, subset)

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


def _floor_tail(ranked: list[Candidate], pool: int) -> list[Candidate]:
    """Hits past the reranked ``pool`` score the pool's lowest rerank score (scores never rise
    down the list); their fused score stays in their detail as ``fused_score``."""
    if len(ranked) <= pool or pool == 0:
        return ranked
    floor = min(c.score for c in ranked[:pool])
    return ranked[:pool] + [Candidate(c.row, floor, {**c.detail, "fused_score": c.score})
                            for c in ranked[pool:]]
