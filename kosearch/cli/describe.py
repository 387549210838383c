"""``kosearch info`` and ``kosearch models``: describe an index, list the known models."""

from __future__ import annotations

import json
from typing import Any

import click

from kosearch.cli.app import cli
from kosearch.cli.options import DEFAULT_INDEX, json_option


@cli.command("info")
@click.argument("index_dir", required=False, envvar="KOSEARCH_INDEX", default=DEFAULT_INDEX,
                type=click.Path(file_okay=False))
@json_option("The full manifest as JSON.")
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
        ("model", f"{model['name']} (dim {model['dim']}, {model['max_tokens']} tokens, "
                  f"{model.get('precision', 'fp32')})"),
        *_calibration_row(model),
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
    click.echo("filterable fields (kosearch query --filter '{\"FIELD\": VALUE}'):")
    for field in info["filter_fields"]:
        kind = field["type"]
        if field.get("kinds"):
            kind += f" ({', '.join(field['kinds'])}; compared as text)"
        sample = ", ".join(json.dumps(v, ensure_ascii=False) for v in field["examples"])
        click.echo(f"  {field['name']:<16} {kind:<16} e.g. {sample}")


def _size(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def _calibration_row(model: dict[str, Any]) -> list[tuple[str, str]]:
    """What ``--precision auto`` measured on the build machine, when it measured."""
    if not model.get("calibration"):
        return []
    from kosearch.encoding.calibrate import describe

    return [("precision", describe(model["calibration"]))]


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
@json_option("The registry as JSON.")
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
        click.echo(f"{spec.name + mark:<58} {spec.kind:<9} {spec.dim:>5} "
                   f"{spec.max_tokens:>6}  {prompts}")
