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


@pytest.mark.parametrize("setting", ["hybrid", "dense", "lexical", "hybrid-passages",
                                     "dense-passages", "lexical-passages"])
def test_an_index_from_0_1_0_answers_as_it_did(
    old_index: Path, expected: dict, setting: str
) -> None:
    index = Index.load(old_index, encoder=HashEncoder(dim=32, max_tokens=64))
    assert index.manifest.kosearch_version == expected["kosearch_version"] == "0.1.0"
    mode, _, passages = setting.partition("-")
    results = index.search_batch(expected["queries"], 5, mode=mode, passages=bool(passages),
                                 highlights=False)  # computed at query time, checked elsewhere
    got = [_rounded([{k: v for k, v in h.to_dict().items() if k != "highlights"} for h in hits])
           for hits in results]
    assert got == [_rounded(hits) for hits in expected["results"][setting]]


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
