"""``kosearch serve``: the HTTP server over an index."""

from __future__ import annotations

import logging
from typing import Any

import click

from kosearch.cli.app import cli
from kosearch.cli.options import device_option, index_option, model_option


@cli.command("serve")
@index_option()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind; use 0.0.0.0 for every interface (set an API key then).")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535),
              help="TCP port.")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(min=1),
              help="Worker processes; each loads its own copy of the index and the model.")
@click.option("--api-key", envvar="KOSEARCH_API_KEY", default=None,
              help="Require 'Authorization: Bearer KEY' on all but /health (env "
                   "KOSEARCH_API_KEY, which is safer: arguments show in process lists).")
@model_option("Query model (default: the index's own; must match it).")
@device_option()
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
    from kosearch.serving.run import log_to_stderr, serve

    log_to_stderr(logging.WARNING if obj["quiet"] else logging.INFO)
    serve(index_dir, host=host, port=port, workers=workers, api_key=api_key or None,
          model=model, device=device, batching=not no_batching, log_queries=log_queries,
          writable=writable)
