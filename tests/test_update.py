"""Incremental updates and resumable runs: add, upsert, sync, delete, checkpoints, faults."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fakes import HashEncoder

from kosearch.build import run as indexer
from kosearch.build.checkpoint import checkpoint_path
from kosearch.errors import ConfigError, CorpusError
from kosearch.index import Index
from kosearch.storage.vectors import VectorStore
from kosearch.types import Document

TOPICS = [
    "서울 한강 공원에서 자전거를 탔다", "부산 해운대 바다는 여름에 붐빈다",
    "전세 계약 갱신 요구권은 한 번 쓸 수 있다", "김치는 배추를 소금에 절여 발효한다",
    "세종대왕은 훈민정음을 창제했다", "제주도 한라산 등반은 새벽에 시작한다",
    "태양광 패널은 남향으로 설치한다", "GPU로 딥러닝 모델을 학습시킨다",
]


def docs(
    ids: range | list[int], *, suffix: str = "", meta: dict[str, Any] | None = None
) -> list[Document]:
    return [
        Document(id=f"d{i}", text=f"{TOPICS[i % len(TOPICS)]}. 문서 번호 {i}{suffix}.",
                 title=f"제목 {i}", meta=dict(meta or {"n": i}))
        for i in ids
    ]


def write_jsonl(path: Path, documents: list[Document]) -> Path:
    with path.open("w", encoding="utf-8") as f:
        for d in documents:
            f.write(json.dumps({"id": d.id, "text": d.text, "title": d.title, **d.meta},
                               ensure_ascii=False) + "\n")
    return path


def rows_consistent(index: Index, encoder: HashEncoder) -> None:
    """Row i of the vectors, the passage table and the lexical index is the same passage."""
    records = index.passages.rows(range(len(index.passages)))
    stored = index.store.reconstruct(range(len(records)))
    expected = encoder.encode_queries([f"{r['title']}\n{r['text']}" for r in records])
    assert np.allclose(stored, expected, atol=1e-6)
    if index.lexical is not None:
        for row, record in enumerate(records):
            number = record["text"].split("문서 번호 ")[1].split(".")[0].split()[0]
            hits = index.lexical.search([f"번호 {number}"], k=len(records))[0]
            assert row in [r for r, _ in hits]


@pytest.fixture()
def built(tmp_path: Path) -> tuple[Index, HashEncoder]:
    encoder = HashEncoder()
    index = Index.build(docs(range(10)), tmp_path / "idx", encoder=encoder)
    return index, encoder


def test_upsert_encodes_only_new_and_changed_documents(built: tuple[Index, HashEncoder]) -> None:
    index, encoder = built
    encoder.encoded.clear()
    corpus = docs(range(10))
    corpus[3] = docs([3], suffix=" 개정판")[0]  # changed text
    corpus[4] = docs([4], meta={"n": 4, "tag": "새"})[0]  # changed metadata only
    corpus += docs(range(10, 12))  # new
    report = index.upsert(corpus)
    assert (report.added, report.updated, report.unchanged, report.deleted) == (2, 1, 9, 0)
    assert len(encoder.encoded) == 3  # d3, d10, d11: one passage each
    assert all("개정판" in t or "번호 1" in t for t in encoder.encoded)
    assert index.manifest.counts["documents"] == 12
    hit = index.search("개정판 김치", k=1, mode="lexical")[0]
    assert (hit.id, hit.meta) == ("d3", {"n": 3})
    assert index.search("번호 4", k=1, mode="lexical")[0].meta == {"n": 4, "tag": "새"}
    rows_consistent(index, encoder)
    again = Index.load(index.path, encoder=encoder)  # saved as it went
    assert again.manifest.counts == index.manifest.counts
    assert again.manifest.created == index.manifest.created <= again.manifest.updated


def test_an_updated_index_searches_like_a_fresh_build(built: tuple[Index, HashEncoder]) -> None:
    index, encoder = built
    final = docs(range(2, 14))
    final[0] = docs([2], suffix=" 바뀜")[0]
    index.upsert(final, sync=True)
    fresh = Index.build(final, encoder=HashEncoder())
    assert sorted(set(index.passages.doc_ids())) == sorted(d.id for d in final)
    for query in ["한강 자전거", "발효 김치", "번호 7", "바뀜", "딥러닝"]:
        for mode in ("dense", "lexical", "hybrid"):
            # rows differ in order, so compare hits that do not tie at zero
            got = [(h.id, round(h.score, 5)) for h in index.search(query, k=5, mode=mode)
                   if h.score > 1e-4]
            want = [(h.id, round(h.score, 5)) for h in fresh.search(query, k=5, mode=mode)
                    if h.score > 1e-4]
            assert got == want, (query, mode)


def test_sync_deletes_documents_missing_from_the_corpus(built: tuple[Index, HashEncoder]) -> None:
    index, encoder = built
    encoder.encoded.clear()
    report = index.upsert(docs(range(5)), sync=True)
    assert (report.deleted, report.unchanged, report.added) == (5, 5, 0)
    assert encoder.encoded == []
    assert sorted(set(index.passages.doc_ids())) == [f"d{i}" for i in range(5)]
    assert index.search("8", k=3, mode="lexical") == []


def test_delete_reports_unknown_ids_and_never_encodes(
    built: tuple[Index, HashEncoder], caplog: pytest.LogCaptureFixture
) -> None:
    index, encoder = built
    encoder.encoded.clear()
    report = index.delete(["d1", "nope", "d2", "d1"])
    assert (report.deleted, report.unknown) == (2, ("nope",))
    assert "nope" in caplog.text
    assert encoder.encoded == []
    assert {"d1", "d2"}.isdisjoint(index.passages.doc_ids())
    assert index.manifest.counts["documents"] == 8
    rows_consistent(index, encoder)
    stamp = index.manifest.updated
    nothing = index.delete(["gone"])
    assert nothing.unknown == ("gone",) and index.manifest.updated == stamp


def test_add_refuses_existing_ids_and_leaves_the_index(built: tuple[Index, HashEncoder]) -> None:
    index, _ = built
    before = (index.path / "manifest.json").read_bytes()
    with pytest.raises(CorpusError, match="'d3' is already in the index"):
        index.add(docs([20, 3]))
    assert (index.path / "manifest.json").read_bytes() == before
    assert not checkpoint_path(index.path).exists()
    report = index.add(docs([20]))
    assert report.added == 1 and "d20" in index.passages.doc_ids()


def test_deleting_every_document_is_refused(built: tuple[Index, HashEncoder]) -> None:
    index, _ = built
    with pytest.raises(CorpusError, match="no documents"):
        index.delete([f"d{i}" for i in range(10)])
    assert len(Index.load(index.path)) == 10


def test_update_may_not_change_fixed_settings(built: tuple[Index, HashEncoder]) -> None:
    index, _ = built
    with pytest.raises(ConfigError, match="cannot change metric"):
        index.upsert(docs(range(3)), metric="ip")


def test_in_memory_index_updates_in_memory() -> None:
    encoder = HashEncoder()
    index = Index.build(docs(range(4)), encoder=encoder)
    index.upsert(docs(range(2, 6)), sync=True)
    assert index.path is None
    assert sorted(set(index.passages.doc_ids())) == ["d2", "d3", "d4", "d5"]
    rows_consistent(index, encoder)


@pytest.mark.parametrize("index_type", ["flat", "hnsw", "ivf-flat", "ivf-sq8"])
def test_updates_keep_vectors_exact_for_every_index_type(tmp_path: Path, index_type: str) -> None:
    encoder = HashEncoder()
    index = Index.build(docs(range(60)), tmp_path / "i", encoder=encoder, index_type=index_type,
                        lexical=False)
    index.delete(["d0", "d5"])
    index.upsert(docs(range(60, 70)))
    assert index.manifest.faiss["kind"] == index_type
    records = index.passages.rows(range(len(index.passages)))
    expected = encoder.encode_queries([f"{r['title']}\n{r['text']}" for r in records])
    raw = index._parts.raw
    source = raw if raw is not None else index.store.reconstruct(range(len(records)))
    assert np.allclose(np.asarray(source), expected, atol=1e-6)
    assert (index.path / "embeddings.npy").exists() == (index_type == "ivf-sq8")
    top = index.search(records[17]["text"], k=1, mode="dense", passages=True)[0]
    assert top.id == records[17]["doc_id"]


# ---------------------------------------------------------------------------- resuming
class Interrupting(HashEncoder):
    """Raises KeyboardInterrupt on the encode call number ``after + 1``."""

    def __init__(self, after: int) -> None:
        super().__init__()
        self.after = after

    def encode_passages(self, texts: Any, *, on_batch: Any = None) -> Any:
        if self.calls >= self.after:
            raise KeyboardInterrupt
        return super().encode_passages(texts, on_batch=on_batch)


def test_an_interrupted_build_resumes_where_it_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(indexer, "ENCODE_WINDOW", 4)
    corpus = write_jsonl(tmp_path / "c.jsonl", docs(range(20)))
    target = tmp_path / "idx"
    with pytest.raises(KeyboardInterrupt):
        Index.build(corpus, target, encoder=Interrupting(after=3))
    assert not target.exists()
    state = json.loads((checkpoint_path(target) / "state.json").read_text())
    assert state["encoded"] == 12 and state["chunked"]["passages"] == 20
    encoder = HashEncoder()
    index = Index.build(corpus, target, encoder=encoder)
    assert len(encoder.encoded) == 8  # only the rest
    assert index.last_report is not None and index.last_report.resumed == 12
    assert not checkpoint_path(target).exists()
    rows_consistent(index, encoder)
    fresh = Index.build(corpus, encoder=HashEncoder())
    assert np.array_equal(index.store.reconstruct(range(20)), fresh.store.reconstruct(range(20)))


def test_resuming_with_other_settings_is_refused_until_restart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(indexer, "ENCODE_WINDOW", 4)
    corpus = write_jsonl(tmp_path / "c.jsonl", docs(range(12)))
    target = tmp_path / "idx"
    with pytest.raises(KeyboardInterrupt):
        Index.build(corpus, target, encoder=Interrupting(after=1))
    from kosearch.settings import ChunkSettings

    with pytest.raises(ConfigError, match=r"differ in: chunking.*--restart"):
        Index.build(corpus, target, encoder=HashEncoder(), chunking=ChunkSettings(overlap=8))
    encoder = HashEncoder()
    Index.build(corpus, target, encoder=encoder, chunking=ChunkSettings(overlap=8), restart=True)
    assert len(encoder.encoded) == 12


def test_an_interrupted_update_resumes_and_the_old_index_serves_meanwhile(
    built: tuple[Index, HashEncoder], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(indexer, "ENCODE_WINDOW", 2)
    index, _ = built
    corpus = write_jsonl(tmp_path / "more.jsonl", docs(range(10, 20)))
    stuck = Index.load(index.path, encoder=Interrupting(after=2))
    with pytest.raises(KeyboardInterrupt):
        stuck.upsert(corpus)
    assert len(Index.load(index.path)) == 10
    assert stuck.search("3", k=1, mode="lexical")[0].id == "d3"
    encoder = HashEncoder()
    report = Index.load(index.path, encoder=encoder).upsert(corpus)
    assert (report.added, report.resumed, len(encoder.encoded)) == (10, 4, 6)
    assert len(Index.load(index.path)) == 20


# ---------------------------------------------------------------------------- faults
def test_a_failed_save_leaves_the_old_index(
    built: tuple[Index, HashEncoder], monkeypatch: pytest.MonkeyPatch
) -> None:
    index, _ = built
    before = {p.name: p.read_bytes() for p in index.path.rglob("*") if p.is_file()}

    def no_space(self: VectorStore, directory: Path) -> int:
        raise ConfigError(f"cannot write the vector index {directory}: No space left on device")

    monkeypatch.setattr(VectorStore, "save", no_space)
    corpus = write_jsonl(index.path.parent / "more.jsonl", docs(range(10, 15)))
    with pytest.raises(ConfigError, match="No space left"):
        index.upsert(corpus)
    after = {p.name: p.read_bytes() for p in index.path.rglob("*") if p.is_file()}
    assert after == before
    # no temporary directory is left; the encoded vectors wait in idx.partial for a rerun
    names = sorted(p.name for p in index.path.parent.iterdir())
    assert names == ["idx", "idx.partial", "more.jsonl"]
    assert len(index) == 10 and len(Index.load(index.path)) == 10


def test_readers_see_a_whole_index_while_a_writer_updates(built: tuple[Index, HashEncoder]) -> None:
    index, _ = built
    old_ids = {f"d{i}" for i in range(10)}
    new_ids = old_ids | {f"d{i}" for i in range(10, 30)}
    seen: list[tuple[int, set[str]]] = []
    errors: list[BaseException] = []
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            try:
                hits = index.search("문서 번호", k=40, mode="lexical")
                seen.append((len(index), {h.id for h in hits}))
                disk = Index.load(index.path)
                assert len(disk) in (10, 30)
            except BaseException as error:  # noqa: BLE001 - reported below
                errors.append(error)
                return

    readers = [threading.Thread(target=read) for _ in range(2)]
    for r in readers:
        r.start()
    index.upsert(docs(range(30)))
    done.set()
    for r in readers:
        r.join()
    assert not errors
    assert seen
    for n, ids in seen:
        assert (n, ids <= old_ids) == (10, True) or (n == 30 and ids <= new_ids)


def test_a_checkpoint_against_an_older_index_is_discarded(
    built: tuple[Index, HashEncoder], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(indexer, "ENCODE_WINDOW", 2)
    index, _ = built
    corpus = write_jsonl(tmp_path / "more.jsonl", docs(range(10, 16)))
    with pytest.raises(KeyboardInterrupt):
        Index.load(index.path, encoder=Interrupting(after=1)).upsert(corpus)
    Index.load(index.path, encoder=HashEncoder()).delete(["d0"])  # the index moves on
    encoder = HashEncoder()
    report = Index.load(index.path, encoder=encoder).upsert(corpus)
    assert "discarding an interrupted run's checkpoint" in caplog.text
    assert (report.added, report.resumed, len(encoder.encoded)) == (6, 0, 6)
