"""The server's logger names, defined once: users and tests configure these two loggers.

``kosearch.server`` carries start-up, shutdown and error messages; its child
``kosearch.server.access`` carries the access log, one JSON line per request. The names predate
the ``serving`` package and are kept as they were, whatever module logs to them.
"""

from __future__ import annotations

import logging

LOGGER_NAME = "kosearch.server"
ACCESS_LOGGER_NAME = f"{LOGGER_NAME}.access"

log = logging.getLogger(LOGGER_NAME)
access_log = logging.getLogger(ACCESS_LOGGER_NAME)  # JSON lines only: one per request
