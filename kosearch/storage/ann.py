"""Choosing and building a FAISS index type: exact ``flat`` or an approximate (ANN) index.

:func:`plan_index` turns ``--index-type`` and the collection size into an :class:`IndexPlan`
(a ``faiss.index_factory`` string, how many vectors to train on, query-time defaults);
:func:`build_store` trains and fills a :class:`~kosearch.storage.vectors.VectorStore` from it,
reading the vectors in row chunks so a memory-mapped array is never loaded whole.

``auto`` keeps exact search up to :data:`AUTO_EXACT_MAX` vectors and picks ``hnsw`` above it;
the threshold and the defaults come from ``bench/scale.py`` (figures in ``bench/SCALE.md``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from kosearch.errors import ConfigError
from kosearch.storage.vectors import VectorStore
from kosearch.types import INDEX_TYPES, Metric

__all__ = [
    "AUTO_EXACT_MAX",
    "INDEX_TYPES",
    "IndexPlan",
    "build_store",
    "knn_recall",
    "plan_index",
]

IVF_TYPES = ("ivf-flat", "ivf-pq", "ivf-sq8")

# auto: exact search up to here. One exact query over 200k 384-d vectors takes ~19 ms on one
# core (less than encoding the query on a CPU) and grows linearly; on real sentence embeddings
# IVF needs nprobe ~ nlist/2 for recall@10 0.95, while HNSW (efSearch 256) reaches 0.98 at
# ~1 ms. ivf-pq is never automatic: its recall@10 stays at 0.4-0.8 (bench/SCALE.md).
AUTO_EXACT_MAX = 200_000

HNSW_M = 32  # graph degree: ~256 bytes of links per vector on top of the raw vector
HNSW_EF_CONSTRUCTION = 40  # FAISS's default; higher buys little recall for much build time
HNSW_EF_SEARCH = 256  # recall@10 0.98 on me5 embeddings (128: 0.96), 0.94 synthetic at 200k
LISTS_PER_SQRT_N = 2  # nlist ~ 2 sqrt(n): k-means on 1M vectors trains in about 1 minute here
MIN_POINTS_PER_LIST = 39  # FAISS k-means warns below 39 training points per centroid
TRAIN_POINTS_PER_LIST = 64
NPROBE_FRACTION = 1 / 8  # of nlist: real text needs wide probing (bench/SCALE.md)
NPROBE_MIN, NPROBE_MAX = 8, 256
PQ_DIMS_PER_CODE = 8  # one 8-bit code per 8 dimensions: 48 bytes for 384-d (32x smaller);
# 4 dimensions per code trains 20-35x slower in FAISS (bench/SCALE.md)


@dataclass(frozen=True, slots=True)
class IndexPlan:
    """A resolved index type with its FAISS parameters; recorded in the manifest.

    Attributes:
        kind: The index type built, never ``"auto"``.
        requested: What was asked for (``"auto"`` or a type).
        factory: The ``faiss.index_factory`` string, e.g. ``"IVF1024,SQ8"``.
        train_size: How many vectors to train on (0: no training).
        nprobe: Default inverted lists visited per query (IVF types), else None.
        ef_search: Default HNSW search breadth, else None.
        nlist: Inverted lists (IVF types), else None.
        ef_construction: HNSW build breadth, else None.
        note: Why the plan departs from what was requested (small collection), else "".
    """

    kind: str
    requested: str
    factory: str
    train_size: int
    nprobe: int | None
    ef_search: int | None
    nlist: int | None = None
    ef_construction: int | None = None
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The plan as JSON-ready values (for ``manifest["faiss"]``)."""
        return asdict(self)

    @property
    def needs_training(self) -> bool:
        """Whether FAISS must see sample vectors before adding any."""
        return self.train_size > 0


def plan_index(index_type: str, n: int, dim: int) -> IndexPlan:
    """The index to build for ``n`` vectors of dimension ``dim``.

    ``auto`` is ``flat`` up to :data:`AUTO_EXACT_MAX` vectors and ``hnsw`` above. IVF uses about
    ``2 * sqrt(n)`` lists (a power of two, at most ``n / 39`` so each list has enough training
    points); ``nprobe`` visits 1/8 of them (8 to 256). An IVF type asked for on a collection too
    small to train keeps working with fewer lists (and 4-bit PQ codes, or SQ8 instead of PQ), or
    falls back to ``flat`` when there is nothing to train on; ``note`` says so.

    Args:
        index_type: One of :data:`INDEX_TYPES`.
        n: How many vectors the index will be built from (>= 0).
        dim: Their dimension (> 0).

    Raises:
        ConfigError: If ``index_type`` is not one of :data:`INDEX_TYPES`.
        ValueError: If ``n`` is negative or ``dim`` not positive.

    Example:
        >>> plan_index("auto", 500_000, 384).factory
        'HNSW32'
    """
    if index_type not in INDEX_TYPES:
        raise ConfigError(
            f"unknown index type {index_type!r}; choose one of {', '.join(INDEX_TYPES)}"
        )
    if n < 0 or dim <= 0:
        raise ValueError(f"need n >= 0 and dim > 0, got n={n}, dim={dim}")
    kind = index_type
    if index_type == "auto":
        kind = "flat" if n <= AUTO_EXACT_MAX else "hnsw"
    if kind == "flat":
        return IndexPlan("flat", index_type, "Flat", 0, None, None)
    if kind == "hnsw":
        return IndexPlan(
            kind="hnsw",
            requested=index_type,
            factory=f"HNSW{HNSW_M}",
            train_size=0,
            nprobe=None,
            ef_search=HNSW_EF_SEARCH,
            ef_construction=HNSW_EF_CONSTRUCTION,
        )
    if n == 0:
        note = f"{kind} needs vectors to train on and there are none; using flat"
        return IndexPlan("flat", index_type, "Flat", 0, None, None, note=note)
    return _plan_ivf(kind, index_type, n, dim)


def _plan_ivf(kind: str, requested: str, n: int, dim: int) -> IndexPlan:
    """An IVF plan: nlist from ``n``, training sample, nprobe, and the PQ code size."""
    target = _power_of_two(LISTS_PER_SQRT_N * math.sqrt(n))
    nlist = max(1, min(target, _power_of_two_floor(n // MIN_POINTS_PER_LIST)))
    notes = []
    if nlist < target:
        notes.append(f"{n} vectors are enough to train {nlist} of the {target} lists wanted")
    train_size = min(n, TRAIN_POINTS_PER_LIST * nlist)
    nprobe = min(nlist, max(NPROBE_MIN, min(NPROBE_MAX, round(nlist * NPROBE_FRACTION))))
    encoding = {"ivf-flat": "Flat", "ivf-sq8": "SQ8"}.get(kind, "")
    if kind == "ivf-pq":
        m = _pq_subquantizers(dim)
        # Each PQ codebook has 2**bits centroids and wants 39 training points per centroid.
        bits = 8 if n >= MIN_POINTS_PER_LIST * 256 else 4
        if n < MIN_POINTS_PER_LIST * 16:
            notes.append(f"{n} vectors are too few to train PQ codebooks; using ivf-sq8")
            kind, encoding = "ivf-sq8", "SQ8"
        else:
            if bits < 8:
                notes.append(f"{n} vectors can train only {bits}-bit PQ codes")
            encoding = f"PQ{m}" if bits == 8 else f"PQ{m}x{bits}"
            train_size = min(n, max(train_size, MIN_POINTS_PER_LIST * 2**bits))
    return IndexPlan(
        kind=kind,
        requested=requested,
        factory=f"IVF{nlist},{encoding}",
        train_size=train_size,
        nprobe=nprobe,
        ef_search=None,
        nlist=nlist,
        note="; ".join(notes),
    )


def _pq_subquantizers(dim: int) -> int:
    """PQ sub-quantizers: about ``dim / 8``, rounded to a divisor of ``dim``."""
    want = max(1, dim // PQ_DIMS_PER_CODE)
    return min((m for m in range(1, dim + 1) if dim % m == 0), key=lambda m: (abs(m - want), m))


def _power_of_two(x: float) -> int:
    """The power of two nearest to ``x`` (in log scale), at least 1."""
    return 1 << max(0, round(math.log2(max(x, 1.0))))


def _power_of_two_floor(x: int) -> int:
    """The largest power of two <= ``x`` (1 for ``x < 1``)."""
    return 1 << max(0, int(x).bit_length() - 1)


def build_store(
    vectors: Any,
    metric: Metric | str,
    plan: IndexPlan,
    *,
    seed: int = 0,
    chunk: int = 65536,
    on_chunk: Callable[[int, int], None] | None = None,
) -> VectorStore:
    """A store built from ``vectors`` as ``plan`` says; row ``i`` of the store is ``vectors[i]``.

    Args:
        vectors: Shape ``(n, dim)`` float array or ``np.memmap``; read ``chunk`` rows at a time.
        metric: ``cosine`` (vectors normalized before training and adding), ``ip`` or ``l2``.
        plan: From :func:`plan_index`.
        seed: Picks the training sample (``plan.train_size`` distinct rows, read in row order);
            the same seed and vectors give the same trained index.
        chunk: Rows per :meth:`VectorStore.add` call (> 0).
        on_chunk: Called as ``on_chunk(rows_added, n)`` after each chunk.

    Raises:
        ConfigError: If FAISS cannot build or train the planned index.
        ValueError: On a wrong shape, non-finite values or ``chunk <= 0``.
    """
    if chunk <= 0:
        raise ValueError(f"chunk must be positive, got {chunk}")
    shape = getattr(vectors, "shape", None)
    if shape is None or len(shape) != 2:
        raise ValueError(f"expected vectors of shape (n, dim), got shape {shape}")
    n, dim = int(shape[0]), int(shape[1])
    store = VectorStore.create(dim, metric, plan.factory)
    if plan.ef_construction is not None:
        store.set_build_params(ef_construction=plan.ef_construction)
    if not store.is_trained:
        store.train(_training_sample(vectors, min(plan.train_size, n) or n, seed))
    for start in range(0, n, chunk):
        store.add(np.asarray(vectors[start : start + chunk]))
        if on_chunk is not None:
            on_chunk(min(start + chunk, n), n)
    store.set_search_params(nprobe=plan.nprobe, ef_search=plan.ef_search)
    return store


def _training_sample(vectors: Any, size: int, seed: int) -> NDArray[np.float32]:
    """``size`` distinct rows chosen with ``seed``, in row order (sequential reads of a memmap)."""
    n = int(vectors.shape[0])
    if size >= n:
        rows = np.arange(n)
    else:
        rows = np.sort(np.random.default_rng(seed).choice(n, size=size, replace=False))
    return np.asarray(vectors[rows], dtype=np.float32)


def knn_recall(found: NDArray[np.int64], exact: NDArray[np.int64]) -> float:
    """Recall@k of approximate results: the mean fraction of each exact top-k row found.

    Args:
        found: Rows from the approximate index, shape ``(nq, k)`` (``-1`` for none).
        exact: Rows from exact search, shape ``(nq, k)``.
    """
    if found.shape != exact.shape:
        raise ValueError(f"shapes differ: {found.shape} and {exact.shape}")
    if exact.size == 0:
        return 1.0
    hits = sum(len(set(f.tolist()) & set(e.tolist())) for f, e in zip(found, exact))
    return hits / exact.size
