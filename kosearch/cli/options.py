"""Click options shared by several commands, declared once."""

from __future__ import annotations

from typing import Any

import click

from kosearch.types import PRECISIONS

DEFAULT_INDEX = "kosearch-index"


def index_option(help: str = "Index directory (env KOSEARCH_INDEX).", *names: str) -> Any:
    """``-i/--index DIR`` (or other ``names``), defaulting to ``$KOSEARCH_INDEX``."""
    return click.option(
        *(names or ("-i", "--index")), "index_dir", default=DEFAULT_INDEX,
        envvar="KOSEARCH_INDEX", show_default=True, type=click.Path(file_okay=False), help=help,
    )


def model_option(help: str, *, from_env: bool = False) -> Any:
    """``-m/--model``; with ``from_env``, defaulting to ``$KOSEARCH_MODEL``."""
    return click.option("-m", "--model", envvar="KOSEARCH_MODEL" if from_env else None,
                        default=None, help=help)


def device_option() -> Any:
    """``--device``: where models run."""
    return click.option("--device", default=None, help="cpu, cuda, cuda:1, mps (default: auto).")


def json_option(help: str) -> Any:
    """``--json``: machine-readable output on stdout."""
    return click.option("--json", "as_json", is_flag=True, help=help)


def precision_option(default: str) -> Any:
    """``--precision``: the passage encoder's precision."""
    return click.option(
        "--precision", type=click.Choice(PRECISIONS), default=default, show_default=True,
        help="Passage encoder precision. auto = fp16 on CUDA; on a CPU the fastest of fp32, "
             "int8 and bf16 (with native bfloat16) that passes the quality guard, measured once "
             "per model and machine and cached (KOSEARCH_CALIBRATE=0: no measuring). int8 = "
             "onnxruntime dynamic int8 (CPU), refused for a model that fails the guard.",
    )


def from_environment(ctx: click.Context, name: str) -> bool:
    """Whether this option's value came from its environment variable."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name == "ENVIRONMENT"


def given(ctx: click.Context, name: str) -> bool:
    """Whether the user set this option (on the command line or through its env variable)."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name in ("COMMANDLINE", "ENVIRONMENT")


def engine_options(command: Any) -> Any:
    """``--engine``, ``--ray-address``, ``--workers``, ``--gpus-per-worker``: where to encode."""
    options = [
        click.option("--engine", type=click.Choice(["local", "ray"]), default="local",
                     show_default=True,
                     help="local: this machine; ray: read, chunk, encode and analyze on a Ray "
                          "cluster (pip install 'kosearch[ray]'). The index is the same."),
        click.option("--ray-address", default=None,
                     help="Ray cluster to use with --engine ray (HOST:PORT, ray://HOST:PORT or "
                          "auto; default: $RAY_ADDRESS, else a local Ray)."),
        click.option("--workers", type=click.IntRange(min=1), default=None,
                     help="Encoding actors with --engine ray (default: one per "
                          "--gpus-per-worker GPUs, else one per 4 CPUs)."),
        click.option("--gpus-per-worker", type=click.FloatRange(min=0), default=None,
                     help="GPUs per encoding actor with --engine ray (default 0: CPUs)."),
    ]
    for option in reversed(options):
        command = option(command)
    return command
