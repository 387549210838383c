"""Tests for kosearch.eval.metrics: loaders, ranking metrics, STS correlations and run files."""

from __future__ import annotations

import gzip
import json
import math
import random
from pathlib import Path

import numpy as np
import pytest
import pytrec_eval
from realdata import data_path, missing

from kosearch.errors import DatasetError
from kosearch.eval.metrics import (
    BeirDataset,
    StsPairs,
    dedupe_ranking,
    evaluate_run,
    latency_summary,
    load_beir,
    load_sts,
    mrr_at_k,
    ndcg_at_k,
    per_query,
    recall_at_k,
    sts_correlations,
    validate_metrics,
    write_run,
)

KORQUAD = data_path("korquad_v1_retrieval_dev")
KORSTS = data_path("korsts_dev")
needs_korquad = pytest.mark.skipif(not KORQUAD.is_dir(), reason=missing(KORQUAD))
needs_korsts = pytest.mark.skipif(not KORSTS.is_dir(), reason=missing(KORSTS))
# discounts log2(rank + 1) of ranks 2 and 5 (ranks 1 and 3 have 1 and 2)
L2_3, L2_6 = math.log2(3), math.log2(6)


# ---------------------------------------------------------------------------------------------
# Worked examples


GRADED = {"a": 3, "b": 2, "c": 1, "z": 0}


def test_ndcg_graded_worked_example() -> None:
    # ranked x, b, a, y, c -> gains 0, 2, 3, 0, 1
    # DCG  = 0/1 + 2/log2(3) + 3/log2(4) + 0/log2(5) + 1/log2(6) = 1.26186 + 1.5 + 0.38685 = 3.14871
    # IDCG = 3/1 + 2/log2(3) + 1/log2(4)                          = 3 + 1.26186 + 0.5     = 4.76186
    expected = (2 / L2_3 + 3 / 2 + 1 / L2_6) / (3 + 2 / L2_3 + 1 / 2)
    assert ndcg_at_k(["x", "b", "a", "y", "c"], GRADED, 10) == pytest.approx(expected, abs=1e-12)
    assert expected == pytest.approx(0.661236, abs=1e-6)


def test_ndcg_cutoff_uses_ideal_at_k() -> None:
    # k=2: DCG = 0 + 2/log2(3) = 1.26186; IDCG@2 = 3 + 2/log2(3) = 4.26186 -> 0.29609
    expected = (2 / L2_3) / (3 + 2 / L2_3)
    assert ndcg_at_k(["x", "b", "a", "y", "c"], GRADED, 2) == pytest.approx(expected)
    # k=1: the top document is non-relevant -> 0
    assert ndcg_at_k(["x", "b"], GRADED, 1) == 0.0
    # perfect order is 1 at every cut-off
    for k in (1, 2, 3, 10):
        assert ndcg_at_k(["a", "b", "c"], GRADED, k) == pytest.approx(1.0)


def test_ndcg_no_relevant_and_negative_grades() -> None:
    assert ndcg_at_k(["x", "y", "z"], GRADED, 10) == 0.0  # nothing relevant retrieved
    assert ndcg_at_k(["a"], {"a": 0, "b": -1}, 10) == 0.0  # nothing relevant judged: IDCG = 0
    # a negative grade gains 0 (trec_eval): DCG = 0 + 1/log2(3); IDCG = 1 -> 0.63093
    assert ndcg_at_k(["n", "p"], {"n": -2, "p": 1}, 10) == pytest.approx(1 / L2_3)


def test_ndcg_duplicates_count_once_at_best_rank() -> None:
    # passages of b, b, a -> documents b, a: DCG = 2/1 + 3/log2(3) (more without dedupe)
    deduped = ndcg_at_k(["b", "a"], GRADED, 10)
    assert ndcg_at_k(["b", "b", "a", "b"], GRADED, 10) == pytest.approx(deduped)
    assert deduped == pytest.approx((2 + 3 / L2_3) / (3 + 2 / L2_3 + 1 / 2))
    # k counts distinct documents: top-2 of (b, b, a) is (b, a)
    assert ndcg_at_k(["b", "b", "a"], GRADED, 2) == pytest.approx((2 + 3 / L2_3) / (3 + 2 / L2_3))


def test_mrr_worked_examples() -> None:
    assert mrr_at_k(["x", "y", "c"], GRADED, 10) == pytest.approx(1 / 3)  # first relevant at rank 3
    assert mrr_at_k(["x", "y", "c"], GRADED, 2) == 0.0  # ... which is past k = 2
    assert mrr_at_k(["z", "a"], GRADED, 10) == 0.5  # grade 0 is not relevant
    assert mrr_at_k([], GRADED, 10) == 0.0
    # duplicates: x, x, x, a -> distinct x, a: a is at rank 2 and within k = 2
    assert mrr_at_k(["x", "x", "x", "a"], GRADED, 2) == 0.5


def test_recall_worked_examples() -> None:
    # relevant = {a, b, c} (z has grade 0)
    assert recall_at_k(["a", "x", "c", "b"], GRADED, 10) == 1.0
    assert recall_at_k(["a", "x", "c", "b"], GRADED, 3) == pytest.approx(2 / 3)  # a, c in top 3
    assert recall_at_k(["z", "x"], GRADED, 10) == 0.0
    assert recall_at_k(["a"], {"a": 0}, 10) == 0.0  # nothing relevant: 0, not a division by zero
    # duplicates do not count twice: a, a -> 1 of {a, b}
    assert recall_at_k(["a", "a"], {"a": 1, "b": 1}, 10) == 0.5
    # and they do not use up k: a, a, a, b with k = 2 -> {a, b}
    assert recall_at_k(["a", "a", "a", "b"], {"a": 1, "b": 1}, 2) == 1.0


def test_dedupe_ranking_keeps_first_occurrence() -> None:
    assert dedupe_ranking(["d2", "d1", "d2", "d3", "d1"]) == ["d2", "d1", "d3"]
    assert dedupe_ranking([]) == []


@pytest.mark.parametrize("k", [0, -1, 1.5, True])
def test_bad_k_is_a_value_error(k: object) -> None:
    with pytest.raises(ValueError, match="k must be a positive integer"):
        ndcg_at_k(["a"], {"a": 1}, k)  # type: ignore[arg-type]


def test_evaluate_run_means_over_all_judged_queries() -> None:
    qrels = {"q1": {"a": 1}, "q2": {"b": 1, "c": 1}, "q3": {"d": 1}}
    # q3 is missing from the run; q_extra has no qrels
    run = {"q1": ["a"], "q2": ["x", "b", "b", "c"], "q_extra": ["a"]}
    # mrr: q1 = 1, q2 = 1/2 (b at rank 2 after dedupe), q3 = 0 -> 1.5 / 3
    # recall@2: q1 = 1, q2 = 1/2 (x, b), q3 = 0 -> 1.5 / 3; recall@10: 1 + 1 + 0 -> 2 / 3
    result = evaluate_run(run, qrels, ["mrr@10", "recall@2", "recall@10"])
    assert result == pytest.approx({"mrr@10": 0.5, "recall@2": 0.5, "recall@10": 2 / 3})
    assert list(result) == ["mrr@10", "recall@2", "recall@10"]
    assert set(evaluate_run(run, qrels)) == {"ndcg@10", "mrr@10", "recall@10", "recall@100"}
    # the same name twice is computed once, not summed twice
    assert evaluate_run(run, qrels, ["mrr@10", "mrr@10"]) == pytest.approx({"mrr@10": 0.5})


def test_per_query_values() -> None:
    qrels = {"q1": {"a": 1}, "q2": {"b": 1}}
    assert per_query({"q1": ["x", "a"]}, qrels, "MRR@10") == {"q1": 0.5, "q2": 0.0}


@pytest.mark.parametrize("name", ["map@10", "ndcg", "ndcg@0", "ndcg@x", "recall@-5", "ndcg@@10"])
def test_unknown_metric_lists_valid_ones(name: str) -> None:
    with pytest.raises(ValueError, match=r"ndcg@K, mrr@K and recall@K"):
        evaluate_run({}, {"q": {"a": 1}}, [name])
    with pytest.raises(ValueError, match="unknown metric"):
        validate_metrics(["ndcg@10", name])


def test_evaluate_run_rejects_empty_inputs() -> None:
    with pytest.raises(ValueError, match="no metrics"):
        evaluate_run({}, {"q": {"a": 1}}, [])
    with pytest.raises(ValueError, match="qrels"):
        evaluate_run({}, {})


def test_latency_summary() -> None:
    # 1, 2, 3, 10 ms: mean 4; p50 = (2 + 3) / 2 = 2.5;
    # p95 at position 0.95 * 3 = 2.85 -> 3 + 0.85 * (10 - 3) = 8.95
    summary = latency_summary([0.001, 0.002, 0.003, 0.010])
    assert summary == pytest.approx({"mean_ms": 4.0, "p50_ms": 2.5, "p95_ms": 8.95})
    with pytest.raises(ValueError):
        latency_summary([])


# ---------------------------------------------------------------------------------------------
# Against pytrec_eval (trec_eval in C)


def _random_case(seed: int, graded: bool) -> tuple[dict[str, dict[str, int]], dict[str, list[str]]]:
    rng = random.Random(seed)
    docs = [f"d{i:03d}" for i in range(300)]
    qrels: dict[str, dict[str, int]] = {}
    run: dict[str, list[str]] = {}
    for q in range(50):
        judged = rng.sample(docs, rng.randint(1, 12))
        grades = [rng.randint(0, 3) if graded else rng.randint(0, 1) for _ in judged]
        qrels[f"q{q}"] = dict(zip(judged, grades, strict=True))
        # most queries rank their relevant documents somewhere in a 150-long list
        pool = rng.sample(docs, 150)
        for doc in judged:
            if rng.random() < 0.6 and doc not in pool[:40]:
                pool.insert(rng.randrange(40), doc)
        run[f"q{q}"] = list(dict.fromkeys(pool))[:150]
    return qrels, run


def _scored(run: dict[str, list[str]], depth: int) -> dict[str, dict[str, float]]:
    # strictly decreasing scores so trec_eval's tie-breaking never reorders the list
    return {
        qid: {doc: float(1000 - rank) for rank, doc in enumerate(ranked[:depth])}
        for qid, ranked in run.items()
    }


def _mean(results: dict[str, dict[str, float]], measure: str) -> float:
    return float(np.mean([values[measure] for values in results.values()]))


@pytest.mark.parametrize("graded", [True, False])
@pytest.mark.parametrize("seed", [7, 1338])
def test_metrics_match_pytrec_eval(seed: int, graded: bool) -> None:
    qrels, run = _random_case(seed, graded)
    measures = {"ndcg_cut_10", "recall_10", "recall_100"}
    full = pytrec_eval.RelevanceEvaluator(qrels, measures).evaluate(_scored(run, 150))
    # recip_rank has no cut-off in trec_eval: truncate the run to 10 to compare with mrr@10
    cut = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(_scored(run, 10))
    assert set(full) == set(qrels) == set(cut)
    names = ("ndcg@10", "mrr@10", "recall@10", "recall@100")
    ours = {name: per_query(run, qrels, name) for name in names}
    for qid in qrels:
        assert ours["ndcg@10"][qid] == pytest.approx(full[qid]["ndcg_cut_10"], abs=1e-9)
        assert ours["recall@10"][qid] == pytest.approx(full[qid]["recall_10"], abs=1e-9)
        assert ours["recall@100"][qid] == pytest.approx(full[qid]["recall_100"], abs=1e-9)
        assert ours["mrr@10"][qid] == pytest.approx(cut[qid]["recip_rank"], abs=1e-9)
    means = evaluate_run(run, qrels)
    assert means["ndcg@10"] == pytest.approx(_mean(full, "ndcg_cut_10"), abs=1e-9)
    assert means["mrr@10"] == pytest.approx(_mean(cut, "recip_rank"), abs=1e-9)
    assert means["recall@10"] == pytest.approx(_mean(full, "recall_10"), abs=1e-9)
    assert means["recall@100"] == pytest.approx(_mean(full, "recall_100"), abs=1e-9)
    assert 0.05 < means["ndcg@10"] < 0.95  # the case is neither trivial nor hopeless


def test_passage_duplicates_match_pytrec_eval_on_deduped_run() -> None:
    qrels, run = _random_case(99, graded=True)
    rng = random.Random(5)
    # several passages per document: repeat ids right after (or a little after) their first rank
    noisy = {
        qid: [d for doc in ranked for d in [doc] * rng.randint(1, 3)] for qid, ranked in run.items()
    }
    evaluator = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut_10", "recall_10"})
    reference = evaluator.evaluate(_scored(run, 150))
    means = evaluate_run(noisy, qrels, ["ndcg@10", "recall@10"])
    assert means["ndcg@10"] == pytest.approx(_mean(reference, "ndcg_cut_10"), abs=1e-9)
    assert means["recall@10"] == pytest.approx(_mean(reference, "recall_10"), abs=1e-9)


# ---------------------------------------------------------------------------------------------
# STS correlations


def test_sts_correlations_by_hand() -> None:
    e1 = np.array([[1, 0], [0, 2], [3, 3], [1, 2]], dtype=np.float32)
    e2 = np.array([[2, 0], [2, 0], [1, 1], [2, 1]], dtype=np.float32)
    gold = [5.0, 0.0, 4.0, 3.0]
    # cosine 1, 0, 1, 0.8; euclidean -1, -2.828, -2.828, -1.414;
    # manhattan -1, -4, -4, -2; dot 2, 0, 6, 4
    figures = sts_correlations(e1, e2, gold)
    assert list(figures) == [
        f"{corr}_{fn}"
        for fn in ("cosine", "euclidean", "manhattan", "dot")
        for corr in ("pearson", "spearman")
    ]
    from scipy.stats import pearsonr, spearmanr

    expected = {
        "cosine": [1.0, 0.0, 1.0, 0.8],
        "euclidean": [-1.0, -math.sqrt(8), -math.sqrt(8), -math.sqrt(2)],
        "manhattan": [-1.0, -4.0, -4.0, -2.0],
        "dot": [2.0, 0.0, 6.0, 4.0],
    }
    for fn, sims in expected.items():
        assert figures[f"pearson_{fn}"] == pytest.approx(pearsonr(gold, sims)[0], abs=1e-6)
        assert figures[f"spearman_{fn}"] == pytest.approx(spearmanr(gold, sims)[0], abs=1e-6)
    # spearman of dot: ranks of gold (4, 1, 3, 2) vs dot (2, 1, 4, 3):
    # sum d^2 = 4 + 0 + 1 + 1 = 6 -> 1 - 6 * 6 / (4 * (16 - 1)) = 0.4
    assert figures["spearman_dot"] == pytest.approx(0.4)


def test_sts_correlations_rejects_bad_shapes_and_handles_constants() -> None:
    with pytest.raises(ValueError, match="shapes"):
        sts_correlations(np.zeros((3, 4)), np.zeros((3, 5)), [1, 2, 3])
    with pytest.raises(ValueError, match="shapes"):
        sts_correlations(np.zeros((3, 4)), np.zeros((3, 4)), [1, 2])
    with pytest.raises(ValueError, match="two"):
        sts_correlations(np.ones((1, 4)), np.ones((1, 4)), [1.0])
    same = np.ones((3, 4), dtype=np.float32)
    assert all(math.isnan(v) for v in sts_correlations(same, same, [1.0, 2.0, 3.0]).values())


WORDS = (
    "한 남자 여자 아이 고양이 강아지 가 는 이 를 을 에서 공원 집 길 바다 산 노래 춤 을 추고 있다 "
    "먹고 달리고 자고 기타 피아노 연주 하고 빨간 파란 큰 작은 자전거 말 을 타고 책 읽고 웃고 있다"
).split()


def _tiny_model(folder: Path, vocab_words: list[str], seed: int) -> object:
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import StaticEmbedding
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace

    vocab = {"[UNK]": 0, **{w: i + 1 for i, w in enumerate(dict.fromkeys(vocab_words))}}
    tokenizer = Tokenizer(WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = Whitespace()
    weights = np.random.default_rng(seed).normal(size=(len(vocab), 16)).astype(np.float32)
    module = StaticEmbedding(tokenizer, embedding_weights=weights)
    model = SentenceTransformer(modules=[module], device="cpu")
    model.save(str(folder))
    return SentenceTransformer(str(folder), device="cpu", local_files_only=True)


def _check_against_evaluator(model: object, pairs: StsPairs, spearman_tol: float = 1e-6) -> None:
    from sentence_transformers.sentence_transformer.evaluation import EmbeddingSimilarityEvaluator

    fns = ["cosine", "euclidean", "manhattan", "dot"]
    evaluator = EmbeddingSimilarityEvaluator(
        pairs.sentences1, pairs.sentences2, pairs.scores, similarity_fn_names=fns, write_csv=False
    )
    reference = evaluator(model)
    emb1 = model.encode(pairs.sentences1, convert_to_numpy=True)  # type: ignore[attr-defined]
    emb2 = model.encode(pairs.sentences2, convert_to_numpy=True)  # type: ignore[attr-defined]
    ours = sts_correlations(emb1, emb2, pairs.scores)
    assert len(ours) == 8
    for key, value in ours.items():
        assert -1.0 <= value <= 1.0
        tolerance = spearman_tol if key.startswith("spearman") else 1e-7
        assert value == pytest.approx(reference[key], abs=tolerance), key


@pytest.mark.st
def test_sts_correlations_equal_sentence_transformers_evaluator(tmp_path: Path) -> None:
    rng = random.Random(3)
    model = _tiny_model(tmp_path / "tiny", WORDS, seed=11)
    sentences = [" ".join(rng.sample(WORDS, rng.randint(3, 8))) for _ in range(100)]
    gold = [round(rng.uniform(0, 5), 2) for _ in range(50)]
    pairs = StsPairs(sentences[:50], sentences[50:], gold)
    _check_against_evaluator(model, pairs)


@needs_korsts
@pytest.mark.st
def test_sts_correlations_equal_evaluator_on_korsts(tmp_path: Path) -> None:
    pairs = load_sts(KORSTS / "pairs.tsv")
    words = [w for s in pairs.sentences1 + pairs.sentences2 for w in s.split()]
    model = _tiny_model(tmp_path / "korsts", words, seed=5)
    # Pairs with identical embeddings (identical sentences) have cosine 1 up to float32 rounding,
    # which numpy and torch round differently; their order among themselves moves Spearman by
    # ~1e-5 at most, invisible in the x100, 2-decimal figures. Pearson agrees to rounding.
    _check_against_evaluator(model, pairs, spearman_tol=1e-4)


# ---------------------------------------------------------------------------------------------
# BEIR loader


@needs_korquad
def test_load_korquad() -> None:
    data = load_beir(KORQUAD)
    assert isinstance(data, BeirDataset)
    assert len(data.queries) == len(data.qrels) == 2844
    assert data.corpus_path == KORQUAD / "corpus.jsonl" and data.corpus_path.is_file()
    assert data.split == "test" and data.unjudged_queries == 0
    assert data.queries["6521755-0-0"] == "미국 군대 내 두번째로 높은 직위는 무엇인가?"
    assert data.qrels["6521755-0-0"] == {"kq1dev-001-00": 1}


def _beir(
    root: Path,
    queries: str,
    qrels: str,
    *,
    split: str = "test",
    gz: bool = False,
    corpus: bool = True,
) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    if corpus:
        (root / "corpus.jsonl").write_text('{"_id": "d1", "text": "본문"}\n', encoding="utf-8")
    if gz:
        with gzip.open(root / "queries.jsonl.gz", "wt", encoding="utf-8") as handle:
            handle.write(queries)
    else:
        (root / "queries.jsonl").write_text(queries, encoding="utf-8")
    (root / "qrels").mkdir(exist_ok=True)
    (root / "qrels" / f"{split}.tsv").write_text(qrels, encoding="utf-8")
    return root


QUERIES = (
    '{"_id": "q1", "text": "첫 질문"}\n\n'
    '{"_id": "q2", "text": "둘째"}\n'
    '{"_id": "q3", "text": "미판정"}\n'
)


def test_load_beir_small_variants(tmp_path: Path) -> None:
    # no header, a "2.0" grade, a zero grade, a gzipped queries file, an unjudged query
    qrels = "q1\td1\t2.0\nq2\td1\t0\nq2\td2\t1\n"
    root = _beir(tmp_path / "b", QUERIES, qrels, split="dev", gz=True)
    data = load_beir(root, split="dev")
    assert data.queries == {"q1": "첫 질문", "q2": "둘째"}
    assert data.qrels == {"q1": {"d1": 2}, "q2": {"d1": 0, "d2": 1}}
    assert data.unjudged_queries == 1 and data.split == "dev"
    # four-column TREC qrels and an integer _id
    root = _beir(tmp_path / "t", '{"_id": 7, "text": "숫자 아이디"}\n', "7 0 d1 1\n")
    assert load_beir(root).qrels == {"7": {"d1": 1}}


def test_load_beir_missing_folder_and_files(tmp_path: Path) -> None:
    layout = r"does not exist.*corpus\.jsonl, queries\.jsonl and qrels/test\.tsv"
    with pytest.raises(DatasetError, match=layout):
        load_beir(tmp_path / "nope")
    root = _beir(tmp_path / "b", QUERIES, "q1\td1\t1\n", split="dev", corpus=False)
    with pytest.raises(DatasetError) as info:
        load_beir(root)
    message = str(info.value)
    assert "missing corpus.jsonl, qrels/test.tsv (qrels/ has: dev)" in message
    assert "queries.jsonl, qrels/test.tsv" not in message.split("missing")[1].split("(")[0]
    assert "\n" not in message


Q1 = '{"_id": "q1", "text": "a"}\n'
QRELS_1 = "q1\td1\t1\n"
HEADER = "query-id\tcorpus-id\tscore\n"


@pytest.mark.parametrize(
    ("queries", "qrels", "pattern"),
    [
        (Q1 + '{"_id": "q2", "text": \n', QRELS_1, r"queries\.jsonl:2: invalid JSON"),
        (Q1 + '["q2"]\n', QRELS_1, r"queries\.jsonl:2: expected a JSON object"),
        ('{"_id": "q1", "txt": "a"}\n', QRELS_1, r"l:1: missing field 'text' \(found: _id, txt\)"),
        ('{"_id": 1.5, "text": "a"}\n', QRELS_1, r"queries\.jsonl:1: field '_id' must be a string"),
        (Q1 + '{"_id": "q1", "text": "b"}\n', QRELS_1, r"queries\.jsonl:2: dup.*'q1'.*line 1"),
        (QUERIES, HEADER + "q1\td1\n", r"test\.tsv:2: expected 3 tab-separated columns"),
        (QUERIES, HEADER + "q1\td1\t1\nq2\td2\t0.5\n", r"test\.tsv:3: .*'0\.5' is not an integer"),
        (QUERIES, "q1\td1\t1\nq2\td2\thigh\n", r"test\.tsv:2: relevance score 'high' is not an"),
        (QUERIES, HEADER + "\n", r"test\.tsv: the qrels file has no judgments"),
        (QUERIES, "q1\td1\t1\nq8\td1\t1\nq9\td1\t1\n", r"test\.tsv: 2 query id\(s\) .*'q8', 'q9'"),
    ],
)
def test_load_beir_errors(tmp_path: Path, queries: str, qrels: str, pattern: str) -> None:
    root = _beir(tmp_path / "b", queries, qrels)
    with pytest.raises(DatasetError, match=pattern) as info:
        load_beir(root)
    assert "\n" not in str(info.value)


def test_load_beir_truncated_gzip(tmp_path: Path) -> None:
    root = _beir(tmp_path / "b", QUERIES, "q1\td1\t1\n", gz=True)
    whole = (root / "queries.jsonl.gz").read_bytes()
    (root / "queries.jsonl.gz").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(DatasetError, match=r"cannot read '.*queries\.jsonl\.gz'"):
        load_beir(root)


def test_load_beir_bad_utf8(tmp_path: Path) -> None:
    root = _beir(tmp_path / "b", QUERIES, "q1\td1\t1\n")
    bad = b'{"_id": "q1", "text": "a"}\n{"_id": "q2", "text": "\xff"}\n'
    (root / "queries.jsonl").write_bytes(bad)
    with pytest.raises(DatasetError, match=r"queries\.jsonl:2: .*not valid UTF-8"):
        load_beir(root)


# ---------------------------------------------------------------------------------------------
# STS loader


@needs_korsts
def test_korsts_tsv_and_jsonl_load_the_same_pairs() -> None:
    from_tsv = load_sts(KORSTS / "pairs.tsv")
    from_jsonl = load_sts(KORSTS / "pairs.jsonl")
    assert len(from_tsv) == 1500
    assert from_tsv == from_jsonl
    assert load_sts(KORSTS) == from_tsv  # a folder: pairs.tsv inside
    assert from_tsv.sentences1[0] == "안전모를 가진 한 남자가 춤을 추고 있다."
    assert from_tsv.scores[:2] == [5.0, 4.75]
    assert min(from_tsv.scores) >= 0.0 and max(from_tsv.scores) <= 5.0


def test_original_korsts_layout_with_quotes(tmp_path: Path) -> None:
    path = tmp_path / "sts-dev.tsv"
    path.write_text(
        "genre\tfilename\tyear\tid\tscore\tsentence1\tsentence2\n"
        'main-captions\tMSRvid\t2012test\t0000\t5.000\t"안녕" 하고 말했다.\t"안녕"이라고 말했다. \n'
        "main-news\theadlines\t2015\t0001\t1.5\t한 \"따옴표\t두 문장\textra\n",
        encoding="utf-8",
    )
    pairs = load_sts(path)
    assert pairs.sentences1 == ['"안녕" 하고 말했다.', '한 "따옴표']
    assert pairs.sentences2 == ['"안녕"이라고 말했다.', "두 문장"]
    assert pairs.scores == [5.0, 1.5]
    assert load_sts(tmp_path) == pairs  # the folder holds sts-dev.tsv


STS_HEADER = "sentence1\tsentence2\tscore\n"


@pytest.mark.parametrize(
    ("name", "content", "pattern"),
    [
        (
            "p.tsv",
            "s1\ts2\tscore\na\tb\t1\n",
            r"p\.tsv:1: the header has no 'sentence1', 'sentence2' column \(found: s1, s2, score\)",
        ),
        ("p.tsv", STS_HEADER + "a\tb\t1\nc\td\tabc\n", r"p\.tsv:3: score 'abc' is not a finite"),
        ("p.tsv", STS_HEADER + "a\tb\tnan\n", r"p\.tsv:2: score 'nan'"),
        ("p.tsv", STS_HEADER + "a\tb\n", r"p\.tsv:2: expected at least 3 tab-separated fields"),
        ("p.tsv", STS_HEADER + "\n", r"p\.tsv: the file has no sentence pairs"),
        ("p.tsv", "", r"p\.tsv: the file has no sentence pairs"),
        (
            "p.jsonl",
            '{"sentence1": "a", "score": 1}\n',
            r"p\.jsonl:1: missing field 'sentence2' \(found: sentence1, score\)",
        ),
        ("p.jsonl", '{"sentence1": "a", "sentence2": "b", "score": "x"}\n', r"jsonl:1: score 'x'"),
        ("p.jsonl", '{"sentence1": "a", "sentence2": "b", "score": true}\n', r"1: score True"),
        ("p.jsonl", '{"sentence1": 1, "sentence2": "b", "score": 1}\n', r"1: .*must be strings"),
        ("p.jsonl", '{"sentence1": "a", "sentence2": "b"', r"p\.jsonl:1: invalid JSON"),
        ("p.csv", "sentence1,sentence2,score\n", r"p\.csv': unknown STS format"),
    ],
)
def test_load_sts_errors(tmp_path: Path, name: str, content: str, pattern: str) -> None:
    (tmp_path / name).write_text(content, encoding="utf-8")
    with pytest.raises(DatasetError, match=pattern) as info:
        load_sts(tmp_path / name)
    assert "\n" not in str(info.value)


def test_load_sts_missing_paths(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"does not exist"):
        load_sts(tmp_path / "none.tsv")
    expected = r"expected one of: pairs\.tsv, pairs\.jsonl, sts-dev\.tsv"
    with pytest.raises(DatasetError, match=expected):
        load_sts(tmp_path)


# ---------------------------------------------------------------------------------------------
# Run files


RUN = {"q1": [("문서-1", 0.91), ("d7", np.float32(0.5))], "q 2": [("d3", 1.0)]}


def test_write_run_trec_parses_back(tmp_path: Path) -> None:
    run = {"q1": [("문서-1", 0.91), ("d7", np.float32(0.5))], "q2": [("d3", 1.0)]}
    path = tmp_path / "out" / "run.trec"
    write_run(run, path, tag="e5-small")
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "q1 Q0 문서-1 1 0.91 e5-small"
    assert [line.split()[3] for line in lines] == ["1", "2", "1"]
    with path.open(encoding="utf-8") as handle:
        parsed = pytrec_eval.parse_run(handle)
    assert parsed == {"q1": {"문서-1": 0.91, "d7": 0.5}, "q2": {"d3": 1.0}}
    assert [p.name for p in path.parent.iterdir()] == ["run.trec"]  # no temporary left behind


def test_write_run_jsonl_parses_back(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    path.write_text("old\n", encoding="utf-8")
    write_run(RUN, path, fmt="jsonl")
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert rows == [
        {
            "query_id": "q1",
            "hits": [
                {"id": "문서-1", "rank": 1, "score": 0.91},
                {"id": "d7", "rank": 2, "score": 0.5},
            ],
        },
        {"query_id": "q 2", "hits": [{"id": "d3", "rank": 1, "score": 1.0}]},
    ]
    assert "문서" in path.read_text(encoding="utf-8")  # not ASCII-escaped


def test_write_run_trec_rejects_whitespace_ids_and_keeps_old_file(tmp_path: Path) -> None:
    path = tmp_path / "run.trec"
    path.write_text("old\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"query id 'q 2' .*whitespace"):
        write_run(RUN, path)
    assert path.read_text(encoding="utf-8") == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.trec"]
    with pytest.raises(ValueError, match="format"):
        write_run(RUN, path, fmt="csv")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="tag"):
        write_run(RUN, path, tag="my run")


def test_write_run_unwritable_destination(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("", encoding="utf-8")
    with pytest.raises(DatasetError, match="cannot write the run file"):
        write_run({"q": [("d", 1.0)]}, blocker / "run.trec")


