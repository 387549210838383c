"""Plain ASGI middleware of the HTTP server: API key and body-size gate, and the access log.

Both run before FastAPI parses anything, so a request without the key or with a huge body costs
almost nothing, and both answer in the server's error shape, ``{"error": "<one sentence>"}``.
"""

from __future__ import annotations

import hmac
import json
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from typing import Any

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

NOTE_KEY = "kosearch.log"  # scope key of the dict where routes note their queries for the log


async def _send_error(send: Send, status: int, message: str,
                      headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
    body = json.dumps({"error": message}, ensure_ascii=False).encode("utf-8")
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        *headers,
    ]})
    await send({"type": "http.response.body", "body": body})


class Gate:
    """API key check (constant time) and request body limit, before anything else runs."""

    def __init__(
        self, app: Any, *, api_key: str | None, max_body_bytes: int,
        open_paths: Collection[str] = frozenset({"/health"}),
    ) -> None:
        self.app = app
        self.open_paths = frozenset(open_paths)
        self.key = None if api_key is None else api_key.encode("utf-8")
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        if self.key is not None and scope["path"] not in self.open_paths:
            scheme, _, token = headers.get(b"authorization", b"").partition(b" ")
            # compare_digest takes time independent of where the strings differ
            if not (hmac.compare_digest(token.strip(), self.key) and scheme.lower() == b"bearer"):
                return await _send_error(
                    send, 401, "a valid API key is required: send 'Authorization: Bearer <key>'",
                    [(b"www-authenticate", b"Bearer")],
                )
        length = headers.get(b"content-length", b"0")
        if not length.isdigit():
            return await _send_error(send, 400, "the Content-Length header is not a number")
        if int(length) > self.max_body_bytes:
            return await _send_error(send, 413, self._too_large())
        return await self.app(scope, self._limited(receive), send)

    def _too_large(self) -> str:
        return f"the request body is larger than the limit of {self.max_body_bytes} bytes"

    def _limited(self, receive: Receive) -> Receive:
        """``receive`` that counts body bytes (chunked uploads have no Content-Length)."""
        from starlette.exceptions import HTTPException

        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_body_bytes:
                raise HTTPException(413, self._too_large())
            return message

        return limited


class AccessLog:
    """One JSON line per request on ``logger``: method, path, status, ms, queries.

    The routes count their queries (and give their texts) in ``scope[NOTE_KEY]``; the texts are
    logged only with ``log_queries=True``.
    """

    def __init__(self, app: Any, *, logger: logging.Logger, log_queries: bool = False) -> None:
        self.app = app
        self.logger = logger
        self.log_queries = log_queries

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        note: dict[str, Any] = {"queries": 0}
        scope[NOTE_KEY] = note  # the routes fill it in
        status = 500

        async def watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            record = {"method": scope["method"], "path": scope["path"], "status": status,
                      "ms": round((time.perf_counter() - start) * 1000, 2),
                      "queries": note["queries"]}
            if self.log_queries and "texts" in note:
                record["query"] = note["texts"]
            self.logger.info(json.dumps(record, ensure_ascii=False))
