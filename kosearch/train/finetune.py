"""``kosearch.finetune``: train a model on a collection's questions, measure it before and after
on held-out questions, and save it where ``kosearch index --model`` can use it.

The flow: read the data (:mod:`kosearch.train.data`) and hold out a seeded share of it; load
the base model as ``kosearch index`` does; for retrieval data, index the corpus with it, measure
the held-out questions with :func:`kosearch.eval.runner.evaluate_retrieval` and mine the
training examples (:mod:`kosearch.train.examples`); train (:mod:`kosearch.train.trainer`); save
the model with its prompts into a temporary sibling of the output directory, load it back from
there like any model, measure again, write ``finetune.json`` and only then move the directory
into place. An error or Ctrl-C at any point leaves no output directory behind.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kosearch._version import __version__
from kosearch.errors import ConfigError, MissingDependencyError
from kosearch.train.data import (
    STS_RANGE,
    RetrievalData,
    load_training_data,
    split_queries,
    sts_subset,
)
from kosearch.train.trainer import TrainReport, TrainSettings, check_settings, train

if TYPE_CHECKING:
    from kosearch.encoding.encoder import SentenceTransformerEncoder
    from kosearch.eval.datasets import StsPairs

log = logging.getLogger(__name__)

#: The file in the output directory that records the settings and the before/after figures.
FINETUNE_FILE = "finetune.json"
_TRAIN_EXTRA = ("datasets", "accelerate")
_RETRIEVAL_METRICS = ("ndcg@10", "mrr@10", "recall@10", "recall@100")
_STS_METRICS = ("spearman_cosine", "pearson_cosine")
_MINING = ("lexical", "dense", "hybrid")
#: The default batch size by kind of data: 32 questions (the KorQuAD gain in the README was
#: measured with it), 16 STS pairs.
BATCH_SIZES = {"retrieval": 32, "sts": 16}


@dataclass
class FinetuneResult:
    """What :func:`finetune` did.

    Attributes:
        output: The saved model directory.
        kind: ``retrieval`` or ``sts``.
        base_model: The model trained from.
        settings: The training settings.
        counts: Training and held-out sizes, skipped queries, negatives per example.
        prompts: The prompts saved with the model (``query``, ``passage``).
        before: Setting (``dense``, ``hybrid``, ``sts``) -> metric -> value, base model.
        after: The same for the fine-tuned model.
        train: Steps, seconds, steps per second and the logged loss.
    """

    output: Path
    kind: str
    base_model: str
    settings: dict[str, Any]
    counts: dict[str, int]
    prompts: dict[str, str]
    before: dict[str, dict[str, float]] = field(default_factory=dict)
    after: dict[str, dict[str, float]] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The JSON object written to ``finetune.json``."""
        return {"kosearch_version": __version__, **asdict(self), "output": str(self.output)}

    def table(self) -> list[tuple[str, str, float, float]]:
        """``(setting, metric, before, after)`` rows of the held-out evaluation."""
        return [(setting, name, value, self.after.get(setting, {}).get(name, float("nan")))
                for setting, metrics in self.before.items() for name, value in metrics.items()]

    def regressed(self) -> tuple[str, str, float, float] | None:
        """The headline row (dense nDCG@10, or the STS Spearman) if the fine-tuned model
        scores below the base model there on the held-out part; else None."""
        rows = self.table()
        if not rows:
            return None
        setting, name, before, after = rows[0]
        return rows[0] if after < before else None


def finetune(
    data: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    model: str | None = None,
    loss: str | None = None,
    epochs: float = 1.0,
    batch_size: int | None = None,
    lr: float = 2e-5,
    max_steps: int | None = None,
    scale: float | None = None,
    hard_negatives: int = 0,
    mine_with: str = "lexical",
    eval_split: float = 0.1,
    seed: int = 42,
    device: str | None = None,
    overwrite: bool = False,
    progress: bool = False,
) -> FinetuneResult:
    """Fine-tune an embedding model on question-passage pairs or STS pairs.

    Args:
        data: A BEIR folder (corpus.jsonl, queries.jsonl, qrels/), a JSONL file of
            ``{"query", "positive", "negative"?}`` pairs, or STS pairs (KorSTS TSV or JSONL
            with sentence1, sentence2, score in 0-5, or a folder holding pairs.tsv).
        output: The directory to write the model, its prompts and ``finetune.json`` into.
        model: The base model (default: ``$KOSEARCH_MODEL``, else kosearch's default model).
        loss: ``cached-mnrl`` (the default for retrieval data: the MNRL loss in mini-batches
            of 8 texts, so memory stays bounded on a CPU) or ``mnrl``; ``cosine``
            for STS data (its default).
        epochs: Passes over the training examples.
        batch_size: Examples per step (the in-batch negatives of MNRL); default
            :data:`BATCH_SIZES` for the kind of data (32 questions, 16 STS pairs).
        lr: Peak learning rate.
        max_steps: Stop after this many steps.
        scale: The MNRL losses' similarity scale (inverse temperature). None (the default)
            fits it to the base model on a sample of the training examples, within 20-100
            (:mod:`kosearch.train.temperature`); the cosine loss has none.
        hard_negatives: Mined negatives per question (0, the default: none; in-batch
            negatives only, which is what gained on KorQuAD, see the README).
        mine_with: The search that mines them and picks the positive passage of a chunked
            document: ``lexical`` (BM25, cheapest), ``dense`` or ``hybrid`` (base model).
        eval_split: Share of the questions (or STS pairs) held out, seeded, and measured
            before and after training; 0 measures nothing.
        seed: Seeds the split, the negatives' random fill and the trainer.
        device: ``cpu``, ``cuda``, ``cuda:N``, ``mps`` (default: the best available).
        overwrite: Replace an existing output directory (one written by ``finetune``).
        progress: Progress bars on stderr.

    Returns:
        The result, also saved as ``output/finetune.json``.

    Raises:
        MissingDependencyError: The ``train`` extra (datasets, accelerate) is not installed.
        DatasetError: The data is missing or malformed (file:line).
        ConfigError: A bad setting, an existing output, too few pairs for one batch, or an
            unavailable device.
        ModelLoadError: The base model cannot be loaded (as for ``kosearch index``).

    Example:
        >>> result = finetune("my-beir-folder", "my-model")  # doctest: +SKIP
        >>> result.after["dense"]["ndcg@10"] - result.before["dense"]["ndcg@10"]  # doctest: +SKIP
    """
    require_train_extra()
    if hard_negatives < 0:
        raise ConfigError(f"hard negatives must be 0 or more, got {hard_negatives}")
    if mine_with not in _MINING:
        raise ConfigError(f"unknown mining search {mine_with!r}; use one of {', '.join(_MINING)}")
    target = _check_output(Path(output), overwrite)
    dataset = load_training_data(data)
    kind = "retrieval" if isinstance(dataset, RetrievalData) else "sts"
    batch_size = BATCH_SIZES[kind] if batch_size is None else batch_size
    settings = _with_loss(TrainSettings(
        loss=loss or "", epochs=epochs, batch_size=batch_size, lr=lr, max_steps=max_steps,
        seed=seed, scale=scale,
    ), kind)
    check_settings(settings)
    if isinstance(dataset, RetrievalData):
        train_ids, held_ids = split_queries(sorted(dataset.queries), eval_split, seed)
    else:
        train_ids, held_ids = split_queries(list(range(len(dataset))), eval_split, seed)
    if len(train_ids) < batch_size:
        raise ConfigError(
            f"{data}: only {len(train_ids)} training pair(s) after holding out "
            f"{len(held_ids)}, fewer than one batch of {batch_size}; lower --batch-size or "
            "give more pairs"
        )
    encoder = _load(model, device)
    result = FinetuneResult(
        output=target, kind=kind, base_model=encoder.name,
        settings={**asdict(settings), "hard_negatives": hard_negatives, "mine_with": mine_with,
                  "eval_split": eval_split, "device": encoder.device, "data": str(data)},
        counts={"train": len(train_ids), "held_out": len(held_ids)},
        prompts={"query": encoder.query_prompt, "passage": encoder.passage_prompt},
    )
    if isinstance(dataset, RetrievalData):
        result.counts["skipped_queries"] = dataset.skipped
        columns, prompts, corpus_index = _retrieval_columns(
            encoder, dataset, train_ids, held_ids, (hard_negatives, mine_with), seed, result,
            progress,
        )
        settings = _with_scale(settings, encoder, columns, result)
    else:
        columns, prompts = _sts_columns(encoder, dataset, train_ids)
        held = sts_subset(dataset, held_ids)
        corpus_index = None
        if held_ids:
            result.before["sts"] = _measure_sts(encoder, held)
    report = train(encoder.model, columns, prompts, settings, device=encoder.device,
                   progress=progress)
    result.train = _report(report)
    _save(result, encoder, dataset, held_ids, corpus_index, progress)
    return result


def require_train_extra() -> None:
    """Raise :class:`MissingDependencyError` unless ``datasets`` and ``accelerate`` import."""
    missing = [name for name in _TRAIN_EXTRA if importlib.util.find_spec(name) is None]
    if missing:
        raise MissingDependencyError(
            f"fine-tuning needs {' and '.join(missing)}: pip install 'kosearch[train]'"
        )


def _check_output(target: Path, overwrite: bool) -> Path:
    if target.exists() and not target.is_dir():
        raise ConfigError(f"the output '{target}' exists and is not a directory")
    if target.is_dir() and any(target.iterdir()):
        if not overwrite:
            raise ConfigError(f"the output '{target}' already exists; pass --overwrite to "
                              "replace it")
        if not (target / FINETUNE_FILE).is_file():
            raise ConfigError(f"refusing to overwrite '{target}': it holds no {FINETUNE_FILE}, "
                              "so it is not the output of kosearch finetune")
    return target


def _with_loss(settings: TrainSettings, kind: str) -> TrainSettings:
    loss = settings.loss or ("cosine" if kind == "sts" else "cached-mnrl")
    if (loss == "cosine") != (kind == "sts") and loss in ("mnrl", "cached-mnrl", "cosine"):
        fits = "cosine" if kind == "sts" else "mnrl or cached-mnrl"
        raise ConfigError(f"--loss {loss} does not fit {kind} data; use {fits}")
    return replace(settings, loss=loss)


def _with_scale(settings: TrainSettings, encoder: SentenceTransformerEncoder,
                columns: dict[str, list[Any]], result: FinetuneResult) -> TrainSettings:
    """The settings with the MNRL scale fitted to the base model unless one was given;
    ``result.settings`` records the scale and whether it was fitted."""
    fitted = settings.scale is None
    if fitted:
        from kosearch.train.temperature import fit_scale

        log.info("fitting the loss scale to the base model")
        settings = replace(settings, scale=round(fit_scale(
            encoder, columns, settings.batch_size, settings.seed), 2))
    result.settings.update(scale=settings.scale, scale_fitted=fitted)
    return settings


def _load(model: str | None, device: str | None) -> SentenceTransformerEncoder:
    """The base model, loaded (and failing) exactly as ``kosearch index`` loads it."""
    from kosearch.encoding.encoder import SentenceTransformerEncoder
    from kosearch.encoding.registry import default_model

    return SentenceTransformerEncoder(model or default_model(), device=device, processes=1)


def _retrieval_columns(
    encoder: SentenceTransformerEncoder, data: RetrievalData, train_ids: list[str],
    held_ids: list[str], mining: tuple[int, str], seed: int, result: FinetuneResult,
    progress: bool,
) -> tuple[dict[str, list[Any]], dict[str, str], Any]:
    """Index the corpus with the base model, measure the held-out questions, mine examples."""
    from kosearch.index import Index
    from kosearch.train.examples import as_columns, build_examples

    log.info("indexing the training corpus with the base model")
    index = Index.build(data.corpus, None, encoder=encoder, progress=progress)
    if held_ids:
        result.before = _measure_retrieval(index, data.subset(held_ids), progress)
    examples = build_examples(index, data.subset(train_ids), negatives=mining[0], seed=seed,
                              mode=mining[1])
    columns = as_columns(examples)
    result.counts["negatives_per_example"] = len(columns) - 2
    prompts = {name: encoder.passage_prompt for name in columns}
    prompts["anchor"] = encoder.query_prompt
    return columns, prompts, index


def _sts_columns(
    encoder: SentenceTransformerEncoder, pairs: StsPairs, rows: list[int]
) -> tuple[dict[str, list[Any]], dict[str, str]]:
    top = STS_RANGE[1]
    columns: dict[str, list[Any]] = {
        "sentence1": [pairs.sentences1[i] for i in rows],
        "sentence2": [pairs.sentences2[i] for i in rows],
        "score": [pairs.scores[i] / top for i in rows],
    }
    return columns, {"sentence1": encoder.sts_prompt, "sentence2": encoder.sts_prompt}


def _measure_retrieval(index: Any, held: RetrievalData, progress: bool
                       ) -> dict[str, dict[str, float]]:
    from kosearch.eval.runner import evaluate_retrieval

    labels = ["dense", "hybrid"] if index.lexical is not None else ["dense"]
    results = evaluate_retrieval(index, held.as_beir(held.source), labels, progress=progress)
    return {r.label: {m: r.metrics[m] for m in _RETRIEVAL_METRICS if m in r.metrics}
            for r in results}


def _measure_sts(encoder: SentenceTransformerEncoder, pairs: StsPairs) -> dict[str, float]:
    from kosearch.eval.runner import evaluate_sts

    figures = evaluate_sts(encoder, pairs)
    return {name: figures[name] for name in _STS_METRICS}


def _report(report: TrainReport) -> dict[str, Any]:
    return {"steps": report.steps, "seconds": round(report.seconds, 3),
            "steps_per_second": round(report.steps_per_second, 4),
            "loss": [[step, round(loss, 6)] for step, loss in report.losses]}


def _keep_pooler_setting(model: Any, directory: Path) -> None:
    """Record that the model has no pooler (e5, BERT sentence models), which
    sentence-transformers does not save: without it transformers would build a randomly
    initialised pooler on load, never used by the mean pooling, and report it as missing."""
    hf = getattr(model, "transformers_model", None)
    config = directory / "sentence_bert_config.json"
    if hf is None or getattr(hf, "pooler", True) is not None or not config.is_file():
        return
    settings = json.loads(config.read_text(encoding="utf-8"))
    settings.setdefault("model_kwargs", {})["add_pooling_layer"] = False
    config.write_text(json.dumps(settings, indent=4) + "\n", encoding="utf-8")


def _save(result: FinetuneResult, encoder: SentenceTransformerEncoder, dataset: Any,
          held_ids: list[Any], base_index: Any, progress: bool) -> None:
    """Write the model with its prompts aside, measure it from there, then move it in place."""
    from kosearch.encoding.loading import quiet_loading
    from kosearch.storage.atomic import atomic_directory

    model = encoder.model
    model.prompts = {name: text for name, text in result.prompts.items() if text}
    with atomic_directory(result.output, marker=FINETUNE_FILE) as tmp:
        with quiet_loading():  # no "Writing model shards" bar
            model.save(str(tmp), create_model_card=False)
        _keep_pooler_setting(model, tmp)
        if held_ids:
            tuned = _load(str(tmp), encoder.device)
            if isinstance(dataset, RetrievalData):
                from kosearch.index import Index

                log.info("indexing the training corpus with the fine-tuned model")
                index = Index.build(dataset.corpus, None, encoder=tuned, progress=progress)
                result.after = _measure_retrieval(index, dataset.subset(held_ids), progress)
            else:
                result.after["sts"] = _measure_sts(tuned, sts_subset(dataset, held_ids))
            tuned.close()
        text = json.dumps(result.to_json(), ensure_ascii=False, indent=2)
        (tmp / FINETUNE_FILE).write_text(text + "\n", encoding="utf-8")
