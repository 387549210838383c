"""Index types: plans from the collection size, and each type built, searched, saved and mapped."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import faiss
import numpy as np
import pytest

from kosearch.errors import ConfigError
from kosearch.storage.ann import (
    AUTO_EXACT_MAX,
    INDEX_TYPES,
    IndexPlan,
    build_store,
    knn_recall,
    plan_index,
)
from kosearch.storage.vectors import VectorStore

TYPES = [t for t in INDEX_TYPES if t != "auto"]
IVF = ["ivf-flat", "ivf-pq", "ivf-sq8"]
N, DIM = 6000, 64
# Knobs wide enough that every approximate type should find most true neighbours here.
WIDE = {"flat": {}, "hnsw": {"ef_search": 128}, **{t: {"nprobe": 16} for t in IVF}}
# IVF-PQ on 6000 vectors has 4-bit codes, 4 bytes a vector: coarse, yet far above chance (0.002).
MIN_RECALL = {"flat": 1.0, "hnsw": 0.95, "ivf-flat": 0.95, "ivf-sq8": 0.9, "ivf-pq": 0.15}


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Iterator[None]:
    """One FAISS thread: HNSW builds are then deterministic, and on a busy 2-core machine
    OpenMP makes these small builds ~10x slower, not faster."""
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(before)


def clustered(n: int, dim: int, seed: int) -> np.ndarray:
    """Unnormalized vectors around 40 fixed centres, like embeddings of a few topics."""
    centres = np.random.default_rng(1338).standard_normal((40, dim), dtype=np.float32)
    rng = np.random.default_rng(seed)
    points = centres[rng.integers(0, 40, n)] + 0.7 * rng.standard_normal((n, dim), np.float32)
    return points * rng.uniform(0.5, 3.0, (n, 1)).astype(np.float32)  # cosine must not care


@pytest.fixture(scope="module")
def data() -> np.ndarray:
    return clustered(N, DIM, seed=1)


@pytest.fixture(scope="module")
def queries() -> np.ndarray:
    return clustered(50, DIM, seed=2)


@pytest.fixture(scope="module")
def stores(data: np.ndarray) -> dict[str, VectorStore]:
    """One cosine store per type, built once for the module (search knobs left at the plan's)."""
    return {t: build_store(data, "cosine", plan_index(t, N, DIM), seed=0) for t in TYPES}


@pytest.fixture(scope="module")
def exact(stores: dict[str, VectorStore], queries: np.ndarray) -> np.ndarray:
    return stores["flat"].search(queries, 10)[1]


# -- plan_index ---------------------------------------------------------------------------------


def test_auto_is_exact_up_to_the_threshold_then_hnsw() -> None:
    assert plan_index("auto", 0, 384).kind == "flat"
    assert plan_index("auto", AUTO_EXACT_MAX, 384).kind == "flat"
    above = plan_index("auto", AUTO_EXACT_MAX + 1, 384)
    assert (above.kind, above.requested, above.factory) == ("hnsw", "auto", "HNSW32")
    assert above.ef_search == 256 and above.train_size == 0
    assert plan_index("auto", 50_000_000, 384).kind == "hnsw"  # never the lossy ivf-pq


@pytest.mark.parametrize("index_type", INDEX_TYPES)
@pytest.mark.parametrize("n", [0, 1, 10, 700, 5000, 50_000, 1_000_000, 30_000_000])
@pytest.mark.parametrize("dim", [384, 100])
def test_plans_are_valid_for_faiss(index_type: str, n: int, dim: int) -> None:
    plan = plan_index(index_type, n, dim)
    assert plan.kind in TYPES and plan.requested == index_type
    assert 0 <= plan.train_size <= n
    index = faiss.index_factory(dim, plan.factory, faiss.METRIC_INNER_PRODUCT)
    assert VectorStore(index, "cosine", plan.factory).kind == plan.kind
    if plan.kind in IVF:
        assert plan.nlist is not None and plan.nprobe is not None
        assert plan.nlist & (plan.nlist - 1) == 0  # a power of two
        assert plan.nlist == 1 or n // plan.nlist >= 39  # enough training points per list
        assert 1 <= plan.nprobe <= plan.nlist
        assert plan.train_size >= plan.nlist and plan.ef_search is None
    if plan.kind == "ivf-pq":
        assert dim % index.pq.M == 0
    if plan.kind == "hnsw":
        assert plan.ef_search and plan.ef_construction and plan.nprobe is None
    if plan.kind != plan.requested and plan.requested != "auto":
        assert plan.note  # a fallback is always explained


def test_plan_scales_lists_with_size() -> None:
    nlists = [plan_index("ivf-flat", n, 384).nlist for n in (50_000, 200_000, 1_000_000)]
    assert nlists == [512, 1024, 2048]
    plan = plan_index("ivf-pq", 1_000_000, 384)
    assert plan.factory == "IVF2048,PQ48" and plan.nprobe == 256


def test_small_collection_keeps_the_type_with_fewer_lists() -> None:
    plan = plan_index("ivf-flat", 100, 384)
    assert plan.factory == "IVF2,Flat" and "lists" in plan.note
    assert plan_index("ivf-flat", 0, 384).kind == "flat"
    small_pq = plan_index("ivf-pq", 5000, 384)
    assert small_pq.factory.endswith("x4") and "4-bit" in small_pq.note
    assert plan_index("ivf-pq", 100, 384).kind == "ivf-sq8"


def test_unknown_type_lists_the_valid_ones() -> None:
    with pytest.raises(ConfigError) as error:
        plan_index("annoy", 1000, 384)
    message = str(error.value)
    assert "'annoy'" in message and all(t in message for t in INDEX_TYPES)
    with pytest.raises(ValueError):
        plan_index("flat", -1, 384)


def test_plan_to_dict_is_json_ready() -> None:
    plan = plan_index("ivf-sq8", 500_000, 384)
    assert plan.to_dict() == {
        "kind": "ivf-sq8",
        "requested": "ivf-sq8",
        "factory": "IVF1024,SQ8",
        "train_size": 65536,
        "nprobe": 128,
        "ef_search": None,
        "nlist": 1024,
        "ef_construction": None,
        "note": "",
    }
    assert IndexPlan(**plan.to_dict()) == plan


# -- build_store --------------------------------------------------------------------------------


@pytest.mark.parametrize("index_type", TYPES)
def test_each_type_builds_and_finds_the_neighbours(
    index_type: str, stores: dict[str, VectorStore], queries: np.ndarray, exact: np.ndarray
) -> None:
    store = stores[index_type]
    assert (store.ntotal, store.kind, store.is_trained) == (N, index_type, True)
    before = store.search_params()
    store.set_search_params(**WIDE[index_type])
    try:
        assert knn_recall(store.search(queries, 10)[1], exact) >= MIN_RECALL[index_type]
    finally:
        store.set_search_params(**before)


@pytest.mark.parametrize("index_type", ["flat", "hnsw", "ivf-flat"])
def test_row_i_is_vector_i(
    index_type: str, stores: dict[str, VectorStore], data: np.ndarray
) -> None:
    store = stores[index_type]
    rows = store.search(data[:300], 1)[1][:, 0]
    assert (rows == np.arange(300)).mean() >= (1.0 if index_type == "flat" else 0.99)


def test_plan_defaults_are_applied(stores: dict[str, VectorStore]) -> None:
    assert stores["flat"].search_params() == {}
    assert stores["hnsw"].search_params() == {"ef_search": plan_index("hnsw", N, DIM).ef_search}
    for kind in IVF:
        assert stores[kind].search_params() == {"nprobe": plan_index(kind, N, DIM).nprobe}


@pytest.mark.parametrize("index_type", IVF)
def test_training_sample_follows_the_seed(
    index_type: str, data: np.ndarray, queries: np.ndarray
) -> None:
    plan = plan_index(index_type, N, DIM)
    plan = IndexPlan(**{**plan.to_dict(), "train_size": 2000})
    one, two = (build_store(data, "cosine", plan, seed=7) for _ in range(2))
    other = build_store(data, "cosine", plan, seed=8)
    for store in (one, two, other):
        store.set_search_params(nprobe=2)  # few lists: results depend on the centroids
    first = one.search(queries, 10)
    np.testing.assert_array_equal(first[1], two.search(queries, 10)[1])
    np.testing.assert_array_equal(first[0], two.search(queries, 10)[0])
    assert not np.array_equal(one.reconstruct(range(50)), other.reconstruct(range(50))) or (
        index_type == "ivf-flat"  # IVF-Flat stores exact vectors whatever the centroids
    )


def test_build_reads_a_memmap_in_chunks(tmp_path: Path, data: np.ndarray) -> None:
    mapped = np.lib.format.open_memmap(tmp_path / "x.npy", "w+", np.float32, data.shape)
    mapped[:] = data
    mapped.flush()
    progress: list[tuple[int, int]] = []
    vectors = np.load(tmp_path / "x.npy", mmap_mode="r")
    plan = plan_index("ivf-sq8", N, DIM)
    store = build_store(vectors, "cosine", plan, chunk=2500, on_chunk=lambda *a: progress.append(a))
    assert progress == [(2500, N), (5000, N), (6000, N)]
    assert store.ntotal == N
    with pytest.raises(ValueError, match="chunk"):
        build_store(vectors, "cosine", plan, chunk=0)
    with pytest.raises(ValueError, match="shape"):
        build_store(data[0], "cosine", plan)


def test_ivf_on_a_tiny_collection_still_works() -> None:
    vectors = clustered(20, DIM, seed=3)
    for kind in IVF:
        plan = plan_index(kind, 20, DIM)
        store = build_store(vectors, "cosine", plan)
        assert store.ntotal == 20 and plan.nlist == 1
        assert store.search(vectors[:5], 1)[1][:, 0].tolist() == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("metric", ["cosine", "ip", "l2"])
def test_every_metric_builds(metric: str, data: np.ndarray, queries: np.ndarray) -> None:
    store = build_store(data[:2000], metric, plan_index("ivf-flat", 2000, DIM))
    store.set_search_params(nprobe=store.search_params()["nprobe"] * 4)
    exact = build_store(data[:2000], metric, plan_index("flat", 2000, DIM))
    assert knn_recall(store.search(queries, 10)[1], exact.search(queries, 10)[1]) >= 0.95


# -- cosine -------------------------------------------------------------------------------------


@pytest.mark.parametrize("index_type", TYPES)
def test_cosine_normalizes_vectors_and_queries(
    index_type: str, stores: dict[str, VectorStore], data: np.ndarray
) -> None:
    store = stores[index_type]
    norms = np.linalg.norm(store.reconstruct(range(100)), axis=1)
    np.testing.assert_allclose(norms, 1.0, atol=0.1 if index_type == "ivf-pq" else 0.01)
    scores, rows = store.search(data[:5], 3)
    scaled = store.search(data[:5] * 40.0, 3)
    np.testing.assert_array_equal(rows, scaled[1])
    np.testing.assert_allclose(scores, scaled[0], rtol=1e-5, atol=1e-5)
    assert scores.max() <= 1.01


@pytest.mark.parametrize("index_type", TYPES)
def test_reconstruct(index_type: str, stores: dict[str, VectorStore], data: np.ndarray) -> None:
    normalized = data[:100] / np.linalg.norm(data[:100], axis=1, keepdims=True)
    got = stores[index_type].reconstruct(range(100))
    tolerance = {"flat": 1e-6, "hnsw": 1e-6, "ivf-flat": 1e-6, "ivf-sq8": 0.02, "ivf-pq": 0.3}
    assert np.abs(got - normalized).max() <= tolerance[index_type]


# -- query-time knobs ---------------------------------------------------------------------------


def test_search_params_are_checked(stores: dict[str, VectorStore]) -> None:
    with pytest.raises(ConfigError, match="nprobe.*not to this hnsw index"):
        stores["hnsw"].set_search_params(nprobe=8)
    with pytest.raises(ConfigError, match="ef_search.*not to this ivf-pq index"):
        stores["ivf-pq"].set_search_params(ef_search=8)
    for knob in ("nprobe", "ef_search"):
        with pytest.raises(ConfigError, match=f"{knob}.*flat"):
            stores["flat"].set_search_params(**{knob: 8})
    with pytest.raises(ValueError, match="at least 1"):
        stores["ivf-flat"].set_search_params(nprobe=0)
    with pytest.raises(ValueError, match="at least 1"):
        stores["hnsw"].set_search_params(ef_search=0)
    stores["flat"].set_search_params()  # nothing asked, nothing to complain about


def test_search_params_change_the_search(data: np.ndarray) -> None:
    store = build_store(data, "cosine", plan_index("ivf-flat", N, DIM))
    store.set_search_params(nprobe=1)
    assert store.search_params() == {"nprobe": 1}
    narrow = store.search(data[:50], 10)[1]
    store.set_search_params(nprobe=store.search_params()["nprobe"] * 0 + 10_000)  # > nlist: all
    full = store.search(data[:50], 10)[1]
    truth = build_store(data, "cosine", plan_index("flat", N, DIM)).search(data[:50], 10)[1]
    assert knn_recall(full, truth) == 1.0 and knn_recall(narrow, truth) < 1.0


# -- empty_copy ---------------------------------------------------------------------------------


@pytest.mark.parametrize("index_type", TYPES)
def test_empty_copy_keeps_training(
    index_type: str, stores: dict[str, VectorStore], data: np.ndarray, queries: np.ndarray
) -> None:
    store = stores[index_type]
    copy = store.empty_copy()
    assert (copy.ntotal, copy.is_trained, copy.kind) == (0, True, index_type)
    assert copy.search_params() == store.search_params()
    assert store.ntotal == N  # the original keeps its vectors
    copy.add(data)
    if index_type == "hnsw":  # a rebuilt graph is a different graph; just as good
        assert knn_recall(copy.search(queries, 10)[1], store.search(queries, 10)[1]) >= 0.9
    else:
        np.testing.assert_array_equal(copy.search(queries, 10)[1], store.search(queries, 10)[1])


# -- write / read / mmap ------------------------------------------------------------------------


@pytest.mark.parametrize("mmap", [False, True], ids=["read", "mmap"])
@pytest.mark.parametrize("index_type", TYPES)
def test_write_read_round_trip(
    index_type: str,
    mmap: bool,
    stores: dict[str, VectorStore],
    queries: np.ndarray,
    tmp_path: Path,
) -> None:
    store = stores[index_type]
    size = store.save(tmp_path)
    loaded = VectorStore.load(tmp_path, "cosine", mmap=mmap, expected_bytes=size)
    assert loaded.mapped is mmap  # FAISS 1.15 maps every one of these types
    assert (loaded.kind, loaded.ntotal, loaded.search_params()) == (
        index_type,
        N,
        store.search_params(),
    )
    for got, want in zip(loaded.search(queries, 10), store.search(queries, 10)):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(
        loaded.reconstruct([0, 5, N - 1]), store.reconstruct([0, 5, N - 1])
    )
    copy = loaded.empty_copy()  # from a mapped index too
    assert copy.ntotal == 0 and copy.is_trained and not copy.mapped
    loaded.add(queries[:3])  # a mapped index is copied into memory first
    assert loaded.ntotal == N + 3 and not loaded.mapped


def test_knn_recall() -> None:
    exact = np.array([[1, 2, 3], [4, 5, 6]])
    assert knn_recall(exact, exact) == 1.0
    assert knn_recall(np.array([[3, 9, -1], [6, 5, 4]]), exact) == pytest.approx(4 / 6)
    with pytest.raises(ValueError, match="shapes"):
        knn_recall(exact[:1], exact)
