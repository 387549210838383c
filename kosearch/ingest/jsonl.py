"""Read JSON Lines: the JSON object on each line, with errors raised as the caller's class.

One reader for corpora (``CorpusError``), evaluation data (``DatasetError``) and query files
(``ConfigError``). Every error message starts with ``file:line``. :func:`read_lines` gives the
numbered UTF-8 text lines of a plain or gzip file, which :func:`read_jsonl` parses when it is
given a path rather than lines.
"""

from __future__ import annotations

import gzip
import json
import os
import zlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from kosearch.errors import KosearchError

__all__ = ["json_type_name", "read_jsonl", "read_lines"]


def read_lines(
    path: str | os.PathLike[str], *, error: type[KosearchError]
) -> Iterator[tuple[int, str]]:
    """Yield (line number from 1, text) of a UTF-8 file, splitting on ``\\n`` only.

    A ``.gz`` file is decompressed, a byte order mark at the start is dropped and each line
    loses its ``\\r\\n`` or ``\\n``.

    Raises:
        error: ``"{path}:{n}: the line is not valid UTF-8 text"``, or ``"cannot read
            '{path}' (reason)"`` when the file cannot be opened or its gzip data is corrupt.
    """
    opener: Callable[..., Any] = gzip.open if os.fspath(path).endswith(".gz") else open
    try:
        with opener(path, "rb") as handle:
            for number, raw in enumerate(handle, start=1):
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError:
                    raise error(f"{path}:{number}: the line is not valid UTF-8 text") from None
                if number == 1:
                    line = line.removeprefix("\ufeff")
                yield number, line.rstrip("\r\n")
    except (OSError, EOFError, zlib.error) as exc:  # OSError covers gzip.BadGzipFile
        reason = getattr(exc, "strerror", None) or exc
        raise error(f"cannot read '{path}' ({reason})") from exc


def read_jsonl(
    source: str | os.PathLike[str] | Iterable[str],
    *,
    error: type[KosearchError],
    label: str | None = None,
    type_name: Callable[[Any], str] | None = None,
    column: bool = True,
    plain_lines: bool = False,
) -> Iterator[tuple[int, Any]]:
    """Yield ``(line number from 1, record)`` for every non-blank line of a JSONL source.

    Args:
        source: A file path (read with :func:`read_lines`: gzip, BOM and UTF-8 errors handled
            there), or text lines already decoded (numbered from 1 in the order given).
        error: The exception class raised for a malformed line.
        label: The file named in messages (``"{label}:{n}: ..."``); defaults to the path and
            is required with lines.
        type_name: How a non-object record is named in ``"expected a JSON object, found
            ..."``; defaults to :func:`json_type_name` (``"a list"``).
        column: Whether ``"invalid JSON (...)"`` gives the column of the error.
        plain_lines: Query-file mode: each line is stripped first and a line that does not
            start with ``{`` is yielded as its text (a ``str``) instead of being parsed.

    Yields:
        The line number and the parsed JSON object (a ``dict``), or in ``plain_lines`` mode the
        stripped text of a line that is not JSON.

    Raises:
        error: ``"{label}:{n}: invalid JSON ({msg} at column {col})"`` or ``"{label}:{n}:
            expected a JSON object, found {type}"``; with a path, also those of
            :func:`read_lines`.

    Example:
        >>> list(read_jsonl(['{"id": 1}', "", "[2]"], error=KosearchError, label="x.jsonl"))
        Traceback (most recent call last):
        kosearch.errors.KosearchError: x.jsonl:3: expected a JSON object, found a list
    """
    if isinstance(source, (str, os.PathLike)):
        lines: Iterable[str] = (line for _, line in read_lines(source, error=error))
        label = os.fspath(source) if label is None else label
    elif label is None:
        raise ValueError("read_jsonl needs a label to name the lines in its messages")
    else:
        lines = source
    describe = json_type_name if type_name is None else type_name
    for number, line in enumerate(lines, start=1):
        if plain_lines:
            line = line.strip()
        if not line.strip():
            continue
        if plain_lines and not line.startswith("{"):
            yield number, line
            continue
        where = f"{label}:{number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            # Some of json's messages end in "at" ("Invalid control character at"): one "at".
            msg = e.msg.removesuffix(" at")
            at = f" at column {e.colno}" if column else ""
            raise error(f"{where}: invalid JSON ({msg}{at})") from e
        if not isinstance(record, dict):
            raise error(f"{where}: expected a JSON object, found {describe(record)}")
        yield number, record


def json_type_name(value: Any) -> str:
    """The JSON name of a value's type (Python's name for non-JSON values), for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return f"a number ({value!r})"
    names = {str: "a string", list: "a list", dict: "an object"}
    return names.get(type(value), type(value).__name__)
