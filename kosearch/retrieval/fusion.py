"""Fusing ranked lists from several retrievers (dense, BM25, ...) into one ranking.

Pure functions over plain sequences; candidates are any hashable keys (kosearch passes
passage rows). Every result is best first, and equal fused scores keep the order in which
the candidates first appeared (first list first, then by position), so output is deterministic.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import numpy as np
from numpy.typing import NDArray

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


# --- fusion of exact scores with fixed per-query statistics ----------------------------------
#
# ``convex`` above normalizes each list by its own minimum and maximum, so a passage's fused
# score depends on how deep the lists were cut, and that depth grew with ``k``. Search fuses
# instead with :class:`Spread`: statistics of each retriever's best ``depth`` scores for the
# query (a fixed number, not ``k``), applied to exact scores of every candidate from both
# retrievers. A passage's fused score then depends only on the query and the passage.

ScoreNormalization = Literal["minmax", "zscore", "dbsf"]  # kosearch.types.SCORE_NORMALIZATIONS


@dataclass(frozen=True, slots=True)
class Spread:
    """Statistics of one retriever's best scores for one query: what normalization reads.

    Attributes:
        top: the best score.
        floor: the lowest of the best ``depth`` scores.
        mean: their mean.
        std: their (population) standard deviation.
    """

    top: float
    floor: float
    mean: float
    std: float

    @classmethod
    def of(cls, best: Sequence[float], depth: int, *, size: int | None = None,
           fill: float = 0.0) -> Spread:
        """From scores best first: the first ``depth``, padded with ``fill`` up to
        ``min(depth, size)`` (a retriever that leaves non-matching rows out, as BM25 does,
        passes its collection size: those rows score ``fill``).

        Raises:
            ValueError: If ``depth < 1`` or a score is not finite.
        """
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        values = np.asarray(best[:depth], dtype=np.float64)
        if size is not None and len(values) < min(depth, size):
            values = np.concatenate([values, np.full(min(depth, size) - len(values), fill)])
        if not np.isfinite(values).all():
            raise ValueError("scores must be finite")
        if len(values) == 0:
            return cls(fill, fill, fill, 0.0)
        return cls(float(values.max()), float(values.min()), float(values.mean()),
                   float(values.std()))

    def normalize(
        self, scores: NDArray[np.floating[Any]], how: ScoreNormalization
    ) -> NDArray[np.float64]:
        """``scores`` mapped by a non-decreasing function fixed by this spread.

        ``minmax``: ``(s - floor) / (top - floor)``, 1 at the top and 0 at the ``depth``-th score
        (lower scores go below 0). ``zscore``: ``(s - mean) / std``. ``dbsf``
        (distribution-based score fusion): ``(s - (mean - 3 std)) / (6 std)`` clipped to
        [0, 1]. Where the spread is flat (all best scores equal), a score reaching the top maps
        to 1 and any lower score to 0.
        """
        s = np.asarray(scores, dtype=np.float64)
        width = {"minmax": self.top - self.floor, "zscore": self.std, "dbsf": 6 * self.std}[how]
        if not width > 0:
            return (s >= self.top).astype(np.float64)
        if how == "minmax":
            return (s - self.floor) / width
        if how == "zscore":
            return (s - self.mean) / width
        return np.clip((s - (self.mean - 3 * self.std)) / width, 0.0, 1.0)

    @property
    def confidence(self) -> float:
        """How far the best score stands out: ``(top - mean) / std`` (0 when flat)."""
        return (self.top - self.mean) / self.std if self.std > 0 else 0.0


def combine(
    dense: NDArray[np.floating[Any]],
    lexical: NDArray[np.floating[Any]],
    spreads: tuple[Spread, Spread],
    how: ScoreNormalization,
    dense_weight: float | None,
) -> NDArray[np.float64]:
    """``w * norm_dense(dense) + (1 - w) * norm_lexical(lexical)``, elementwise.

    ``dense_weight=None`` adapts the weight to the query: each retriever weighs by the
    :attr:`Spread.confidence` of its best score, ``w = c_dense / (c_dense + c_lexical)`` (0.5 when
    both are 0). The result is non-decreasing in both scores.
    """
    if dense_weight is None:
        c_dense, c_lexical = spreads[0].confidence, spreads[1].confidence
        total = c_dense + c_lexical
        dense_weight = c_dense / total if total > 0 else 0.5
    return (dense_weight * spreads[0].normalize(dense, how)
            + (1.0 - dense_weight) * spreads[1].normalize(lexical, how))
