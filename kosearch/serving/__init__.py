"""The HTTP server: the app, request/response schemas, batching, middleware."""
