"""The ``kosearch`` click group: logging, and library errors mapped to CLI errors once.

Results go to stdout; progress, logs and errors to stderr. A :class:`KosearchError` becomes one
``Error: ...`` line and exit status 1 (mapped once, in :class:`_Group`); bad usage exits 2.
Tracebacks appear only with ``--debug`` or ``KOSEARCH_DEBUG=1``.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import click

from kosearch._version import __version__
from kosearch.errors import KosearchError


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
            click.echo("\nError: interrupted; an index being written is left as it was (run "
                       "the same kosearch index command again to resume).", err=True)
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
@click.option("-q", "--quiet", is_flag=True,
              help="Only warnings and errors on stderr; no progress bars.")
@click.pass_context
def cli(ctx: click.Context, debug: bool, quiet: bool) -> None:
    """Semantic and hybrid search over Korean documents.

    \b
    kosearch index data/sample.jsonl -o my-index     # build an index
    kosearch query "전세 계약 갱신" -i my-index        # search it
    """
    _setup_logging(quiet)
    ctx.obj = {"debug": debug, "quiet": quiet}


def main() -> None:
    """Entry point of the ``kosearch`` console script."""
    # The process is ours: keep stderr to our own progress bars (transformers draws one per
    # model load). Set before anything imports huggingface_hub, which reads it once.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    cli(prog_name="kosearch")
