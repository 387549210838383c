"""An index written by kosearch 0.1.0 (the flat layout) loads and answers identically.

``tests/data/index-0.1.0`` was built by kosearch 0.1.0 from the first 24 documents of
``data/sample.jsonl`` with the test ``HashEncoder(dim=32)``; the answers it gave then, to six of
``data/questions.txt`` in every mode, are in ``index-0.1.0.expected.json``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from fakes import HashEncoder

from kosearch import Index

DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture(scope="module")
def expected() -> dict:
    return json.loads((DATA / "index-0.1.0.expected.json").read_text(encoding="utf-8"))


@pytest.fixture()
def old_index(tmp_path: Path) -> Path:
    target = tmp_path / "index-0.1.0"
    shutil.copytree(DATA / "index-0.1.0", target)  # the committed fixture stays read-only
    return target


def _rounded(hits: list[dict]) -> list[dict]:
    return [{**h, "score": round(h["score"], 5),
             "scores": {k: round(v, 5) if isinstance(v, float) else v
                        for k, v in h["scores"].items()}} for h in hits]


def _answers(index: Index, queries: list[str], setting: str) -> list[list[dict]]:
    mode, _, passages = setting.partition("-")
    results = index.search_batch(queries, 5, mode=mode, passages=bool(passages),
                                 highlights=False)  # computed at query time, checked elsewhere
    return [_rounded([{k: v for k, v in h.to_dict().items() if k != "highlights"} for h in hits])
            for hits in results]


@pytest.mark.parametrize("setting", ["dense", "lexical", "dense-passages", "lexical-passages"])
def test_an_index_from_0_1_0_answers_as_it_did(
    old_index: Path, expected: dict, setting: str
) -> None:
    index = Index.load(old_index, encoder=HashEncoder(dim=32, max_tokens=64))
    assert index.manifest.kosearch_version == expected["kosearch_version"] == "0.1.0"
    got = _answers(index, expected["queries"], setting)
    assert got == [_rounded(hits) for hits in expected["results"][setting]]


@pytest.mark.parametrize("setting", ["hybrid", "hybrid-passages"])
def test_an_index_from_0_1_0_fuses_as_a_new_index_does(
    old_index: Path, expected: dict, setting: str, tmp_path: Path
) -> None:
    # hybrid ranking changed on purpose after 0.1.0 (k-independent, z-score fusion), so the
    # recorded hybrid answers no longer hold; the old index must answer as a new build does
    encoder = HashEncoder(dim=32, max_tokens=64)
    lines = (DATA.parent.parent / "data" / "sample.jsonl").read_text(encoding="utf-8")
    corpus = tmp_path / "first24.jsonl"
    corpus.write_text("".join(lines.splitlines(keepends=True)[:24]), encoding="utf-8")
    fresh = Index.build(corpus, tmp_path / "fresh", encoder=encoder)
    old = Index.load(old_index, encoder=encoder)
    assert len(old) == len(fresh)
    got = _answers(old, expected["queries"], setting)
    assert got == _answers(fresh, expected["queries"], setting)
    # and each hit's own retriever scores are still those 0.1.0 recorded for that passage
    recorded = {(q, h["id"], h["chunk"]): h["scores"]
                for q, hits in enumerate(expected["results"][setting]) for h in _rounded(hits)}
    compared = 0
    for q, hits in enumerate(got):
        for hit in hits:
            for key in ("dense_score", "lexical_score"):
                before = recorded.get((q, hit["id"], hit["chunk"]), {}).get(key)
                if before is not None and key in hit["scores"]:
                    assert hit["scores"][key] == before
                    compared += 1
    assert compared >= len(got)


def test_an_index_from_0_1_0_takes_updates(old_index: Path) -> None:
    from kosearch import Document

    index = Index.load(old_index, encoder=HashEncoder(dim=32, max_tokens=64))
    assert not index.passages.mapped  # no passages.arrow yet: the Parquet is read as before
    before = index.manifest.counts["documents"]
    report = index.upsert([Document(id="new-1", text="제주올레 코스는 모두 스물일곱 개입니다.")])
    assert report.added == 1
    reloaded = Index.load(old_index, encoder=HashEncoder(dim=32, max_tokens=64))
    assert reloaded.manifest.counts["documents"] == before + 1
    assert reloaded.passages.mapped  # the update wrote the memory-mapped mirror
    assert reloaded.search("제주올레 코스", 1, mode="lexical")[0].id == "new-1"
