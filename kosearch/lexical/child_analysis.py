"""Analyzing a few query texts in a child process, while this process loads the query encoder.

Kiwi holds the GIL for all of its ~0.9 s load, so in a thread it only stalls the encoder's load
beside it. A one-shot hybrid query therefore hands its texts to
``python -m kosearch.lexical.child_analysis``, which rebuilds the analyzer from its config,
analyzes them and prints the terms as JSON. Both loads then run on their own cores and this
process never loads Kiwi at all.

Anything that goes wrong (no second core, a child that fails or prints nonsense) only costs the
speed-up: :meth:`ChildAnalysis.terms` returns ``None`` and the caller analyzes in-process.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MAX_INPUT_BYTES = 32_768
"""Larger inputs are analyzed in-process (the child's input must fit the pipe's buffer)."""
TIMEOUT_S = 120.0


def cores() -> int:
    """CPU cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


class ChildAnalysis:
    """The terms of ``texts`` under a saved lexical index's analyzer, computed by a child.

    Start one with :meth:`start` (given an index's ``lexical/`` folder), which returns
    ``None`` where a child would not pay off; collect with :meth:`terms`.
    """

    def __init__(self, texts: list[str], process: subprocess.Popen[bytes]) -> None:
        self.texts = texts
        self._process = process
        self._result: Any = None
        self._done = False

    @classmethod
    def start(cls, lexical_dir: str | os.PathLike[str],
              texts: Sequence[str]) -> ChildAnalysis | None:
        """Start a child analyzing ``texts`` with the analyzer saved in ``lexical_dir``;
        ``None`` with one core, no interpreter, no such directory, or more input than
        :data:`MAX_INPUT_BYTES`."""
        texts = list(texts)
        payload = json.dumps({"lexical": str(lexical_dir), "texts": texts}).encode("utf-8")
        if (cores() < 2 or not sys.executable or len(payload) > MAX_INPUT_BYTES
                or not Path(lexical_dir).is_dir()):
            return None
        try:
            read_end, write_end = os.pipe()
            try:
                os.write(write_end, payload)  # fits the pipe's buffer: never blocks
            finally:
                os.close(write_end)
            try:
                process = subprocess.Popen(
                    [sys.executable, "-m", "kosearch.lexical.child_analysis"], stdin=read_end,
                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=_child_env(),
                )
            finally:
                os.close(read_end)
        except OSError as e:
            log.debug("no analysis child (%s)", e)
            return None
        return cls(texts, process)

    def terms(self, config: Mapping[str, Any]) -> list[list[str]] | None:
        """The terms per text, waiting for the child; ``None`` if it failed or analyzed with
        another analyzer than ``config`` (e.g. an index that a writer has replaced since)."""
        if not self._done:
            self._done = True
            self._result = self._collect()
        if not isinstance(self._result, dict) or self._result.get("analyzer") != dict(config):
            return None
        terms = self._result.get("terms")
        valid = (
            isinstance(terms, list) and len(terms) == len(self.texts)
            and all(isinstance(t, list) and all(isinstance(x, str) for x in t) for t in terms)
        )
        return terms if valid else None

    def close(self) -> None:
        """Stop the child if it still runs (its result is not wanted) and reap it."""
        if not self._done:
            self._done = True
            self._process.kill()
            self._process.communicate()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # interpreter shutdown: do what can be done
            self.close()

    def _collect(self) -> Any:
        try:
            out, _ = self._process.communicate(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.communicate()
            log.debug("the analysis child timed out")
            return None
        if self._process.returncode != 0:
            log.debug("the analysis child exited with %s", self._process.returncode)
            return None
        try:
            return json.loads(out)
        except ValueError:
            return None


def _child_env() -> dict[str, str]:
    """This environment, with this kosearch first on the child's import path."""
    root = str(Path(__file__).resolve().parents[2])  # the directory holding kosearch/
    paths = [root, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}


def main() -> None:
    """Read ``{"lexical": dir, "texts": [...]}`` on stdin; print the analyzer's config and the
    terms of each text as JSON, then exit at once.

    The child reads only the analyzer's entry of ``config.json`` (not through
    :mod:`kosearch.lexical.format`, which imports numpy, 0.1-0.3 s here); the parent
    checks the config the child reports against the one it loaded and validated. It leaves with
    ``os._exit`` right after the output is flushed, so that neither Kiwi's ~300 MB of small
    allocations nor the interpreter are torn down while the parent waits for the pipe to close.
    """
    from kosearch.lexical.analyzers import analyzer_from_config, query_terms

    request = json.loads(sys.stdin.buffer.read())
    analyzer = analyzer_from_config(tokenizer_config(request["lexical"]))
    terms = query_terms(analyzer, request["texts"])
    out = json.dumps({"analyzer": analyzer.config(), "terms": terms}, ensure_ascii=False)
    sys.stdout.write(out)
    sys.stdout.flush()
    os._exit(0)


def tokenizer_config(lexical_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``tokenizer`` entry of a saved lexical index's ``config.json`` (unchecked)."""
    header = json.loads((Path(lexical_dir) / "config.json").read_text(encoding="utf-8"))
    config = header["tokenizer"]
    if not isinstance(config, dict):
        raise ValueError(f"the tokenizer entry of {lexical_dir}/config.json is not an object")
    return config


if __name__ == "__main__":
    main()
