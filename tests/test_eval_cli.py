"""`kosearch eval sts` and `kosearch eval retrieval` end to end, checked against independent
implementations (sentence-transformers' evaluator, pytrec_eval)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from click.testing import CliRunner
from tinymodels import korean_sentences

from kosearch.cli import cli

pytestmark = pytest.mark.st


def _write(path: Path, records: list[dict]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records),
                    encoding="utf-8")


@pytest.fixture()
def sts_file(tmp_path: Path) -> Path:
    rng = random.Random(7)
    sentences = korean_sentences(80, seed=11)
    pairs = [{"sentence1": sentences[i], "sentence2": sentences[i + 40],
              "score": round(rng.uniform(0, 5), 2)} for i in range(40)]
    path = tmp_path / "pairs.jsonl"
    _write(path, pairs)
    return path


def test_eval_sts_equals_the_sentence_transformers_evaluator(
    sts_file: Path, tiny_bert_dir: Path
) -> None:
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.evaluation import EmbeddingSimilarityEvaluator

    result = CliRunner().invoke(cli, ["eval", "sts", str(sts_file), "--model", str(tiny_bert_dir),
                                      "--json"])
    assert result.exit_code == 0, result.output
    ours = json.loads(result.stdout)
    records = [json.loads(line) for line in sts_file.read_text(encoding="utf-8").splitlines()]
    evaluator = EmbeddingSimilarityEvaluator(
        [r["sentence1"] for r in records], [r["sentence2"] for r in records],
        [r["score"] for r in records],
        similarity_fn_names=["cosine", "euclidean", "manhattan", "dot"], write_csv=False,
    )
    reference = evaluator(SentenceTransformer(str(tiny_bert_dir), device="cpu"))
    for key in ("pearson_cosine", "spearman_cosine", "pearson_euclidean", "spearman_euclidean",
                "pearson_manhattan", "spearman_manhattan", "pearson_dot", "spearman_dot"):
        assert ours[key] == pytest.approx(reference[key], abs=1e-4), key


def test_eval_sts_table_has_eight_figures_x100(sts_file: Path, tiny_bert_dir: Path) -> None:
    result = CliRunner().invoke(cli, ["eval", "sts", str(sts_file), "--model", str(tiny_bert_dir)])
    assert result.exit_code == 0, result.output
    rows = result.stdout.splitlines()[2:]
    assert [r.split()[0] for r in rows] == ["cosine", "euclidean", "manhattan", "dot"]
    values = [float(v) for r in rows for v in r.split()[1:]]
    assert len(values) == 8 and all(-100 <= v <= 100 for v in values)
    assert all(len(v.split(".")[1]) == 2 for r in rows for v in r.split()[1:])


@pytest.fixture()
def beir(tmp_path: Path) -> Path:
    root = tmp_path / "beir"
    (root / "qrels").mkdir(parents=True)
    topics = ["서울 한강 공원", "김치 배추 발효", "한글 세종대왕 창제", "GPU 딥러닝 학습",
              "제주도 한라산 올레길", "부산 해운대 바다", "전세 계약 보증금", "태양광 발전 패널"]
    corpus = [{"_id": f"d{i}", "title": t.split()[0], "text": f"{t}에 관한 문서이다. {t}은 유명하다."}
              for i, t in enumerate(topics)]
    queries = [{"_id": f"q{i}", "text": f"{t.split()[1]}에 대해 알려줘"} for i, t in enumerate(topics)]
    _write(root / "corpus.jsonl", corpus)
    _write(root / "queries.jsonl", queries)
    lines = ["query-id\tcorpus-id\tscore"] + [f"q{i}\td{i}\t1" for i in range(len(topics))]
    (root / "qrels" / "test.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def test_eval_retrieval_compare_matches_pytrec_eval_and_caches(
    beir: Path, tiny_xlmr_dir: Path, tmp_path: Path
) -> None:
    import pytrec_eval

    runner = CliRunner()
    args = ["eval", "retrieval", str(beir), "--model", str(tiny_xlmr_dir), "--compare",
            "dense,lexical,hybrid", "--json", "--cache-dir", str(tmp_path / "cache"),
            "--save-run", str(tmp_path / "run.trec")]
    first = runner.invoke(cli, args)
    assert first.exit_code == 0, first.output
    report = json.loads(first.stdout)
    assert report["queries"] == 8
    assert [r["setting"] for r in report["results"]] == ["dense", "lexical", "hybrid"]
    qrels = {f"q{i}": {f"d{i}": 1} for i in range(8)}
    for result in report["results"]:
        # Score by our rank, not our score: trec_eval breaks score ties by doc id, which would
        # test its tie order rather than our metrics (a tiny random model does produce ties).
        run: dict[str, dict[str, float]] = {}
        for line in (tmp_path / f"run.{result['setting']}.trec").read_text(encoding="utf-8").splitlines():
            qid, _, doc, rank, _score, _tag = line.split()
            run.setdefault(qid, {})[doc] = 1000.0 - int(rank)
        cut = {q: dict(sorted(d.items(), key=lambda x: -x[1])[:10]) for q, d in run.items()}
        ref = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut_10", "recall_10"}).evaluate(run)
        mrr = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(cut)
        assert result["ndcg@10"] == pytest.approx(sum(v["ndcg_cut_10"] for v in ref.values()) / 8)
        assert result["recall@10"] == pytest.approx(sum(v["recall_10"] for v in ref.values()) / 8)
        assert result["mrr@10"] == pytest.approx(sum(v["recip_rank"] for v in mrr.values()) / 8)
        assert result["mean_ms"] > 0 and result["p95_ms"] >= result["p50_ms"]
    assert report["results"][1]["recall@10"] == 1.0  # BM25 finds every topic word
    cached = list((tmp_path / "cache" / "eval").iterdir())
    assert len(cached) == 1
    again = runner.invoke(cli, args[:-2])
    assert again.exit_code == 0
    assert "using the cached evaluation index" in again.stderr
    assert list((tmp_path / "cache" / "eval").iterdir()) == cached


def test_eval_retrieval_on_an_existing_index(beir: Path, tiny_xlmr_dir: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    built = runner.invoke(cli, ["-q", "index", str(beir / "corpus.jsonl"), "-o", str(tmp_path / "i"),
                                "--model", str(tiny_xlmr_dir)])
    assert built.exit_code == 0, built.output
    result = runner.invoke(cli, ["eval", "retrieval", str(beir), "-i", str(tmp_path / "i"),
                                 "--mode", "lexical"])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1].split()[0] == "lexical"


@pytest.mark.parametrize(
    ("damage", "fragment"),
    [
        (lambda root: (root / "qrels" / "test.tsv").unlink(), "test.tsv"),
        (lambda root: (root / "queries.jsonl").write_text('{"_id": "zz", "text": "x"}\n'), "q0"),
        (lambda root: (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq0\td0\tabc\n"),
         "test.tsv:2"),
    ],
)
def test_malformed_dataset_is_one_line_error(beir: Path, tiny_xlmr_dir: Path, damage, fragment: str) -> None:  # noqa: ANN001
    damage(beir)
    result = CliRunner().invoke(cli, ["eval", "retrieval", str(beir), "--model", str(tiny_xlmr_dir)])
    assert result.exit_code == 1, result.output
    assert result.stderr.count("Error: ") == 1 and fragment in result.stderr
    assert "Traceback" not in result.stderr


def test_rerank_setting_needs_a_reranker(beir: Path, tiny_xlmr_dir: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["eval", "retrieval", str(beir), "--model", str(tiny_xlmr_dir),
                                      "--compare", "hybrid+rerank", "--cache-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "--rerank MODEL" in result.stderr
