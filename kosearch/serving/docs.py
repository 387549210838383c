"""The interactive API pages (``/docs``, ``/redoc``) with their scripts served by the app itself.

FastAPI's own pages load Swagger UI and ReDoc from a CDN, so they are blank where the server has
no internet. The ``server`` extra installs ``fastapi-offline``, which ships those assets; here
they are served under ``/docs/assets`` and the pages point at them. Without that package the
pages fall back to FastAPI's CDN ones. ``/openapi.json`` needs neither and works everywhere.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_type_hints

if TYPE_CHECKING:
    from fastapi import FastAPI

ASSETS_URL = "/docs/assets"
#: The asset files a page may ask for (nothing else under the package is served).
ASSETS = ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js", "favicon.png")


def local_assets() -> Path | None:
    """The folder holding the Swagger UI and ReDoc files, or None if they are not installed."""
    spec = importlib.util.find_spec("fastapi_offline")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "static"
    return folder if all((folder / name).is_file() for name in ASSETS) else None


def docs_options() -> dict[str, Any]:
    """``FastAPI(...)`` arguments: no CDN pages when :func:`add_docs` serves local ones."""
    return {"docs_url": None, "redoc_url": None} if local_assets() is not None else {}


def add_docs(app: FastAPI) -> None:
    """Add ``/docs``, ``/redoc`` and their assets, when the assets are installed."""
    folder = local_assets()
    if folder is None:
        return
    from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
    from fastapi.responses import FileResponse, HTMLResponse
    from starlette.exceptions import HTTPException

    title = app.title
    favicon = f"{ASSETS_URL}/favicon.png"

    def swagger() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json", title=f"{title} - Swagger UI",
            swagger_js_url=f"{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS_URL}/swagger-ui.css", swagger_favicon_url=favicon,
        )

    def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=app.openapi_url or "/openapi.json", title=f"{title} - ReDoc",
            redoc_js_url=f"{ASSETS_URL}/redoc.standalone.js", redoc_favicon_url=favicon,
            with_google_fonts=False,
        )

    def asset(name: str) -> FileResponse:
        if name not in ASSETS:
            raise HTTPException(404, f"there is no file {name} under {ASSETS_URL}")
        return FileResponse(folder / name)

    names = {"HTMLResponse": HTMLResponse, "FileResponse": FileResponse}
    for endpoint in (swagger, redoc, asset):  # resolve the annotations FastAPI reads
        endpoint.__annotations__ = get_type_hints(endpoint, localns=names)
    app.add_api_route("/docs", swagger, methods=["GET"], include_in_schema=False)
    app.add_api_route("/redoc", redoc, methods=["GET"], include_in_schema=False)
    app.add_api_route(ASSETS_URL + "/{name}", asset, methods=["GET"], include_in_schema=False)
