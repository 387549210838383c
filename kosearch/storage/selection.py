"""Searching only some rows of a vector store: FAISS ID selectors, and exact search of a subset.

A :class:`Subset` is the allowed rows (a boolean mask, from a metadata filter) with the FAISS
``IDSelectorBitmap`` over them, built once and reused for every query of a filter.
:func:`search_subset` returns the top-k of the allowed rows only:

- ``flat``: FAISS computes distances for allowed rows only; the result is exactly the top-k of
  the subset (so is every other exact type).
- IVF types: the selector, with ``nprobe`` raised by 1/selectivity (to scan about as many
  allowed vectors as an unfiltered search scans vectors); queries that still get fewer than
  ``k`` rows are searched again over all lists (``nprobe = nlist``: exhaustive over the
  allowed codes).
- ``hnsw``: up to :data:`HNSW_EXACT_MAX` allowed rows, an exact scan of the allowed vectors
  (the graph's flat storage, with the selector); above, the graph walk with the selector and
  ``efSearch`` raised by 1/selectivity (at most :data:`EF_SEARCH_MAX`), and an exact scan for
  queries that get fewer than ``k``. A graph walk through a mostly forbidden graph loses its
  way (FAISS issue 4727); the threshold comes from ``bench/filter.py`` (README, "Filters").

Scores follow :class:`~kosearch.storage.vectors.VectorStore`: higher is better, ties by
ascending row, and a cut inside a run of equal scores is resolved by searching deeper.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from kosearch.storage.faiss_index import ivf_part
from kosearch.types import Metric

if TYPE_CHECKING:
    from kosearch.storage.vectors import VectorStore

__all__ = ["EF_SEARCH_MAX", "HNSW_EXACT_MAX", "Subset", "search_subset"]

#: Up to this many allowed rows, an HNSW index scans the allowed vectors exactly: one query
#: then costs about as much as an unfiltered HNSW search (bench/filter.py), and is exact.
HNSW_EXACT_MAX = 20_000
EF_SEARCH_MAX = 2048  # the widest filtered graph walk; past it the exact scan is cheaper


@dataclass(frozen=True, eq=False)
class Subset:
    """Allowed rows of a store: ``mask[row]``, their count, and the FAISS selector over them.

    ``bitmap`` is referenced here because the selector points into it.
    """

    mask: NDArray[np.bool_]
    count: int
    bitmap: NDArray[np.uint8]
    selector: Any

    @classmethod
    def of(cls, mask: NDArray[np.bool_]) -> Subset:
        """The subset of rows where ``mask`` is true."""
        import faiss

        mask = np.ascontiguousarray(mask, dtype=bool)
        bitmap = np.packbits(mask, bitorder="little")
        selector = faiss.IDSelectorBitmap(len(mask), faiss.swig_ptr(bitmap))
        return cls(mask, int(mask.sum()), bitmap, selector)

    @property
    def fraction(self) -> float:
        """The share of rows allowed (1.0 for an empty store)."""
        return self.count / len(self.mask) if len(self.mask) else 1.0


def search_subset(
    store: VectorStore, queries: NDArray[np.floating[Any]], k: int, subset: Subset
) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """The ``k`` best allowed rows for each query.

    Args:
        store: the vectors.
        queries: shape ``(nq, dim)``.
        k: results per query (> 0).
        subset: the allowed rows, over ``store.ntotal`` rows.

    Returns:
        ``(scores, rows)`` of shape ``(nq, min(k, subset.count))``, best first.

    Raises:
        ValueError: ``k <= 0``, a wrong query shape, or a subset of another size.
    """
    if k <= 0:
        raise ValueError(f"k must be positive, got {k}")
    if len(subset.mask) != store.ntotal:
        raise ValueError(f"the subset covers {len(subset.mask)} rows, the store {store.ntotal}")
    prepared = store.prepare(queries)
    want = min(k, subset.count)
    if want == 0 or len(prepared) == 0:
        shape = (len(prepared), want)
        return np.zeros(shape, np.float32), np.zeros(shape, np.int64)
    fetch = min(want + 1, subset.count)  # one more than wanted shows a tie at the cut
    if _exact_only(store, subset):
        return _exact(store, prepared, want, fetch, subset)
    scores, rows = _ordered(store, *store.faiss_index.search(
        prepared, fetch, params=_params(store, subset, fetch)))
    short = np.sum(rows >= 0, axis=1) < fetch
    tied = np.isfinite(scores[:, want - 1]) & (scores[:, want - 1] == scores[:, -1])
    redo = short | (tied & (fetch < subset.count))
    scores, rows = scores[:, :want].copy(), rows[:, :want].copy()
    if redo.any():
        scores[redo], rows[redo] = _exact(store, prepared[redo], want, fetch, subset)
    return scores, rows


def _exact_only(store: VectorStore, subset: Subset) -> bool:
    kind = store.kind
    return kind == "flat" or (kind == "hnsw" and subset.count <= HNSW_EXACT_MAX)


def _params(store: VectorStore, subset: Subset, fetch: int) -> Any:
    """Search parameters for one filtered approximate search: the selector, breadth raised."""
    import faiss

    index = store.faiss_index
    ivf = ivf_part(index)
    if ivf is not None:
        nprobe = min(ivf.nlist, math.ceil(ivf.nprobe / max(subset.fraction, 1e-9)))
        return faiss.SearchParametersIVF(sel=subset.selector, nprobe=nprobe)
    if store.kind == "hnsw":
        base = max(int(index.hnsw.efSearch), fetch)
        ef = max(fetch, min(EF_SEARCH_MAX, math.ceil(base / max(subset.fraction, 1e-9))))
        return faiss.SearchParametersHNSW(sel=subset.selector, efSearch=ef)
    return faiss.SearchParameters(sel=subset.selector)


def _exact(
    store: VectorStore, queries: NDArray[np.float32], want: int, fetch: int, subset: Subset
) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """Exhaustive search over the allowed rows; deeper where ties run past the cut."""
    import faiss

    index = store.faiss_index
    ivf = ivf_part(index)
    if ivf is not None:
        params: Any = faiss.SearchParametersIVF(sel=subset.selector, nprobe=int(ivf.nlist))
    else:
        params = faiss.SearchParameters(sel=subset.selector)
        if store.kind == "hnsw":
            index = faiss.downcast_index(index.storage)  # the graph's vectors, as a flat index
    scores, rows = _ordered(store, *index.search(queries, fetch, params=params))
    tied = np.isfinite(scores[:, want - 1]) & (scores[:, want - 1] == scores[:, -1])
    if fetch < subset.count and tied.any():
        deeper = _exact(store, queries[tied], want, min(2 * fetch, subset.count), subset)
        scores, rows = scores[:, :want].copy(), rows[:, :want].copy()
        scores[tied], rows[tied] = deeper
        return scores, rows
    return np.ascontiguousarray(scores[:, :want]), np.ascontiguousarray(rows[:, :want])


def _ordered(
    store: VectorStore, distances: NDArray[np.float32], labels: NDArray[np.int64]
) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """Higher-is-better scores sorted best first, ties by row; missing rows last (-inf, -1)."""
    scores = 0.0 - distances if store.metric is Metric.L2 else distances
    scores = np.where(labels < 0, np.float32(-np.inf), scores).astype(np.float32)
    order = np.lexsort((np.where(labels < 0, np.iinfo(np.int64).max, labels), -scores), axis=-1)
    return (np.take_along_axis(scores, order, axis=1),
            np.take_along_axis(labels, order, axis=1).astype(np.int64))
