"""The query side: dense and lexical candidates, fusion, and one hit per document.

Pure composition over a vector store, a lexical index and an encoder; nothing here touches disk.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from kosearch.retrieval.fusion import convex, rrf
from kosearch.settings import Fusion

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


def dense_candidates(
    store: VectorStore, vectors: np.ndarray, depth: int, subset: Subset | None = None
) -> list[list[Candidate]]:
    """The ``depth`` nearest passages of each query vector (of the ``subset`` rows, if given)."""
    if subset is None:
        scores, rows = store.search(vectors, depth)
    else:
        from kosearch.storage.selection import search_subset

        scores, rows = search_subset(store, vectors, depth, subset)
    return [
        [
            Candidate(int(r), float(s), {"dense_rank": i + 1, "dense_score": float(s)})
            for i, (r, s) in enumerate(zip(row_list, score_list))
        ]
        for row_list, score_list in zip(rows.tolist(), scores.tolist())
    ]


def lexical_candidates(
    lexical: LexicalIndex, queries: Sequence[str], depth: int, subset: Subset | None = None
) -> list[list[Candidate]]:
    """The ``depth`` best BM25 passages of each query (fewer when few passages match), of the
    ``subset`` rows if given."""
    allowed = None if subset is None else subset.mask
    return [
        [
            Candidate(row, score, {"lexical_rank": i + 1, "lexical_score": score})
            for i, (row, score) in enumerate(ranked)
        ]
        for ranked in lexical.search(list(queries), depth, allowed=allowed)
    ]


def fuse(
    dense: list[Candidate], lexical: list[Candidate], fusion: Fusion | None = None
) -> list[Candidate]:
    """Fuse one query's dense and lexical lists (per passage), detail merged."""
    fusion = fusion or Fusion()
    detail: dict[int, dict[str, Any]] = {}
    for cand in (*dense, *lexical):
        detail.setdefault(cand.row, {}).update(cand.detail)
    weights = [fusion.dense_weight, 1.0 - fusion.dense_weight]
    if fusion.method == "rrf":
        fused = rrf([[c.row for c in dense], [c.row for c in lexical]], k=fusion.rrf_k,
                    weights=weights)
    else:
        fused = convex([[(c.row, c.score) for c in dense], [(c.row, c.score) for c in lexical]],
                       weights=weights)
    return [Candidate(row, score, detail[row]) for row, score in fused]


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
