"""The checks the index parts share: row numbers in range, a part's file present and whole, and
the short reason of a library error for a message."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from kosearch.errors import IndexFormatError


def checked_rows(rows: Sequence[int], n: int) -> NDArray[np.int64]:
    """``rows`` as an int64 array, each in ``[0, n)``.

    Raises:
        IndexError: If a row is out of range.
    """
    keys = np.asarray(rows, dtype=np.int64).reshape(-1)
    if len(keys) and (keys.min() < 0 or keys.max() >= n):
        bad = keys[(keys < 0) | (keys >= n)][0]
        raise IndexError(f"row {bad} is out of range for {n} rows")
    return keys


def check_file(path: Path, expected_bytes: int | None) -> None:
    """Raise IndexFormatError if ``path`` is missing or not ``expected_bytes`` long."""
    if not path.is_file():
        raise IndexFormatError(f"the index at {path.parent} is incomplete: {path.name} is missing")
    size = path.stat().st_size
    if expected_bytes is not None and size != expected_bytes:
        raise IndexFormatError(
            f"{path} is {size} bytes but should be {expected_bytes}; "
            "the index is truncated or corrupt"
        )


def error_reason(error: BaseException) -> str:
    """The reason in an exception message, without FAISS's "Error in <fn> at <file>:<line>:"."""
    text = " ".join(str(error).split())
    found = re.search(r" at \S+:\d+: (.+)$", text)
    return (found.group(1) if found else text or type(error).__name__).rstrip(".")
