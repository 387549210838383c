"""Analyzing query texts and hits in a child process, while this process loads the rest.

Kiwi holds the GIL for all of its ~0.9 s load, so in a thread it only stalls the encoder's load
beside it. A one-shot query therefore starts ``python -m kosearch.lexical.child_analysis``,
hands it the queries, and goes on loading the index and the query model on its own core. The
child builds the analyzer (an index's BM25 one from its config, or the default Kiwi analyzer
for highlights on a dense-only index), prints the queries' BM25 terms as one JSON line, and
then answers requests, a JSON line each, until its input closes: the query terms of other
texts, and the located terms and sentences of the hits' text for their highlights
(:mod:`kosearch.retrieval.highlight`). So a one-shot query never loads Kiwi here.

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

if TYPE_CHECKING:
    from kosearch.lexical.analyzers import Located, MorphemeAnalyzer

log = logging.getLogger(__name__)

MAX_INPUT_BYTES = 32_768
"""Larger queries are analyzed in-process (the first request must fit the pipe's buffer)."""
TIMEOUT_S = 120.0
"""How long to wait for one answer of the child (its first includes Kiwi's load)."""


def cores() -> int:
    """CPU cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


class ChildAnalysis:
    """A child process that analyzes ``texts`` (the queries) with an index's analyzer, then
    answers further requests until :meth:`close`.

    Start one with :meth:`start`, which returns ``None`` where a child would not pay off; take
    the queries' terms with :meth:`terms` and the analyses of hit texts with :meth:`locate`.
    """

    def __init__(self, texts: list[str], process: subprocess.Popen[bytes]) -> None:
        self.texts = texts
        self._process = process
        self._buffer = b""
        self._first: Any = None
        self._read_first = False
        self._closed = False

    @classmethod
    def start(cls, lexical_dir: str | os.PathLike[str] | None,
              texts: Sequence[str]) -> ChildAnalysis | None:
        """Start a child analyzing ``texts`` with the analyzer saved in ``lexical_dir`` (None:
        the default Kiwi analyzer); ``None`` with one core, no interpreter, no such directory,
        no ``select`` on pipes (Windows), or more input than :data:`MAX_INPUT_BYTES`."""
        texts = list(texts)
        source = None if lexical_dir is None else str(lexical_dir)
        payload = json.dumps({"lexical": source, "texts": texts}).encode("utf-8") + b"\n"
        if (cores() < 2 or not sys.executable or os.name != "posix"
                or len(payload) > MAX_INPUT_BYTES
                or (source is not None and not Path(source).is_dir())):
            return None
        try:
            process = subprocess.Popen(
                [sys.executable, "-m", "kosearch.lexical.child_analysis"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                env=_child_env(),
            )
        except OSError as e:
            log.debug("no analysis child (%s)", e)
            return None
        child = cls(texts, process)
        if not child._send(payload):  # fits the pipe's buffer: never blocks
            return None
        return child

    @property
    def analyzer_config(self) -> dict[str, Any] | None:
        """The config of the analyzer the child built (waiting for it); ``None`` if it failed."""
        first = self._first_answer()
        config = first.get("analyzer") if isinstance(first, dict) else None
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
        terms = self._ask("query_terms", texts)
        return terms if _is_terms(terms, len(texts)) else None

    def locate(self, config: Mapping[str, Any], texts: Sequence[str]) -> list[Located] | None:
        """Kiwi's located terms and sentence starts of ``texts`` (as
        :meth:`MorphemeAnalyzer.locate <kosearch.lexical.analyzers.MorphemeAnalyzer.locate>`),
        asked of the child; ``None`` as for :meth:`terms`."""
        from kosearch.lexical.analyzers import Located

        texts = list(texts)
        if self.analyzer_config != dict(config):
            return None
        answer = self._ask("locate", texts)
        try:
            out = [Located([(str(t), int(s), int(e)) for t, s, e in terms],
                           [int(p) for p in starts])
                   for terms, starts in answer]
        except (TypeError, ValueError):
            return None
        return out if len(out) == len(texts) else None

    def close(self) -> None:
        """Stop the child and reap it; later requests answer ``None``."""
        if not self._closed:
            self._closed = True
            self._process.kill()
            for stream in (self._process.stdin, self._process.stdout):
                with contextlib.suppress(OSError):
                    stream.close()  # type: ignore[union-attr]
            self._process.wait()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # interpreter shutdown: do what can be done
            self.close()

    # ------------------------------------------------------------------ the pipes
    def _first_answer(self) -> Any:
        if not self._read_first:
            self._read_first = True
            self._first = self._receive()
        return self._first

    def _ask(self, op: str, texts: list[str]) -> Any:
        self._first_answer()  # answers come in order
        request = json.dumps({"op": op, "texts": texts}, ensure_ascii=False)
        if not self._send(request.encode("utf-8") + b"\n"):
            return None
        answer = self._receive()
        return answer.get("result") if isinstance(answer, dict) else None

    def _send(self, data: bytes) -> bool:
        if self._closed:
            return False
        try:
            self._process.stdin.write(data)  # type: ignore[union-attr]
            self._process.stdin.flush()  # type: ignore[union-attr]
        except OSError as e:  # the child died
            log.debug("the analysis child cannot be written to (%s)", e)
            self.close()
            return False
        return True

    def _receive(self) -> Any:
        """The next JSON line of the child; ``None`` (and the child stopped) if it fails,
        ends or takes more than :data:`TIMEOUT_S`."""
        if self._closed:
            return None
        fd = self._process.stdout.fileno()  # type: ignore[union-attr]
        deadline = time.monotonic() + TIMEOUT_S
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            ready = select.select([fd], [], [], max(left, 0))[0] if left > 0 else []
            chunk = os.read(fd, 1 << 16) if ready else b""
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


def main() -> None:
    """Serve one parent: read ``{"lexical": dir or null, "texts": [...]}``, print the analyzer's
    config and the query terms of each text as a JSON line; then answer each request line
    ``{"op": "query_terms" | "locate", "texts": [...]}`` with ``{"result": ...}`` (``null``
    if it failed) until the input ends, and exit at once.

    The child reads only the analyzer's entry of ``config.json`` (not through
    :mod:`kosearch.lexical.format`, which imports numpy, 0.1-0.3 s here); the parent checks
    the config the child reports against the one it loaded and validated. It leaves with
    ``os._exit``, so that neither Kiwi's ~300 MB of small allocations nor the interpreter are
    torn down while the parent waits.
    """
    from kosearch.lexical.analyzers import MorphemeAnalyzer, analyzer_from_config, query_terms

    request = json.loads(sys.stdin.buffer.readline())
    source = request["lexical"]
    analyzer = (MorphemeAnalyzer() if source is None
                else analyzer_from_config(tokenizer_config(source)))
    _answer({"analyzer": analyzer.config(), "terms": query_terms(analyzer, request["texts"])})
    for line in sys.stdin.buffer:
        result: Any = None
        with contextlib.suppress(Exception):  # a failed request answers null
            asked = json.loads(line)
            if asked["op"] == "query_terms":
                result = query_terms(analyzer, asked["texts"])
            elif asked["op"] == "locate":
                result = [[terms, starts] for terms, starts
                          in analyzer.locate(asked["texts"])]  # type: ignore[attr-defined]
        _answer({"result": result})
    os._exit(0)


def _answer(message: dict[str, Any]) -> None:
    sys.stdout.buffer.write(json.dumps(message, ensure_ascii=False).encode("utf-8") + b"\n")
    sys.stdout.buffer.flush()


def tokenizer_config(lexical_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``tokenizer`` entry of a saved lexical index's ``config.json`` (unchecked)."""
    header = json.loads((Path(lexical_dir) / "config.json").read_text(encoding="utf-8"))
    config = header["tokenizer"]
    if not isinstance(config, dict):
        raise ValueError(f"the tokenizer entry of {lexical_dir}/config.json is not an object")
    return config


if __name__ == "__main__":
    main()
