"""The query side: dense and lexical candidates, fusion, and one hit per document.

Pure composition over a vector store, a lexical index and an encoder; nothing here touches disk.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any

import numpy as np

from kosearch.errors import ConfigError
from kosearch.fusion import rrf

if TYPE_CHECKING:
    from kosearch.lexical import LexicalIndex
    from kosearch.store import VectorStore

RRF_K = 60


class Mode(str, Enum):
    """Which retrievers answer a query."""

    HYBRID = "hybrid"
    DENSE = "dense"
    LEXICAL = "lexical"


@dataclass(slots=True)
class Candidate:
    """A passage row with its final score and per-retriever detail."""

    row: int
    score: float
    detail: dict[str, Any] = field(default_factory=dict)


def parse_mode(mode: Mode | str) -> Mode:
    """Turn a string into a :class:`Mode`, with a clear error listing the valid ones."""
    try:
        return Mode(mode)
    except ValueError:
        valid = ", ".join(m.value for m in Mode)
        raise ConfigError(f"unknown search mode {mode!r}; choose one of: {valid}") from None


def dense_candidates(
    store: VectorStore, vectors: np.ndarray, depth: int
) -> list[list[Candidate]]:
    """The ``depth`` nearest passages of each query vector."""
    scores, rows = store.search(vectors, depth)
    return [
        [
            Candidate(int(r), float(s), {"dense_rank": i + 1, "dense_score": float(s)})
            for i, (r, s) in enumerate(zip(row_list, score_list))
        ]
        for row_list, score_list in zip(rows.tolist(), scores.tolist())
    ]


def lexical_candidates(
    lexical: LexicalIndex, queries: Sequence[str], depth: int
) -> list[list[Candidate]]:
    """The ``depth`` best BM25 passages of each query (fewer when few passages match)."""
    return [
        [
            Candidate(row, score, {"lexical_rank": i + 1, "lexical_score": score})
            for i, (row, score) in enumerate(ranked)
        ]
        for ranked in lexical.search(list(queries), depth)
    ]


def fuse(dense: list[Candidate], lexical: list[Candidate], *, k: int = RRF_K) -> list[Candidate]:
    """Reciprocal-rank fusion of one query's dense and lexical lists, detail merged."""
    detail: dict[int, dict[str, Any]] = {}
    for cand in (*dense, *lexical):
        detail.setdefault(cand.row, {}).update(cand.detail)
    fused = rrf([[c.row for c in dense], [c.row for c in lexical]], k=k)
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
