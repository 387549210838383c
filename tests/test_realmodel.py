"""Retrieval quality with a real Korean model (KOSEARCH_TEST_MODEL) on KorQuAD 1.0 dev.

Skipped unless KOSEARCH_TEST_MODEL names a model directory and KOSEARCH_TEST_DATA the shared data
folder (.ci/run sets both). The index is built once per session and shared.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from realdata import data_path, missing

from kosearch.eval.metrics import evaluate_run, load_beir
from kosearch.index import Index

pytestmark = [pytest.mark.st, pytest.mark.realmodel]

KORQUAD = data_path("korquad_v1_retrieval_dev")


@pytest.fixture(scope="session")
def korquad_index(real_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Index:
    if not KORQUAD.is_dir():
        pytest.skip(missing(KORQUAD))
    path = tmp_path_factory.mktemp("korquad") / "index"
    return Index.build(KORQUAD / "corpus.jsonl", path, model=str(real_model_dir))


def _run(index: Index, queries: dict[str, str], mode: str) -> dict[str, list[str]]:
    ids = list(queries)
    results = index.search_batch([queries[q] for q in ids], k=10, mode=mode)
    return {qid: [hit.id for hit in hits] for qid, hits in zip(ids, results)}


METRICS = ("ndcg@10", "recall@10", "mrr@10")


def _report(capsys: pytest.CaptureFixture[str], title: str, scores: dict[str, dict]) -> None:
    with capsys.disabled():
        print(f"\n{title}")
        for mode, figures in scores.items():
            print(f"  {mode:<8} " + "  ".join(f"{k} {v:.4f}" for k, v in figures.items()))


def test_korquad_recall_is_far_above_chance(
    korquad_index: Index, capsys: pytest.CaptureFixture[str]
) -> None:
    data = load_beir(KORQUAD)
    scores = {"hybrid": evaluate_run(_run(korquad_index, data.queries, "hybrid"), data.qrels,
                                     METRICS)}
    chance = 10 / korquad_index.manifest.counts["documents"]
    _report(capsys, f"KorQuAD dev, all {len(data.qrels)} queries, default mode; "
                    f"chance recall@10 = {chance:.3f}", scores)
    assert scores["hybrid"]["recall@10"] > 0.9 > 50 * chance


def test_hybrid_beats_dense_and_lexical(
    korquad_index: Index, capsys: pytest.CaptureFixture[str]
) -> None:
    data = load_beir(KORQUAD)
    sample = sorted(random.Random(1338).sample(sorted(data.qrels), 800))
    queries = {qid: data.queries[qid] for qid in sample}
    qrels = {qid: data.qrels[qid] for qid in sample}
    scores = {
        mode: evaluate_run(_run(korquad_index, queries, mode), qrels, METRICS)
        for mode in ("dense", "lexical", "hybrid")
    }
    _report(capsys, "KorQuAD dev, 800 seeded queries", scores)
    assert scores["dense"]["recall@10"] > 0.8
    # fusion must beat each retriever alone: the reason hybrid is the default
    assert scores["hybrid"]["ndcg@10"] > scores["dense"]["ndcg@10"]
    assert scores["hybrid"]["ndcg@10"] > scores["lexical"]["ndcg@10"]


def test_a_question_finds_its_own_paragraph(korquad_index: Index) -> None:
    data = load_beir(KORQUAD)
    qid = sorted(data.qrels)[0]
    (relevant,) = data.qrels[qid]
    hits = korquad_index.search(data.queries[qid], k=10)
    assert relevant in [hit.id for hit in hits]
