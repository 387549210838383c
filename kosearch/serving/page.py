"""The search page at ``GET /``: a query box over ``POST /search``, shipped with the package.

The page is three static files in ``kosearch/serving/static/`` (HTML, one script, one style
sheet; package data, no build step, nothing loaded from elsewhere), so it works offline. They
are served under fixed paths (:data:`PAGE_FILES`; nothing else under the package is reachable)
with a Content-Security-Policy that allows only the page's own script, style sheet and requests
to this server. The page needs no API key to load, only to search: it asks for the key when the
server answers 401, and sends it in the ``Authorization`` header (never in the URL).
"""

from __future__ import annotations

from importlib import resources
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from fastapi import FastAPI, Request
    from fastapi.responses import Response

STATIC = "static"
#: URL path -> (file in ``static/``, media type).
PAGE_FILES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/static/search.js": ("search.js", "text/javascript; charset=utf-8"),
    "/static/search.css": ("search.css", "text/css; charset=utf-8"),
}
#: The paths of the page, reachable without the API key (static files that reveal nothing).
PAGE_PATHS = frozenset(PAGE_FILES)
#: Only the page's own files and requests to this server; no inline script or style.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
       "img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",  # a query in the page's URL stays on this server
    "Cache-Control": "no-cache",  # revalidate, so an upgraded server serves its new page
}


def page_file(name: str) -> bytes:
    """The bytes of one of the page's files (read through importlib.resources: any install)."""
    return resources.files(__package__).joinpath(STATIC, name).read_bytes()


def add_page(app: FastAPI) -> None:
    """Add ``GET /`` and the page's script and style sheet to ``app``."""
    from fastapi.responses import Response

    def endpoint(content: bytes, media_type: str) -> Callable[[Request], Awaitable[Response]]:
        async def page(request: Request) -> Response:
            return Response(content, media_type=media_type, headers=HEADERS)

        return page

    for path, (name, media_type) in PAGE_FILES.items():
        # Starlette routes (not FastAPI's): no parameters to parse, and GET answers HEAD too
        app.add_route(path, endpoint(page_file(name), media_type), methods=["GET"],
                      include_in_schema=False)
