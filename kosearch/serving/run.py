"""Running the HTTP server: load an index and its model once, then serve it with uvicorn.

    serve("my-index", host="127.0.0.1", port=8000)   # or: kosearch serve -i my-index

With one worker the app is built here and handed to uvicorn; with several, the settings travel
to each worker process in the :data:`ENV_SETTINGS` environment variable and uvicorn builds each
worker's app with the factory :func:`app_from_environment` (named by :data:`FACTORY`). The app
itself is :func:`kosearch.serving.app.create_app`.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kosearch.errors import ConfigError, KosearchError
from kosearch.serving.app import create_app, require
from kosearch.serving.logs import LOGGER_NAME, log

if TYPE_CHECKING:
    from fastapi import FastAPI

    from kosearch.index import Index

ENV_SETTINGS = "KOSEARCH_SERVE_SETTINGS"  # how `serve` hands its settings to worker processes
FACTORY = f"{__name__}:app_from_environment"  # what uvicorn imports in each worker process
SHUTDOWN_GRACE_S = 30


def serve(
    index_path: str | os.PathLike[str] | Index,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 1,
    api_key: str | None = None,
    model: str | None = None,
    device: str | None = None,
    **options: Any,
) -> None:
    """Load the index and its model once, then serve it with uvicorn until SIGINT/SIGTERM.

    Args:
        index_path: An index directory, or an already loaded index (one worker only).
        host: The address to bind; anything but loopback without ``api_key`` logs a warning.
        port: The TCP port.
        workers: Processes; each loads its own copy of the index and model.
        api_key: Require ``Authorization: Bearer <key>`` (see
            :func:`~kosearch.serving.app.create_app`).
        model: The query model (default: the index's own).
        device: The torch device for the query model.
        **options: Further keyword arguments of :func:`~kosearch.serving.app.create_app`.

    Raises:
        MissingDependencyError: FastAPI or uvicorn is not installed.
        ConfigError: ``workers`` < 1, or ``workers`` > 1 with an index object.
    """
    require("fastapi")
    uvicorn = require("uvicorn")
    if workers < 1:
        raise ConfigError(f"workers must be at least 1, got {workers}")
    if workers > 1 and options.get("writable"):
        raise ConfigError(
            "a writable server needs a single worker: each worker holds its own copy of the index"
        )
    if not _is_loopback(host) and not api_key:
        log.warning("serving on %s without an API key: anyone who can reach this host can "
                    "search the index; set --api-key (or KOSEARCH_API_KEY)", host)
    url = f"http://{f'[{host}]' if ':' in host else host}:{port}"
    run = {"host": host, "port": port, "access_log": False, "log_level": "warning",
           "timeout_graceful_shutdown": SHUTDOWN_GRACE_S}
    if workers == 1:
        index = index_path if not isinstance(index_path, (str, os.PathLike)) else None
        settings = _settings(index_path if index is None else "", model, device, api_key, options)
        app = _app_from_settings(settings, index)
        log.info("serving %s at %s (API docs at %s/docs)", _where(index_path), url, url)
        uvicorn.run(app, **run)
        return
    if not isinstance(index_path, (str, os.PathLike)):
        raise ConfigError("more than one worker needs an index directory, not an index object")
    from kosearch.index import Index

    Index.load(index_path)  # fail here, once, with a clear error, not in every worker
    settings = _settings(index_path, model, device, api_key, options)
    settings["log_level"] = log.getEffectiveLevel()
    previous = os.environ.get(ENV_SETTINGS)
    os.environ[ENV_SETTINGS] = json.dumps(settings)
    try:
        log.info("serving %s at %s with %d workers (API docs at %s/docs)",
                 _where(index_path), url, workers, url)
        uvicorn.run(FACTORY, factory=True, workers=workers, **run)
    finally:
        if previous is None:
            os.environ.pop(ENV_SETTINGS, None)
        else:
            os.environ[ENV_SETTINGS] = previous


def app_from_environment() -> FastAPI:
    """The app of one worker process started by :func:`serve` (a uvicorn factory).

    Raises:
        ConfigError: the settings variable :data:`ENV_SETTINGS` is missing or broken.
    """
    raw = os.environ.get(ENV_SETTINGS, "")
    try:
        settings = json.loads(raw)
    except json.JSONDecodeError:
        settings = None
    if not isinstance(settings, dict) or "index" not in settings:
        raise ConfigError(
            f"{ENV_SETTINGS} does not hold server settings; start the server with kosearch serve"
        )
    if "log_level" in settings:  # a spawned worker does not inherit the parent's logging setup
        log_to_stderr(settings["log_level"])
    return _app_from_settings(settings, None)


def log_to_stderr(level: int = logging.INFO) -> None:
    """Print the server's log (:data:`~kosearch.serving.logs.LOGGER_NAME`, whose access log is
    JSON lines) to stderr, unprefixed."""
    logger = logging.getLogger(LOGGER_NAME)
    # Replace our handler, not add one: sys.stderr may be another stream by now (tests).
    logger.handlers = [h for h in logger.handlers if not getattr(h, "_kosearch", False)]
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler._kosearch = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False


def _settings(path: Any, model: str | None, device: str | None, api_key: str | None,
              options: dict[str, Any]) -> dict[str, Any]:
    return {"index": str(path), "model": model, "device": device, "api_key": api_key,
            "options": options}


def _app_from_settings(settings: dict[str, Any], index: Index | None) -> FastAPI:
    """Load the index (unless given), load its model and warm it up, build the app."""
    if index is None:
        from kosearch.index import Index

        index = Index.load(settings["index"], model=settings.get("model"),
                           device=settings.get("device"))
    index.warm_up()
    index.encoder  # noqa: B018 - load the model now, not on the first request
    try:  # the first search pays for Kiwi, torch and FAISS start-up; do it before serving
        index.search_batch(["kosearch"], 1)
    except KosearchError:
        pass
    return create_app(index, api_key=settings.get("api_key"), **settings.get("options", {}))


def _where(index: Any) -> str:
    path = getattr(index, "path", None) if not isinstance(index, (str, os.PathLike)) else index
    return str(Path(path)) if path else "an in-memory index"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
