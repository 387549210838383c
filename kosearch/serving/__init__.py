"""The HTTP server: the app and its routes, request/response schemas, running it with uvicorn,
batching, middleware, logger names."""

from __future__ import annotations
