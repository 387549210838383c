"""``kosearch finetune`` and ``kosearch.finetune``: offline, on tiny models and tiny data.

A tiny BEIR folder is made of generated Korean sentences (one document each); each question is
its document without the first word, so the data is learnable and the answer known.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from click.testing import CliRunner
from tinymodels import korean_sentences

from kosearch.cli import cli
from kosearch.errors import ConfigError, DatasetError, MissingDependencyError, ModelLoadError

pytestmark = pytest.mark.st
pytest.importorskip("datasets", reason="the train extra: pip install 'kosearch[train]'")
pytest.importorskip("accelerate", reason="the train extra: pip install 'kosearch[train]'")

N_DOCS = 60
FAST = {"batch_size": 8, "device": "cpu"}


def write_beir(root: Path, n: int = N_DOCS, *, qrels: list[str] | None = None) -> Path:
    """A BEIR folder of ``n`` documents and one question per document."""
    (root / "qrels").mkdir(parents=True)
    docs = list(dict.fromkeys(korean_sentences(400)))[:n]
    with open(root / "corpus.jsonl", "w", encoding="utf-8") as f:
        for i, text in enumerate(docs):
            f.write(json.dumps({"_id": f"d{i}", "title": "", "text": text},
                               ensure_ascii=False) + "\n")
    with open(root / "queries.jsonl", "w", encoding="utf-8") as f:
        for i, text in enumerate(docs):
            question = " ".join(text.split()[1:])
            f.write(json.dumps({"_id": f"q{i}", "text": question}, ensure_ascii=False) + "\n")
    lines = qrels if qrels is not None else [f"q{i}\td{i}\t1" for i in range(n)]
    (root / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "\n".join(lines) + "\n", encoding="utf-8"
    )
    return root


def write_sts(path: Path, n: int = 40, *, bad: float | None = None) -> Path:
    sentences = list(dict.fromkeys(korean_sentences(400)))
    rows = ["sentence1\tsentence2\tscore"]
    for i in range(n):
        same = i % 2 == 0
        other = sentences[i] if same else sentences[i + 100]
        score = 5.0 if same else (i % 5) * 0.5
        rows.append(f"{sentences[i]}\t{other}\t{score}")
    if bad is not None:
        rows.append(f"{sentences[0]}\t{sentences[1]}\t{bad}")
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def beir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_beir(tmp_path_factory.mktemp("beir") / "data")


@pytest.fixture(scope="module")
def trained(tiny_xlmr_dir: Path, beir: Path, tmp_path_factory: pytest.TempPathFactory):
    """One fine-tuning run of the e5-like tiny model, shared by the tests that inspect it."""
    from kosearch import finetune

    out = tmp_path_factory.mktemp("trained") / "model"
    return finetune(beir, out, model=str(tiny_xlmr_dir), epochs=2, lr=1e-3, eval_split=0.2,
                    hard_negatives=1, seed=3, **FAST)


def _mnrl_loss(model_dir: Path, queries: list[str], passages: list[str]) -> float:
    """MultipleNegativesRankingLoss (scale 20, cosine, in-batch negatives) over all pairs,
    computed with kosearch's own encoder, so with the prompts it applies at search time."""
    import numpy as np

    from kosearch.encoding.encoder import SentenceTransformerEncoder

    encoder = SentenceTransformerEncoder(str(model_dir), device="cpu", processes=1)
    q = encoder.encode_queries(queries)
    p = encoder.encode_passages(passages)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    p /= np.linalg.norm(p, axis=1, keepdims=True)
    logits = 20.0 * q @ p.T
    logits -= logits.max(axis=1, keepdims=True)
    log_softmax = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    return float(-np.mean(np.diag(log_softmax)))


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _pairs(beir: Path) -> tuple[list[str], list[str]]:
    queries = [r["text"] for r in _records(beir / "queries.jsonl")]
    return queries, [r["text"] for r in _records(beir / "corpus.jsonl")]


def test_training_lowers_the_loss(trained, tiny_xlmr_dir: Path, beir: Path) -> None:
    queries, docs = _pairs(beir)
    before = _mnrl_loss(tiny_xlmr_dir, queries, docs)
    after = _mnrl_loss(trained.output, queries, docs)
    assert after < before
    assert trained.train["steps"] == math.ceil(trained.counts["train"] / 8) * 2
    assert trained.train["loss"] and trained.train["steps_per_second"] > 0


def test_the_loss_scale_is_fitted_to_the_base_model(trained) -> None:
    from kosearch.train.temperature import SCALE_RANGE

    assert trained.settings["scale_fitted"] is True
    assert SCALE_RANGE[0] <= trained.settings["scale"] <= SCALE_RANGE[1]


def test_the_saved_model_loads_with_its_prompts(trained) -> None:
    from kosearch.encoding.encoder import SentenceTransformerEncoder

    encoder = SentenceTransformerEncoder(str(trained.output), device="cpu", processes=1)
    assert (encoder.query_prompt, encoder.passage_prompt) == ("query: ", "passage: ")
    saved = json.loads((trained.output / "finetune.json").read_text(encoding="utf-8"))
    assert saved["prompts"] == {"query": "query: ", "passage": "passage: "}
    assert saved["settings"]["loss"] == "cached-mnrl" and saved["settings"]["seed"] == 3
    assert saved["counts"] == {"train": 48, "held_out": 12, "skipped_queries": 0,
                               "negatives_per_example": 1}
    assert set(saved["before"]) == set(saved["after"]) == {"dense", "hybrid"}
    for figures in (*saved["before"].values(), *saved["after"].values()):
        assert 0 <= figures["ndcg@10"] <= 1
    # nothing is left beside the output
    assert sorted(p.name for p in trained.output.parent.iterdir()) == ["model"]


def test_the_held_out_figures_are_those_of_eval_retrieval(trained, beir: Path,
                                                          tmp_path: Path) -> None:
    """The 'after' dense nDCG equals `kosearch eval retrieval` of the saved model on the
    held-out questions: the same code measures both."""
    from kosearch.train.data import load_training_data, split_queries

    data = load_training_data(beir)
    _, held = split_queries(sorted(data.queries), 0.2, 3)
    held_dir = tmp_path / "held"
    (held_dir / "qrels").mkdir(parents=True)
    (held_dir / "corpus.jsonl").write_bytes((beir / "corpus.jsonl").read_bytes())
    (held_dir / "queries.jsonl").write_text("".join(
        json.dumps({"_id": q, "text": data.queries[q]}, ensure_ascii=False) + "\n" for q in held
    ), encoding="utf-8")
    (held_dir / "qrels" / "test.tsv").write_text(
        "".join(f"{q}\td{q[1:]}\t1\n" for q in held), encoding="utf-8")
    result = CliRunner().invoke(cli, ["-q", "eval", "retrieval", str(held_dir), "--model",
                                      str(trained.output), "--compare", "dense", "--json"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout)["results"][0]
    assert figures["ndcg@10"] == pytest.approx(trained.after["dense"]["ndcg@10"])


def test_kosearch_index_uses_the_finetuned_model(trained, beir: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    index = tmp_path / "idx"
    built = runner.invoke(cli, ["-q", "index", str(beir / "corpus.jsonl"), "-o", str(index),
                                "--model", str(trained.output)])
    assert built.exit_code == 0, built.output
    manifest = json.loads((index / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["model"]["query_prompt"] == "query: "
    assert manifest["model"]["passage_prompt"] == "passage: "
    found = runner.invoke(cli, ["-q", "query", "서울", "-i", str(index), "--json"])
    assert found.exit_code == 0, found.output
    assert json.loads(found.stdout)["hits"]


def test_cli_end_to_end(tiny_bert_dir: Path, beir: Path, tmp_path: Path) -> None:
    out = tmp_path / "tuned"
    args = ["-q", "finetune", str(beir), "-o", str(out), "--model", str(tiny_bert_dir),
            "--max-steps", "2", "--batch-size", "8", "--eval-split", "0.1", "--device", "cpu"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("fine-tuned ") and "2 steps" in lines[0]
    assert lines[1] == "held-out: 6 questions"
    rows = [line.split() for line in lines[3:] if not line.startswith("index with it")]
    assert {(r[0], r[1]) for r in rows} >= {("dense", "ndcg@10"), ("hybrid", "ndcg@10")}
    assert "Traceback" not in result.stderr
    saved = json.loads((out / "finetune.json").read_text(encoding="utf-8"))
    assert saved["train"]["steps"] == 2 and saved["prompts"] == {"query": "", "passage": ""}
    again = CliRunner().invoke(cli, args)
    assert again.exit_code == 1
    assert again.stderr.strip().splitlines() == [
        f"Error: the output '{out}' already exists; pass --overwrite to replace it"
    ]
    replaced = CliRunner().invoke(cli, [*args, "--overwrite", "--json", "--scale", "30"])
    assert replaced.exit_code == 0, replaced.output
    saved = json.loads(replaced.stdout)
    assert saved["train"]["steps"] == 2
    assert (saved["settings"]["scale"], saved["settings"]["scale_fitted"]) == (30.0, False)
    bad = CliRunner().invoke(cli, [*args, "--overwrite", "--scale", "-1"])
    assert bad.exit_code == 2
    assert "Invalid value for '--scale': '-1' is not 'auto' or a positive number" in bad.stderr


def test_a_model_worse_than_its_base_is_flagged(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """The before/after table ends with a warning, not the indexing hint, when the held-out
    headline metric fell (as on KorQuAD with me5-small-ko, bench/finetune.py)."""
    from kosearch.cli.finetune import _render
    from kosearch.train.finetune import FinetuneResult

    def result(after: float) -> FinetuneResult:
        return FinetuneResult(
            output=tmp_path / "tuned", kind="retrieval", base_model="base", settings={"loss": "x"},
            counts={"train": 8, "held_out": 2}, prompts={}, train={"steps": 1, "seconds": 1.0},
            before={"dense": {"ndcg@10": 0.8891}, "hybrid": {"ndcg@10": 0.9558}},
            after={"dense": {"ndcg@10": after}, "hybrid": {"ndcg@10": 0.9603}})

    worse = result(0.8481)
    assert worse.regressed() == ("dense", "ndcg@10", 0.8891, 0.8481)
    _render(worse)
    out, err = capsys.readouterr()
    assert "index with it" not in out
    assert err.strip() == (
        "warning: the fine-tuned model is worse than base on the held-out questions (dense "
        "ndcg@10 0.8891 -> 0.8481); keep indexing with the base model, or train again with a "
        "lower --lr or fewer --max-steps")
    better = result(0.8900)
    assert better.regressed() is None
    _render(better)
    out, err = capsys.readouterr()
    assert out.splitlines()[-1].startswith("index with it") and err == ""


def test_sts_data_trains_with_the_cosine_loss(tiny_bert_dir: Path, tmp_path: Path) -> None:
    from kosearch import finetune

    pairs = write_sts(tmp_path / "sts.tsv")
    result = finetune(pairs, tmp_path / "out", model=str(tiny_bert_dir), eval_split=0.25,
                      max_steps=3, **FAST)
    assert result.kind == "sts" and result.settings["loss"] == "cosine"
    assert result.counts == {"train": 30, "held_out": 10}
    for figures in (result.before["sts"], result.after["sts"]):
        assert -1 <= figures["spearman_cosine"] <= 1
    with pytest.raises(ConfigError, match="--loss mnrl does not fit sts data; use cosine"):
        finetune(pairs, tmp_path / "out2", model=str(tiny_bert_dir), loss="mnrl", **FAST)
    with pytest.raises(ConfigError, match="a scale applies to the mnrl losses, not to the "
                                          "cosine loss"):
        finetune(pairs, tmp_path / "out2", model=str(tiny_bert_dir), scale=50.0, **FAST)
    assert result.settings["scale"] is None


def test_jsonl_pairs_with_given_negatives(tiny_bert_dir: Path, tmp_path: Path) -> None:
    from kosearch import finetune

    docs = list(dict.fromkeys(korean_sentences(400)))[:30]
    lines = [{"query": f"{i}번 질문: " + " ".join(d.split()[1:]), "positive": d,
              "negative": docs[(i + 7) % 30]} for i, d in enumerate(docs)]
    lines.append({"query": "답이 없는 질문", "positive": ""})
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines),
                    encoding="utf-8")
    result = finetune(data, tmp_path / "out", model=str(tiny_bert_dir), hard_negatives=0,
                      eval_split=0, max_steps=2, **FAST)
    assert result.settings["mine_with"] == "lexical"
    assert result.counts == {"train": 30, "held_out": 0, "skipped_queries": 1,
                             "negatives_per_example": 1}
    assert result.before == result.after == {}


@pytest.mark.parametrize("mode", ["lexical", "dense", "hybrid"])
def test_mined_negatives_are_never_relevant(mode: str, tiny_xlmr_dir: Path, beir: Path) -> None:
    from kosearch.encoding.encoder import SentenceTransformerEncoder
    from kosearch.index import Index
    from kosearch.train.data import load_training_data
    from kosearch.train.examples import build_examples

    data = load_training_data(beir)
    # two relevant documents for q0: neither may come back as its negative
    data.positives["q0"] = {"d0", "d1"}
    encoder = SentenceTransformerEncoder(str(tiny_xlmr_dir), device="cpu", processes=1)
    index = Index.build(data.corpus, None, encoder=encoder)
    texts = {r["_id"]: r["text"] for r in _records(beir / "corpus.jsonl")}
    examples = build_examples(index, data, negatives=3, seed=0, mode=mode)
    assert len(examples) == N_DOCS
    for qid, example in zip(sorted(data.queries), examples):
        relevant = {texts[d] for d in data.positives[qid]}
        assert example.positive in relevant
        assert len(example.negatives) == 3 and len(set(example.negatives)) == 3
        assert not relevant & set(example.negatives)


def test_no_batch_holds_a_text_twice(tiny_bert_dir: Path, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Three questions per passage (as in KorQuAD): a batch holding two of them would make a
    question's own positive an in-batch negative of the other; the trainer must never do that."""
    from sentence_transformers.base.data_collator import BaseDataCollator

    from kosearch import finetune

    docs = list(dict.fromkeys(korean_sentences(400)))[:20]
    root = tmp_path / "data"
    (root / "qrels").mkdir(parents=True)
    (root / "corpus.jsonl").write_text("".join(
        json.dumps({"_id": f"d{i}", "text": d}, ensure_ascii=False) + "\n"
        for i, d in enumerate(docs)), encoding="utf-8")
    questions = [(f"q{i}-{k}", i, f"{k}번: " + " ".join(d.split()[k:]))
                 for i, d in enumerate(docs) for k in range(1, 4)]
    (root / "queries.jsonl").write_text("".join(
        json.dumps({"_id": q, "text": text}, ensure_ascii=False) + "\n"
        for q, _, text in questions), encoding="utf-8")
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(
        f"{q}\td{i}\t1\n" for q, i, _ in questions), encoding="utf-8")
    batches: list[list[str]] = []
    real = BaseDataCollator.__call__

    def record(self, features):
        batches.append([v for row in features for v in row.values() if isinstance(v, str)])
        return real(self, features)

    monkeypatch.setattr(BaseDataCollator, "__call__", record)
    result = finetune(root, tmp_path / "out", model=str(tiny_bert_dir), hard_negatives=1,
                      loss="mnrl", eval_split=0, epochs=2, **FAST)
    assert result.counts["train"] == 60 and len(batches) >= result.train["steps"] >= 10
    for batch in batches:
        assert len(batch) == len(set(batch)), "a text appears twice in one batch"


def test_a_model_without_pooler_saves_and_loads_without_a_report(
    tiny_bert_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """sentence-transformers saves a pooler-less model (e5, like me5-small-ko) without
    ``add_pooling_layer=False``; reloaded, transformers builds an unused random pooler and prints
    a LOAD REPORT. The fine-tuned model keeps the setting, and kosearch's loading hides that
    report (only that one) for models saved elsewhere."""
    import logging

    from sentence_transformers import SentenceTransformer

    from kosearch.encoding.loading import _only_unused_pooler, load_model
    from kosearch.train.finetune import _keep_pooler_setting

    model = SentenceTransformer(str(tiny_bert_dir), device="cpu",
                                model_kwargs={"add_pooling_layer": False})
    assert model.transformers_model.pooler is None
    plain, kept = tmp_path / "plain", tmp_path / "kept"
    for target in (plain, kept):
        model.save(str(target), create_model_card=False)
    _keep_pooler_setting(model, kept)

    def reports(load) -> int:
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="transformers"):
            load()
        return sum("LOAD REPORT" in r.getMessage() for r in caplog.records)

    # what sentence-transformers alone gives
    assert reports(lambda: SentenceTransformer(str(plain), device="cpu")) == 1
    assert reports(lambda: SentenceTransformer(str(kept), device="cpu")) == 0
    assert SentenceTransformer(str(kept), device="cpu").transformers_model.pooler is None
    assert reports(lambda: load_model(SentenceTransformer, str(plain), "cpu", fix="-")) == 0

    def report(rows: str) -> logging.LogRecord:
        return logging.LogRecord("transformers.modeling_utils", logging.WARNING, "", 0,
                                 f"BertModel LOAD REPORT from: x\nKey | Status |\n{rows}",
                                 None, None)

    assert not _only_unused_pooler(report("pooler.dense.bias | MISSING |"))
    assert not _only_unused_pooler(report("pooler.dense.bias | \x1b[31mMISSING\x1b[0m |"))
    assert _only_unused_pooler(report("pooler.dense.bias | MISSING |\n"
                                      "encoder.layer.0.attention.self.query.weight | MISSING |"))
    assert _only_unused_pooler(report("pooler.dense.bias | UNEXPECTED |"))


def test_the_split_is_seeded_and_disjoint() -> None:
    from kosearch.train.data import split_queries

    ids = [f"q{i}" for i in range(50)]
    train, held = split_queries(ids, 0.2, 7)
    assert (train, held) == split_queries(ids, 0.2, 7)
    assert len(held) == 10 and not set(train) & set(held) and sorted(train + held) == sorted(ids)
    assert split_queries(ids, 0.2, 8)[1] != held
    assert split_queries(ids, 0, 7) == (ids, [])


# ------------------------------------------------------------------------------- bad input


def test_qrels_naming_an_unknown_document(tmp_path: Path) -> None:
    from kosearch import finetune

    qrels = ["q0\td0\t1", "q1\td999\t1"]
    data = write_beir(tmp_path / "data", 10, qrels=qrels)
    with pytest.raises(DatasetError) as error:
        finetune(data, tmp_path / "out")
    assert str(error.value).startswith(f"{data / 'qrels' / 'test.tsv'}:3: corpus id 'd999'")


def test_queries_without_positives_are_skipped_and_counted(tmp_path: Path) -> None:
    from kosearch.train.data import load_training_data

    qrels = [f"q{i}\td{i}\t{0 if i < 3 else 1}" for i in range(8)]
    data = load_training_data(write_beir(tmp_path / "data", 10, qrels=qrels))
    assert sorted(data.queries) == [f"q{i}" for i in range(3, 8)]
    assert data.skipped == 3 + 2  # judged not relevant, and not judged at all


def test_too_few_pairs_for_a_batch(tmp_path: Path) -> None:
    from kosearch import finetune

    data = write_beir(tmp_path / "data", 20)
    with pytest.raises(ConfigError, match="only 18 training pair\\(s\\) after holding out 2, "
                                          "fewer than one batch of 32"):  # questions: 32
        finetune(data, tmp_path / "out")
    pairs = write_sts(tmp_path / "sts.tsv", 10)
    with pytest.raises(ConfigError, match="only 9 training pair\\(s\\) after holding out 1, "
                                          "fewer than one batch of 16"):  # STS pairs: 16
        finetune(pairs, tmp_path / "out")


def test_an_unloadable_model_fails_as_index_does(beir: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    missing = str(tmp_path / "no-such-model")
    tuned = runner.invoke(cli, ["finetune", str(beir), "-o", str(tmp_path / "o"), "--model",
                                missing, "--batch-size", "8"])
    indexed = runner.invoke(cli, ["index", str(beir / "corpus.jsonl"), "-o",
                                  str(tmp_path / "i"), "--model", missing])
    assert tuned.exit_code == indexed.exit_code == 1
    assert tuned.stderr == indexed.stderr
    assert tuned.stderr.splitlines()[-1].startswith(f"Error: cannot load model '{missing}'")
    with pytest.raises(ModelLoadError):
        from kosearch import finetune

        finetune(beir, tmp_path / "o", model=missing, batch_size=8)
    assert not (tmp_path / "o").exists()


def test_sts_scores_out_of_range(tmp_path: Path) -> None:
    from kosearch import finetune

    pairs = write_sts(tmp_path / "sts.tsv", 10, bad=7.5)
    with pytest.raises(DatasetError, match=f"^{pairs}:12: score 7.5 is outside the STS range"):
        finetune(pairs, tmp_path / "out")


def test_cuda_without_a_gpu(beir: Path, tiny_bert_dir: Path, tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    result = CliRunner().invoke(cli, ["finetune", str(beir), "-o", str(tmp_path / "o"),
                                      "--model", str(tiny_bert_dir), "--device", "cuda"])
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: device 'cuda' is not available here")


def test_without_the_train_extra(beir: Path, tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "accelerate" else real(name, *a))
    from kosearch import finetune

    with pytest.raises(MissingDependencyError) as error:
        finetune(beir, tmp_path / "out")
    assert str(error.value) == "fine-tuning needs accelerate: pip install 'kosearch[train]'"


def test_overwrite_refuses_a_directory_it_did_not_write(beir: Path, tmp_path: Path) -> None:
    from kosearch import finetune

    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me", encoding="utf-8")
    with pytest.raises(ConfigError, match="holds no finetune.json"):
        finetune(beir, other, overwrite=True)
    assert (other / "notes.txt").read_text(encoding="utf-8") == "keep me"


@pytest.mark.parametrize("where", ["training", "saving"])
def test_ctrl_c_leaves_nothing_written(where: str, beir: Path, tiny_bert_dir: Path,
                                       tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from kosearch.train import finetune as module

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    if where == "training":
        monkeypatch.setattr(module, "train", interrupt)
    else:  # after the model is saved into the temporary directory, while measuring it
        real_load, calls = module._load, []

        def load(*args, **kwargs):
            calls.append(args)
            if len(calls) == 2:
                raise KeyboardInterrupt
            return real_load(*args, **kwargs)

        monkeypatch.setattr(module, "_load", load)
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["finetune", str(beir), "-o", str(out), "--model",
                                      str(tiny_bert_dir), "--max-steps", "1", "--batch-size",
                                      "8", "--device", "cpu", "-o", str(out)])
    assert result.exit_code == 130
    assert result.stderr.strip().splitlines()[-1] == (
        f"Error: interrupted; nothing was written to {out}."
    )
    assert list(tmp_path.iterdir()) == []
