"""The ``kosearch`` command line: a thin shell over :mod:`kosearch.index`.

Results go to stdout; progress, logs and errors to stderr. A :class:`KosearchError` becomes one
``Error: ...`` line and exit status 1 (mapped once, in :class:`_Group`); bad usage exits 2.
Tracebacks appear only with ``--debug`` or ``KOSEARCH_DEBUG=1``.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from kosearch._version import __version__
from kosearch.errors import ConfigError, KosearchError

DEFAULT_INDEX = "kosearch-index"
MODES = ["hybrid", "dense", "lexical"]
INDEX_TYPES = ["auto", "flat", "hnsw", "ivf-flat", "ivf-pq", "ivf-sq8"]  # = kosearch.storage.ann.INDEX_TYPES


class _Group(click.Group):
    """Maps library errors to one-line CLI errors, in one place."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KosearchError as e:
            if _debugging(ctx):
                raise
            raise click.ClickException(str(e)) from e
        except BrokenPipeError:  # e.g. `kosearch query ... | head`: the reader has what it wants
            sys.stderr.close()
            ctx.exit(0)
        except OSError as e:
            if _debugging(ctx):
                raise
            where = f"{e.filename}: " if e.filename else ""
            raise click.ClickException(f"{where}{e.strerror or e}") from e
        except KeyboardInterrupt:
            if _debugging(ctx):
                raise
            click.echo("\nError: interrupted; an index being written is left as it was (run the same "
                       "kosearch index command again to resume).", err=True)
            ctx.exit(130)


def _debugging(ctx: click.Context) -> bool:
    if isinstance(ctx.obj, dict) and ctx.obj.get("debug"):
        return True
    return os.environ.get("KOSEARCH_DEBUG", "") not in ("", "0")


def _setup_logging(quiet: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("kosearch: %(message)s"))
    logger = logging.getLogger("kosearch")
    logger.handlers = [h for h in logger.handlers if not isinstance(h, logging.StreamHandler)]
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING if quiet else logging.INFO)
    logger.propagate = False


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="kosearch")
@click.option("--debug", is_flag=True, envvar="KOSEARCH_DEBUG", help="Show tracebacks on errors.")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors on stderr; no progress bars.")
@click.pass_context
def cli(ctx: click.Context, debug: bool, quiet: bool) -> None:
    """Semantic and hybrid search over Korean documents.

    \b
    kosearch index data/sample.jsonl -o my-index     # build an index
    kosearch query "전세 계약 갱신" -i my-index        # search it
    """
    _setup_logging(quiet)
    ctx.obj = {"debug": debug, "quiet": quiet}


def _index_option(**kwargs: Any) -> Any:
    return click.option(
        "-i", "--index", "index_dir", default=DEFAULT_INDEX, envvar="KOSEARCH_INDEX",
        show_default=True, type=click.Path(file_okay=False),
        help="Index directory (env KOSEARCH_INDEX).", **kwargs,
    )


def _precision_option(default: str) -> Any:
    return click.option(
        "--precision", type=click.Choice(["auto", "fp32", "bf16", "fp16", "int8"]),
        default=default, show_default=True,
        help="Passage encoder precision: auto = fp16 on CUDA, bf16 on a CPU with bfloat16 "
             "instructions, else fp32 (int8: CPU dynamic quantization).",
    )


@cli.command("index")
@click.argument("corpus", nargs=-1, required=True)
@click.option("-o", "--index", "index_dir", default=DEFAULT_INDEX, envvar="KOSEARCH_INDEX",
              show_default=True, type=click.Path(file_okay=False),
              help="The index directory (env KOSEARCH_INDEX). An existing index is updated; "
                   "every write is atomic.")
@click.option("-m", "--model", envvar="KOSEARCH_MODEL", default=None,
              help="Model id or local directory (env KOSEARCH_MODEL; default "
                   "dragonkue/multilingual-e5-small-ko). See `kosearch models`.")
@click.option("--batch-size", default=32, show_default=True, type=click.IntRange(min=1),
              help="Passages per encoder batch.")
@click.option("--metric", type=click.Choice(["cosine", "ip", "l2"]), default="cosine",
              show_default=True, help="Vector similarity.")
@click.option("--index-type", type=click.Choice(INDEX_TYPES), default="auto", show_default=True,
              help="Vector index: auto (exact while small, approximate when large), flat (exact), "
                   "hnsw, ivf-flat, ivf-pq or ivf-sq8.")
@click.option("--id-field", default=None, help="Record field with the id (default: id, then _id).")
@click.option("--text-field", default="text", show_default=True, help="Record field with the text.")
@click.option("--title-field", default="title", show_default=True, help="Record field with the title.")
@click.option("--strict", is_flag=True, help="Fail on empty texts instead of skipping them.")
@click.option("--chunk-tokens", type=int, default=None,
              help="Token budget per passage, prompt and title included (default: the model's "
                   "limit, at most 512).")
@click.option("--chunk-overlap", type=int, default=0, show_default=True,
              help="Tokens of overlap between passages (whole sentences).")
@click.option("--no-chunk", is_flag=True, help="Index whole documents (long ones are reported).")
@click.option("--no-lexical", is_flag=True, help="Skip the BM25 part (no hybrid search).")
@click.option("--device", default=None, help="cpu, cuda, cuda:1, mps (default: auto).")
@click.option("--query-prompt", default=None, help="Override the model's query prompt.")
@click.option("--passage-prompt", default=None, help="Override the model's passage prompt.")
@click.option("--sync", is_flag=True,
              help="Updating: also delete the documents that are no longer in CORPUS.")
@click.option("--rebuild", is_flag=True,
              help="Build from scratch (e.g. with another model) instead of updating.")
@click.option("--restart", is_flag=True,
              help="Discard an interrupted run's checkpoint instead of resuming it.")
@_precision_option("auto")
@click.option("--processes", type=click.IntRange(min=1), default=None,
              help="Encoder worker processes (default: by corpus size, cores and GPUs).")
@click.pass_context
def index_cmd(ctx: click.Context, corpus: tuple[str, ...], index_dir: str, model: str | None,
              batch_size: int, metric: str, index_type: str, id_field: str | None,
              text_field: str, title_field: str, strict: bool, chunk_tokens: int | None,
              chunk_overlap: int, no_chunk: bool, no_lexical: bool, device: str | None,
              query_prompt: str | None, passage_prompt: str | None, sync: bool, rebuild: bool,
              restart: bool, precision: str, processes: int | None) -> None:
    """Encode CORPUS (JSONL, JSONL.gz, CSV, TSV, Parquet, a folder of .txt/.md, or - for
    JSONL on stdin) into an index directory, or update the index already there: new documents
    are added, changed ones re-encoded, unchanged ones left alone. An interrupted run resumes
    when run again."""
    from kosearch.index import build_directory
    from kosearch.settings import ChunkSettings, Fields
    from kosearch.storage.manifest import MANIFEST_FILE

    start = time.perf_counter()
    quiet = ctx.obj["quiet"]
    fields = Fields(id=id_field, text=text_field, title=title_field)
    if (Path(index_dir) / MANIFEST_FILE).is_file() and not rebuild:
        fixed = [name for name in ("model", "metric", "chunk_tokens", "chunk_overlap", "no_chunk",
                                   "no_lexical", "query_prompt", "passage_prompt", "precision")
                 if _given(ctx, name)]
        index = _index_to_update(index_dir, model if _given(ctx, "model") else None, fixed, ctx)
        chosen: dict[str, Any] = {
            name: ctx.params[name] for name in ("batch_size", "device", "index_type", "processes")
            if _given(ctx, name)
        }
        if any(_given(ctx, name) for name in ("id_field", "text_field", "title_field")):
            chosen["fields"] = fields
        report = index.upsert(list(corpus), sync=sync, progress=not quiet, strict=strict,
                              restart=restart, **chosen)
        counts = index.manifest.counts
        click.echo(
            f"updated {index_dir}: {report.summary()}; {report.encoded} passages encoded; now "
            f"{counts['documents']} documents, {counts['passages']} passages "
            f"({time.perf_counter() - start:.1f}s)", err=True,
        )
        return
    if sync:
        raise click.UsageError("--sync updates an existing index; there is none at " + index_dir)
    manifest, _, encoder = build_directory(
        list(corpus), index_dir, progress=not quiet, model=model, metric=metric,
        batch_size=batch_size, fields=fields, strict=strict, lexical=not no_lexical,
        device=device, query_prompt=query_prompt, passage_prompt=passage_prompt,
        index_type=index_type, restart=restart, precision=precision, processes=processes,
        chunking=ChunkSettings(max_tokens=chunk_tokens, overlap=chunk_overlap, enabled=not no_chunk),
    )
    counts = manifest.counts
    click.echo(
        f"indexed {counts['documents']} documents as {counts['passages']} passages into "
        f"{index_dir} with {manifest.model.name} ({manifest.model.precision}) in "
        f"{time.perf_counter() - start:.1f}s",
        err=True,
    )
    from kosearch.encoding.onnx_export import prepare_instant_queries

    prepare_instant_queries(encoder)


def _given(ctx: click.Context, name: str) -> bool:
    """Whether the user set this option (on the command line or through its env variable)."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name in ("COMMANDLINE", "ENVIRONMENT")


def _index_to_update(index_dir: str, model: str | None, fixed: list[str], ctx: click.Context) -> Any:
    """The existing index, after refusing options that only a rebuild can change."""
    from kosearch.errors import ModelMismatchError
    from kosearch.index import Index

    index = Index.load(index_dir)
    built = index.manifest
    current = {
        "metric": built.metric, "chunk_tokens": built.chunking.get("max_tokens"),
        "chunk_overlap": built.chunking.get("overlap"),
        "no_chunk": not built.chunking.get("enabled", True),
        "no_lexical": built.lexical is None,
        "query_prompt": built.model.query_prompt, "passage_prompt": built.model.passage_prompt,
        "precision": built.model.precision,
    }
    for name in fixed:
        if name != "model" and ctx.params[name] != current[name]:
            flag = "--" + name.replace("_", "-")
            raise ConfigError(
                f"the index at {index_dir} was built with other settings ({flag} "
                f"{current[name]!r}); an update keeps them, so pass --rebuild to re-encode "
                f"everything with {flag} {ctx.params[name]!r}"
            )
    if model is not None:
        try:
            return Index.load(index_dir, model=model, device=ctx.params.get("device"))
        except ModelMismatchError:
            raise ModelMismatchError(
                f"the index at {index_dir} was built with {built.model.name}, not {model}; "
                "updating it with another model would mix two vector spaces, so pass --rebuild "
                "to re-encode everything with the new model"
            ) from None
    return index


@cli.command("delete")
@click.argument("ids", nargs=-1)
@_index_option()
@click.option("--ids-file", type=click.Path(dir_okay=False, allow_dash=True), default=None,
              help="File with one document id per line (- for stdin).")
@click.pass_obj
def delete_cmd(obj: dict[str, Any], ids: tuple[str, ...], index_dir: str,
               ids_file: str | None) -> None:
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


def _read_queries(path: str) -> Iterator[tuple[str | None, str]]:
    """(id, text) pairs from JSONL (``text`` + optional ``_id``/``id``) or plain lines."""
    stream = click.open_file(path, encoding="utf-8")
    with stream:
        for n, line in enumerate(stream, 1):
            line = line.strip()
            if not line:
                continue
            if line.startswith("{"):
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as e:
                    raise ConfigError(f"{path}:{n}: invalid JSON ({e.msg})") from e
                text = record.get("text") if isinstance(record, dict) else None
                if not isinstance(text, str):
                    raise ConfigError(f"{path}:{n}: a JSON query needs a string field 'text'")
                qid = record.get("_id", record.get("id"))
                yield (None if qid is None else str(qid)), text
            else:
                yield None, line


def _print_hits(query: str, hits: list[Any], width: int = 160) -> None:
    click.echo(f"# {query}")
    if not hits:
        click.echo("  (no hits)")
    for hit in hits:
        title = f"  {hit.title}" if hit.title else ""
        click.echo(f"{hit.rank:>3}. {hit.score:.4f}  {hit.id} #{hit.chunk}{title}")
        snippet = " ".join(hit.text.split())
        click.echo(f"     {snippet[:width]}{'…' if len(snippet) > width else ''}")


@cli.command("query")
@click.argument("query", required=False)
@_index_option()
@click.option("-k", "--top-k", "k", type=int, default=10, show_default=True, help="Number of hits.")
@click.option("--mode", type=click.Choice(MODES), default=None,
              help="hybrid (default when the index has BM25), dense or lexical.")
@click.option("--passages", is_flag=True, help="Raw passage hits, not one hit per document.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per query on stdout.")
@click.option("--queries", "queries_file", type=click.Path(dir_okay=False, allow_dash=True),
              help="File of queries: JSONL with text (+ _id/id), or one per line; - for stdin.")
@click.option("-m", "--model", default=None,
              help="Query model (default: the index's own; must match it).")
@click.option("--device", default=None, help="cpu, cuda, mps (default: auto).")
@click.option("--rerank", "rerank", default=None, metavar="MODEL",
              help="Re-score the best passages with this cross-encoder (id or local path), "
                   "e.g. dragonkue/bge-reranker-v2-m3-ko.")
@click.option("--rerank-top", type=int, default=30, show_default=True,
              help="How many fused passages the cross-encoder re-scores.")
@click.option("--fusion", type=click.Choice(["convex", "rrf"]), default="convex",
              show_default=True, help="How hybrid mode merges dense and BM25 results.")
@click.option("--dense-weight", type=float, default=0.5, show_default=True,
              help="Weight of the dense list in hybrid fusion (BM25 gets 1 - this).")
@click.option("--nprobe", type=click.IntRange(min=1), default=None,
              help="IVF indexes: lists scanned per query (more = better recall, slower; "
                   "default: the index's, see `kosearch info`).")
@click.option("--ef-search", type=click.IntRange(min=1), default=None,
              help="HNSW indexes: candidates explored per query (more = better recall, slower).")
@click.option("--query-backend", type=click.Choice(["auto", "onnx", "torch"]), default="auto",
              show_default=True,
              help="auto/onnx: encode queries with onnxruntime on a cached ONNX export of the "
                   "model (no torch import); torch: with sentence-transformers.")
def query_cmd(query: str | None, index_dir: str, k: int, mode: str | None, passages: bool,
              as_json: bool, queries_file: str | None, model: str | None,
              device: str | None, rerank: str | None, rerank_top: int, fusion: str,
              dense_weight: float, nprobe: int | None, ef_search: int | None,
              query_backend: str) -> None:
    """Search the index for QUERY (or for every query in --queries FILE)."""
    from kosearch.lexical.child_analysis import ChildAnalysis

    if (query is None) == (queries_file is None):
        raise click.UsageError("give either a QUERY argument or --queries FILE")
    items = [(None, query)] if query is not None else list(_read_queries(queries_file or "-"))
    texts = [text for _, text in items]
    # Another core analyzes the queries for BM25 while this process loads the index and model.
    analysis = ChildAnalysis.for_index(index_dir, texts) if mode in (None, "hybrid") else None
    try:
        from kosearch.index import Index
        from kosearch.settings import Fusion

        fusion_settings = Fusion(method=fusion, dense_weight=dense_weight)
        index = Index.load(index_dir, model=model, device=device, query_backend=query_backend)
        index.warm_up(mode, texts, analysis=analysis)
        index.set_search_params(nprobe=nprobe, ef_search=ef_search)
        results = index.search_batch(texts, k, mode=mode, passages=passages, rerank=rerank,
                                     rerank_top=rerank_top, fusion=fusion_settings)
    finally:
        if analysis is not None:
            analysis.close()  # a no-op once the search used it; else stop the child
    for (qid, text), hits in zip(items, results):
        if as_json:
            record: dict[str, Any] = {"query": text}
            if qid is not None:
                record["query_id"] = qid
            record["hits"] = [hit.to_dict() for hit in hits]
            click.echo(json.dumps(record, ensure_ascii=False))
        else:
            _print_hits(text, hits)


@cli.command("info")
@click.argument("index_dir", required=False, envvar="KOSEARCH_INDEX", default=DEFAULT_INDEX,
                type=click.Path(file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="The full manifest as JSON.")
def info_cmd(index_dir: str, as_json: bool) -> None:
    """Describe an index: model, counts, settings, size."""
    from kosearch.index import Index

    info = Index.load(index_dir).info()
    if as_json:
        click.echo(json.dumps(info, ensure_ascii=False, indent=2))
        return
    model, counts = info["model"], info["counts"]
    rows = [
        ("index", info["path"]),
        ("model", f"{model['name']} (dim {model['dim']}, {model['max_tokens']} tokens)"),
        ("prompts", f"query {model['query_prompt']!r}, passage {model['passage_prompt']!r}"),
        ("metric", info["metric"]),
        ("vectors", _describe_vectors(info["faiss"])),
        ("documents", counts["documents"]),
        ("passages", counts["passages"]),
        ("chunking", _describe_chunking(info["chunking"])),
        ("lexical", "Kiwi BM25" if info["lexical"] else "none (dense only)"),
        ("memory", f"{_size(info['memory_bytes'])} when loaded ("
                   + ", ".join(f"{k} {_size(v)}" for k, v in info["memory"].items()) + ")"),
        ("disk", _size(info.get("disk_bytes", 0))),
        ("built", info["created"]),
        ("updated", info["updated"]),
        ("kosearch", info["kosearch_version"]),
    ]
    for name, value in rows:
        click.echo(f"{name:<10} {value}")


def _size(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def _describe_vectors(faiss: dict[str, Any]) -> str:
    kind = faiss.get("kind") or "flat"
    text = f"{kind} (faiss {faiss['factory']}"
    if faiss.get("requested") == "auto":
        text += ", chosen by auto"
    knobs = [f"{k.replace('_', '-')} {faiss[k]}" for k in ("nprobe", "ef_search") if faiss.get(k)]
    return text + (f"; {', '.join(knobs)}" if knobs else "") + ")"


def _describe_chunking(chunking: dict[str, Any]) -> str:
    if not chunking.get("enabled", True):
        return "off (whole documents)"
    return f"{chunking.get('budget')} tokens per passage, overlap {chunking.get('overlap', 0)}"


@cli.command("models")
@click.option("--json", "as_json", is_flag=True, help="The registry as JSON.")
def models_cmd(as_json: bool) -> None:
    """List the known Korean models (any other sentence-transformers model works too)."""
    from dataclasses import asdict

    from kosearch.encoding.registry import DEFAULT_MODEL, REGISTRY

    if as_json:
        click.echo(json.dumps([asdict(s) for s in REGISTRY.values()], ensure_ascii=False, indent=2))
        return
    click.echo(f"{'model':<58} {'kind':<9} {'dim':>5} {'tokens':>6}  prompts")
    for spec in REGISTRY.values():
        mark = " (default)" if spec.name == DEFAULT_MODEL else ""
        prompts = f"{spec.query_prompt!r}/{spec.passage_prompt!r}" if spec.query_prompt else "-"
        click.echo(f"{spec.name + mark:<58} {spec.kind:<9} {spec.dim:>5} {spec.max_tokens:>6}  {prompts}")


@cli.command("serve")
@_index_option()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind; use 0.0.0.0 for every interface (set an API key then).")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535),
              help="TCP port.")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(min=1),
              help="Worker processes; each loads its own copy of the index and the model.")
@click.option("--api-key", envvar="KOSEARCH_API_KEY", default=None,
              help="Require 'Authorization: Bearer KEY' on all but /health (env "
                   "KOSEARCH_API_KEY, which is safer: arguments show in process lists).")
@click.option("-m", "--model", default=None,
              help="Query model (default: the index's own; must match it).")
@click.option("--device", default=None, help="cpu, cuda, mps (default: auto).")
@click.option("--no-batching", is_flag=True,
              help="Search each request on its own instead of batching concurrent ones.")
@click.option("--log-queries", is_flag=True,
              help="Put query text in the access log (off by default: it may be personal data).")
@click.option("--writable", is_flag=True,
              help="Also accept POST /documents (add/update) and DELETE /documents; changes are "
                   "saved to the index directory. One worker only.")
@click.pass_obj
def serve_cmd(obj: dict[str, Any], index_dir: str, host: str, port: int, workers: int,
              api_key: str | None, model: str | None, device: str | None, no_batching: bool,
              log_queries: bool, writable: bool) -> None:
    """Serve the index over HTTP: POST /search and /search/batch, GET /health, /info and
    /docs; with --writable also POST and DELETE /documents. Stop with Ctrl-C."""
    from kosearch.serving.app import log_to_stderr, serve

    log_to_stderr(logging.WARNING if obj["quiet"] else logging.INFO)
    serve(index_dir, host=host, port=port, workers=workers, api_key=api_key or None,
          model=model, device=device, batching=not no_batching, log_queries=log_queries,
          writable=writable)


@cli.group("eval")
def eval_group() -> None:
    """Measure a model (STS) or a search setting (retrieval) on your own data."""


@eval_group.command("sts")
@click.argument("pairs", type=click.Path(exists=True))
@click.option("-m", "--model", envvar="KOSEARCH_MODEL", default=None,
              help="Model id or local directory (env KOSEARCH_MODEL).")
@click.option("--batch-size", default=32, show_default=True, type=click.IntRange(min=1),
              help="Sentences per encoder batch.")
@click.option("--device", default=None, help="cpu, cuda, mps (default: auto).")
@click.option("--json", "as_json", is_flag=True, help="The eight figures as JSON (in [-1, 1]).")
@_precision_option("fp32")
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
@click.option("-m", "--model", envvar="KOSEARCH_MODEL", default=None,
              help="Without --index: build (and cache) an index of the corpus with this model.")
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
@click.option("--device", default=None, help="cpu, cuda, mps (default: auto).")
@click.option("--json", "as_json", is_flag=True, help="Results as JSON.")
@_precision_option("fp32")
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
    default = (mode or index.default_mode.value) + (evalrun.RERANK_SUFFIX if rerank and not compare else "")
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


def main() -> None:
    """Entry point of the ``kosearch`` console script."""
    # The process is ours: keep stderr to our own progress bars (transformers draws one per
    # model load). Set before anything imports huggingface_hub, which reads it once.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    cli(prog_name="kosearch")
