"""``kosearch eval sts`` and ``kosearch eval retrieval``: measure a model or a search setting."""

from __future__ import annotations

import json
from typing import Any

import click

from kosearch.cli.app import cli
from kosearch.cli.options import device_option, json_option, model_option, precision_option
from kosearch.types import MODES


@cli.group("eval")
def eval_group() -> None:
    """Measure a model (STS) or a search setting (retrieval) on your own data."""


@eval_group.command("sts")
@click.argument("pairs", type=click.Path(exists=True))
@model_option("Model id or local directory (env KOSEARCH_MODEL).", from_env=True)
@click.option("--batch-size", default=32, show_default=True, type=click.IntRange(min=1),
              help="Sentences per encoder batch.")
@device_option()
@json_option("The eight figures as JSON (in [-1, 1]).")
@precision_option("fp32")
@click.pass_obj
def eval_sts_cmd(obj: dict[str, Any], pairs: str, model: str | None, batch_size: int,
                 device: str | None, as_json: bool, precision: str) -> None:
    """KorSTS-style evaluation of PAIRS (TSV or JSONL with sentence1, sentence2, score, or a
    folder holding pairs.tsv): Pearson and Spearman for cosine, euclidean, manhattan and dot
    similarity, x100 as the Korean SBERT model cards report them."""
    from kosearch.encoding.encoder import SentenceTransformerEncoder
    from kosearch.encoding.registry import DEFAULT_MODEL
    from kosearch.eval.datasets import load_sts
    from kosearch.eval.runner import evaluate_sts

    data = load_sts(pairs)
    encoder = SentenceTransformerEncoder(model or DEFAULT_MODEL, device=device,
                                         batch_size=batch_size, precision=precision)
    figures = evaluate_sts(encoder, data, progress=not obj["quiet"])
    if as_json:
        click.echo(json.dumps({"model": encoder.name, "pairs": len(data), "sts_prompt":
                               encoder.sts_prompt, "precision": encoder.precision, **figures},
                              ensure_ascii=False))
        return
    click.echo(f"{len(data)} pairs, model {encoder.name}, prompt {encoder.sts_prompt!r}")
    click.echo(f"{'similarity':<11} {'Pearson':>8} {'Spearman':>9}")
    for name in ("cosine", "euclidean", "manhattan", "dot"):
        pearson, spearman = figures[f"pearson_{name}"], figures[f"spearman_{name}"]
        click.echo(f"{name:<11} {pearson * 100:8.2f} {spearman * 100:9.2f}")


@eval_group.command("retrieval")
@click.argument("dataset", type=click.Path(exists=True, file_okay=False))
@click.option("-i", "--index", "index_dir", default=None, type=click.Path(file_okay=False),
              help="Evaluate this index (built from the dataset's corpus).")
@model_option("Without --index: build (and cache) an index of the corpus with this model.",
              from_env=True)
@click.option("--mode", type=click.Choice(MODES), default=None,
              help="One search mode (default: the index's default).")
@click.option("--compare", default=None, metavar="MODES",
              help="Several settings side by side, e.g. dense,lexical,hybrid,hybrid+rerank.")
@click.option("-k", "cutoff", type=click.IntRange(min=1), default=10, show_default=True,
              help="Cut-off for nDCG, MRR and recall (recall@100 is always reported).")
@click.option("--split", default="test", show_default=True, help="qrels/<split>.tsv to use.")
@click.option("--rerank", default=None, metavar="MODEL",
              help="Cross-encoder for the +rerank settings (or for --mode with reranking).")
@click.option("--rerank-top", type=click.IntRange(min=1), default=30, show_default=True,
              help="How many fused passages the cross-encoder re-scores.")
@click.option("--save-run", type=click.Path(dir_okay=False), default=None,
              help="Write the ranking: TREC format, or JSONL when the name ends in .jsonl.")
@click.option("--cache-dir", type=click.Path(file_okay=False), default=None,
              help="Where built evaluation indexes are cached (env KOSEARCH_CACHE; "
                   "default ~/.cache/kosearch).")
@device_option()
@json_option("Results as JSON.")
@precision_option("fp32")
@click.pass_obj
def eval_retrieval_cmd(obj: dict[str, Any], dataset: str, index_dir: str | None,
                       model: str | None, mode: str | None, compare: str | None, cutoff: int,
                       split: str, rerank: str | None, rerank_top: int, save_run: str | None,
                       cache_dir: str | None, device: str | None, as_json: bool,
                       precision: str) -> None:
    """Retrieval quality of a BEIR-layout DATASET (corpus.jsonl, queries.jsonl,
    qrels/test.tsv): nDCG, MRR, recall and query latency, per mode."""
    from pathlib import Path

    from kosearch.eval import runner as evalrun
    from kosearch.eval.datasets import load_beir
    from kosearch.eval.metrics import write_run
    from kosearch.index import Index

    if index_dir and model:
        raise click.UsageError("give --index or --model, not both")
    if compare and mode:
        raise click.UsageError("give --mode or --compare, not both")
    data = load_beir(dataset, split=split)
    if index_dir:
        index = Index.load(index_dir, device=device)
    else:
        from kosearch.encoding.encoder import SentenceTransformerEncoder
        from kosearch.encoding.registry import DEFAULT_MODEL

        encoder = SentenceTransformerEncoder(model or DEFAULT_MODEL, device=device,
                                             precision=precision)
        cache = Path(cache_dir) if cache_dir else evalrun.default_cache_dir()
        index = evalrun.cached_index(data, encoder, cache, progress=not obj["quiet"])
    suffix = evalrun.RERANK_SUFFIX if rerank and not compare else ""
    default = (mode or index.default_mode.value) + suffix
    labels = evalrun.parse_modes(compare or default, has_reranker=rerank is not None)
    results = evalrun.evaluate_retrieval(
        index, data, labels, cutoff=cutoff, rerank=rerank, rerank_top=rerank_top,
        progress=not obj["quiet"],
    )
    if save_run:
        for result in results:
            target = evalrun.run_path(Path(save_run), result.label, len(results) > 1)
            write_run(result.run, target, fmt="jsonl" if target.suffix == ".jsonl" else "trec",
                      tag=f"kosearch-{result.label}")
    header = {"dataset": dataset, "queries": len(data.qrels), "model": index.manifest.model.name,
              "passages": len(index)}
    if as_json:
        click.echo(json.dumps({**header, "results": [
            {"setting": r.label, **r.metrics, **r.latency} for r in results
        ]}, ensure_ascii=False))
        return
    click.echo(f"{dataset}: {header['queries']} queries, {header['passages']} passages, "
               f"model {header['model']}")
    names = list(results[0].metrics)
    click.echo(f"{'setting':<16}" + "".join(f"{n:>11}" for n in names)
               + f"{'mean ms':>9}{'p95 ms':>9}")
    for r in results:
        click.echo(f"{r.label:<16}" + "".join(f"{r.metrics[n]:11.4f}" for n in names)
                   + f"{r.latency['mean_ms']:9.1f}{r.latency['p95_ms']:9.1f}")
