"""TEMPORARY stub of the ANN planner (replaced by the real module on merge)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from kosearch.errors import ConfigError
from kosearch.store import VectorStore

INDEX_TYPES: tuple[str, ...] = ("auto", "flat", "hnsw", "ivf-flat", "ivf-pq", "ivf-sq8")


@dataclass(frozen=True, slots=True)
class IndexPlan:
    kind: str
    requested: str
    factory: str
    train_size: int
    nprobe: int | None
    ef_search: int | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def plan_index(index_type: str, n: int, dim: int) -> IndexPlan:
    if index_type not in INDEX_TYPES:
        raise ConfigError(f"unknown index type {index_type!r}; choose one of: {', '.join(INDEX_TYPES)}")
    kind = "flat" if index_type == "auto" else index_type
    nlist = max(1, min(64, n // 39))
    factories = {"flat": "Flat", "hnsw": "HNSW32", "ivf-flat": f"IVF{nlist},Flat",
                 "ivf-pq": f"IVF{nlist},PQ8", "ivf-sq8": f"IVF{nlist},SQ8"}
    train = 0 if kind in ("flat", "hnsw") else min(n, nlist * 39)
    return IndexPlan(kind, index_type, factories[kind], train, 8 if kind.startswith("ivf") else None,
                     64 if kind == "hnsw" else None)


def build_store(vectors: Any, metric: Any, plan: IndexPlan, *, seed: int = 0, chunk: int = 65536,
                on_chunk: Any = None) -> VectorStore:
    n, dim = vectors.shape
    store = VectorStore.create(dim, metric, plan.factory)
    if plan.train_size:
        rows = np.sort(np.random.default_rng(seed).choice(n, size=min(n, plan.train_size), replace=False))
        store.train(np.asarray(vectors[rows]))
    for start in range(0, n, chunk):
        store.add(np.asarray(vectors[start:start + chunk]))
    return store
