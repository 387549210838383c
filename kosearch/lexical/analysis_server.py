"""The analysis process of :mod:`kosearch.lexical.child_analysis` (``python -m
kosearch.lexical.analysis_server``): it answers one query over pipes, and may then linger as a
small per-user server on a Unix socket, so that the next one-shot query finds Kiwi loaded.

Building Kiwi takes a fresh process 2-2.5 s on a small machine, most of a one-shot query's
time. With lingering asked for (:func:`linger_seconds`: ``KOSEARCH_ANALYZER_LINGER``), the
child detaches itself from the query at its start, answers it over the pipes, and when these
close listens on a socket named after its analyzer (:func:`socket_path`) until nobody has
connected for the linger time. Later queries connect there (:func:`connect`) instead of
starting a child. The protocol is the pipes' one: a first line ``{"lexical": ..., "texts":
[...]}`` answered with the analyzer's config and the texts' query terms (plus the answering
process's ``pid`` and how many sessions it has ``served``), then ``{"op": "query_terms" |
"locate", "texts": [...]}`` lines answered ``{"result": ...}``.

The server serves one connection at a time (a loaded Kiwi answers in milliseconds), drops a
connection silent for :data:`SESSION_TIMEOUT_S`, and only ever removes a socket file that is
still its own. This module imports the standard library only: the query process imports it
too, and must pay for neither numpy nor Kiwi.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import select
import signal
import socket
import stat
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from kosearch.errors import ConfigError

if TYPE_CHECKING:
    from kosearch.lexical.analyzers import Analyzer

log = logging.getLogger(__name__)

LINGER_ENV = "KOSEARCH_ANALYZER_LINGER"
DEFAULT_LINGER_S = 300.0
"""How long a one-shot query's analysis child stays, idle, for the next one (seconds)."""
CONNECT_TIMEOUT_S = 0.2
"""How long connecting to a server may take before a query starts its own child instead."""
SESSION_TIMEOUT_S = 30.0
"""How long the server waits for the next request of a connection before dropping it."""
MAX_PATH_BYTES = 100
"""Longer socket paths (the limit is 108 bytes with the NUL) turn lingering off."""


def linger_seconds() -> float:
    """The linger time set by ``KOSEARCH_ANALYZER_LINGER`` (default :data:`DEFAULT_LINGER_S`;
    ``0`` turns lingering off).

    Raises:
        ConfigError: If the value is not a finite number of seconds >= 0.
    """
    raw = os.environ.get(LINGER_ENV, "").strip()
    if not raw:
        return DEFAULT_LINGER_S
    try:
        seconds = float(raw)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds >= 0):
        raise ConfigError(f"{LINGER_ENV} must be a number of seconds >= 0, got {raw!r}")
    return seconds


def runtime_dir() -> Path | None:
    """``$XDG_RUNTIME_DIR/kosearch``, else ``<tmp>/kosearch-<uid>``, made with mode 0700;
    ``None`` unless it is a directory of this user that nobody else may enter."""
    base = os.environ.get("XDG_RUNTIME_DIR")
    path = (Path(base, "kosearch") if base
            else Path(tempfile.gettempdir(), f"kosearch-{os.getuid()}"))
    try:
        with contextlib.suppress(FileExistsError):
            os.mkdir(path, 0o700)
        info = os.lstat(path)
    except OSError as e:
        log.debug("no analysis server: cannot make %s (%s)", path, e)
        return None
    if (not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid()
            or info.st_mode & 0o077):
        log.debug("no analysis server: %s is not a private directory of this user", path)
        return None
    return path


def socket_path(lexical_dir: str | None, module: str = __name__) -> str | None:
    """Where the server for the analyzer of ``lexical_dir`` (None: the default Kiwi analyzer)
    listens; ``None`` if there can be none (no private runtime directory, an unreadable
    config, no kiwipiepy, a path too long for a socket).

    The name hashes everything a server's answers depend on: the analyzer's raw config, the
    versions of kosearch and kiwipiepy, the interpreter, where this kosearch lives (two
    checkouts of one version may answer differently) and the ``module`` the server runs (one
    with a :class:`Host` answers more).
    """
    from importlib import metadata

    from kosearch._version import __version__

    try:
        analyzer = ("default" if lexical_dir is None
                    else json.dumps(tokenizer_config(lexical_dir), sort_keys=True))
        kiwi = metadata.version("kiwipiepy")
    except (OSError, ValueError, KeyError, metadata.PackageNotFoundError) as e:
        log.debug("no analysis server (%s)", e)
        return None
    directory = runtime_dir()
    if directory is None:
        return None
    key = json.dumps([analyzer, __version__, kiwi, sys.executable,
                      str(Path(__file__).resolve().parents[1]), module])
    path = str(directory / hashlib.sha256(key.encode("utf-8")).hexdigest()[:16])
    if len(path.encode()) + 8 > MAX_PATH_BYTES:  # 8: the temporary name's ".<pid>"
        log.debug("no analysis server: %s is too long for a socket", path)
        return None
    return path


def tokenizer_config(lexical_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``tokenizer`` entry of a saved lexical index's ``config.json`` (unchecked)."""
    header = json.loads((Path(lexical_dir) / "config.json").read_text(encoding="utf-8"))
    config = header["tokenizer"]
    if not isinstance(config, dict):
        raise ValueError(f"the tokenizer entry of {lexical_dir}/config.json is not an object")
    return config


def connect(path: str, timeout: float = CONNECT_TIMEOUT_S) -> socket.socket | None:
    """A connection to the server at ``path``; ``None`` if none answers within ``timeout``."""
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.settimeout(timeout)
    try:
        client.connect(path)
    except OSError:
        client.close()
        return None
    return client


# ------------------------------------------------------------------ answering requests


class Host(Protocol):
    """More than Kiwi in the same process, given to :func:`main` by a module of a higher layer
    (:mod:`kosearch.retrieval.oneshot` adds the query encoder)."""

    def first(self, request: dict[str, Any]) -> dict[str, Any]:
        """Fields to add to a session's first answer (and note what ``request`` asks for)."""

    def handle(self, op: str, asked: dict[str, Any]) -> Any:
        """The result of a request ``op`` that Kiwi does not answer (raise for an unknown one)."""

    def prepare(self) -> None:
        """Load what the sessions so far asked for; called after each session."""


def first_answer(analyzer: Analyzer, request: dict[str, Any], served: int,
                 host: Host | None = None) -> dict[str, Any]:
    """The answer to a session's first line: the analyzer's config and the texts' terms."""
    from kosearch.lexical.analyzers import query_terms

    extra: dict[str, Any] = {}
    if host is not None:
        with contextlib.suppress(Exception):  # the host's part is optional
            extra = host.first(request)
    return {**extra, "analyzer": analyzer.config(),
            "terms": query_terms(analyzer, request["texts"]), "pid": os.getpid(),
            "served": served}


def answer(analyzer: Analyzer, line: bytes, host: Host | None = None) -> dict[str, Any]:
    """The answer to a request line; its ``result`` is ``None`` if the request failed."""
    from kosearch.lexical.analyzers import query_terms

    result: Any = None
    with contextlib.suppress(Exception):  # a bad request must not end the session
        asked = json.loads(line)
        if asked["op"] == "query_terms":
            result = query_terms(analyzer, asked["texts"])
        elif asked["op"] == "locate":
            result = [[terms, starts] for terms, starts
                      in analyzer.locate(asked["texts"])]  # type: ignore[attr-defined]
        elif host is not None:
            result = host.handle(asked["op"], asked)
    return {"result": result}


def json_line(message: dict[str, Any]) -> bytes:
    """One JSON line."""
    return json.dumps(message, ensure_ascii=False).encode("utf-8") + b"\n"


# ------------------------------------------------------------------ the analysis process


def main(host: Host | None = None) -> None:
    """Serve one parent: read ``{"lexical": dir or null, "texts": [...]}``, print the analyzer's
    config and the query terms of each text as a JSON line; then answer each request line
    ``{"op": "query_terms" | "locate", "texts": [...]}`` with ``{"result": ...}`` (``null``
    if it failed) until the input ends, and exit at once.

    With ``"linger": seconds`` and ``"socket": path`` in the first line, the child forks at
    once (before Kiwi loads: no threads yet), the process the parent started exits, and the
    grandchild, in a session of its own, serves the parent and then lingers on the socket
    (:func:`linger`). A ``host`` answers the requests Kiwi does not (:class:`Host`).

    The child reads only the analyzer's entry of ``config.json`` (not through
    :mod:`kosearch.lexical.format`, which imports numpy, 0.1-0.3 s here); the parent checks
    the config the child reports against the one it loaded and validated. It leaves with
    ``os._exit``, so that neither Kiwi's ~300 MB of small allocations nor the interpreter are
    torn down while the parent waits.
    """
    request = json.loads(sys.stdin.buffer.readline())
    idle_s, path = request.get("linger") or 0, request.get("socket")
    lingering = isinstance(path, str) and idle_s > 0
    if lingering:
        if os.fork():
            os._exit(0)  # the parent reaps this one; the grandchild is init's
        os.setsid()  # out of the query's process group: its Ctrl-C is not for this one
    from kosearch.lexical.analyzers import MorphemeAnalyzer, analyzer_from_config

    source = request["lexical"]
    analyzer = (MorphemeAnalyzer() if source is None
                else analyzer_from_config(tokenizer_config(source)))
    out = sys.stdout.buffer
    with contextlib.suppress(OSError):  # a parent gone early: linger all the same
        out.write(json_line(first_answer(analyzer, request, 1, host)))
        out.flush()
        for line in sys.stdin.buffer:
            out.write(json_line(answer(analyzer, line, host)))
            out.flush()
    if lingering:
        linger(analyzer, path, idle_s, host)
    os._exit(0)


def linger(analyzer: Analyzer, path: str, idle_s: float, host: Host | None = None) -> None:
    """Serve ``analyzer`` on a socket at ``path`` until nobody has connected for ``idle_s``
    seconds, then remove the socket; return at once if another server already listens there.

    The caller has answered one session (over its pipes) and has its own session (setsid):
    this lets go of the pipes and the working directory first, so that nothing of the query
    that started it stays held.
    """
    _detach()
    if host is not None:
        host.prepare()
    bound = _bind(path)
    if bound is None:
        return
    listener, identity = bound
    signal.signal(signal.SIGTERM, _leave)  # `kill PID` removes the socket too
    served = 1
    try:
        while select.select([listener], [], [], idle_s)[0]:
            try:
                connection, _ = listener.accept()
            except OSError:
                continue
            with connection:
                served += _session(connection, analyzer, served + 1, host)
            if host is not None:
                host.prepare()
    finally:
        _remove(path, identity)
        listener.close()


def _leave(signum: int, frame: Any) -> None:
    raise SystemExit(0)


def _detach() -> None:
    """Point stdin, stdout and stderr at /dev/null and leave the working directory."""
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)
    os.chdir("/")


def _temporary(path: str) -> str:
    return f"{path}.{os.getpid()}"


def _bind(path: str) -> tuple[socket.socket, tuple[int, int]] | None:
    """A socket listening at ``path``, and its (inode, device); ``None`` if a live server is
    there. A stale socket file (nobody listening) is replaced: the new socket is bound under a
    temporary name and renamed over it, so a client never finds the path missing."""
    if _listening(path):
        return None
    temporary = _temporary(path)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(temporary)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(temporary)
        listener.listen(16)
        info = os.stat(temporary)
        os.rename(temporary, path)
    except OSError as e:
        log.debug("the analysis server cannot listen at %s (%s)", path, e)
        listener.close()
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        return None
    return listener, (info.st_ino, info.st_dev)


def _listening(path: str) -> bool:
    """Whether a server may be listening at ``path``: only a refused connection or a missing
    file say for sure that none is (a busy one may not accept at once)."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(CONNECT_TIMEOUT_S)
    try:
        probe.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        return False
    except OSError:
        return True
    finally:
        probe.close()
    return True


def _remove(path: str, identity: tuple[int, int]) -> None:
    """Remove the socket file at ``path`` if it is still the one this server made."""
    with contextlib.suppress(OSError):
        info = os.stat(path)
        if (info.st_ino, info.st_dev) == identity:
            os.unlink(path)


def _session(connection: socket.socket, analyzer: Analyzer, served: int,
             host: Host | None) -> int:
    """Answer one client until it closes or falls silent; 1 if it had its first answer."""
    connection.settimeout(SESSION_TIMEOUT_S)
    answered = 0
    try:
        lines = connection.makefile("rb")
        first = lines.readline()
        if not first:  # a probe (another server checking for this one): not a session
            return 0
        connection.sendall(json_line(first_answer(analyzer, json.loads(first), served, host)))
        answered = 1
        for line in lines:
            connection.sendall(json_line(answer(analyzer, line, host)))
    except Exception as e:  # a client that misbehaves or vanishes only ends its session
        log.debug("analysis session ended (%s)", e)
    return answered


if __name__ == "__main__":
    main()
