"""``kosearch finetune``: train a model on your questions, show the held-out before/after table."""

from __future__ import annotations

import json
import math
from typing import Any

import click

from kosearch.cli.app import cli
from kosearch.cli.options import device_option, json_option, model_option


@cli.command("finetune")
@click.argument("data", type=click.Path(exists=True))
@click.option("-o", "--output", required=True, type=click.Path(),
              help="Directory for the fine-tuned model (refused if it exists, unless "
                   "--overwrite).")
@model_option("Base model id or local directory (env KOSEARCH_MODEL; default "
              "dragonkue/multilingual-e5-small-ko).", from_env=True)
@click.option("--loss", type=click.Choice(["mnrl", "cached-mnrl", "cosine"]), default=None,
              help="cached-mnrl (default for retrieval data: MNRL computed in mini-batches, "
                   "so large batches fit in little memory), mnrl (faster, but holds the whole "
                   "batch in memory) or cosine (STS data, its default).")
@click.option("--epochs", type=click.FloatRange(min=0, min_open=True), default=1.0,
              show_default=True, help="Passes over the training pairs.")
@click.option("--batch-size", type=click.IntRange(min=1), default=None,
              help="Pairs per step (with MNRL, the in-batch negatives; default 32 questions, "
                   "16 STS pairs).")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=2e-5,
              show_default=True, help="Peak learning rate.")
@click.option("--max-steps", type=click.IntRange(min=1), default=None,
              help="Stop after this many steps.")
@click.option("--scale", callback=lambda ctx, param, value: _scale(value), default="auto",
              show_default=True, metavar="auto|S",
              help="The MNRL similarity scale (inverse temperature). auto fits it to the base "
                   "model on a sample of the training pairs, within 20-100.")
@click.option("--hard-negatives", type=click.IntRange(min=0), default=0, show_default=True,
              help="Mined negatives per question (0: in-batch negatives only).")
@click.option("--mine-with", type=click.Choice(["lexical", "dense", "hybrid"]),
              default="lexical", show_default=True,
              help="The search that mines negatives (lexical = BM25, the cheapest; dense and "
                   "hybrid use the base model).")
@click.option("--eval-split", type=click.FloatRange(min=0, max=1, max_open=True), default=0.1,
              show_default=True, help="Share of the questions held out (seeded) and measured "
                                      "before and after; 0 measures nothing.")
@click.option("--seed", type=int, default=42, show_default=True,
              help="Seeds the split, the negatives and the trainer.")
@device_option()
@click.option("--overwrite", is_flag=True, help="Replace an existing fine-tuning output.")
@json_option("The result (settings, counts, before/after, training) as JSON.")
@click.pass_context
def finetune_cmd(ctx: click.Context, data: str, output: str, model: str | None,
                 loss: str | None, epochs: float, batch_size: int | None, lr: float,
                 max_steps: int | None, scale: float | None, hard_negatives: int, mine_with: str,
                 eval_split: float, seed: int,
                 device: str | None, overwrite: bool, as_json: bool) -> None:
    """Fine-tune an embedding model on DATA and save it to OUTPUT.

    DATA is a BEIR folder (corpus.jsonl, queries.jsonl, qrels/*.tsv), a JSONL file of
    {"query", "positive", "negative"?} pairs, or STS pairs (KorSTS TSV/JSONL, scores 0-5).
    Then: kosearch index CORPUS --model OUTPUT.
    """
    from kosearch.train.finetune import finetune

    try:
        result = finetune(
            data, output, model=model, loss=loss, epochs=epochs, batch_size=batch_size, lr=lr,
            max_steps=max_steps, scale=scale, hard_negatives=hard_negatives, mine_with=mine_with,
            eval_split=eval_split,
            seed=seed, device=device, overwrite=overwrite, progress=not ctx.obj["quiet"],
        )
    except KeyboardInterrupt:
        if ctx.obj["debug"]:
            raise
        click.echo(f"\nError: interrupted; nothing was written to {output}.", err=True)
        ctx.exit(130)
    if as_json:
        click.echo(json.dumps(result.to_json(), ensure_ascii=False))
        return
    _render(result)


def _scale(value: str) -> float | None:
    if value.strip().lower() == "auto":
        return None
    try:
        scale = float(value)
    except ValueError:
        scale = float("nan")
    if not scale > 0 or math.isinf(scale):
        raise click.BadParameter(f"{value!r} is not 'auto' or a positive number",
                                 param_hint="'--scale'")
    return scale


def _render(result: Any) -> None:
    counts = result.counts
    skipped = counts.get("skipped_queries")
    click.echo(f"fine-tuned {result.base_model} on {counts['train']} {result.kind} pairs "
               f"({result.settings['loss']}, {result.train['steps']} steps in "
               f"{result.train['seconds']:.1f} s); saved to {result.output}"
               + (f"; {skipped} queries without positives skipped" if skipped else ""))
    rows = result.table()
    if not rows:
        click.echo("no held-out evaluation (--eval-split 0)")
        return
    unit = "questions" if result.kind == "retrieval" else "pairs"
    click.echo(f"held-out: {counts['held_out']} {unit}")
    click.echo(f"{'setting':<9}{'metric':<17}{'before':>9}{'after':>9}{'change':>9}")
    for setting, name, before, after in rows:
        change = after - before if not math.isnan(after) else float("nan")
        click.echo(f"{setting:<9}{name:<17}{before:9.4f}{after:9.4f}{change:+9.4f}")
    worse = result.regressed()
    if worse is not None:
        setting, name, before, after = worse
        click.echo(f"warning: the fine-tuned model is worse than {result.base_model} on the "
                   f"held-out {unit} ({setting} {name} {before:.4f} -> {after:.4f}); keep "
                   "indexing with the base model, or train again with a lower --lr or fewer "
                   "--max-steps", err=True)
        return
    click.echo(f"index with it: kosearch index CORPUS -o INDEX --model {result.output}")
