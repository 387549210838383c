"""Bounded-memory serving: passages memory-mapped from ``passages.arrow``, BM25 mapped too.

A loaded index must not hold its passage table: the rows stay in the file and a search reads
the rows of its hits. Results must not change, updates must keep the mirror current, and an
index without it (or with a stale one) reads the Parquet as before.
"""

from __future__ import annotations

import shutil
import tracemalloc
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fakes import HashEncoder

from kosearch import Document, Index
from kosearch.lexical import bm25
from kosearch.lexical.bm25 import LexicalIndex
from kosearch.storage.layout import PASSAGES_ARROW_FILE, PASSAGES_FILE

TOPICS = ["서울 한강 공원에서 자전거를 탔다", "부산 해운대 바다는 여름에 붐빈다",
          "김치는 배추를 소금에 절여 발효한다", "세종대왕은 훈민정음을 창제했다",
          "제주도 한라산 등반은 새벽에 시작한다", "태양광 패널은 남향으로 설치한다"]
QUERIES = ["한강 자전거", "김치 발효", "한라산 새벽 등반", "훈민정음"]


def corpus(n: int, *, filler: int = 0, id_width: int = 0) -> list[Document]:
    return [Document(id=f"d{i:0{id_width}d}", title=f"제목 {i}",
                     text=f"{TOPICS[i % len(TOPICS)]}. 문서 번호 {i}. " + "가나다라 " * filler,
                     meta={"year": 2000 + i % 7, "kind": ["a", "b", "c"][i % 3]})
            for i in range(n)]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("mapped") / "idx"
    Index.build(corpus(120, filler=80), path, encoder=HashEncoder())
    return path


def answers(index: Index) -> list:
    out = []
    for mode in ("dense", "lexical", "hybrid"):
        for passages in (False, True):
            for spec in (None, {"year": {"$gte": 2003}, "kind": "b"}):
                hits = index.search_batch(QUERIES, 5, mode=mode, passages=passages, filter=spec)
                out.append([[h.to_dict() for h in q] for q in hits])
    return out


def test_a_loaded_index_maps_its_passages_and_searches_without_reading_them(built: Path) -> None:
    table_bytes = pq.ParquetFile(built / PASSAGES_FILE).read().nbytes
    assert (built / PASSAGES_ARROW_FILE).is_file()
    before = pa.total_allocated_bytes()
    index = Index.load(built, encoder=HashEncoder())
    found = answers(index)
    held = pa.total_allocated_bytes() - before
    assert index.passages.mapped and index.info()["memory"]["passages"] == 0
    assert found[0][0][0]["text"].startswith(TOPICS[0])
    assert held < table_bytes / 20, (held, table_bytes)
    # the same bound fails for an index read into memory: the check can tell them apart
    before = pa.total_allocated_bytes()
    in_memory = Index.load(built, encoder=HashEncoder(), mmap=False)
    assert not in_memory.passages.mapped
    assert pa.total_allocated_bytes() - before > table_bytes / 2
    assert answers(in_memory) == found


def test_loading_keeps_no_list_of_document_ids(tmp_path: Path) -> None:
    path = tmp_path / "idx"
    Index.build(corpus(2000, id_width=500), path, encoder=HashEncoder(), lexical=False)
    ids_bytes = 2000 * 500
    tracemalloc.start()
    try:
        index = Index.load(path, encoder=HashEncoder())
        hits = index.search("김치 발효", 20, mode="dense")
        current, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len({h.id for h in hits}) == 20  # grouped by document through the mapped ids
    assert current < ids_bytes / 4, current
    assert index.passages.doc_id_view()[5] == f"d{5:0500d}"


def test_an_index_without_the_mirror_or_with_a_stale_one_reads_the_parquet(
    built: Path, tmp_path: Path
) -> None:
    expected = answers(Index.load(built, encoder=HashEncoder()))
    bare = tmp_path / "bare"
    shutil.copytree(built, bare)
    (bare / PASSAGES_ARROW_FILE).unlink()  # as written before the mirror existed
    index = Index.load(bare, encoder=HashEncoder())
    assert not index.passages.mapped and answers(index) == expected
    stale = tmp_path / "stale"
    shutil.copytree(built, stale)
    table = pq.read_table(stale / PASSAGES_FILE)  # rewritten by another tool: titles changed
    titles = pa.array([t.upper() + "!" for t in table.column("title").to_pylist()])
    table = table.set_column(table.schema.get_field_index("title"), "title", titles)
    pq.write_table(table, stale / PASSAGES_FILE)
    index = Index.load(stale, encoder=HashEncoder())
    assert not index.passages.mapped
    assert index.passages.rows([0])[0]["title"] == "제목 0!"


def test_updates_rewrite_the_mirror(built: Path, tmp_path: Path) -> None:
    path = tmp_path / "idx"
    shutil.copytree(built, path)
    index = Index.load(path, encoder=HashEncoder())
    report = index.upsert(corpus(120, filler=80)[5:] + [Document(id="new", text="새 문서 고래")])
    assert (report.added, report.deleted) == (1, 0)
    index.delete(["d10", "d11"])
    assert not index.passages.holds_any(["d10", "d11"]) and index.passages.holds_any(["new"])
    reloaded = Index.load(path, encoder=HashEncoder())
    assert reloaded.passages.mapped and index.passages.mapped
    parquet = pq.read_table(path / PASSAGES_FILE)
    assert reloaded.passages.table.equals(parquet.replace_schema_metadata(
        reloaded.passages.table.schema.metadata))
    assert reloaded.search("고래", 1, mode="lexical")[0].id == "new"
    assert reloaded.delete(["nope"]).unknown == ("nope",)


def test_bm25_maps_its_matrix_and_scores_alike_sparse_or_dense(
    built: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mapped = LexicalIndex.load(built / "lexical", mmap=True)
    loaded = LexicalIndex.load(built / "lexical")
    assert mapped.mapped and not loaded.mapped
    queries = QUERIES + ["문서 번호", "가나다라 번호 7"]
    allowed = np.arange(len(loaded)) % 3 != 0
    results = []
    for ratio in (0, 10**9):  # 0: every query summed over all rows; 10**9: over its rows only
        monkeypatch.setattr(bm25, "SPARSE_RATIO", ratio)
        for index in (mapped, loaded):
            results.append((index.search(queries, 7), index.search(queries, 7, allowed=allowed)))
    assert all(r == results[0] for r in results)
    assert len(results[0][0][4]) == 7 and all(allowed[row] for row, _ in results[0][1][4])
