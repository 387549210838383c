"""``kosearch index`` and ``kosearch delete``: build, update and prune an index directory."""

from __future__ import annotations

import time
from typing import Any

import click

from kosearch.cli.app import cli
from kosearch.cli.options import (
    device_option,
    engine_options,
    from_environment,
    given,
    index_option,
    model_option,
    precision_option,
)
from kosearch.operations import FIXED_SETTINGS
from kosearch.types import INDEX_TYPES, METRICS

# option name -> the IndexSettings field it sets (for "which settings did the user choose");
# the settings fixed at build time come with their flags from the library's own table.
_SETTING_OF = {
    **{name: name for name in ("model", "batch_size", "strict", "device", "index_type",
                               "processes")},
    **{flag.removeprefix("--").replace("-", "_"): setting
       for setting, (flag, _) in FIXED_SETTINGS.items()},
    **dict.fromkeys(("id_field", "text_field", "title_field"), "fields"),
}


@cli.command("index")
@click.argument("corpus", nargs=-1, required=True)
@index_option("The index directory (env KOSEARCH_INDEX). An existing index is updated; "
              "every write is atomic.", "-o", "--index")
@model_option("Model id or local directory (env KOSEARCH_MODEL; default "
              "dragonkue/multilingual-e5-small-ko). See `kosearch models`.", from_env=True)
@click.option("--batch-size", default=32, show_default=True, type=click.IntRange(min=1),
              help="Passages per encoder batch.")
@click.option("--metric", type=click.Choice(METRICS), default="cosine",
              show_default=True, help="Vector similarity.")
@click.option("--index-type", type=click.Choice(INDEX_TYPES), default="auto", show_default=True,
              help="Vector index: auto (exact while small, approximate when large), flat (exact), "
                   "hnsw, ivf-flat, ivf-pq or ivf-sq8.")
@click.option("--id-field", default=None, help="Record field with the id (default: id, then _id).")
@click.option("--text-field", default="text", show_default=True, help="Record field with the text.")
@click.option("--title-field", default="title", show_default=True,
              help="Record field with the title.")
@click.option("--strict", is_flag=True, help="Fail on empty texts instead of skipping them.")
@click.option("--chunk-tokens", type=int, default=None,
              help="Token budget per passage, prompt and title included (default: the model's "
                   "limit, at most 512).")
@click.option("--chunk-overlap", type=int, default=0, show_default=True,
              help="Tokens of overlap between passages (whole sentences).")
@click.option("--no-chunk", is_flag=True, help="Index whole documents (long ones are reported).")
@click.option("--no-lexical", is_flag=True, help="Skip the BM25 part (no hybrid search).")
@device_option()
@click.option("--query-prompt", default=None, help="Override the model's query prompt.")
@click.option("--passage-prompt", default=None, help="Override the model's passage prompt.")
@click.option("--sync", is_flag=True,
              help="Updating: also delete the documents that are no longer in CORPUS.")
@click.option("--rebuild", is_flag=True,
              help="Build from scratch (e.g. with another model) instead of updating.")
@click.option("--restart", is_flag=True,
              help="Discard an interrupted run's checkpoint instead of resuming it.")
@precision_option("auto")
@click.option("--processes", type=click.IntRange(min=1), default=None,
              help="Encoder worker processes (default: by corpus size, cores and GPUs).")
@engine_options
@click.pass_context
def index_cmd(ctx: click.Context, corpus: tuple[str, ...], index_dir: str, **params: Any) -> None:
    """Encode CORPUS (JSONL, JSONL.gz, CSV, TSV, Parquet, a folder of .txt/.md, or - for
    JSONL on stdin) into an index directory, or update the index already there: new documents
    are added, changed ones re-encoded, unchanged ones left alone. An interrupted run resumes
    when run again."""
    from kosearch.operations import index_directory
    from kosearch.settings import ChunkSettings, Fields
    from kosearch.storage.layout import is_index

    start = time.perf_counter()
    if params["sync"] and (params["rebuild"] or not is_index(index_dir)):
        raise click.UsageError("--sync updates an existing index; there is none at " + index_dir)
    p = params
    result = index_directory(
        list(corpus), index_dir, rebuild=p["rebuild"], sync=p["sync"], restart=p["restart"],
        progress=not ctx.obj["quiet"],
        given={_SETTING_OF[name] for name in _SETTING_OF if given(ctx, name)}
        - ({"model"} if from_environment(ctx, "model") else set()),
        model=p["model"], metric=p["metric"], batch_size=p["batch_size"], strict=p["strict"],
        fields=Fields(id=p["id_field"], text=p["text_field"], title=p["title_field"]),
        lexical=not p["no_lexical"], device=p["device"], query_prompt=p["query_prompt"],
        passage_prompt=p["passage_prompt"], index_type=p["index_type"],
        precision=p["precision"], processes=p["processes"],
        engine=p["engine"], ray_address=p["ray_address"], workers=p["workers"],
        gpus_per_worker=p["gpus_per_worker"],
        chunking=ChunkSettings(max_tokens=p["chunk_tokens"], overlap=p["chunk_overlap"],
                               enabled=not p["no_chunk"]),
    )
    counts, seconds = result.manifest.counts, time.perf_counter() - start
    if result.updated:
        click.echo(
            f"updated {index_dir}: {result.report.summary()}; {result.report.encoded} passages "
            f"encoded; now {counts['documents']} documents, {counts['passages']} passages "
            f"({seconds:.1f}s)", err=True,
        )
    else:
        model = result.manifest.model
        click.echo(
            f"indexed {counts['documents']} documents as {counts['passages']} passages into "
            f"{index_dir} with {model.name} ({model.precision}) in {seconds:.1f}s", err=True,
        )


@cli.command("delete")
@click.argument("ids", nargs=-1)
@index_option()
@click.option("--ids-file", type=click.Path(dir_okay=False, allow_dash=True), default=None,
              help="File with one document id per line (- for stdin).")
def delete_cmd(ids: tuple[str, ...], index_dir: str, ids_file: str | None) -> None:
    """Delete documents by ID from the index, without re-encoding anything. Unknown ids are
    reported and skipped."""
    from kosearch.index import Index

    wanted = list(ids)
    if ids_file is not None:
        with click.open_file(ids_file, encoding="utf-8") as stream:
            wanted += [line.strip() for line in stream if line.strip()]
    if not wanted:
        raise click.UsageError("give the document IDS to delete, or --ids-file FILE")
    start = time.perf_counter()
    index = Index.load(index_dir)
    report = index.delete(wanted)
    counts = index.manifest.counts
    click.echo(
        f"deleted {report.deleted} document(s) from {index_dir}"
        + (f"; {len(report.unknown)} unknown id(s) ignored" if report.unknown else "")
        + f"; now {counts['documents']} documents, {counts['passages']} passages "
        f"({time.perf_counter() - start:.1f}s)", err=True,
    )
