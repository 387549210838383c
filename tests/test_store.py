"""VectorStore against a numpy oracle, PassageTable round trips; corrupt files are typed errors."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from kosearch.errors import ConfigError, CorpusError, IndexFormatError
from kosearch.storage.layout import PASSAGES_FILE, VECTORS_FILE
from kosearch.storage.passages import PassageTable
from kosearch.storage.vectors import VectorStore
from kosearch.types import Metric, Passage

METRICS = ["cosine", "ip", "l2"]


def oracle_scores(metric: str, data: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Brute-force scores in float64, higher is better."""
    x, q = data.astype(np.float64), queries.astype(np.float64)
    if metric == "cosine":
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
        q = q / np.linalg.norm(q, axis=1, keepdims=True)
    if metric == "l2":
        return -((q[:, None, :] - x[None, :, :]) ** 2).sum(axis=2)
    return q @ x.T


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1338)
    vectors = rng.random((500, 32), dtype=np.float32) - 0.3
    return vectors, rng.random((20, 32), dtype=np.float32) - 0.3


@pytest.mark.parametrize("metric", METRICS)
def test_flat_matches_numpy_oracle(metric: str, data: tuple[np.ndarray, np.ndarray]) -> None:
    vectors, queries = data
    store = VectorStore.create(32, metric)
    store.add(vectors)
    scores, rows = store.search(queries, k=10)
    assert scores.shape == rows.shape == (20, 10)
    assert scores.dtype == np.float32 and rows.dtype == np.int64
    truth = oracle_scores(metric, vectors, queries)
    best = -np.sort(-truth, axis=1)[:, :10]
    np.testing.assert_allclose(scores, best, rtol=1e-5, atol=1e-5)
    found = np.take_along_axis(truth, rows, axis=1)
    np.testing.assert_allclose(found, scores, rtol=1e-5, atol=1e-5)
    expected_rows = np.argsort(-truth, axis=1, kind="stable")[:, :10]
    gaps = np.abs(np.diff(best, axis=1)) > 1e-4  # where no near-tie makes the order ambiguous
    unambiguous = np.concatenate([gaps[:, :1], gaps[:, 1:] & gaps[:, :-1], gaps[:, -1:]], axis=1)
    assert unambiguous.mean() > 0.9
    assert (rows[unambiguous] == expected_rows[unambiguous]).all()
    assert (np.diff(scores, axis=1) <= 0).all()
    assert all(len(set(r)) == 10 for r in rows.tolist())


def test_stored_unit_vector_ranks_itself_first(data: tuple[np.ndarray, np.ndarray]) -> None:
    vectors, _ = data
    store = VectorStore.create(32, "cosine")
    store.add(vectors)
    scores, rows = store.search(vectors, k=1)
    assert rows[:, 0].tolist() == list(range(len(vectors)))
    np.testing.assert_allclose(scores[:, 0], 1.0, atol=1e-5)


@pytest.mark.parametrize("metric", METRICS)
def test_k_larger_than_ntotal(metric: str) -> None:
    store = VectorStore.create(3, metric)
    store.add(np.eye(3))
    scores, rows = store.search(np.ones((2, 3)), k=10)
    assert scores.shape == rows.shape == (2, 3)
    assert sorted(rows[0].tolist()) == [0, 1, 2]


@pytest.mark.parametrize("metric", METRICS)
def test_empty_store_and_empty_queries(metric: str) -> None:
    store = VectorStore.create(4, metric)
    scores, rows = store.search(np.ones((3, 4)), k=5)
    assert scores.shape == rows.shape == (3, 0)
    store.add(np.ones((2, 4)))
    assert store.search(np.zeros((0, 4)), k=5)[1].shape == (0, 2)


@pytest.mark.parametrize("metric", METRICS)
def test_two_adds_equal_one(metric: str, data: tuple[np.ndarray, np.ndarray]) -> None:
    vectors, queries = data
    once, twice = VectorStore.create(32, metric), VectorStore.create(32, metric)
    once.add(vectors)
    twice.add(vectors[:123])
    twice.add(vectors[123:])
    assert twice.ntotal == 500
    for a, b in zip(once.search(queries, 15), twice.search(queries, 15)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("metric", METRICS)
def test_callers_arrays_are_not_mutated(metric: str, data: tuple[np.ndarray, np.ndarray]) -> None:
    vectors, queries = data[0].copy(), data[1].copy()
    store = VectorStore.create(32, metric)
    store.add(vectors)
    store.search(queries, 3)
    np.testing.assert_array_equal(vectors, data[0])
    np.testing.assert_array_equal(queries, data[1])


def test_float64_and_lists_are_accepted(data: tuple[np.ndarray, np.ndarray]) -> None:
    vectors, queries = data
    a, b = VectorStore.create(32, "ip"), VectorStore.create(32, "ip")
    a.add(vectors)
    b.add(vectors.astype(np.float64))
    wide = queries.astype(np.float64)
    np.testing.assert_array_equal(a.search(queries, 5)[1], b.search(wide, 5)[1])
    np.testing.assert_array_equal(a.search(queries, 5)[1], b.search(queries.tolist(), 5)[1])


def test_invalid_input_is_a_programmer_error() -> None:
    store = VectorStore.create(4, "cosine")
    with pytest.raises(ValueError, match=r"\(n, 4\)"):
        store.add(np.ones((2, 5)))
    with pytest.raises(ValueError, match=r"\(n, 4\)"):
        store.add(np.ones(4))
    with pytest.raises(ValueError, match="non-finite"):
        store.add(np.array([[1.0, np.nan, 0.0, 0.0]]))
    with pytest.raises(ValueError, match="non-finite"):
        store.add(np.array([[1e300, 0.0, 0.0, 0.0]]))  # infinite in float32
    store.add(np.ones((1, 4)))
    with pytest.raises(ValueError, match="k must be positive"):
        store.search(np.ones((1, 4)), k=0)
    with pytest.raises(ValueError):
        store.search(np.ones((1, 3)), k=1)
    assert store.ntotal == 1
    with pytest.raises(ValueError):
        VectorStore.create(0, "cosine")
    with pytest.raises(ConfigError, match="cosine, ip, l2"):
        VectorStore.create(4, "dot")
    with pytest.raises(ConfigError, match="Nonsense"):
        VectorStore.create(4, "cosine", "Nonsense")


def duplicated(seed: int, copies: int) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """120 vectors of which ``copies`` (at random rows) equal the returned query."""
    rng = np.random.default_rng(seed)
    far = rng.random((60, 8), dtype=np.float32) * 0.1  # all far from the query
    vectors = np.repeat(far, 2, axis=0)
    same = np.full(8, 2.0, np.float32)
    dup_rows = sorted(rng.choice(len(vectors), size=copies, replace=False).tolist())
    vectors[dup_rows] = same
    return vectors, same, dup_rows


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize(("copies", "k", "seed"), [(4, 2, 5), (40, 3, 5), (40, 39, 5), (40, 3, 0)])
def test_ties_come_in_ascending_row_order(metric: str, copies: int, k: int, seed: int) -> None:
    vectors, same, dup_rows = duplicated(seed, copies)
    store = VectorStore.create(8, metric)
    store.add(vectors)
    scores, rows = store.search(np.stack([same, same]), k=k)
    assert rows[0].tolist() == dup_rows[:k] == rows[1].tolist()
    assert len(set(scores[0].tolist())) == 1


class LastRowsFirst:
    """A brute-force stand-in for an ANN index that keeps the *last* rows among equal scores."""

    def __init__(self, vectors: np.ndarray) -> None:
        self.vectors, self.d, self.ntotal = vectors, vectors.shape[1], len(vectors)
        self.is_trained, self.metric_type = True, 0  # faiss.METRIC_INNER_PRODUCT
        self.depths: list[int] = []

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        self.depths.append(k)
        scores = queries @ self.vectors.T
        later_first = np.broadcast_to(-np.arange(self.ntotal), scores.shape)
        order = np.lexsort((later_first, -scores), axis=-1)[:, :k]
        return np.take_along_axis(scores, order, axis=1), order


def test_ties_cut_by_k_are_searched_deeper_for_the_lowest_rows() -> None:
    vectors, same, dup_rows = duplicated(3, 40)
    index = LastRowsFirst(vectors)
    store = VectorStore(index, "ip", "fake")
    queries = np.stack([same, -same])  # the second one ties pairs of repeated far vectors
    scores, rows = store.search(queries, k=3)
    assert rows[0].tolist() == dup_rows[:3]
    truth = queries @ vectors.T
    lowest_rows_first = np.lexsort((np.broadcast_to(np.arange(120), truth.shape), -truth), axis=-1)
    np.testing.assert_array_equal(rows, lowest_rows_first[:, :3])
    assert index.depths[0] == 4 and index.depths[-1] > 40  # deeper until the tie ends


def test_zero_vector_under_cosine_scores_zero() -> None:
    store = VectorStore.create(3, "cosine")
    store.add(np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]]))
    scores, rows = store.search(np.array([[2.0, 0.0, 0.0], [0.0, 0.0, 0.0]]), k=2)
    assert rows.tolist() == [[1, 0], [0, 1]]
    assert scores.tolist() == [[1.0, 0.0], [0.0, 0.0]]
    np.testing.assert_array_equal(store.reconstruct([0, 1]), [[0, 0, 0], [1, 0, 0]])


def test_l2_scores_are_negative_squared_distances() -> None:
    store = VectorStore.create(2, "l2")
    store.add(np.array([[0.0, 0.0], [3.0, 4.0]]))
    scores, rows = store.search(np.array([[0.0, 0.0]]), k=2)
    assert rows.tolist() == [[0, 1]]
    assert scores.tolist() == [[0.0, -25.0]]
    assert not np.signbit(scores[0, 0])


def test_reconstruct(data: tuple[np.ndarray, np.ndarray]) -> None:
    vectors, _ = data
    store = VectorStore.create(32, "ip")
    store.add(vectors)
    np.testing.assert_array_equal(store.reconstruct([7, 3, 7]), vectors[[7, 3, 7]])
    assert store.reconstruct([]).shape == (0, 32)
    with pytest.raises(IndexError):
        store.reconstruct([500])


def test_ivf_needs_training_then_works(data: tuple[np.ndarray, np.ndarray]) -> None:
    vectors, queries = data
    store = VectorStore.create(32, "l2", "IVF4,Flat")
    assert not store.is_trained
    with pytest.raises(ValueError, match="train"):
        store.add(vectors)
    store.train(vectors)
    store.add(vectors)
    np.testing.assert_array_equal(store.reconstruct([1, 2]), vectors[[1, 2]])
    scores, rows = store.search(queries, 5)
    assert rows.shape == (20, 5) and (np.diff(scores, axis=1) <= 0).all()


# ---------------------------------------------------------------------------- on disk
@settings(max_examples=40, deadline=None)
@given(
    metric=st.sampled_from(METRICS),
    factory=st.sampled_from(["Flat", "HNSW8"]),
    mmap=st.booleans(),
    vectors=st.integers(1, 12).flatmap(
        lambda dim: arrays(
            np.float32,
            st.tuples(st.integers(0, 30), st.just(dim)),
            elements=st.floats(-4, 4, width=32),
        )
    ),
)
def test_write_read_round_trip(metric: str, factory: str, mmap: bool, vectors: np.ndarray) -> None:
    store = VectorStore.create(vectors.shape[1], metric, factory)
    store.add(vectors)
    queries = vectors[:5] + 0.5
    with tempfile.TemporaryDirectory() as tmp:
        size = store.save(Path(tmp))
        assert size == (Path(tmp) / VECTORS_FILE).stat().st_size
        loaded = VectorStore.load(Path(tmp), metric, mmap=mmap, expected_bytes=size)
        assert (loaded.dim, loaded.ntotal, loaded.metric, loaded.factory) == (
            store.dim, store.ntotal, Metric(metric), factory
        )
        every = range(store.ntotal)
        np.testing.assert_array_equal(loaded.reconstruct(every), store.reconstruct(every))
        if store.ntotal:
            for a, b in zip(store.search(queries, 4), loaded.search(queries, 4)):
                np.testing.assert_array_equal(a, b)
        extra = np.ones((2, vectors.shape[1]), np.float32)
        loaded.add(extra)  # a memory-mapped index is copied before it is changed
        assert loaded.ntotal == store.ntotal + 2 and not loaded.mapped
        store.add(extra)
        every = range(store.ntotal)
        np.testing.assert_array_equal(loaded.reconstruct(every), store.reconstruct(every))


def test_read_errors_are_index_format_errors(tmp_path: Path) -> None:
    with pytest.raises(IndexFormatError, match=r"vectors\.faiss is missing"):
        VectorStore.load(tmp_path, "cosine")
    store = VectorStore.create(8, "cosine")
    store.add(np.random.default_rng(0).random((50, 8)))
    size = store.save(tmp_path)
    with pytest.raises(IndexFormatError, match=r"inner-product \(cosine, ip\) metric, not l2"):
        VectorStore.load(tmp_path, "l2")
    path = tmp_path / VECTORS_FILE
    good = path.read_bytes()
    path.write_bytes(good[: size // 2])
    with pytest.raises(IndexFormatError, match="should be"):
        VectorStore.load(tmp_path, "cosine", mmap=True, expected_bytes=size)
    with pytest.raises(IndexFormatError, match=r"vectors\.faiss"):
        VectorStore.load(tmp_path, "cosine")
    path.write_bytes(b"\x8b\x00garbage bytes, not FAISS" * 20)
    for mmap in (False, True):
        with pytest.raises(IndexFormatError, match="not a readable FAISS index") as caught:
            VectorStore.load(tmp_path, "cosine", mmap=mmap)
        assert "\n" not in str(caught.value)


# ---------------------------------------------------------------------------- passages
def make_passages(n: int, start: int = 0) -> tuple[list[Passage], list[dict[str, Any]]]:
    passages = [
        Passage(
            f"문서-{i // 3}", i % 3, f"{i}번째 구절입니다. 서울의 날씨는 맑음.", 10 * i, 10 * i + 9,
            title=f"제목 {i}",
        )
        for i in range(start, start + n)
    ]
    metas = [
        {
            "출처": "위키", "n": i, "x": i / 7, "ok": i % 2 == 0, "none": None,
            "nested": {"태그": ["가", "나"], "big": 2**53},
        }
        for i in range(start, start + n)
    ]
    return passages, metas


def expected_record(passage: Passage, meta: dict[str, Any]) -> dict[str, Any]:
    return {
        "doc_id": passage.doc_id, "chunk": passage.chunk, "text": passage.text,
        "title": passage.title, "start": passage.start, "end": passage.end, "meta": meta,
        "hash": "",
    }


def test_writer_round_trips_records_in_several_appends(tmp_path: Path) -> None:
    sizes = [0, 5, 9000, 1, 8200]
    everything: list[dict[str, Any]] = []
    with PassageTable.writer(tmp_path) as writer:
        offset = 0
        for n in sizes:
            passages, metas = make_passages(n, offset)
            writer.append(passages, metas)
            everything += [expected_record(p, m) for p, m in zip(passages, metas)]
            offset += n
        assert writer.close() == sum(sizes)
    meta = pq.ParquetFile(tmp_path / PASSAGES_FILE).metadata
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [8192, 8192, 822]
    assert meta.row_group(0).column(0).compression == "ZSTD"
    table = PassageTable.load(tmp_path)
    assert len(table) == len(everything)
    assert table.rows(range(len(everything))) == everything
    picks = [17000, 3, 3, 0, 9005]
    assert table.rows(picks) == [everything[i] for i in picks]
    assert table.doc_ids()[:4] == ["문서-0", "문서-0", "문서-0", "문서-1"]
    assert table.column("chunk").to_pylist()[:4] == [0, 1, 2, 0]
    raw = table.column("meta")[0].as_py()
    assert "위키" in raw and json.loads(raw) == everything[0]["meta"]


def test_empty_writer_gives_an_empty_table(tmp_path: Path) -> None:
    with PassageTable.writer(tmp_path):
        pass
    table = PassageTable.load(tmp_path)
    assert len(table) == 0 and table.rows([]) == [] and table.doc_ids() == []


def test_writer_exception_removes_the_partial_file(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), PassageTable.writer(tmp_path) as writer:
        writer.append(*make_passages(3))
        raise RuntimeError("stop")
    assert not (tmp_path / PASSAGES_FILE).exists()


def test_writer_rejects_bad_input(tmp_path: Path) -> None:
    passages, metas = make_passages(2)
    with PassageTable.writer(tmp_path) as writer:
        with pytest.raises(ValueError, match="2 passages but 1 metas"):
            writer.append(passages, metas[:1])
        with pytest.raises(CorpusError, match="문서-0"):
            writer.append(passages[:1], [{"when": object()}])
    with pytest.raises(ValueError, match="closed"):
        writer.append(passages, metas)


def test_in_memory_table_select_concat_write(tmp_path: Path) -> None:
    passages, metas = make_passages(6)
    head = PassageTable.from_passages(passages[:4], metas[:4])
    table = head.concat(PassageTable.from_passages(passages[4:], metas[4:]))
    kept = table.select([5, 0, 2])
    assert kept.save(tmp_path) == 3
    again = PassageTable.load(tmp_path)
    assert again.rows([0, 1, 2]) == [expected_record(passages[i], metas[i]) for i in (5, 0, 2)]
    with pytest.raises(IndexError):
        again.rows([3])
    with pytest.raises(IndexError):
        again.rows([-1])
    with pytest.raises(ValueError, match="unknown column"):
        again.column("nope")


def test_passage_read_errors_are_index_format_errors(tmp_path: Path) -> None:
    with pytest.raises(IndexFormatError, match=r"passages\.parquet is missing"):
        PassageTable.load(tmp_path)
    PassageTable.from_passages(*make_passages(50)).save(tmp_path)
    path = tmp_path / PASSAGES_FILE
    good = path.read_bytes()
    for cut in (0, 3, len(good) // 2, len(good) - 5):
        path.write_bytes(good[:cut])
        with pytest.raises(IndexFormatError, match=r"passages\.parquet") as caught:
            PassageTable.load(tmp_path)
        assert "\n" not in str(caught.value)
    path.write_bytes(b"PAR1" + b"\x00garbage" * 50 + b"PAR1")
    with pytest.raises(IndexFormatError, match="not a readable Parquet file"):
        PassageTable.load(tmp_path)
    pq.write_table(pa.table({"doc_id": ["a"], "text": ["t"]}), path)
    with pytest.raises(IndexFormatError, match="chunk, title, start, end, meta"):
        PassageTable.load(tmp_path)
    columns = {
        "doc_id": ["a"], "chunk": ["x"], "text": ["t"], "title": [""],
        "start": [0], "end": [1], "meta": ["{}"],
    }
    pq.write_table(pa.table(columns), path)
    with pytest.raises(IndexFormatError, match="wrong type"):
        PassageTable.load(tmp_path)
    pq.write_table(pa.table({**columns, "chunk": [0], "meta": ["{not json"]}), path)
    with pytest.raises(IndexFormatError, match="row 0"):
        PassageTable.load(tmp_path).rows([0])


def test_content_hashes_round_trip_and_old_tables_read_as_unknown(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    passages, metas = make_passages(3)
    with PassageTable.writer(tmp_path) as writer:
        writer.append(passages, metas, ["h0", "h1", "h2"])
        with pytest.raises(ValueError, match="hashes"):
            writer.append(passages, metas, ["h0"])
    assert PassageTable.load(tmp_path).column("hash").to_pylist() == ["h0", "h1", "h2"]
    table = pq.read_table(tmp_path / "passages.parquet").drop_columns(["hash"])
    pq.write_table(table, tmp_path / "passages.parquet")
    assert PassageTable.load(tmp_path).column("hash").to_pylist() == ["", "", ""]


@pytest.mark.parametrize("metric", ["cosine", "ip", "l2"])
def test_fill_equals_add_and_checks_the_count(metric: str) -> None:
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(50, 8)).astype(np.float32)
    added = VectorStore.create(8, metric)
    added.add(vectors)
    filled = VectorStore.create(8, metric)
    filled.fill([vectors[:20], vectors[20:45], vectors[45:]], 50)
    assert filled.ntotal == 50
    assert np.array_equal(filled.reconstruct(range(50)), added.reconstruct(range(50)))
    queries = rng.normal(size=(3, 8)).astype(np.float32)
    assert np.array_equal(filled.search(queries, 5)[1], added.search(queries, 5)[1])
    with pytest.raises(ValueError, match="expected 50 vectors, got 20"):
        VectorStore.create(8, metric).fill([vectors[:20]], 50)
    short = VectorStore.create(8, metric)
    with pytest.raises(ValueError, match="got more"):
        short.fill([vectors], 10)
    assert short.ntotal == 0
