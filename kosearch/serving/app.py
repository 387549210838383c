"""An HTTP search service over an :class:`~kosearch.index.Index` (the ``server`` extra).

    app = create_app(Index.load("my-index"), api_key="s3cret")   # any ASGI server runs it
    serve("my-index", host="127.0.0.1", port=8000)                # or: kosearch serve -i my-index

Endpoints (OpenAPI docs at ``/docs``):

* ``POST /search`` ``{"query", "k": 10, "mode": null, "passages": false}`` ->
  ``{"query", "hits": [...]}``, each hit shaped like in ``kosearch query --json``
  (:meth:`~kosearch.types.Hit.to_dict`);
* ``POST /search/batch`` ``{"queries": [...], "k", "mode", "passages"}`` ->
  ``{"results": [{"query", "hits"}, ...]}``;
* ``GET /health`` -> ``{"status": "ok", ...}`` (never needs the API key);
* ``GET /info`` -> the manifest, counts and size of the index;
* with ``writable=True`` (``kosearch serve --writable``) only:
  ``POST /documents`` ``{"documents": [{"id", "text", "title", "meta"}], "mode": "upsert"}``
  adds documents (``mode: "add"`` refuses ids already present) and re-encodes changed ones;
  ``DELETE /documents`` ``{"ids": [...]}`` deletes (unknown ids are reported, not an error).
  Both answer with what changed and save the index atomically before answering. Writes are
  serialized and searches wait while one runs (they share the model and Kiwi).

Every failure is JSON ``{"error": "<one sentence>"}``: 400 for malformed JSON or a search the
index refuses, 401 for a missing or wrong API key, 404/405 for a wrong route or method, 413 for
a body over the limit, 422 for a request that breaks the schema or its limits. Searches run on
one worker thread per app (:class:`~kosearch.serving.batcher.SearchBatcher`), never on the event loop;
requests that queue up behind a running search are answered together by one ``search_batch``
call per ``(k, mode, passages)``. Each request is logged as one JSON line on the
``kosearch.serving.app`` logger, without the query text unless ``log_queries=True``.

Without ``writable`` the index is read-only and the document routes do not exist.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import os
import sys
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_type_hints

from kosearch._version import __version__
from kosearch.errors import ConfigError, CorpusError, KosearchError, MissingDependencyError
from kosearch.serving.batcher import SearchBatcher
from kosearch.serving.middleware import NOTE_KEY, AccessLog, Gate

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from fastapi import FastAPI, Request
    from pydantic import BaseModel

    from kosearch.index import Index

log = logging.getLogger(__name__)
access_log = logging.getLogger(f"{__name__}.access")  # JSON lines only: one per request

ENV_SETTINGS = "KOSEARCH_SERVE_SETTINGS"  # how `serve` hands its settings to worker processes
OPEN_PATHS = frozenset({"/health"})  # reachable without the API key
SHUTDOWN_GRACE_S = 30
_INSTALL = "pip install 'kosearch[server]'"


def create_app(
    index: Index,
    *,
    api_key: str | None = None,
    max_k: int = 100,
    max_query_chars: int = 2000,
    max_batch: int = 64,
    max_body_bytes: int = 1_000_000,
    batching: bool = True,
    batch_window_ms: float = 0.0,
    log_queries: bool = False,
    writable: bool = False,
    max_documents: int = 1000,
) -> FastAPI:
    """A FastAPI app that searches ``index``; no global state, so several can coexist.

    Args:
        index: A loaded index; the app owns its searching from now on (one worker thread).
        api_key: When set, every route but ``/health`` needs ``Authorization: Bearer <key>``.
        max_k: The largest ``k`` a request may ask for.
        max_query_chars: The longest query, in characters.
        max_batch: The most queries in one ``/search/batch`` request.
        max_body_bytes: The largest request body; a bigger one gets 413.
        batching: Answer concurrent requests with equal parameters in one ``search_batch``.
        batch_window_ms: Wait this long for more requests before searching (0: only batch
            requests that queue behind a running search, adding no latency).
        log_queries: Put the query text in the access log (off: it may be personal data).
        writable: Add ``POST /documents`` and ``DELETE /documents`` (changes are saved to the
            index directory; use one worker).
        max_documents: The most documents or ids in one write request.

    Returns:
        The ASGI application.

    Raises:
        MissingDependencyError: FastAPI is not installed.
        ConfigError: a limit is not positive, or the API key is empty.
    """
    _require("fastapi")
    from fastapi import FastAPI

    for name, value in (("max_k", max_k), ("max_query_chars", max_query_chars),
                        ("max_batch", max_batch), ("max_body_bytes", max_body_bytes),
                        ("max_documents", max_documents)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    if api_key is not None and not api_key.strip():
        raise ConfigError("the API key is empty; give a real key or none")
    batcher = SearchBatcher(index, batching=batching, window_s=batch_window_ms / 1000)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        batcher.start()
        try:
            yield
        finally:  # uvicorn stops taking requests first; finish the queued searches
            await asyncio.get_running_loop().run_in_executor(None, batcher.close)
            stats = batcher.stats()
            log.info("stopped after %d queries in %d searches", stats["queries"],
                     stats["searches"])

    app = FastAPI(
        title="kosearch", version=__version__, lifespan=lifespan,
        description="Semantic and hybrid search over Korean documents.",
    )
    app.state.index = index
    app.state.batcher = batcher
    _add_error_handlers(app)
    models = _models(max_k, max_query_chars, max_batch, max_documents)
    _add_routes(app, index, batcher, models)
    if writable:
        _add_write_routes(app, index, models)
    app.add_middleware(Gate, api_key=api_key, max_body_bytes=max_body_bytes, open_paths=OPEN_PATHS)
    # added last, so outermost: 401 and 413 answers are logged too
    app.add_middleware(AccessLog, logger=access_log, log_queries=log_queries)
    return app


# ---------------------------------------------------------------------------- request models


def _models(
    max_k: int, max_query_chars: int, max_batch: int, max_documents: int
) -> dict[str, type[BaseModel]]:
    """Request and response models, with this app's limits in the schema (and the docs)."""
    from typing import Annotated, Literal

    from pydantic import AfterValidator, ConfigDict, Field, StringConstraints, create_model

    def not_blank(text: str) -> str:
        if not text.strip():
            raise ValueError("the query is blank; give some text to search for")
        return text

    query = Annotated[str, StringConstraints(min_length=1, max_length=max_query_chars),
                      AfterValidator(not_blank)]
    common: dict[str, Any] = {
        "k": (int, Field(10, ge=1, le=max_k, description="How many hits per query.")),
        "mode": (Literal["hybrid", "dense", "lexical"] | None,
                 Field(None, description="Default: hybrid when the index has BM25, else dense.")),
        "passages": (bool, Field(False, description="Raw passage hits, not one per document.")),
    }
    strict = ConfigDict(strict=True, extra="forbid")
    hit = create_model(
        "Hit", id=(str, ...), chunk=(int, ...), score=(float, ...), rank=(int, ...),
        text=(str, ...), title=(str, ...), meta=(dict[str, Any], ...), start=(int, ...),
        end=(int, ...), scores=(dict[str, Any], ...),
    )
    result = create_model("SearchResponse", query=(str, ...), hits=(list[hit], ...))  # type: ignore[valid-type]
    return {
        "search": create_model("SearchRequest", __config__=strict, query=(query, ...), **common),
        "batch": create_model(
            "BatchRequest", __config__=strict,
            queries=(Annotated[list[query], Field(min_length=1, max_length=max_batch)], ...),
            **common,
        ),
        "result": result,
        "results": create_model("BatchResponse", results=(list[result], ...)),  # type: ignore[valid-type]
        **_write_models(max_documents, strict),
    }


def _write_models(max_documents: int, strict: Any) -> dict[str, type[BaseModel]]:
    from typing import Annotated, Literal

    from pydantic import Field, StringConstraints, create_model

    ident = Annotated[str, StringConstraints(min_length=1, max_length=1000)]
    document = create_model(
        "DocumentIn", __config__=strict, id=(ident, ...), text=(str, ...),
        title=(str, Field("", description="Optional title, encoded with each passage.")),
        meta=(dict[str, Any], Field(default_factory=dict, description="Other fields, kept.")),
    )
    listed = Field(min_length=1, max_length=max_documents)
    return {
        "documents": create_model(
            "DocumentsRequest", __config__=strict,
            documents=(Annotated[list[document], listed], ...),  # type: ignore[valid-type]
            mode=(Literal["upsert", "add"], Field("upsert", description=(
                "upsert: add new ids and re-encode changed documents; add: refuse known ids."))),
        ),
        "delete": create_model(
            "DeleteRequest", __config__=strict, ids=(Annotated[list[ident], listed], ...),
        ),
        "report": create_model(
            "UpdateReport", added=(int, ...), updated=(int, ...), unchanged=(int, ...),
            deleted=(int, ...), unknown=(list[str], ...), documents=(int, ...),
            passages=(int, ...),
        ),
    }


async def _parse(request: Request, model: type[BaseModel]) -> Any:
    """The validated body, or an HTTP error whose message says what is wrong."""
    from pydantic import ValidationError
    from starlette.exceptions import HTTPException

    body = await request.body()
    try:
        return model.model_validate_json(body or b"null")
    except ValidationError as error:
        status, message = _describe(error.errors(include_url=False))
        raise HTTPException(status, message) from None


def _describe(errors: list[Any]) -> tuple[int, str]:
    """(status, one sentence) for pydantic/FastAPI validation errors."""
    first = errors[0]
    kind, loc = first.get("type", ""), [str(p) for p in first.get("loc", ()) if p != "body"]
    if kind == "json_invalid":
        reason = first.get("ctx", {}).get("error", "")
        return 400, f"the request body is not valid JSON{f' ({reason})' if reason else ''}"
    extra = len(errors) - 1
    more = f" (and {extra} more problem{'s' * (extra > 1)})" if extra else ""
    if not loc:
        return 422, f"the request body must be a JSON object{more}"
    field = ".".join(loc)
    if kind == "missing":
        return 422, f"the field '{field}' is required{more}"
    if kind == "extra_forbidden":
        return 422, f"unknown field '{field}'{more}"
    message = str(first.get("msg", "is invalid")).removeprefix("Value error, ")
    return 422, f"invalid '{field}': {message[:1].lower()}{message[1:]}{more}"


# ---------------------------------------------------------------------------- routes


def _add_routes(
    app: FastAPI, index: Index, batcher: SearchBatcher, models: dict[str, type[BaseModel]]
) -> None:
    from fastapi import Request
    from fastapi.responses import JSONResponse

    def body_doc(model: type[BaseModel]) -> dict[str, Any]:
        schema = model.model_json_schema()
        return {"requestBody": {"required": True,
                                "content": {"application/json": {"schema": schema}}}}

    async def run(request: Request, queries: list[str], body: Any) -> list[list[Any]]:
        note = request.scope.get(NOTE_KEY)
        if note is not None:
            note.update(queries=len(queries), texts=queries)
        future = batcher.submit(queries, body.k, mode=body.mode, passages=body.passages)
        return await asyncio.wrap_future(future)

    async def search(request: Request) -> JSONResponse:
        body = await _parse(request, models["search"])
        hits = (await run(request, [body.query], body))[0]
        return JSONResponse({"query": body.query, "hits": [h.to_dict() for h in hits]})

    async def search_batch(request: Request) -> JSONResponse:
        body = await _parse(request, models["batch"])
        results = await run(request, list(body.queries), body)
        return JSONResponse({"results": [
            {"query": q, "hits": [h.to_dict() for h in hits]}
            for q, hits in zip(body.queries, results, strict=True)
        ]})

    async def health() -> JSONResponse:
        return JSONResponse({"status": "ok", "version": __version__, **batcher.stats()})

    def info() -> JSONResponse:  # a plain def: FastAPI runs it in its thread pool (disk I/O)
        return JSONResponse(index.info())

    # FastAPI reads the annotations, which `from __future__ import annotations` leaves as
    # strings naming lazily imported classes: resolve them here.
    names = {"Request": Request, "JSONResponse": JSONResponse}
    for endpoint in (search, search_batch, health, info):
        endpoint.__annotations__ = get_type_hints(endpoint, localns=names)
    app.add_api_route("/search", search, methods=["POST"], summary="Search one query",
                      openapi_extra=body_doc(models["search"]),
                      responses={200: {"model": models["result"]}})
    app.add_api_route("/search/batch", search_batch, methods=["POST"],
                      summary="Search many queries", openapi_extra=body_doc(models["batch"]),
                      responses={200: {"model": models["results"]}})
    app.add_api_route("/health", health, methods=["GET"], summary="Liveness (no API key needed)")
    app.add_api_route("/info", info, methods=["GET"], summary="The index manifest, counts, size")


def _add_write_routes(app: FastAPI, index: Index, models: dict[str, type[BaseModel]]) -> None:
    """``POST /documents`` and ``DELETE /documents``, run in the thread pool one at a time."""
    import anyio
    from fastapi import Request
    from fastapi.responses import JSONResponse

    from kosearch.types import Document

    def reply(report: Any) -> JSONResponse:
        counts = index.manifest.counts
        return JSONResponse({
            "added": report.added, "updated": report.updated, "unchanged": report.unchanged,
            "deleted": report.deleted, "unknown": list(report.unknown),
            "documents": counts["documents"], "passages": counts["passages"],
        })

    async def write(request: Request, model: str, apply: Any) -> JSONResponse:
        body = await _parse(request, models[model])
        report = await anyio.to_thread.run_sync(apply, body)
        return reply(report)

    def put(body: Any) -> Any:
        docs = [Document(id=d.id, text=d.text, title=d.title, meta=d.meta) for d in body.documents]
        if body.mode == "add":
            return index.add(docs, exclusive=True)
        return index.upsert(docs, exclusive=True)

    async def post_documents(request: Request) -> JSONResponse:
        return await write(request, "documents", put)

    async def delete_documents(request: Request) -> JSONResponse:
        return await write(request, "delete", lambda body: index.delete(body.ids, exclusive=True))

    names = {"Request": Request, "JSONResponse": JSONResponse}
    for endpoint in (post_documents, delete_documents):
        endpoint.__annotations__ = get_type_hints(endpoint, localns=names)
    schema = {"responses": {200: {"model": models["report"]}}}
    app.add_api_route(
        "/documents", post_documents, methods=["POST"], summary="Add or update documents",
        openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
            "schema": models["documents"].model_json_schema()}}}}, **schema,
    )
    app.add_api_route(
        "/documents", delete_documents, methods=["DELETE"], summary="Delete documents by id",
        openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
            "schema": models["delete"].model_json_schema()}}}}, **schema,
    )


def _add_error_handlers(app: FastAPI) -> None:
    """Every error becomes ``{"error": "<one sentence>"}``; library errors are mapped here once."""
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        message = str(exc.detail)
        if exc.status_code == 404 and message == "Not Found":
            message = f"there is no endpoint at {request.url.path}"
        elif exc.status_code == 405 and message == "Method Not Allowed":
            message = f"{request.method} is not allowed on {request.url.path}"
        return JSONResponse({"error": message}, exc.status_code, headers=exc.headers)

    async def invalid(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        status, message = _describe(list(exc.errors()))
        return JSONResponse({"error": message}, status)

    async def library_error(request: Request, exc: Exception) -> JSONResponse:
        # ConfigError and CorpusError are the caller's fault (bad k, mode, query, documents);
        # anything else is the server's.
        status = 400 if isinstance(exc, (ConfigError, CorpusError)) else 500
        if status == 500:
            log.error("search failed: %s", exc)
        return JSONResponse({"error": str(exc)}, status)

    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
        return JSONResponse({"error": "internal server error; see the server log"}, 500)

    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(KosearchError, library_error)
    app.add_exception_handler(Exception, unexpected)


# ---------------------------------------------------------------------------- running it


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
        api_key: Require ``Authorization: Bearer <key>`` (see :func:`create_app`).
        model: The query model (default: the index's own).
        device: The torch device for the query model.
        **options: Further keyword arguments of :func:`create_app` (limits, batching, ...).

    Raises:
        MissingDependencyError: FastAPI or uvicorn is not installed.
        ConfigError: ``workers`` < 1, or ``workers`` > 1 with an index object.
    """
    _require("fastapi")
    uvicorn = _require("uvicorn")
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
    settings["log_level"] = logging.getLogger(__name__).getEffectiveLevel()
    previous = os.environ.get(ENV_SETTINGS)
    os.environ[ENV_SETTINGS] = json.dumps(settings)
    try:
        log.info("serving %s at %s with %d workers (API docs at %s/docs)",
                 _where(index_path), url, workers, url)
        uvicorn.run("kosearch.serving.app:app_from_environment", factory=True, workers=workers, **run)
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
    """Print this module's log (the access log is JSON lines) to stderr, unprefixed."""
    logger = logging.getLogger(__name__)
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


def _require(module: str) -> Any:
    """Import an optional dependency of the server, or say how to install it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise MissingDependencyError(
            f"the HTTP server needs {module}, which is not installed; {_INSTALL}"
        ) from e
