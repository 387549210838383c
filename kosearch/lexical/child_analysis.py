"""Analyzing query texts and hits in a child process, while this process loads the rest.

Kiwi holds the GIL for all of its ~0.9 s load, so in a thread it only stalls the encoder's load
beside it. A one-shot query therefore starts ``python -m kosearch.lexical.analysis_server``,
hands it the queries, and goes on loading the index and the query model on its own core. The
child builds the analyzer (an index's BM25 one from its config, or the default Kiwi analyzer
for highlights on a dense-only index), prints the queries' BM25 terms as one JSON line, and
then answers requests, a JSON line each, until its input closes: the query terms of other
texts, and the located terms and sentences of the hits' text for their highlights
(:mod:`kosearch.retrieval.highlight`). So a one-shot query never loads Kiwi here.

With ``linger`` (:meth:`ChildAnalysis.start`), the child stays after the query as a server on
a Unix socket, and the next queries of the same analyzer talk to it over that socket instead
of starting a child: :mod:`kosearch.lexical.analysis_server`.

Anything that goes wrong (no second core, a child that fails, answers late or prints nonsense)
only costs the speed-up: the methods return ``None`` and the caller analyzes in-process.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kosearch.lexical import analysis_server
from kosearch.lexical.analysis_server import json_line

if TYPE_CHECKING:
    import socket

    from kosearch.lexical.analyzers import Located, MorphemeAnalyzer

log = logging.getLogger(__name__)

MAX_INPUT_BYTES = 32_768
"""Larger queries are analyzed in-process (the first request must fit the pipe's buffer)."""
TIMEOUT_S = 120.0
"""How long to wait for one answer of the child (its first includes Kiwi's load)."""
FIRST_ANSWER_TIMEOUT_S = 0.5
"""How long a lingering server may take to answer before a query starts its own child."""
SERVER_MODULE = "kosearch.lexical.analysis_server"
DETACH_TIMEOUT_S = 10.0
"""How long the process started for a lingering child may take to leave it (at its start)."""


def cores() -> int:
    """CPU cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


class ChildAnalysis:
    """A child process (or a lingering server, see :mod:`kosearch.lexical.analysis_server`)
    that analyzes ``texts`` (the queries) with an index's analyzer, then answers further
    requests until :meth:`close`.

    Start one with :meth:`start`, which returns ``None`` where a child would not pay off; take
    the queries' terms with :meth:`terms` and the analyses of hit texts with :meth:`locate`.
    """

    def __init__(self, texts: list[str], channel: _Pipes | _Socket) -> None:
        self.texts = texts
        self._channel = channel
        self._buffer = b""
        self._first: Any = None
        self._read_first = False
        self._closed = False

    @classmethod
    def start(cls, lexical_dir: str | os.PathLike[str] | None, texts: Sequence[str], *,
              linger: float = 0.0, module: str = SERVER_MODULE,
              extra: Mapping[str, Any] | None = None) -> ChildAnalysis | None:
        """Start a child analyzing ``texts`` with the analyzer saved in ``lexical_dir`` (None:
        the default Kiwi analyzer); ``None`` with one core, no interpreter, no such directory,
        no ``select`` on pipes (Windows), or more input than :data:`MAX_INPUT_BYTES`.

        With ``linger`` > 0, a server left by an earlier query for the same analyzer answers
        if there is one (no child then); else the child stays after :meth:`close`, as that
        server, until nobody has asked it anything for ``linger`` seconds.

        ``module`` is the one the child runs (``python -m``): the analysis server, or one that
        gives it a :class:`~kosearch.lexical.analysis_server.Host`; ``extra`` goes into the
        first request, for that host.
        """
        texts = list(texts)
        source = None if lexical_dir is None else os.path.abspath(lexical_dir)
        request: dict[str, Any] = {**(extra or {}), "lexical": source, "texts": texts}
        if (os.name != "posix" or len(json_line(request)) > MAX_INPUT_BYTES
                or (source is not None and not Path(source).is_dir())):
            return None
        path = analysis_server.socket_path(source, module) if linger > 0 else None
        if path is not None:
            server = cls._from_server(path, texts, json_line(request))
            if server is not None:
                return server
            request.update(socket=path, linger=linger)
        if cores() < 2 or not sys.executable:
            return None
        try:
            process = subprocess.Popen(
                [sys.executable, "-m", module],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                env=_child_env(),
            )
        except OSError as e:
            log.debug("no analysis child (%s)", e)
            return None
        child = cls(texts, _Pipes(process, lingering=path is not None))
        if not child._send(json_line(request)):  # fits the pipe's buffer: never blocks
            return None
        return child

    @classmethod
    def _from_server(cls, path: str, texts: list[str], request: bytes) -> ChildAnalysis | None:
        """A session with the server at ``path`` if one answers at once, else ``None``."""
        connection = analysis_server.connect(path)
        if connection is None:
            return None
        server = cls(texts, _Socket(connection))
        if server._send(request) and server._first_answer(FIRST_ANSWER_TIMEOUT_S) is not None:
            return server
        log.debug("the analysis server at %s did not answer", path)
        server.close()
        return None

    @property
    def via_server(self) -> bool:
        """Whether a lingering server answers (no child was started)."""
        return isinstance(self._channel, _Socket)

    @property
    def server(self) -> tuple[int, int] | None:
        """The pid of the process that answers and how many sessions it has served (this one
        included), waiting for its first answer; ``None`` if it failed."""
        pid, served = self.first("pid"), self.first("served")
        return (pid, served) if isinstance(pid, int) and isinstance(served, int) else None

    def first(self, name: str) -> Any:
        """Field ``name`` of the first answer (waiting for it); ``None`` if absent or failed."""
        first = self._first_answer()
        return first.get(name) if isinstance(first, dict) else None

    @property
    def analyzer_config(self) -> dict[str, Any] | None:
        """The config of the analyzer the child built (waiting for it); ``None`` if it failed."""
        config = self.first("analyzer")
        return config if isinstance(config, dict) else None

    def terms(self, config: Mapping[str, Any]) -> list[list[str]] | None:
        """The query terms per text of :attr:`texts`, waiting for the child; ``None`` if it
        failed or analyzed with another analyzer than ``config`` (e.g. an index that a writer
        has replaced since)."""
        if self.analyzer_config != dict(config):
            return None
        terms = self._first.get("terms")
        return terms if _is_terms(terms, len(self.texts)) else None

    def query_terms(self, config: Mapping[str, Any],
                    texts: Sequence[str]) -> list[list[str]] | None:
        """The query terms of other ``texts``, asked of the child (``None`` as for
        :meth:`terms`)."""
        texts = list(texts)
        if self.analyzer_config != dict(config):
            return None
        terms = self.ask("query_terms", texts)
        return terms if _is_terms(terms, len(texts)) else None

    def locate(self, config: Mapping[str, Any], texts: Sequence[str]) -> list[Located] | None:
        """Kiwi's located terms and sentence starts of ``texts`` (as
        :meth:`MorphemeAnalyzer.locate <kosearch.lexical.analyzers.MorphemeAnalyzer.locate>`),
        asked of the child; ``None`` as for :meth:`terms`."""
        from kosearch.lexical.analyzers import Located

        texts = list(texts)
        if self.analyzer_config != dict(config):
            return None
        answer = self.ask("locate", texts)
        try:
            out = [Located([(str(t), int(s), int(e)) for t, s, e in terms],
                           [int(p) for p in starts])
                   for terms, starts in answer]
        except (TypeError, ValueError):
            return None
        return out if len(out) == len(texts) else None

    def close(self) -> None:
        """End the session (a child that does not linger is stopped and reaped); later
        requests answer ``None``."""
        if not self._closed:
            self._closed = True
            self._channel.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # interpreter shutdown: do what can be done
            self.close()

    # ------------------------------------------------------------------ the channel
    def _first_answer(self, timeout: float = TIMEOUT_S) -> Any:
        if not self._read_first:
            self._read_first = True
            self._first = self._receive(timeout)
        return self._first

    def ask(self, op: str, texts: list[str], **fields: Any) -> Any:
        """The ``result`` of request ``op`` on ``texts`` (with ``fields``); ``None`` if the
        child failed, or could not do it."""
        self._first_answer()  # answers come in order
        if not self._send(json_line({**fields, "op": op, "texts": texts})):
            return None
        answer = self._receive()
        return answer.get("result") if isinstance(answer, dict) else None

    def _send(self, data: bytes) -> bool:
        if self._closed:
            return False
        try:
            self._channel.send(data)
        except OSError as e:  # the child died
            log.debug("the analysis child cannot be written to (%s)", e)
            self.close()
            return False
        return True

    def _receive(self, timeout: float = TIMEOUT_S) -> Any:
        """The next JSON line of the child; ``None`` (and the session closed) if it fails,
        ends or takes more than ``timeout`` seconds."""
        if self._closed:
            return None
        fd = self._channel.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            ready = select.select([fd], [], [], max(left, 0))[0] if left > 0 else []
            try:
                chunk = os.read(fd, 1 << 16) if ready else b""
            except OSError:  # e.g. a server that reset the connection
                chunk = b""
            if not chunk:
                log.debug("the analysis child ended or timed out")
                self.close()
                return None
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        try:
            return json.loads(line)
        except ValueError:
            self.close()
            return None


class _Pipes:
    """A child's stdin and stdout. A lingering child has left the process started here (which
    exits at once), so closing the pipes ends the session without stopping it."""

    def __init__(self, process: subprocess.Popen[bytes], *, lingering: bool) -> None:
        self.process = process
        self.lingering = lingering

    def fileno(self) -> int:
        return self.process.stdout.fileno()  # type: ignore[union-attr]

    def send(self, data: bytes) -> None:
        self.process.stdin.write(data)  # type: ignore[union-attr]
        self.process.stdin.flush()  # type: ignore[union-attr]

    def close(self) -> None:
        if not self.lingering:
            self.process.kill()
        for stream in (self.process.stdin, self.process.stdout):
            with contextlib.suppress(OSError):
                stream.close()  # type: ignore[union-attr]
        try:
            self.process.wait(timeout=DETACH_TIMEOUT_S if self.lingering else None)
        except subprocess.TimeoutExpired:  # stuck before it could detach itself
            self.process.kill()
            self.process.wait()


class _Socket:
    """A connection to a lingering server."""

    def __init__(self, connection: socket.socket) -> None:
        connection.settimeout(TIMEOUT_S)  # for sends; answers are awaited with select
        self.connection = connection

    def fileno(self) -> int:
        return self.connection.fileno()

    def send(self, data: bytes) -> None:
        self.connection.sendall(data)

    def close(self) -> None:
        self.connection.close()


class ChildAnalyzer:
    """Stands in for ``local``, an analyzer not loaded in this process, where a
    :class:`~kosearch.retrieval.highlight.Highlighter` needs one: query terms and located
    texts come from ``child`` while it answers, and from ``local`` (loading Kiwi here) after.
    """

    def __init__(self, child: ChildAnalysis, local: MorphemeAnalyzer) -> None:
        self.child = child
        self.local = local

    def tokenize_queries(self, texts: Sequence[str]) -> list[list[str]]:
        """As the local analyzer's, from the child's first answer where it holds the texts."""
        texts = list(texts)
        config = self.local.config()
        known = dict(zip(self.child.texts, self.child.terms(config) or []))
        if all(t in known for t in texts):
            return [known[t] for t in texts]
        terms = self.child.query_terms(config, texts)
        return terms if terms is not None else self.local.tokenize_queries(texts)

    def locate(self, texts: Sequence[str]) -> list[Located]:
        """As the local analyzer's :meth:`locate`, from the child while it answers."""
        located = self.child.locate(self.local.config(), texts) if texts else []
        return located if located is not None else self.local.locate(texts)


def _is_terms(terms: Any, count: int) -> bool:
    return (isinstance(terms, list) and len(terms) == count
            and all(isinstance(t, list) and all(isinstance(x, str) for x in t) for t in terms))


def _child_env() -> dict[str, str]:
    """This environment, with this kosearch first on the child's import path."""
    root = str(Path(__file__).resolve().parents[2])  # the directory holding kosearch/
    paths = [root, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
