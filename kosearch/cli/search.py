"""``kosearch query``: search an index and print the hits (text or JSON lines)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from kosearch.cli.app import cli
from kosearch.cli.options import device_option, index_option, json_option, model_option
from kosearch.errors import ConfigError
from kosearch.settings import Fusion
from kosearch.types import (
    FUSION_METHODS,
    MAX_QUERY_CHARS,
    MODES,
    QUERY_BACKENDS,
    SCORE_NORMALIZATIONS,
)

_TOO_LONG = (f"is {{n}} characters long; queries are limited to {MAX_QUERY_CHARS} characters "
             "(the model reads only the first few hundred tokens)")


def _check_query(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is not None and len(value) > MAX_QUERY_CHARS:
        raise click.BadParameter(f"the query {_TOO_LONG.format(n=len(value))}")
    return value


def _parse_filter(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    """``--filter``: a JSON object, or ``@FILE`` holding one; bad JSON is a usage error."""
    if value is None:
        return None
    text, where = value, ""
    if value.startswith("@"):
        try:
            text = Path(value[1:]).read_text(encoding="utf-8")
        except OSError as error:
            raise click.BadParameter(f"cannot read {value[1:]}: {error.strerror}") from None
        where = f" in {value[1:]}"
    try:
        spec = json.loads(text)
    except json.JSONDecodeError as error:
        raise click.BadParameter(
            f"not valid JSON{where}: {error.msg} at line {error.lineno} column {error.colno} "
            f"(character {error.pos})"
        ) from None
    if not isinstance(spec, dict):
        raise click.BadParameter(f"a filter must be a JSON object, got {text.strip()[:60]}")
    return spec


def _read_queries(path: str) -> Iterator[tuple[str | None, str, Any]]:
    """(id, text, filter) from JSONL (``text`` + optional ``_id``/``id`` and ``filter``) or
    plain lines (filter: ``...`` when the record has none, so the flag applies)."""
    from kosearch.ingest.jsonl import read_jsonl

    with click.open_file(path, encoding="utf-8") as stream:
        records = read_jsonl(stream, error=ConfigError, label=path, plain_lines=True, column=False)
        for n, record in records:
            if isinstance(record, str):  # a plain query line, already stripped
                text, qid, spec = record, None, ...
            else:
                text = record.get("text")
                if not isinstance(text, str):
                    raise ConfigError(f"{path}:{n}: a JSON query needs a string field 'text'")
                spec = record.get("filter", ...)
                if spec is not ... and spec is not None and not isinstance(spec, dict):
                    raise ConfigError(f"{path}:{n}: 'filter' must be a JSON object or null")
                qid = record.get("_id", record.get("id"))
            if len(text) > MAX_QUERY_CHARS:
                raise ConfigError(f"{path}:{n}: the query {_TOO_LONG.format(n=len(text))}")
            yield (None if qid is None else str(qid)), text, spec


def _one_line(text: str, width: int) -> str:
    flat = " ".join(text.split())
    return f"{flat[:width]}{'…' if len(flat) > width else ''}"


def _print_hits(query: str, hits: list[Any], width: int = 160, full: bool = False) -> None:
    click.echo(f"# {_one_line(query, width)}")
    if not hits:
        click.echo("  (no hits)")
    for hit in hits:
        title = f"  {hit.title}" if hit.title else ""
        click.echo(f"{hit.rank:>3}. {hit.score:.4f}  {hit.id} #{hit.chunk}{title}")
        spans = hit.highlights.spans if hit.highlights is not None else ()
        if full:
            body = _styled(hit.text, 0, len(hit.text), spans, flat=False)
            click.echo("     " + body.replace("\n", "\n     "))
        elif hit.highlights is not None:
            click.echo(f"     {_window(hit.text, hit.highlights, width)}")
        else:
            click.echo(f"     {_one_line(hit.text, width)}")


def _window(text: str, highlights: Any, width: int) -> str:
    """The snippet on one line, cut to about ``width`` characters around its first match,
    the matched words bold (click drops the styling when stdout is not a terminal)."""
    start, end, spans = highlights.start, highlights.end, highlights.spans
    if end - start > width:
        first = spans[0][0] if spans else start
        lo = max(start, min(first - width // 4, end - width))
        hi = min(end, lo + width)
        return (("…" if lo > start else "") + _styled(text, lo, hi, spans)
                + ("…" if hi < end else ""))
    return _styled(text, start, end, spans)


def _styled(text: str, start: int, end: int, spans: Any, flat: bool = True) -> str:
    """``text[start:end]`` with ``spans`` in bold; with ``flat``, whitespace runs become one
    space."""
    bold = [False] * (end - start)
    for s, e in spans:
        for i in range(max(s, start), min(e, end)):
            bold[i - start] = True
    runs: list[tuple[bool, str]] = []
    for i, ch in enumerate(text[start:end]):
        if flat and ch.isspace():
            if runs and runs[-1][1].endswith(" "):
                continue
            ch = " "
        if runs and runs[-1][0] == bold[i]:
            runs[-1] = (bold[i], runs[-1][1] + ch)
        else:
            runs.append((bold[i], ch))
    return "".join(click.style(piece, bold=True) if b else piece for b, piece in runs)


@cli.command("query", epilog=(
    "A one-shot query leaves a helper holding Kiwi and the query encoder, so the next ones "
    "skip their start-up; it exits after KOSEARCH_ANALYZER_LINGER idle seconds (default 300; "
    "0: no helper)."))
@click.argument("query", required=False, callback=_check_query)
@index_option()
@click.option("-k", "--top-k", "k", type=click.IntRange(min=1), default=10, show_default=True,
              help="Number of hits.")
@click.option("--mode", type=click.Choice(MODES), default=None,
              help="hybrid (default when the index has BM25), dense or lexical.")
@click.option("--passages", is_flag=True, help="Raw passage hits, not one hit per document.")
@json_option("One JSON object per query on stdout.")
@click.option("--queries", "queries_file", type=click.Path(dir_okay=False, allow_dash=True),
              help="File of queries: JSONL with text (+ _id/id, filter), or one per line; "
                   "- for stdin.")
@click.option("--filter", "filter_spec", callback=_parse_filter, metavar="JSON",
              help='Search only documents whose metadata match, e.g. '
                   '\'{"year": {"$gte": 2020}}\'; @FILE reads it from a file. A "filter" '
                   "field in --queries JSONL overrides it for that query.")
@model_option("Query model (default: the index's own; must match it).")
@device_option()
@click.option("--rerank", "rerank", default=None, metavar="MODEL",
              help="Re-score the best passages with this cross-encoder (id or local path), "
                   "e.g. dragonkue/bge-reranker-v2-m3-ko.")
@click.option("--rerank-top", type=int, default=30, show_default=True,
              help="How many fused passages the cross-encoder re-scores.")
@click.option("--fusion", type=click.Choice(FUSION_METHODS), default=None,
              help="How hybrid mode merges dense and BM25 results (default: convex).")
@click.option("--normalize", type=click.Choice(SCORE_NORMALIZATIONS), default=None,
              help="How convex fusion normalizes each retriever's scores (default: "
                   f"{Fusion().normalize}).")
@click.option("--dense-weight", type=click.FloatRange(0, 1), default=None,
              help="Weight of the dense list in hybrid fusion (BM25 gets 1 - this); default: "
                   + ("adapted per query." if Fusion().dense_weight is None
                      else f"{Fusion().dense_weight}."))
@click.option("--nprobe", type=click.IntRange(min=1), default=None,
              help="IVF indexes: lists scanned per query (more = better recall, slower; "
                   "default: the index's, see `kosearch info`).")
@click.option("--ef-search", type=click.IntRange(min=1), default=None,
              help="HNSW indexes: candidates explored per query (more = better recall, slower).")
@click.option("--full", is_flag=True,
              help="Print whole passages instead of the best sentence(s) for the query.")
@click.option("--highlights/--no-highlights", default=True, show_default=True,
              help="Find each hit's best sentence(s) and matched words (Kiwi); without, plain "
                   "output shows the passage's beginning and --json has highlights: null.")
@click.option("--query-backend", type=click.Choice(QUERY_BACKENDS), default="auto",
              show_default=True,
              help="auto/onnx: encode queries with onnxruntime on a cached ONNX export of the "
                   "model (no torch import); torch: with sentence-transformers.")
def query_cmd(query: str | None, queries_file: str | None, as_json: bool, fusion: str | None,
              normalize: str | None, dense_weight: float | None, index_dir: str,
              filter_spec: Any, k: int, mode: str | None, passages: bool, rerank: str | None,
              rerank_top: int, full: bool, highlights: bool, **load: Any) -> None:
    """Search the index for QUERY (or for every query in --queries FILE)."""
    from kosearch.operations import search_directory
    from kosearch.settings import SearchOptions

    if (query is None) == (queries_file is None):
        raise click.UsageError("give either a QUERY argument or --queries FILE")
    items = ([(None, query, ...)] if query is not None
             else list(_read_queries(queries_file or "-")))
    filters = [filter_spec if spec is ... else spec for _, _, spec in items]
    options = SearchOptions(mode=mode, passages=passages, rerank=rerank, rerank_top=rerank_top,
                            fusion=_fusion(fusion, normalize, dense_weight),
                            highlights=highlights)
    results = search_directory(index_dir, [text for _, text, _ in items], k, options,
                               filter=filters if any(f is not None for f in filters) else None,
                               **load)
    for (qid, text, _), spec, hits in zip(items, filters, results):
        if spec is not None and not hits:
            click.echo(f"note: no hits for {_one_line(text, 80)!r} with the filter "
                       f"{json.dumps(spec, ensure_ascii=False)}", err=True)
        if as_json:
            record: dict[str, Any] = {"query": text}
            if qid is not None:
                record["query_id"] = qid
            record["hits"] = [hit.to_dict() for hit in hits]
            click.echo(json.dumps(record, ensure_ascii=False))
        else:
            _print_hits(text, hits, full=full)


def _fusion(method: str | None, normalize: str | None, dense_weight: float | None) -> Fusion:
    """The default :class:`Fusion` with the options given on the command line."""
    given = {"method": method, "normalize": normalize, "dense_weight": dense_weight}
    return Fusion(**{name: value for name, value in given.items() if value is not None})
