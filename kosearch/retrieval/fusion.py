"""Fusing ranked lists from several retrievers (dense, BM25, ...) into one ranking.

Pure functions over plain sequences; candidates are any hashable keys (kosearch passes
passage rows). Every result is best first, and equal fused scores keep the order in which
the candidates first appeared (first list first, then by position), so output is deterministic.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Hashable, Sequence
from typing import Literal, TypeVar

K = TypeVar("K", bound=Hashable)

Normalization = Literal["minmax", "zscore", "none"]


def _weights(weights: Sequence[float] | None, n: int) -> list[float]:
    """Validated weights: equal by default, one per list, finite and non-negative."""
    if weights is None:
        return [1.0] * n
    if len(weights) != n:
        raise ValueError(f"got {len(weights)} weights for {n} lists; give one weight per list")
    if not all(math.isfinite(w) and w >= 0 for w in weights):
        raise ValueError(f"weights must be finite and >= 0, got {list(weights)}")
    return [float(w) for w in weights]


def _rank_best_first(contributions: dict[K, list[float]]) -> list[tuple[K, float]]:
    """Sum each key's contributions exactly (fsum) and sort; dict order breaks ties."""
    totals = [(key, math.fsum(parts)) for key, parts in contributions.items()]
    # sorted() is stable and dicts keep insertion (first appearance) order.
    return sorted(totals, key=lambda item: -item[1])


def rrf(
    ranked: Sequence[Sequence[K]], *, k: int = 60, weights: Sequence[float] | None = None
) -> list[tuple[K, float]]:
    """Reciprocal-rank fusion: ``score(d) = sum_i w_i / (k + rank_i(d))``, ranks 1-based.

    Only ranks matter, so lists whose scores live on different scales (cosine similarity, BM25)
    fuse without normalization. A candidate absent from a list gets nothing from it; one that
    appears twice in a list counts at its first (best) rank. The default ``k = 60`` is the value
    Cormack, Clarke and Büttcher found robust in "Reciprocal Rank Fusion outperforms Condorcet and
    individual Rank Learning Methods" (SIGIR 2009); a smaller ``k`` rewards top ranks more.

    Args:
        ranked: One sequence of keys per retriever, best first.
        k: The rank offset (>= 0).
        weights: One non-negative weight per list; equal weights by default.

    Returns:
        ``(key, fused score)`` pairs, best first; ties keep first-appearance order.

    Raises:
        ValueError: If ``k < 0`` or the weights do not fit the lists.

    Example:
        >>> rrf([["a", "b"], ["b", "c"]], k=1)
        [('b', 0.8333333333333333), ('a', 0.5), ('c', 0.3333333333333333)]
    """
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    ws = _weights(weights, len(ranked))
    contributions: dict[K, list[float]] = {}
    for weight, keys in zip(ws, ranked):
        seen: set[K] = set()
        for rank, key in enumerate(keys, start=1):
            if key in seen:
                continue
            seen.add(key)
            contributions.setdefault(key, []).append(weight / (k + rank))
    return _rank_best_first(contributions)


def _normalize(scores: list[float], how: Normalization) -> tuple[list[float], float]:
    """Normalized scores plus the value a candidate missing from this list receives."""
    if how == "none":
        return scores, min(scores)
    lo, hi = min(scores), max(scores)
    if lo == hi:
        # Nothing to tell the candidates apart: present ones score 1, absent ones 0.
        return [1.0] * len(scores), 0.0
    if how == "minmax":
        return [(s - lo) / (hi - lo) for s in scores], 0.0
    mean, std = statistics.fmean(scores), statistics.pstdev(scores)
    normalized = [(s - mean) / std for s in scores]
    return normalized, min(normalized)


def _first_scores(pairs: Sequence[tuple[K, float]]) -> dict[K, float]:
    """Key -> score, keeping each key's first occurrence; non-finite scores are rejected."""
    out: dict[K, float] = {}
    for key, score in pairs:
        if not math.isfinite(score):
            raise ValueError(f"scores must be finite, got {score!r} for {key!r}")
        out.setdefault(key, float(score))
    return out


def convex(
    scored: Sequence[Sequence[tuple[K, float]]],
    *,
    weights: Sequence[float] | None = None,
    normalize: Normalization = "minmax",
) -> list[tuple[K, float]]:
    """Convex (weighted-sum) fusion of normalized scores.

    Each list is normalized on its own, then ``score(d) = sum_i w_i * norm_i(d)``. A candidate
    missing from a list gets that list's minimum normalized value: 0 for ``minmax``, the lowest
    z-score for ``zscore``, the lowest raw score for ``none``. A list whose scores are all equal
    normalizes (``minmax``/``zscore``) to 1.0 for its candidates and 0.0 for missing ones. An
    empty list contributes 0 to every candidate. A key repeated in a list keeps its first score.

    Args:
        scored: One sequence of ``(key, score)`` per retriever, higher score better.
        weights: One non-negative weight per list; equal weights by default.
        normalize: ``"minmax"`` (to [0, 1]), ``"zscore"`` (mean 0, std 1) or ``"none"``.

    Returns:
        ``(key, fused score)`` pairs, best first; ties keep first-appearance order.

    Raises:
        ValueError: If the weights do not fit, ``normalize`` is unknown, or a score is not finite.

    Example:
        >>> convex([[("a", 2.0), ("b", 1.0)], [("b", 0.9), ("c", 0.5)]])
        [('a', 1.0), ('b', 1.0), ('c', 0.0)]
    """
    if normalize not in ("minmax", "zscore", "none"):
        raise ValueError(f"normalize must be 'minmax', 'zscore' or 'none', got {normalize!r}")
    ws = _weights(weights, len(scored))
    tables = [_first_scores(pairs) for pairs in scored]
    order: dict[K, None] = dict.fromkeys(key for table in tables for key in table)
    contributions: dict[K, list[float]] = {key: [] for key in order}
    for weight, table in zip(ws, tables):
        if not table:
            continue
        normalized, missing = _normalize(list(table.values()), normalize)
        values = dict(zip(table, normalized))
        for key in order:
            contributions[key].append(weight * values.get(key, missing))
    return _rank_best_first(contributions)
