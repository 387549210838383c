"""The query side: dense and lexical candidates, fusion, and one hit per document.

Pure composition over a vector store, a lexical index and an encoder; nothing here touches disk.

Hybrid fusion is k-independent: each retriever's list is cut at a depth, but a candidate's fused
score reads only (a) its exact score from *both* retrievers (dense: the query's similarity with
its stored vector; lexical: its BM25 score, 0 when no term matches) and (b) statistics of each
retriever's best :attr:`~kosearch.settings.Fusion.depth` scores for the query, a fixed number. So a
passage's fused score depends on the query and the passage only, never on ``k`` or on how deep the
lists were searched. Every fused list also says how many of its leading candidates are *certain*:
no passage outside the lists can outscore them (the threshold test of Fagin's algorithm: an unseen
passage scores at most the fusion of the last dense and the last lexical score), so the caller
searches deeper until the hits it returns are all certain.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from kosearch.retrieval.fusion import Spread, combine
from kosearch.settings import Fusion
from kosearch.storage.faiss_index import ivf_part
from kosearch.types import Metric

if TYPE_CHECKING:
    from kosearch.lexical.bm25 import LexicalIndex
    from kosearch.storage.selection import Subset
    from kosearch.storage.vectors import VectorStore


@dataclass(slots=True)
class Candidate:
    """A passage row with its final score and per-retriever detail."""

    row: int
    score: float
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Ranked:
    """One query's candidates, best first; the first ``certain`` are exactly the best passages
    of the whole collection (of the filter's rows), in order."""

    candidates: list[Candidate]
    certain: int


def _dense_search(
    store: VectorStore, vectors: Any, depth: int, subset: Subset | None
) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    if subset is None:
        return store.search(vectors, depth)
    from kosearch.storage.selection import search_subset

    return search_subset(store, vectors, depth, subset)


def dense_candidates(
    store: VectorStore, vectors: np.ndarray, depth: int, subset: Subset | None = None
) -> list[Ranked]:
    """The ``depth`` nearest passages of each query vector (of the ``subset`` rows, if given)."""
    scores, rows = _dense_search(store, vectors, depth, subset)
    out = []
    for row_list, score_list in zip(rows.tolist(), scores.tolist()):
        cands = [Candidate(int(r), float(s), {"dense_rank": i + 1, "dense_score": float(s)})
                 for i, (r, s) in enumerate(zip(row_list, score_list)) if r >= 0]
        out.append(Ranked(cands, len(cands)))
    return out


def lexical_candidates(
    lexical: LexicalIndex, queries: Sequence[str], depth: int, subset: Subset | None = None
) -> list[Ranked]:
    """The ``depth`` best BM25 passages of each query (fewer when few passages match), of the
    ``subset`` rows if given."""
    allowed = None if subset is None else subset.mask
    out = []
    for ranked in lexical.search(list(queries), depth, allowed=allowed):
        cands = [Candidate(row, score, {"lexical_rank": i + 1, "lexical_score": score})
                 for i, (row, score) in enumerate(ranked)]
        out.append(Ranked(cands, len(cands)))
    return out


def exact_dense_scores(store: VectorStore, query: NDArray[np.float32],
                       rows: Sequence[int]) -> NDArray[np.float64]:
    """The similarity of one prepared query vector with the stored vectors of ``rows``, as
    :meth:`~kosearch.storage.vectors.VectorStore.search` scores it (l2: negative squared
    distance), computed the same way whatever else is searched.

    IVF types are scored by FAISS over every list with the rows as an ID selector (no
    ``reconstruct``, which would need a direct map and copy a memory-mapped index into RAM);
    the others from their stored vectors.
    """
    if len(rows) == 0:
        return np.zeros(0)
    ivf = ivf_part(store.faiss_index)
    if ivf is not None:
        return _ivf_scores(store, ivf, query, rows)
    stored = store.reconstruct(list(rows)).astype(np.float64)
    q = query.astype(np.float64)
    if store.metric is Metric.L2:
        return -np.square(stored - q).sum(axis=1)
    return stored @ q


def _ivf_scores(store: VectorStore, ivf: Any, query: NDArray[np.float32],
                rows: Sequence[int]) -> NDArray[np.float64]:
    import faiss

    wanted = np.asarray(rows, dtype=np.int64)
    selector = faiss.IDSelectorBatch(wanted)
    params = faiss.SearchParametersIVF(sel=selector, nprobe=int(ivf.nlist))
    distances, labels = store.faiss_index.search(query[None, :], len(wanted), params=params)
    found = dict(zip(labels[0].tolist(), distances[0].astype(np.float64).tolist()))
    scores = np.array([found.get(int(r), np.nan) for r in wanted])
    if np.isnan(scores).any():
        raise RuntimeError("the vector index lost rows it was asked to score")
    return -scores if store.metric is Metric.L2 else scores


def hybrid_candidates(
    store: VectorStore,
    lexical: LexicalIndex,
    queries: Sequence[str],
    vectors: Any,
    depth: int,
    fusion: Fusion,
    subset: Subset | None = None,
) -> list[Ranked]:
    """Each query's dense and lexical ``depth`` best, fused (see the module docstring)."""
    available = store.ntotal if subset is None else subset.count
    d_scores, d_rows = _dense_search(store, vectors, depth, subset)
    dense_lists = [[int(r) for r in rows if r >= 0] for rows in d_rows.tolist()]
    allowed = None if subset is None else subset.mask
    lexical_out = lexical.search_scored(list(queries), depth, dense_lists, allowed=allowed)
    prepared = store.prepare(np.asarray(vectors))
    return [
        _fuse_one(store, prepared[i], dense_lists[i], lex_ranked, lex_of_dense, depth, available,
                  fusion)
        for i, (lex_ranked, lex_of_dense) in enumerate(lexical_out)
    ]


def _fuse_one(
    store: VectorStore,
    query: NDArray[np.float32],
    dense_rows: list[int],
    lex_ranked: list[tuple[int, float]],
    lex_of_dense: NDArray[np.float64],
    depth: int,
    available: int,
    fusion: Fusion,
) -> Ranked:
    lex_score = dict(zip(dense_rows, lex_of_dense.tolist()))
    lex_score.update(lex_ranked)
    rows = list(dict.fromkeys([*dense_rows, *(r for r, _ in lex_ranked)]))
    dense = exact_dense_scores(store, query, rows)
    dense_of = dict(zip(rows, dense.tolist()))
    lexical = np.array([lex_score[r] for r in rows])
    dense_rank = {r: i for i, r in enumerate(dense_rows, 1)}
    lex_rank = {r: i for i, (r, _) in enumerate(lex_ranked, 1)}
    n = fusion.depth
    if fusion.method == "rrf":
        fused = np.array([_rrf(dense_rank.get(r), lex_rank.get(r), fusion) for r in rows])
        best = [min(dense_rank.get(r, depth + 1), lex_rank.get(r, depth + 1)) for r in rows]
        order = sorted(range(len(rows)), key=lambda i: (-fused[i], best[i], rows[i]))
        certain = len(rows)
    else:
        spreads = (Spread.of([dense_of[r] for r in dense_rows], n),
                   Spread.of([s for _, s in lex_ranked], n, size=available))
        fused = combine(dense, lexical, spreads, fusion.normalize, fusion.dense_weight)
        order = sorted(range(len(rows)), key=lambda i: (-fused[i], rows[i]))
        bound = _unseen_bound(dense_of, dense_rows, lex_ranked, depth, available, spreads, fusion)
        certain = next((j for j, i in enumerate(order) if not fused[i] > bound), len(order))
    cands = []
    for i in order:
        row = rows[i]
        detail: dict[str, Any] = {"dense_score": dense_of[row], "lexical_score": lex_score[row]}
        if row in dense_rank:
            detail["dense_rank"] = dense_rank[row]
        if row in lex_rank:
            detail["lexical_rank"] = lex_rank[row]
        cands.append(Candidate(row, float(fused[i]), detail))
    return Ranked(cands, certain)


def _rrf(dense_rank: int | None, lexical_rank: int | None, fusion: Fusion) -> float:
    """Reciprocal ranks within each list's best ``fusion.depth`` (deeper ranks add nothing)."""
    weight = 0.5 if fusion.dense_weight is None else fusion.dense_weight
    total = 0.0
    for rank, w in ((dense_rank, weight), (lexical_rank, 1.0 - weight)):
        if rank is not None and rank <= fusion.depth:
            total += w / (fusion.rrf_k + rank)
    return total


def _unseen_bound(
    dense_of: dict[int, float],
    dense_rows: list[int],
    lex_ranked: list[tuple[int, float]],
    depth: int,
    available: int,
    spreads: tuple[Spread, Spread],
    fusion: Fusion,
) -> float:
    """The best fused score a passage in neither list could have (-inf when none is left)."""
    if len(dense_rows) < depth or len(dense_rows) >= available:
        return -np.inf  # the dense list holds every row it could (exhausted)
    dense_cap = dense_of[dense_rows[-1]]
    lexical_cap = lex_ranked[-1][1] if len(lex_ranked) >= depth else 0.0
    return float(combine(np.array([dense_cap]), np.array([lexical_cap]), spreads,
                         fusion.normalize, fusion.dense_weight)[0])


def best_per_document(
    ranked: list[Candidate], doc_of: Callable[[int], str], k: int
) -> list[Candidate]:
    """Keep each document's best passage, in rank order, up to ``k`` documents."""
    seen: set[str] = set()
    out: list[Candidate] = []
    for cand in ranked:
        doc = doc_of(cand.row)
        if doc in seen:
            continue
        seen.add(doc)
        out.append(cand)
        if len(out) == k:
            break
    return out
