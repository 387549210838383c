"""The HTTP search app over an :class:`~kosearch.index.Index`: the FastAPI app and its routes.

    app = create_app(Index.load("my-index"), api_key="s3cret")   # any ASGI server runs it

(:func:`kosearch.serving.run.serve` loads an index and runs this app with uvicorn; so does
``kosearch serve -i my-index``.)

Endpoints (OpenAPI docs at ``/docs``; request and response models in
:mod:`kosearch.serving.schemas`):

* ``POST /search`` ``{"query", "k": 10, "mode": null, "passages": false, "filter": null}`` ->
  ``{"query", "hits": [...]}``, each hit shaped like in ``kosearch query --json``
  (:meth:`~kosearch.types.Hit.to_dict`);
* ``POST /search/batch`` ``{"queries": [...], "k", "mode", "passages"}`` ->
  ``{"results": [{"query", "hits"}, ...]}``;
* ``GET /health`` -> ``{"status": "ok", ...}`` (never needs the API key);
* ``GET /`` -> the search page (:mod:`kosearch.serving.page`; loads without the API key, asks
  for it to search);
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
one worker thread per app (:class:`~kosearch.serving.batcher.SearchBatcher`), never on the
event loop; requests that queue up behind a running search are answered together by one
``search_batch`` call per ``(k, mode, passages)``. Each request is logged as one JSON line on
the ``kosearch.server.access`` logger (:mod:`kosearch.serving.logs`), without the query text
unless ``log_queries=True``.

Without ``writable`` the index is read-only and the document routes do not exist.
"""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, get_type_hints

from kosearch._version import __version__
from kosearch.errors import ConfigError, CorpusError, KosearchError, MissingDependencyError
from kosearch.serving.batcher import SearchBatcher
from kosearch.serving.docs import add_docs, docs_options
from kosearch.serving.logs import access_log, log
from kosearch.serving.middleware import NOTE_KEY, AccessLog, Gate
from kosearch.serving.page import PAGE_PATHS, add_page
from kosearch.serving.schemas import (
    SEARCH_FIELDS,
    describe_errors,
    parse_body,
    report_body,
    request_models,
)
from kosearch.settings import SearchOptions
from kosearch.types import MAX_QUERY_CHARS

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from fastapi import FastAPI, Request
    from pydantic import BaseModel

    from kosearch.index import Index

OPEN_PATHS = frozenset({"/health"}) | PAGE_PATHS  # reachable without the API key
_INSTALL = "pip install 'kosearch[server]'"


def create_app(
    index: Index,
    *,
    api_key: str | None = None,
    max_k: int = 100,
    max_query_chars: int = MAX_QUERY_CHARS,
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
    require("fastapi")
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
        description="Semantic and hybrid search over Korean documents.", **docs_options(),
    )
    add_docs(app)
    add_page(app)
    app.state.index = index
    app.state.batcher = batcher
    _add_error_handlers(app)
    models = request_models(max_k, max_query_chars, max_batch, max_documents)
    _add_routes(app, index, batcher, models)
    if writable:
        _add_write_routes(app, index, models)
    app.add_middleware(Gate, api_key=api_key, max_body_bytes=max_body_bytes, open_paths=OPEN_PATHS)
    # added last, so outermost: 401 and 413 answers are logged too
    app.add_middleware(AccessLog, logger=access_log, log_queries=log_queries)
    return app


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
        options = SearchOptions(**{name: getattr(body, name) for name in SEARCH_FIELDS})
        future = batcher.submit(queries, body.k, options, filter=body.filter)
        return await asyncio.wrap_future(future)

    async def search(request: Request) -> JSONResponse:
        body = await parse_body(request, models["search"])
        hits = (await run(request, [body.query], body))[0]
        return JSONResponse({"query": body.query, "hits": [h.to_dict() for h in hits]})

    async def search_batch(request: Request) -> JSONResponse:
        body = await parse_body(request, models["batch"])
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

    async def write(request: Request, model: str, apply: Any) -> JSONResponse:
        body = await parse_body(request, models[model])
        report = await anyio.to_thread.run_sync(apply, body)
        skipped = [d.id for d in getattr(body, "documents", ()) if not d.text.strip()]
        return JSONResponse(report_body(report, index.manifest.counts, skipped))

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
        status, message = describe_errors(list(exc.errors()))
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


def require(module: str) -> Any:
    """Import an optional dependency of the server, or say how to install it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise MissingDependencyError(
            f"the HTTP server needs {module}, which is not installed; {_INSTALL}"
        ) from e
