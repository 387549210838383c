"""The ``kosearch`` command line: a thin shell over the library, one module per command group.

Each command parses its options, calls one library function and renders the result:
:mod:`~kosearch.cli.indexing` (index, delete), :mod:`~kosearch.cli.search` (query),
:mod:`~kosearch.cli.describe` (info, models), :mod:`~kosearch.cli.serve` (serve),
:mod:`~kosearch.cli.evaluate` (eval sts, eval retrieval) and :mod:`~kosearch.cli.finetune`
(finetune). Errors are mapped once, in :mod:`~kosearch.cli.app`.
"""

from __future__ import annotations

from kosearch.cli import (  # noqa: F401 (registers the commands)
    describe,
    evaluate,
    finetune,
    indexing,
    search,
    serve,
)
from kosearch.cli.app import cli, main

__all__ = ["cli", "main"]
