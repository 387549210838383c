"""Metadata filters: the language, typed columns, filtered FAISS and BM25 search, front ends.

The filtered dense search is checked against a numpy oracle (brute force over the rows a
plain-Python reading of the filter allows), on flat, HNSW and IVF stores.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from fakes import HashEncoder
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kosearch import Document, FilterError
from kosearch.cli import cli
from kosearch.index import Index
from kosearch.retrieval.filters import evaluate
from kosearch.storage import selection
from kosearch.storage.selection import Subset, search_subset
from kosearch.storage.vectors import VectorStore

CATEGORIES = ["법률", "경제", "생활", "과학"]
WORDS = ["서울", "부산", "김치", "법원", "계약", "주식", "날씨", "우주", "행성", "시장"]


def make_docs(n: int, seed: int = 0) -> list[Document]:
    rng = np.random.default_rng(seed)
    docs = []
    for i in range(n):
        text = " ".join(rng.choice(WORDS, size=6)) + f" 문서{i}"
        meta = {"category": CATEGORIES[i % 4], "year": 2000 + i % 25,
                "tags": [f"t{j}" for j in range(3) if (i >> j) & 1],
                "score": float(i % 7) / 2, "draft": i % 3 == 0, "date": f"2024-01-{1 + i % 28:02d}"}
        docs.append(Document(f"d{i:03d}", text, "", meta))
    return docs


def reference(spec: dict[str, Any], doc_id: str, meta: dict[str, Any]) -> bool:
    """A plain-Python reading of the filter language (the oracle)."""
    def field_ok(name: str, cond: Any) -> bool:
        value = doc_id if name == "id" else meta.get(name)
        ops = cond if isinstance(cond, dict) else ({"$in": cond} if isinstance(cond, list)
                                                    else {"$eq": cond})
        return all(op_ok(value, op, arg) for op, arg in ops.items())

    def op_ok(value: Any, op: str, arg: Any) -> bool:
        values = value if isinstance(value, list) else [value]
        if op == "$eq":
            return arg in values
        if op in ("$ne", "$neq"):
            return arg not in values
        if op == "$in":
            return any(v in arg for v in values)
        if op == "$nin":
            return not any(v in arg for v in values)
        if op == "$contains":
            return isinstance(value, list) and arg in value
        if op == "$exists":
            return (value is not None) == arg
        if value is None:
            return False
        return {"$gt": value > arg, "$gte": value >= arg, "$lt": value < arg,
                "$lte": value <= arg}[op]

    results = []
    for key, cond in spec.items():
        if key == "$and":
            results.append(all(reference(s, doc_id, meta) for s in cond))
        elif key == "$or":
            results.append(any(reference(s, doc_id, meta) for s in cond))
        elif key == "$not":
            results.append(not reference(cond, doc_id, meta))
        else:
            results.append(field_ok(key, cond))
    return all(results)


@pytest.fixture(scope="module")
def docs() -> list[Document]:
    return make_docs(120)


@pytest.fixture(scope="module")
def index(docs: list[Document]) -> Index:
    return Index.build(docs, encoder=HashEncoder(dim=32))


# ------------------------------------------------------------------------------ the language

LEAF = st.one_of(
    st.builds(lambda c: {"category": c}, st.sampled_from(CATEGORIES + ["없음"])),
    st.builds(lambda op, y: {"year": {op: y}},
              st.sampled_from(["$eq", "$ne", "$neq", "$gt", "$gte", "$lt", "$lte"]),
              st.integers(1995, 2030)),
    st.builds(lambda vs: {"tags": {"$in": vs}}, st.lists(st.sampled_from(["t0", "t1", "t2"]))),
    st.builds(lambda t: {"tags": {"$contains": t}}, st.sampled_from(["t0", "t1", "t2"])),
    st.builds(lambda vs: {"category": {"$nin": vs}}, st.lists(st.sampled_from(CATEGORIES))),
    st.builds(lambda b: {"draft": b}, st.booleans()),
    st.builds(lambda x: {"score": {"$lte": x}}, st.floats(0, 3.5)),
    st.builds(lambda d: {"date": {"$gte": f"2024-01-{d:02d}"}}, st.integers(1, 28)),
    st.builds(lambda ids: {"id": {"$in": ids}},
              st.lists(st.integers(0, 130).map(lambda i: f"d{i:03d}"), max_size=8)),
)
FILTERS = st.recursive(LEAF, lambda inner: st.one_of(
    st.builds(lambda xs: {"$and": xs}, st.lists(inner, min_size=1, max_size=3)),
    st.builds(lambda xs: {"$or": xs}, st.lists(inner, min_size=1, max_size=3)),
    st.builds(lambda x: {"$not": x}, inner),
), max_leaves=5)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=FILTERS)
def test_evaluation_matches_a_plain_python_reading(index: Index, docs: list[Document],
                                                   spec: dict[str, Any]) -> None:
    table = index.passages
    mask = evaluate(spec, table.filterable(), table.fields())
    metas = {d.id: d.meta for d in docs}
    expected = [reference(spec, doc_id, metas[doc_id]) for doc_id in table.doc_ids()]
    assert mask.tolist() == expected


@pytest.mark.parametrize(("spec", "message"), [
    ({"colour": "red"}, "unknown filter field 'colour'; the filterable fields are: id, category"),
    ({"year": {"$gte": "2020"}}, "'year' holds int values, so $gte needs a number, got \"2020\""),
    ({"year": {"$regex": "20"}}, "unknown filter operator '$regex' on field 'year'"),
    ({"$nor": []}, "unknown filter operator '$nor'"),
    ({"category": {"$contains": "법"}}, "$contains applies to list fields; 'category' is string"),
    ({"tags": {"$in": "t0"}}, "$in on 'tags' takes a list of values"),
    ({"date": {"$gt": "yesterday"}}, "needs a date string like \"2024-01-31\""),
    ({"draft": "yes"}, "'draft' holds bool values, so $eq needs true or false"),
    ({"$or": {}}, "$or takes a non-empty list of filters"),
    (["category"], "a filter must be a JSON object"),
])
def test_bad_filters_are_errors_that_say_what_is_wrong(index: Index, spec: Any,
                                                       message: str) -> None:
    with pytest.raises(FilterError) as caught:
        index.search("서울", k=3, mode="lexical", filter=spec)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


# ------------------------------------------------------------------------------ typed columns

@pytest.mark.parametrize(("values", "expected"), [
    ([1, 2.5], {"type": "float"}),
    ([1, None, 3], {"type": "int"}),
    (["2024-01-01", "2024-02-03T10:00:00Z"], {"type": "timestamp"}),
    (["2024-01-01", "soon"], {"type": "string"}),
    ([True, False], {"type": "bool"}),
    ([["a"], []], {"type": "list<string>"}),
    ([1, "A1"], {"type": "mixed", "kinds": ["int", "string"]}),
    ([{"a": 1}, [1, 2]], {"type": "mixed", "kinds": ["list", "object"]}),
])
def test_field_types_are_inferred_over_the_corpus(tmp_path: Path, values: list[Any],
                                                  expected: dict[str, Any]) -> None:
    docs = [Document(f"d{i}", f"문서 {i} 내용", "", {"f": v}) for i, v in enumerate(values)]
    index = Index.build(docs, tmp_path / "idx", encoder=HashEncoder(dim=16))
    assert index.manifest.metadata == {"f": expected}
    assert Index.load(tmp_path / "idx", encoder=HashEncoder(dim=16)).passages.fields() == {
        "f": expected}
    hits = index.search("문서", k=10, mode="lexical", passages=True)
    assert {h.id: h.meta for h in hits} == {d.id: d.meta for d in docs}  # meta as given


def test_typed_columns_are_plain_parquet_and_mixed_fields_compare_as_text(tmp_path: Path) -> None:
    docs = [Document("a", "가나다", "", {"year": 2020, "code": 7, "tags": ["x"]}),
            Document("b", "가나다", "", {"year": 2021, "code": "K7"})]
    index = Index.build(docs, tmp_path / "idx", encoder=HashEncoder(dim=16))
    table = pq.read_table(tmp_path / "idx" / "passages.parquet")
    assert str(table.schema.field("meta.year").type) == "int64"
    assert str(table.schema.field("meta.tags").type) == "list<element: string>"
    assert table.column("meta.code").to_pylist() == ["7", "K7"]
    assert [h.id for h in index.search("가나다", k=5, filter={"code": 7})] == ["a"]
    assert [h.id for h in index.search("가나다", k=5, filter={"code": "K7"})] == ["b"]


def test_the_passage_table_reads_in_pandas_polars_and_duckdb(tmp_path: Path) -> None:
    import duckdb
    import pandas as pd
    import polars as pl

    docs = [Document(f"d{i}", "서울 날씨", "", {"year": 2018 + i, "tags": ["a"] * (i % 2),
                                                "day": f"2024-01-0{i + 1}"}) for i in range(4)]
    Index.build(docs, tmp_path / "idx", encoder=HashEncoder(dim=16))
    path = tmp_path / "idx" / "passages.parquet"
    assert pd.read_parquet(path)["meta.year"].tolist() == [2018, 2019, 2020, 2021]
    assert str(pl.read_parquet(path).schema["meta.day"]) == "Date"
    rows = duckdb.connect().execute(
        f"SELECT doc_id FROM '{path}' WHERE \"meta.year\" >= 2020 ORDER BY doc_id").fetchall()
    assert rows == [("d2",), ("d3",)]


def test_updates_retype_fields_and_add_new_ones(tmp_path: Path) -> None:
    path = tmp_path / "idx"
    index = Index.build([Document("a", "서울 날씨", "", {"n": 1}),
                         Document("b", "부산 날씨", "", {"n": 2})], path,
                        encoder=HashEncoder(dim=16))
    assert index.manifest.metadata == {"n": {"type": "int"}}
    index.upsert([Document("c", "대구 날씨", "", {"n": "three", "lang": "ko"})])
    assert index.manifest.metadata == {"n": {"type": "mixed", "kinds": ["int", "string"]},
                                       "lang": {"type": "string"}}
    index.upsert([Document("c", "대구 날씨", "", {"n": 3, "lang": "ko"})])  # meta-only change
    reloaded = Index.load(path, encoder=HashEncoder(dim=16))
    assert reloaded.manifest.metadata == {"n": {"type": "int"}, "lang": {"type": "string"}}
    hits = reloaded.search("날씨", k=5, filter={"n": {"$gte": 2}})
    assert sorted(h.id for h in hits) == ["b", "c"]


def test_an_index_from_0_1_0_filters_on_its_json_column(tmp_path: Path) -> None:
    old = tmp_path / "old"
    shutil.copytree(Path(__file__).parent / "data" / "index-0.1.0", old)
    index = Index.load(old, encoder=HashEncoder(dim=32, max_tokens=64))
    assert index.manifest.metadata == {}
    assert index.passages.fields()["category"] == {"type": "string"}
    hits = index.search("생활", k=50, filter={"category": "생활"})
    assert hits and all(h.meta["category"] == "생활" for h in hits)
    unfiltered = index.search_batch(["생활 정보"], 5)  # still identical without a filter
    assert unfiltered == index.search_batch(["생활 정보"], 5, filter=None)


# ------------------------------------------------------------------------------ dense, oracle

def _store(kind: str, vectors: np.ndarray) -> VectorStore:
    factory = {"flat": "Flat", "hnsw": "HNSW8", "ivf": "IVF8,Flat"}[kind]
    store = VectorStore.create(vectors.shape[1], "cosine", factory)
    store.train(vectors)
    store.add(vectors)
    if kind == "ivf":
        store.set_search_params(nprobe=8)  # all lists: exact, as the oracle
    return store


def _oracle(store: VectorStore, xb: np.ndarray, xq: np.ndarray, mask: np.ndarray,
            k: int) -> np.ndarray:
    xb = store.prepare(xb)
    scores = store.prepare(xq) @ xb.T
    allowed = np.flatnonzero(mask)
    out = []
    for row in scores:
        s = row[allowed]
        order = np.lexsort((allowed, -s))[:k]
        out.append(allowed[order])
    return np.array(out).reshape(len(xq), -1)


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf"])
@settings(max_examples=25, deadline=None, suppress_health_check=[
    HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), fraction=st.sampled_from([0.0, 0.01, 0.1, 0.5, 1.0]),
       k=st.integers(1, 30), ties=st.booleans())
def test_filtered_dense_search_is_the_top_k_of_the_allowed_rows(
    kind: str, seed: int, fraction: float, k: int, ties: bool
) -> None:
    rng = np.random.default_rng(seed)
    xb = rng.standard_normal((400, 8)).astype(np.float32)
    if ties:  # duplicated vectors: equal scores must come by ascending row
        xb[200:] = xb[:200]
    xq = rng.standard_normal((3, 8)).astype(np.float32)
    mask = rng.random(400) < fraction
    store = _store(kind, xb)
    scores, rows = search_subset(store, xq, k, Subset.of(mask))
    expected = _oracle(store, xb, xq, mask, k)
    assert rows.shape == expected.shape == (3, min(k, int(mask.sum())))
    np.testing.assert_array_equal(rows, expected)
    assert np.all(np.diff(scores, axis=1) <= 1e-6)


def test_hnsw_above_the_exact_threshold_walks_the_graph_and_still_returns_k(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rng = np.random.default_rng(3)
    xb = rng.standard_normal((2000, 16)).astype(np.float32)
    xq = rng.standard_normal((20, 16)).astype(np.float32)
    store = _store("hnsw", xb)
    monkeypatch.setattr(selection, "HNSW_EXACT_MAX", 0)  # force the graph walk
    for fraction in (0.002, 0.05, 0.5):
        mask = rng.random(2000) < fraction
        _, rows = search_subset(store, xq, 10, Subset.of(mask))
        expected = _oracle(store, xb, xq, mask, 10)
        assert rows.shape == expected.shape  # k whenever k are allowed (exact fallback)
        assert mask[rows].all()
        recall = np.mean([len(set(a) & set(b)) / len(b) for a, b in zip(rows, expected)])
        assert recall >= 0.9, (fraction, recall)


def test_ivf_with_few_lists_probed_still_returns_k_allowed_rows() -> None:
    rng = np.random.default_rng(5)
    xb = rng.standard_normal((2000, 16)).astype(np.float32)
    store = VectorStore.create(16, "l2", "IVF32,Flat")
    store.train(xb)
    store.add(xb)
    store.set_search_params(nprobe=1)
    mask = np.zeros(2000, bool)
    mask[rng.choice(2000, 12, replace=False)] = True
    _, rows = search_subset(store, rng.standard_normal((5, 16)), 10, Subset.of(mask))
    assert rows.shape == (5, 10) and mask[rows].all()


# ------------------------------------------------------------------------------ k guarantee

@pytest.mark.parametrize("mode", ["dense", "hybrid"])
@pytest.mark.parametrize("passages", [False, True])
def test_filtered_search_returns_k_whenever_k_match(index: Index, docs: list[Document],
                                                    mode: str, passages: bool) -> None:
    for spec in ({"category": "과학", "year": {"$lt": 2010}}, {"tags": {"$contains": "t2"}},
                 {"id": {"$in": ["d007", "d100", "d119"]}}, {"year": 2024}):
        matching = {d.id for d in docs if reference(spec, d.id, d.meta)}
        for k in (1, 3, 10, 40):
            hits = index.search("서울 김치 계약", k=k, mode=mode, passages=passages, filter=spec)
            assert len(hits) == min(k, len(matching)), (spec, k)
            assert {h.id for h in hits} <= matching


def test_lexical_scores_only_allowed_passages(index: Index, docs: list[Document]) -> None:
    spec = {"category": "법률"}
    hits = index.search("서울", k=200, mode="lexical", filter=spec)
    with_word = {d.id for d in docs if "서울" in d.text and d.meta["category"] == "법률"}
    assert {h.id for h in hits} == with_word


def test_batches_take_one_filter_or_one_per_query(index: Index) -> None:
    queries = ["서울 날씨", "우주 행성", "주식 시장"]
    specs = [{"category": "법률"}, None, {"year": {"$gte": 2020}}]
    batch = index.search_batch(queries, 5, mode="dense", filter=specs)
    assert batch == [index.search(q, 5, mode="dense", filter=f) for q, f in zip(queries, specs)]
    assert all(h.meta["category"] == "법률"
               for hits in index.search_batch(queries, 5, filter=specs[0]) for h in hits)
    with pytest.raises(FilterError, match="got 2 filters for 3 queries"):
        index.search_batch(queries, 5, filter=specs[:2])


def test_a_filter_matching_nothing_gives_no_hits(index: Index) -> None:
    assert index.search("서울", k=5, filter={"year": 1900}) == []


# ------------------------------------------------------------------------------ front ends

@pytest.fixture(scope="module")
def index_dir(tmp_path_factory: pytest.TempPathFactory, docs: list[Document]) -> Path:
    path = tmp_path_factory.mktemp("filters") / "idx"
    Index.build(docs, path, encoder=HashEncoder(dim=32))
    return path


def _query(index_dir: Path, *args: str) -> Any:
    # lexical mode: the fake encoder's model cannot be loaded by name, BM25 needs none
    return CliRunner().invoke(cli, ["query", *args, "-i", str(index_dir), "--mode", "lexical",
                                    "--json"])


def test_cli_filter_flag_and_file(index_dir: Path, tmp_path: Path) -> None:
    result = _query(index_dir, "서울", "--filter", '{"category": "법률", "year": {"$gte": 2010}}')
    assert result.exit_code == 0, result.output
    hits = json.loads(result.stdout)["hits"]
    assert hits and all(h["meta"]["category"] == "법률" and h["meta"]["year"] >= 2010
                        for h in hits)
    spec = tmp_path / "f.json"
    spec.write_text('{"tags": {"$contains": "t1"}}', encoding="utf-8")
    result = _query(index_dir, "서울", "--filter", f"@{spec}")
    assert result.exit_code == 0 and all("t1" in h["meta"]["tags"]
                                         for h in json.loads(result.stdout)["hits"])


def test_cli_per_query_filters_override_the_flag(index_dir: Path, tmp_path: Path) -> None:
    queries = tmp_path / "q.jsonl"
    queries.write_text("\n".join(json.dumps(q, ensure_ascii=False) for q in [
        {"text": "서울", "filter": {"category": "경제"}}, {"text": "서울"},
        {"text": "서울", "filter": None}]), encoding="utf-8")
    result = _query(index_dir, "--queries", str(queries), "--filter", '{"category": "생활"}')
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert {h["meta"]["category"] for h in records[0]["hits"]} == {"경제"}
    assert {h["meta"]["category"] for h in records[1]["hits"]} == {"생활"}
    assert len({h["meta"]["category"] for h in records[2]["hits"]}) > 1


@pytest.mark.parametrize(("value", "code", "message"), [
    ('{"year": 2020', 2, "not valid JSON: Expecting ',' delimiter at line 1 column 14"),
    ('["year"]', 2, "a filter must be a JSON object"),
    ("@/nonexistent/f.json", 2, "cannot read /nonexistent/f.json"),
    ('{"colour": "red"}', 1, "Error: unknown filter field 'colour'; the filterable fields are"),
    ('{"year": {"$gte": "2020"}}', 1, "holds int values, so $gte needs a number"),
    ('{"year": {"$like": 1}}', 1, "unknown filter operator '$like'"),
])
def test_cli_bad_filters(index_dir: Path, value: str, code: int, message: str) -> None:
    result = _query(index_dir, "서울", "--filter", value)
    assert result.exit_code == code
    assert message in result.stderr
    assert "Traceback" not in result.output


def test_cli_filter_matching_nothing_exits_0_with_a_note(index_dir: Path) -> None:
    result = _query(index_dir, "서울", "--filter", '{"year": 1900}')
    assert result.exit_code == 0
    assert json.loads(result.stdout)["hits"] == []
    assert "note: no hits" in result.stderr


def test_info_lists_the_filterable_fields(index_dir: Path) -> None:
    result = CliRunner().invoke(cli, ["info", str(index_dir)])
    assert result.exit_code == 0, result.output
    assert "filterable fields" in result.stdout
    line = next(x for x in result.stdout.splitlines() if x.strip().startswith("year"))
    assert "int" in line and "2000" in line
    fields = Index.load(index_dir, encoder=HashEncoder(dim=32)).info()["filter_fields"]
    assert [f["name"] for f in fields] == ["id", "category", "year", "tags", "score", "draft",
                                           "date"]


def test_server_filter_field_and_errors(index: Index) -> None:
    testclient = pytest.importorskip("fastapi.testclient")
    from kosearch.serving.app import create_app

    with testclient.TestClient(create_app(index)) as client:
        body = client.post("/search", json={"query": "서울", "k": 5, "mode": "dense",
                                            "filter": {"category": "과학"}}).json()
        assert len(body["hits"]) == 5 and {h["meta"]["category"] for h in body["hits"]} == {
            "과학"}
        batch = client.post("/search/batch", json={"queries": ["서울", "부산"], "k": 3,
                                                   "filter": {"year": {"$gte": 2020}}}).json()
        assert all(h["meta"]["year"] >= 2020 for r in batch["results"] for h in r["hits"])
        bad = client.post("/search", json={"query": "서울", "filter": {"colour": 1}})
        assert bad.status_code == 400
        assert bad.json()["error"].startswith("unknown filter field 'colour'")
        wrong = client.post("/search", json={"query": "서울", "filter": {"year": "x"}})
        assert wrong.status_code == 400 and "holds int values" in wrong.json()["error"]
        paths = client.get("/openapi.json").json()["paths"]
        for path in ("/search", "/search/batch"):
            body = paths[path]["post"]["requestBody"]["content"]["application/json"]
            assert "$gte" in body["schema"]["properties"]["filter"]["description"]


def test_langchain_search_kwargs_filter_and_neq(index: Index) -> None:
    pytest.importorskip("langchain_core")
    from kosearch.integrations.langchain import KosearchRetriever

    retriever = KosearchRetriever(index=index, k=4, mode="dense",
                                  search_kwargs={"filter": {"category": {"$neq": "법률"}}})
    docs = retriever.invoke("서울 계약")
    assert len(docs) == 4 and all(d.metadata["meta"]["category"] != "법률" for d in docs)
    one = retriever.invoke("서울 계약", filter={"year": 2001}, k=10)
    assert {d.metadata["meta"]["year"] for d in one} == {2001}


def test_llama_index_metadata_filters(index: Index, docs: list[Document]) -> None:
    pytest.importorskip("llama_index.core")
    from llama_index.core.vector_stores.types import MetadataFilter, MetadataFilters

    from kosearch.errors import ConfigError
    from kosearch.integrations.llama_index import KosearchLlamaRetriever, to_filter

    filters = MetadataFilters(filters=[
        MetadataFilter(key="year", value=2015, operator=">="),
        MetadataFilters(filters=[MetadataFilter(key="category", value="경제"),
                                 MetadataFilter(key="tags", value="t0", operator="contains")],
                        condition="or"),
    ])
    spec = to_filter(filters)
    assert spec == {"$and": [{"year": {"$gte": 2015}}, {"$or": [
        {"category": {"$eq": "경제"}}, {"tags": {"$contains": "t0"}}]}]}
    nodes = KosearchLlamaRetriever(index, k=50, mode="dense", filters=filters).retrieve("서울")
    expected = {d.id for d in docs if reference(spec, d.id, d.meta)}
    assert {n.node.metadata["id"] for n in nodes} == expected
    with pytest.raises(ConfigError, match="text_match"):
        to_filter(MetadataFilters(filters=[MetadataFilter(key="c", value="x",
                                                          operator="text_match")]))
